"""A WAV file standing in for the speaker, paced by the event loop's clock."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Hashable
from pathlib import Path

from appliance.audio.filepace import (
    BATCH_MS,
    BATCH_PERIODS,
    Alarm,
    Clock,
    first_period_after,
    period_deadline,
)
from appliance.audio.pcm import PERIOD_BYTES, SAMPLE_BYTES, samples_to_ms
from appliance.audio.ports import PlayedReport
from appliance.audio.wav import WavWriter
from appliance.errors import AudioFileError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Segment:
    """One queued ``play``: its tag, its PCM and how many bytes of it were played."""

    tag: Hashable
    data: bytes
    offset: int = 0


class FileSpeaker:
    """A WAV file (24 kHz mono 16-bit) as a speaker with a playout queue.

    Every 20 milliseconds, on an absolute schedule from :meth:`open`, up to
    one period of queued audio is "played": appended to the file (idle time
    writes nothing) and reported per segment, so the file holds exactly what
    was played, in order, and is a valid WAV at every moment.

    Like a sound card's speaker, it wakes the event loop rarely, since each
    wake costs CPU, and each wake writes and reports every period due since
    the last one, in one append: at the first period when playback starts
    (that report is news), exactly when the queue runs out (so that the end
    of a reply is not late), and else once per ``BATCH_MS`` while playing;
    never while idle. :meth:`report_played` and :meth:`stop` bring the file
    and the reports up to date at once, so that a reply interrupted is
    truncated within one period of what was played.
    """

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        """Prepare to write ``path``; the file is created by :meth:`open`.

        Args:
            path: The WAV file to create or truncate.
            clock: A monotonic clock in seconds that decides when things are
                due; by default the event loop's. Waiting is still done with
                the loop's timers, and what is due is checked against this
                clock on waking.
        """
        self.trouble: str | None = None
        """Always None: a file does not go away while it is written."""
        self.path = path
        self._clock = clock
        self._queue: collections.deque[_Segment] = collections.deque()
        self._queued_bytes = 0
        self._empty = asyncio.Event()
        self._empty.set()
        self._writer: WavWriter | None = None
        self._writing = False
        self._report: PlayedReport | None = None
        self._alarm: Alarm | None = None
        self._start = 0.0
        self._next = 0  # the next period to play
        self._starting = False  # playback starts: its first period is not played yet
        self._batch_end = 0  # the period whose end wakes the loop, unless asked sooner

    @property
    def queued_samples(self) -> int:
        """Samples queued and not yet played (written and reported)."""
        return self._queued_bytes // SAMPLE_BYTES

    @property
    def samples_written(self) -> int:
        """Samples written to the file since :meth:`open`."""
        return 0 if self._writer is None else self._writer.samples_written

    @property
    def wakes_at(self) -> float | None:
        """When the speaker next wakes the event loop (seconds on its clock); None: never."""
        return None if self._alarm is None else self._alarm.at

    async def open(self, report: PlayedReport) -> None:
        """Create the output file (a valid empty WAV) and start playing.

        Raises:
            AudioFileError: the file cannot be created.
            RuntimeError: the speaker is already open.
        """
        if self._alarm is not None:
            raise RuntimeError("speaker is already open")
        self._writer = WavWriter(self.path)
        self._writing = True
        self._report = report
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        self._start = clock()
        self._next = 0
        self._starting = bool(self._queue)  # queued before: it plays from the first period
        self._alarm = Alarm(loop, clock, self._wake, what="file speaker")
        self._arm()
        logger.info("file speaker open: %s", self.path)

    def play(self, pcm: bytes, tag: Hashable) -> None:
        """Queue ``pcm`` (24 kHz mono s16le) after everything already queued.

        On an idle speaker its first period is played at the end of the
        period now under way.

        Raises:
            ValueError: ``pcm`` is not a whole number of samples.
        """
        if len(pcm) % SAMPLE_BYTES:
            raise ValueError(f"PCM of {len(pcm)} bytes is not whole 16-bit samples")
        if not pcm:
            return
        alarm = self._alarm
        if alarm is not None:
            now = alarm.clock()
            # The periods due were played from the queue as it was: if it ran out
            # meanwhile, the new audio must not fill them after the fact.
            if not self._queue or period_deadline(self._start, self._last_period()) <= now:
                self._play_due(now, woken=False)
                if not self._queue:  # idle: playback starts with the next period
                    self._next = max(self._next, first_period_after(self._start, now))
                    self._starting = True
        self._queue.append(_Segment(tag, pcm))
        self._queued_bytes += len(pcm)
        self._empty.clear()
        self._arm()

    def report_played(self) -> None:
        """Play, write and report at once every period due, rather than at the next wake."""
        alarm = self._alarm
        if alarm is not None:
            self._play_due(alarm.clock(), woken=False)
            self._arm()

    def stop(self) -> None:
        """Report what was played, then discard everything queued; what was written stays."""
        self.report_played()
        self._queue.clear()
        self._queued_bytes = 0
        self._starting = False
        self._empty.set()
        self._arm()

    async def drain(self, timeout_s: float) -> None:
        """Wait until the queue has played out (and is written), or ``timeout_s`` seconds passed."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            logger.debug("drain timed out with %d samples queued", self.queued_samples)

    async def close(self) -> None:
        """Write what was played, then stop, discard the queue and close the file. Idempotent.

        Raises:
            AudioFileError: the file could not be closed cleanly.
        """
        try:
            self.stop()
        finally:  # a report that raised must not leave the timer armed or the file open
            alarm, self._alarm = self._alarm, None
            if alarm is not None:
                alarm.set(None)
            self._report = None
            writer, self._writer = self._writer, None
            if writer is not None:
                logger.info(
                    "file speaker closed: %s (%d ms written)",
                    self.path,
                    samples_to_ms(writer.samples_written),
                )
                writer.close()

    def _wake(self) -> None:
        alarm = self._alarm
        if alarm is not None:
            self._play_due(alarm.clock(), woken=True)
            self._arm()

    def _last_period(self) -> int:
        """The period that plays the end of the queue (if nothing is added)."""
        return self._next + -(-self._queued_bytes // PERIOD_BYTES) - 1

    def _arm(self) -> None:
        """Wake at the next moment that matters: see the class docstring."""
        alarm = self._alarm
        if alarm is None:
            return
        if not self._queue:
            alarm.set(None)  # idle: nothing to wake for
        elif self._starting:
            alarm.set(period_deadline(self._start, self._next))
        else:  # a batch on, or when the queue runs out if that is sooner
            end = max(self._next, min(self._last_period(), self._batch_end))
            alarm.set(period_deadline(self._start, end))

    def _play_due(self, now: float, *, woken: bool) -> None:
        """Play every period complete by ``now``: one append to the file, one report per segment.

        Ticks missed by a late loop are caught up in order, as a device with
        its own clock would have played them.

        Args:
            now: The time on the clock (seconds).
            woken: True if the speaker's own wake asks, False if a caller does.
        """
        parts: list[bytes] = []
        played: list[tuple[Hashable, int]] = []
        while self._queue and period_deadline(self._start, self._next) <= now:
            self._next += 1
            self._take_period(parts, played)
        if not parts:
            return
        self._starting = False
        # The next wake comes a batch later. One that a caller asked for (the daemon
        # does, with every batch of captured audio) puts it off a whole BATCH_MS, so
        # that the caller's next batch comes first and this wake is never needed.
        if woken:
            self._batch_end = self._next + BATCH_PERIODS - 1
        else:
            self._batch_end = first_period_after(self._start, now + BATCH_MS / 1000.0)
        taken = b"".join(parts)
        self._queued_bytes -= len(taken)
        writer = self._writer
        if self._writing and writer is not None:
            try:
                writer.append(taken)  # the header once per batch: valid at every moment
            except AudioFileError as exc:
                # Keep the clock and the reports going: the daemon must not hang.
                logger.error("file speaker stops writing: %s", exc)
                self._writing = False
        if not self._queue:
            self._empty.set()  # before the reports, which may queue more
        report = self._report
        if report is not None:
            for tag, samples in played:
                try:
                    report(tag, samples)
                except Exception:  # the others are still owed their reports
                    logger.exception("file speaker: a played report failed")

    def _take_period(self, parts: list[bytes], played: list[tuple[Hashable, int]]) -> None:
        """Dequeue up to one period, across segment boundaries, onto ``parts`` and ``played``.

        ``played`` gets (tag, samples) per segment: a portion of the same tag
        as its last entry is added to it.
        """
        wanted = PERIOD_BYTES
        while wanted and self._queue:
            segment = self._queue[0]
            part = segment.data[segment.offset : segment.offset + wanted]
            parts.append(part)
            samples = len(part) // SAMPLE_BYTES
            if played and played[-1][0] == segment.tag:
                played[-1] = (segment.tag, played[-1][1] + samples)
            else:
                played.append((segment.tag, samples))
            wanted -= len(part)
            segment.offset += len(part)
            if segment.offset == len(segment.data):
                self._queue.popleft()
