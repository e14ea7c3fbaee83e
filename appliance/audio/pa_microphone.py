"""A PortAudio microphone (PyAudio, callback mode) that reopens itself when the device fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pyaudio

from appliance.audio import pcm, portaudio
from appliance.audio.convert import CaptureConverter
from appliance.audio.ports import ChunkSink
from appliance.errors import AudioDeviceError
from appliance.handoff import Batches
from appliance.patience import RETRY_BASE_S, open_patiently

logger = logging.getLogger(__name__)

BATCH_MS = 200
"""Captured audio gathered before the event loop is woken for it (milliseconds).

Ten wakes of the loop for ten 20 ms periods cost ten times one. Nothing needs
the audio sooner: the daemon has it delivered at once on every press and
release (:meth:`PyAudioMicrophone.deliver_now`), so a turn's edges are exact
to the period, and the half-duplex gate judges audio by its place in the
turn, not by when it came. A batch is never longer than a quarter of
``stall_s``, so that silence is not mistaken for a lost device."""

WAITING_MS = 1000
"""Captured audio that may wait for a late event loop before the oldest is dropped."""


class _Stream:
    """One open PortAudio capture stream; its callback runs on PortAudio's thread."""

    def __init__(self, handoff: Batches[bytes]) -> None:
        self.handoff = handoff
        self.pa: pyaudio.PyAudio | None = None
        self.stream: pyaudio.Stream | None = None
        self.converter: CaptureConverter | None = None
        self.overflows = 0

    def callback(
        self, data: bytes | None, frames: int, timing: Any, status: int
    ) -> tuple[None, int]:
        # PortAudio's thread: hand the chunk over and nothing else.
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        try:
            self.handoff.put_threadsafe(data or b"")
        except RuntimeError:  # the loop is gone: the stream outlived the daemon
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    def open(self, spec: str, rate_hz: int, period_ms: int) -> str:
        """Open the device (blocking); returns the line that describes it."""
        self.pa = pa = portaudio.start()
        try:
            device = portaudio.find(pa, spec, "input")
            rate, channels = portaudio.choose_format(
                device,
                wanted_rate_hz=rate_hz,
                supported=lambda r, c: portaudio.supports(
                    pa, device, "input", rate_hz=r, channels=c
                ),
                direction="input",
            )
            frames = rate * period_ms // 1000
            self.converter = CaptureConverter(rate, channels=channels)
            self.stream = pa.open(
                rate=rate,
                channels=channels,
                format=pyaudio.paInt16,
                input=True,
                input_device_index=device.index,
                frames_per_buffer=frames,
                stream_callback=self.callback,
            )
        except (OSError, ValueError) as exc:
            self.close()
            raise AudioDeviceError(f"cannot open the microphone {spec!r}: {exc}") from exc
        except AudioDeviceError:
            self.close()
            raise
        converted = "" if rate == pcm.RATE_HZ else f", converted to {pcm.RATE_HZ} Hz by soxr"
        return (
            f"microphone open: {device.name!r} (index {device.index}, {device.host_api}) "
            f"at {rate} Hz, {channels} channel(s), {period_ms} ms periods{converted}"
        )

    def close(self) -> None:
        """Stop and release everything (blocking). Idempotent."""
        stream, self.stream = self.stream, None
        pa, self.pa = self.pa, None
        if stream is not None:
            stream.close()  # aborts a running stream: nothing queued is worth waiting for
        if pa is not None:
            pa.terminate()


