"""The one PCM format the appliance speaks internally, and pure helpers for it.

Everything between the adapters and the upstream is 24 kHz, mono, signed 16-bit
little-endian PCM: the only ``audio/pcm`` rate the Realtime API accepts. The
rate is defined here and nowhere else.
"""

from __future__ import annotations

RATE_HZ = 24_000
"""Samples per second (hertz)."""

SAMPLE_BYTES = 2
"""Bytes per sample: signed 16-bit, little-endian, mono."""

PERIOD_MS = 20
"""The audio period (milliseconds): adapters deliver and play audio in steps of this."""

PERIOD_SAMPLES = RATE_HZ * PERIOD_MS // 1000
"""Samples in one period."""

PERIOD_BYTES = PERIOD_SAMPLES * SAMPLE_BYTES
"""Bytes in one period."""


def samples_to_ms(samples: int) -> int:
    """Milliseconds of audio in ``samples`` samples, rounded down."""
    return samples * 1000 // RATE_HZ


def bytes_to_ms(nbytes: int) -> int:
    """Milliseconds of audio in ``nbytes`` bytes of PCM, rounded down."""
    return samples_to_ms(nbytes // SAMPLE_BYTES)


def samples_to_s(samples: int) -> float:
    """Seconds of audio in ``samples`` samples."""
    return samples / RATE_HZ


def bytes_to_s(nbytes: int) -> float:
    """Seconds of audio in ``nbytes`` bytes of PCM."""
    return nbytes / (RATE_HZ * SAMPLE_BYTES)


def ms_to_bytes(ms: float) -> int:
    """Bytes of PCM holding ``ms`` milliseconds, rounded down to a whole sample."""
    return int(ms * RATE_HZ / 1000) * SAMPLE_BYTES
