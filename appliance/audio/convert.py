"""Captured device audio to 24 kHz mono periods: downmix, soxr stream resampling, re-chunking."""

from __future__ import annotations

import numpy as np
import soxr

from appliance.audio import pcm

QUALITY = "HQ"
"""soxr quality of every device stream: -61 dB aliasing, a few ms of latency."""


class CaptureConverter:
    """Converts a device's s16le capture, chunk by chunk, to exact 24 kHz mono periods.

    The resampler is a ``soxr.ResampleStream``: its state carries across
    chunks, so chunk borders leave no trace. Output comes in bursts (soxr
    works in blocks); periods are cut from it as they complete.

    Args:
        rate_hz: The device's sample rate (hertz).
        channels: Interleaved channels per frame; the first one is kept.
        period_samples: Samples per period delivered (24 kHz).
    """

    def __init__(
        self, rate_hz: int, *, channels: int = 1, period_samples: int = pcm.PERIOD_SAMPLES
    ) -> None:
        if rate_hz <= 0 or channels <= 0 or period_samples <= 0:
            raise ValueError("rate, channels and period must be positive")
        self.rate_hz = rate_hz
        self.channels = channels
        self._period_bytes = period_samples * pcm.SAMPLE_BYTES
        self._stream = (
            None
            if rate_hz == pcm.RATE_HZ
            else soxr.ResampleStream(rate_hz, pcm.RATE_HZ, 1, dtype="int16", quality=QUALITY)
        )
        self._pending = bytearray()

    @property
    def clips(self) -> int:
        """Samples the resampler had to clip to 16 bits so far."""
        return 0 if self._stream is None else int(self._stream.num_clips())

    def feed(self, data: bytes) -> list[bytes]:
        """Take one captured chunk; return the 24 kHz periods now complete, in order."""
        frame_bytes = pcm.SAMPLE_BYTES * self.channels
        usable = len(data) - len(data) % frame_bytes
        samples = np.frombuffer(data, dtype="<i2", count=usable // pcm.SAMPLE_BYTES)
        if self.channels > 1:
            samples = samples[:: self.channels]
        if self._stream is not None:
            samples = self._stream.resample_chunk(samples)
        self._pending += samples.astype("<i2", copy=False).tobytes()
        size = self._period_bytes
        count = len(self._pending) // size
        periods = [bytes(self._pending[i * size : (i + 1) * size]) for i in range(count)]
        del self._pending[: count * size]
        return periods