class PyAudioMicrophone:
    """A sound card's capture side as an always-on microphone.

    Captures at the device's rate in ``period_ms`` periods (PyAudio callback
    mode). The callback only leaves each chunk in a bounded queue that drops
    the oldest when full (counted in :attr:`dropped_chunks`), and wakes the
    event loop once per ``BATCH_MS`` of audio: each wake costs CPU. The loop
    converts each batch to 24 kHz mono in one go and delivers exact 20 ms
    periods, in a plain callback (no task step and no timer per chunk);
    :meth:`deliver_now` delivers what is waiting at once. A device that
    delivers nothing for ``stall_s`` seconds is closed and reopened, with
    waits from 0.5 s doubling to 10 s, for as long as it takes; the daemon
    sees the silence and shows it.

    Args:
        device: A device name, a unique part of one, or an index (see
            ``appliance devices``).
        rate_hz: The rate to open at; 0: 24 kHz if the device takes it, else
            its native rate.
        period_ms: The capture period (milliseconds).
        stall_s: Seconds without a callback after which the device counts as lost.
    """

    def __init__(
        self,
        device: str = "default",
        *,
        rate_hz: int = 0,
        period_ms: int = pcm.PERIOD_MS,
        stall_s: float = 2.0,
    ) -> None:
        self.device = device
        self._rate_hz = rate_hz
        self._period_ms = period_ms
        self._stall_s = stall_s
        self._stream: _Stream | None = None
        self._sink: ChunkSink | None = None
        self._heard_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.reopens = 0
        """Times the device was reopened after a failure."""
        self._dropped_before = 0

    @property
    def dropped_chunks(self) -> int:
        """Captured chunks dropped because the event loop fell behind."""
        current = self._stream.handoff.dropped if self._stream is not None else 0
        return self._dropped_before + current

    async def open(self, sink: ChunkSink) -> None:
        """Open the device and start delivering 24 kHz periods to ``sink``.

        Raises:
            AudioDeviceError: the device cannot be opened (later failures are
                retried instead).
            RuntimeError: the microphone is already open.
        """
        if self._task is not None:
            raise RuntimeError("microphone is already open")
        await self._start()
        self._sink = sink
        self._task = asyncio.create_task(self._run(), name="pyaudio microphone")

    def deliver_now(self) -> None:
        """Deliver at once everything captured so far, rather than with the next batch."""
        stream, sink = self._stream, self._sink
        if stream is None or sink is None or stream.converter is None:
            return
        captured = b"".join(stream.handoff.take())  # one conversion per batch, not per chunk
        if not captured:  # a broken stream may call back with nothing: that is no sign of life
            return
        self._heard_at = asyncio.get_running_loop().time()
        for period in stream.converter.feed(captured):
            sink(period)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        batch = max(1, int(min(BATCH_MS, self._stall_s * 1000 / 4)) // self._period_ms)
        waiting = max(batch, WAITING_MS // self._period_ms)
        handoff: Batches[bytes] = Batches(
            loop, batch=batch, maxlen=waiting, on_batch=self.deliver_now
        )
        stream = _Stream(handoff)
        # Kept before the open completes: if we are cancelled meanwhile, close() still
        # closes it (the worker thread runs the close after the open).
        self._stream = stream
        try:
            line = await portaudio.call(stream.open, self.device, self._rate_hz, self._period_ms)
        except AudioDeviceError:
            self._stream = None
            raise
        logger.info("%s", line)

    async def _stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self._dropped_before += stream.handoff.dropped
            if stream.overflows or stream.handoff.dropped:
                logger.warning(
                    "microphone: %d input overflows, %d chunks dropped by a late loop",
                    stream.overflows,
                    stream.handoff.dropped,
                )
            await portaudio.close(stream.close, what="microphone")

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except AudioDeviceError as exc:
                logger.error("microphone lost: %s; reopening it", exc)
            await self._stop()
            await self._reopen()

    async def _watch(self) -> None:
        """Wait while the open stream delivers; raise once it has been silent ``stall_s`` s.

        Raises:
            AudioDeviceError: nothing came for ``stall_s`` seconds.
        """
        loop = asyncio.get_running_loop()
        self._heard_at = loop.time()
        # One timer per ``stall_s`` seconds, not one per chunk.
        while True:
            remaining_s = self._heard_at + self._stall_s - loop.time()
            if remaining_s <= 0:
                break
            await asyncio.sleep(remaining_s)
        raise AudioDeviceError(f"no audio for {self._stall_s:g} s")

    async def _reopen(self) -> None:
        await asyncio.sleep(RETRY_BASE_S)
        await open_patiently("microphone", self._start, give_up_at=None, waiting=_nobody)
        self.reopens += 1

    async def close(self) -> None:
        """Stop capturing and release the device. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self._stop()


def _nobody(why: str) -> None:
    """The daemon sees a lost microphone by its silence: nobody else needs telling."""
