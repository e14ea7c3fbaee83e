"""Hand-written fakes of the microphone, speaker and button protocols; they record calls."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable

from appliance.audio.pcm import PERIOD_SAMPLES, SAMPLE_BYTES
from appliance.audio.ports import ChunkSink, Microphone, PlayedReport, Speaker
from appliance.button import Button, ButtonAction, ButtonSink
from appliance.status import Companion, Health, Phase, Status


class FakeMicrophone:
    """A microphone the test speaks into with :meth:`push`.

    Args:
        batching: Hold what is pushed until :meth:`deliver_now`, as a device
            microphone holds its batches, instead of delivering at once.
    """

    def __init__(self, *, batching: bool = False) -> None:
        self.sink: ChunkSink | None = None
        self.opens = 0
        self.closes = 0
        self.pushed: list[bytes] = []
        self.batching = batching
        self.held: list[bytes] = []
        """Pushed and not yet delivered (with ``batching``)."""

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self.sink is not None

    async def open(self, sink: ChunkSink) -> None:
        self.opens += 1
        self.sink = sink

    def deliver_now(self) -> None:
        """Deliver what is held (nothing is, without ``batching``)."""
        held, self.held = self.held, []
        for pcm in held:
            self._deliver(pcm)

    async def close(self) -> None:
        self.closes += 1
        self.sink = None

    def push(self, pcm: bytes) -> None:
        """Deliver ``pcm`` to the sink now, synchronously (or hold it, with ``batching``).

        Raises:
            RuntimeError: the microphone is not open.
        """
        if self.sink is None:
            raise RuntimeError("FakeMicrophone.push while closed")
        self.pushed.append(pcm)
        if self.batching:
            self.held.append(pcm)
        else:
            self._deliver(pcm)

    def _deliver(self, pcm: bytes) -> None:
        if self.sink is not None:
            self.sink(pcm)

    def push_periods(self, count: int, *, value: int = 0) -> None:
        """Push ``count`` periods of a constant sample ``value``."""
        period = value.to_bytes(2, "little", signed=True) * PERIOD_SAMPLES
        for _ in range(count):
            self.push(period)


class FakeSpeaker:
    """A speaker that plays only when the test calls :meth:`advance`.

    Records every ``play`` (in :attr:`plays`), ``stop`` (count in :attr:`stops`),
    open and close; reports what it plays exactly like the real speakers do.
    """

    def __init__(self) -> None:
        self.report: PlayedReport | None = None
        self.plays: list[tuple[bytes, Hashable]] = []
        self.stops = 0
        self.opens = 0
        self.closes = 0
        self.played = bytearray()
        """Every byte "played" by :meth:`advance`, in order."""
        self.trouble: str | None = None
        """Set by the test: the speaker is being reopened."""
        self._queue: collections.deque[tuple[Hashable, bytes]] = collections.deque()
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def queued_samples(self) -> int:
        """Samples queued and not yet played."""
        return sum(len(data) for _, data in self._queue) // SAMPLE_BYTES

    @property
    def queued_tags(self) -> list[Hashable]:
        """Tags of the segments still (partly) queued, in order."""
        return [tag for tag, _ in self._queue]

    async def open(self, report: PlayedReport) -> None:
        self.opens += 1
        self.report = report

    def play(self, pcm: bytes, tag: Hashable) -> None:
        self.plays.append((pcm, tag))
        if pcm:
            self._queue.append((tag, pcm))
            self._empty.clear()

    def report_played(self) -> None:
        """Nothing to do: :meth:`advance` reports as it plays."""

    def stop(self) -> None:
        self.stops += 1
        self._queue.clear()
        self._empty.set()

    async def drain(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return

    async def close(self) -> None:
        self.closes += 1
        self._queue.clear()
        self._empty.set()
        self.report = None

    def advance(self, samples: int) -> int:
        """Play up to ``samples`` samples from the queue, reporting each segment's portion.

        Returns:
            The samples actually played (fewer when the queue runs out).
        """
        wanted = samples * SAMPLE_BYTES
        reports: list[tuple[Hashable, int]] = []
        while wanted and self._queue:
            tag, data = self._queue[0]
            part = data[:wanted]
            self.played += part
            reports.append((tag, len(part) // SAMPLE_BYTES))
            wanted -= len(part)
            if len(part) == len(data):
                self._queue.popleft()
            else:
                self._queue[0] = (tag, data[len(part) :])
        if not self._queue:
            self._empty.set()
        if self.report is not None:
            for tag, count in reports:
                self.report(tag, count)
        return sum(count for _, count in reports)


class FakeButton:
    """A button the test presses with :meth:`press` and :meth:`release`."""

    def __init__(self) -> None:
        self.sink: ButtonSink | None = None
        self.opens = 0
        self.closes = 0
        self.exhausted = False
        self.events: list[ButtonAction] = []

    async def open(self, sink: ButtonSink) -> None:
        self.opens += 1
        self.sink = sink

    async def close(self) -> None:
        self.closes += 1
        self.sink = None

    def press(self) -> None:
        """Press the button: the sink gets "press" now, synchronously."""
        self._send("press")

    def release(self) -> None:
        """Release the button: the sink gets "release" now, synchronously."""
        self._send("release")

    def _send(self, action: ButtonAction) -> None:
        if self.sink is None:
            raise RuntimeError(f"FakeButton.{action} while closed")
        self.events.append(action)
        self.sink(action)


def _protocols_are_satisfied() -> None:
    """Checked by mypy: every fake can stand in for its protocol."""
    _mic: Microphone = FakeMicrophone()
    _speaker: Speaker = FakeSpeaker()
    _button: Button = FakeButton()


class RecordingCompanion:
    """A companion that records the daemon's life: started, statuses, stopping."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.statuses: list[Status] = []
        self.health: Health | None = None

    def started(self) -> None:
        self.calls.append("started")

    def status(self, status: Status) -> None:
        self.calls.append(status.text())
        self.statuses.append(status)

    def stopping(self) -> None:
        self.calls.append("stopping")

    async def run(self, health: Health) -> None:
        self.health = health
        await asyncio.Event().wait()

    def phases(self) -> list[Phase]:
        return [s.phase for s in self.statuses]


_companion: Companion = RecordingCompanion()
