"""A PortAudio speaker (PyAudio, callback mode) with a playout buffer, reopened when it fails."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Hashable
from typing import Any

import pyaudio

from appliance.audio import pcm, portaudio
from appliance.audio.playout import Played, Playout
from appliance.audio.ports import PlayedReport
from appliance.errors import AudioDeviceError
from appliance.patience import RETRY_BASE_S, open_patiently

logger = logging.getLogger(__name__)

REPORT_WITHIN_MS = 200
"""Longest a played report waits for the event loop (milliseconds), unless it is news.

Each wake of the loop costs CPU. The daemon asks for reports whenever it needs
them up to date (:meth:`PyAudioSpeaker.report_played`, with each batch of
captured audio and on a press), so this is only the pace when nobody asks."""

PIECE_BYTES = pcm.ms_to_bytes(100)
"""Audio resampled per hold of the lock that the device's callback also takes."""


class PyAudioSpeaker:
    """A sound card's playback side, playing one persistent stream.

    The stream runs from :meth:`open` to :meth:`close` and plays silence
    when there is nothing to play, so the device never suspends and the
    first syllable of a reply is never lost. PortAudio's callback pulls each
    period from a :class:`~appliance.audio.playout.Playout` (prebuffer,
    underruns zero-filled and counted, soxr to the device's rate) under a
    lock, and hands what it played to the event loop with
    ``loop.call_soon_threadsafe``; reports waiting for the loop are merged,
    so that queue is bounded by the number of tags. The loop is woken at
    once when a segment starts playing or playback falls idle, and else
    once ``REPORT_WITHIN_MS`` of reports are waiting; :meth:`report_played`
    and :meth:`stop` report at once. A device whose callbacks
    stop for ``stall_s`` seconds is closed and reopened, waiting 0.5 s
    doubling to 10 s between attempts; the queue is kept meanwhile.

    Args:
        device: A device name, a unique part of one, or an index.
        rate_hz: The rate to open at; 0: 24 kHz if the device takes it, else
            its native rate.
        period_ms: The playback period (milliseconds).
        prebuffer_ms: Audio gathered before playback starts after silence
            (milliseconds).
        stall_s: Seconds without a callback after which the device counts as lost.
    """

    def __init__(
        self,
        device: str = "default",
        *,
        rate_hz: int = 0,
        period_ms: int = pcm.PERIOD_MS,
        prebuffer_ms: int = 60,
        stall_s: float = 2.0,
    ) -> None:
        self.device = device
        self._rate_hz = rate_hz
        self._period_ms = period_ms
        self._prebuffer_ms = prebuffer_ms
        self._stall_s = stall_s
        self._lock = threading.Lock()
        self._playout: Playout | None = None
        self._pending: Played = []
        self._scheduled = False
        self._waiting_periods = 0  # periods whose reports wait for the loop
        self._was_idle = True
        self._last_tag: Hashable | None = None
        self._callbacks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._report: PlayedReport | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._pa: pyaudio.PyAudio | None = None
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None
        self.reopens = 0
        """Times the device was reopened after a failure."""
        self.trouble: str | None = None
        """Why the device is not playing now (it is being reopened), or None."""

    @property
    def underruns(self) -> int:
        """Times playback ran dry in the middle of a segment's tag."""
        with self._lock:
            return 0 if self._playout is None else self._playout.underruns

    async def open(self, report: PlayedReport) -> None:
        """Open the device and start its stream; ``report`` hears what is played.

        Raises:
            AudioDeviceError: the device cannot be opened (later failures are
                retried instead).
            RuntimeError: the speaker is already open.
        """
        if self._task is not None:
            raise RuntimeError("speaker is already open")
        self._loop = asyncio.get_running_loop()
        self._report = report
        await self._start()
        self._task = asyncio.create_task(self._supervise(), name="pyaudio speaker")

    def play(self, pcm: bytes, tag: Hashable) -> None:
        """Queue ``pcm`` (24 kHz mono s16le) after everything already queued. Never blocks."""
        if self._playout is None:
            raise RuntimeError("speaker is not open")
        # Resampled under the lock the device's callback needs too: a piece at a time, so
        # that a long delta never keeps the callback waiting for more than a moment.
        view = memoryview(pcm)
        for start in range(0, len(pcm), PIECE_BYTES):
            with self._lock:
                self._playout.add(bytes(view[start : start + PIECE_BYTES]), tag)
        if pcm:
            self._idle.clear()

    def stop(self) -> None:
        """Report what was played, then discard everything queued; the next period is silence."""
        self.report_played()
        with self._lock:
            if self._playout is not None:
                self._playout.clear()
        self._idle.set()

    def report_played(self) -> None:
        """Report now what has been played, rather than when the next report is due."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._waiting_periods = 0
        report = self._report
        if report is not None:
            for tag, samples in pending:
                report(tag, samples)

    async def drain(self, timeout_s: float) -> None:
        """Wait until everything queued has been played, or ``timeout_s`` seconds passed."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            logger.debug("speaker drain timed out")

    async def close(self) -> None:
        """Stop the stream and release the device. Idempotent; queued audio is discarded."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self._stop_stream()
        self.stop()
        self._report = None

    # ------------------------------------------------------------------
    # PortAudio's thread

    def _callback(
        self, data: bytes | None, frames: int, timing: Any, status: int
    ) -> tuple[bytes, int]:
        with self._lock:
            self._callbacks += 1
            playout = self._playout
            assert playout is not None
            try:
                out, played = playout.pull(frames)
            except Exception:  # a bug must not kill the stream: drop the queue, play silence
                logger.exception("speaker: the playout failed; its queue is dropped")
                playout.clear()
                out, played = bytes(frames * pcm.SAMPLE_BYTES * playout.channels), []
            urgent = bool(played) and self._was_idle  # playback (re)starts
            for tag, samples in played:
                urgent |= tag != self._last_tag  # a segment starts: its first report is news
                self._last_tag = tag
                if self._pending and self._pending[-1][0] == tag:
                    self._pending[-1] = (tag, self._pending[-1][1] + samples)
                else:
                    self._pending.append((tag, samples))
            idle = playout.idle
            urgent |= idle and not self._was_idle  # playback fell idle: the reply is over
            self._was_idle = idle
            # Each wake of the loop costs CPU: wake it at once when that matters, and else
            # once REPORT_WITHIN_MS of reports wait (report_played() makes them exact).
            if self._pending:
                self._waiting_periods += 1
            due = self._waiting_periods * self._period_ms >= REPORT_WITHIN_MS
            schedule = not self._scheduled and (urgent or (bool(self._pending) and due))
            if schedule:
                self._scheduled = True
        if schedule and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is gone: the stream outlived the daemon
                return out, pyaudio.paAbort
        return out, pyaudio.paContinue

    # ------------------------------------------------------------------
    # The event loop's thread

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
            self._waiting_periods = 0
            idle = self._playout is None or self._playout.idle
        report = self._report
        if report is not None:
            for tag, samples in pending:
                report(tag, samples)
        if idle:
            self._idle.set()

    def _open_blocking(self) -> tuple[str, int, int]:
        self._pa = pa = portaudio.start()
        try:
            device = portaudio.find(pa, self.device, "output")
            rate, channels = portaudio.choose_format(
                device,
                wanted_rate_hz=self._rate_hz,
                supported=lambda r, c: portaudio.supports(
                    pa, device, "output", rate_hz=r, channels=c
                ),
                direction="output",
            )
            self._stream = pa.open(
                rate=rate,
                channels=channels,
                format=pyaudio.paInt16,
                output=True,
                output_device_index=device.index,
                frames_per_buffer=rate * self._period_ms // 1000,
                stream_callback=self._callback,
                start=False,
            )
        except (OSError, ValueError) as exc:
            self._close_blocking()
            raise AudioDeviceError(f"cannot open the speaker {self.device!r}: {exc}") from exc
        except AudioDeviceError:
            self._close_blocking()
            raise
        converted = "" if rate == pcm.RATE_HZ else f", converted from {pcm.RATE_HZ} Hz by soxr"
        line = (
            f"speaker open: {device.name!r} (index {device.index}, {device.host_api}) "
            f"at {rate} Hz, {channels} channel(s), {self._period_ms} ms periods, "
            f"{self._prebuffer_ms} ms prebuffer{converted}"
        )
        return line, rate, channels

    def _close_blocking(self) -> None:
        stream, self._stream = self._stream, None
        pa, self._pa = self._pa, None
        if stream is not None:
            stream.close()  # aborts a running stream: what it still holds was stopped already
        if pa is not None:
            pa.terminate()

    async def _start(self) -> None:
        line, rate, channels = await portaudio.call(self._open_blocking)
        with self._lock:
            if self._playout is None:
                self._playout = Playout(rate, channels=channels, prebuffer_ms=self._prebuffer_ms)
            else:  # a reopened device: it plays what the old one had not taken
                self._playout.change_device(rate, channels=channels)
        self._deliver()
        try:
            await portaudio.call(self._stream.start_stream)
        except OSError as exc:  # PyAudio's own error, not yet ours
            await self._stop_stream()
            raise AudioDeviceError(f"cannot start the speaker {self.device!r}: {exc}") from exc
        logger.info("%s", line)

    async def _stop_stream(self) -> None:
        # Always through the worker: an open still running there is closed after it.
        await portaudio.close(self._close_blocking, what="speaker")

    async def _supervise(self) -> None:
        while True:
            seen = self._callbacks
            await asyncio.sleep(self._stall_s)
            if self._callbacks != seen:
                continue
            logger.error("speaker lost: no callback for %g s; reopening it", self._stall_s)
            self.trouble = f"the speaker stopped playing {self._stall_s:g} s ago; reopening it"
            await self._stop_stream()
            await asyncio.sleep(RETRY_BASE_S)
            await open_patiently("speaker", self._start, give_up_at=None, waiting=self._waiting)
            self.reopens += 1
            self.trouble = None

    def _waiting(self, why: str) -> None:
        self.trouble = why
