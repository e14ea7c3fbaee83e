"""Reply audio for the emulator: the chime, G.711 codecs, format conversion, chunking.

Audio formats are the Realtime API's: ``audio/pcm`` (signed 16-bit little-endian
mono at 24 kHz), ``audio/pcmu`` and ``audio/pcma`` (G.711 mu-law and A-law, one
byte per sample at 8 kHz).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "bytes_per_ms",
    "chime",
    "chunk_sizes",
    "convert",
    "format_rate_hz",
    "sample_bytes",
]

PCM_RATE_HZ = 24_000
"""Sample rate of ``audio/pcm`` (hertz): the only one the API accepts."""

G711_RATE_HZ = 8_000
"""Sample rate of ``audio/pcmu`` and ``audio/pcma`` (hertz)."""

CHUNK_PATTERN_MS = (120, 200, 160, 100, 180, 140)
"""Durations of successive reply deltas (milliseconds), cycled: sizes vary on purpose."""

_Samples = npt.NDArray[np.float64]


def format_rate_hz(audio_format: Mapping[str, Any]) -> int:
    """Sample rate of an audio format (hertz).

    Args:
        audio_format: A GA format object, e.g. ``{"type": "audio/pcm", "rate": 24000}``.
    """
    return PCM_RATE_HZ if audio_format.get("type") == "audio/pcm" else G711_RATE_HZ


def sample_bytes(audio_format: Mapping[str, Any]) -> int:
    """Bytes per encoded sample: 2 for ``audio/pcm``, 1 for G.711."""
    return 2 if audio_format.get("type") == "audio/pcm" else 1


def bytes_per_ms(audio_format: Mapping[str, Any]) -> float:
    """Bytes of encoded audio per millisecond for an audio format."""
    return format_rate_hz(audio_format) * sample_bytes(audio_format) / 1000


def chime(duration_s: float, *, audio_format: Mapping[str, Any]) -> bytes:
    """A gentle two-tone chime (E5 then C5, soft attack, exponential decay).

    Args:
        duration_s: Length of the chime, in seconds.
        audio_format: Output format object; the chime is synthesised at its rate.

    Returns:
        Exactly ``round(duration_s * rate)`` samples encoded in ``audio_format``.
    """
    rate = format_rate_hz(audio_format)
    count = round(duration_s * rate)
    t = np.arange(count, dtype=np.float64) / rate
    signal = np.zeros(count, dtype=np.float64)
    second_at_s = duration_s * 0.4
    for start_s, freq_hz in ((0.0, 659.25), (second_at_s, 523.25)):
        local = t - start_s
        active = local >= 0
        attack = np.clip(local / 0.01, 0.0, 1.0)
        decay = np.exp(-np.maximum(local, 0.0) / (duration_s * 0.25))
        signal += np.where(active, 0.25 * attack * decay * np.sin(2 * np.pi * freq_hz * local), 0.0)
    # A short fade-out so the last sample is silent and nothing clicks.
    fade = min(count, int(0.02 * rate))
    if fade:
        signal[count - fade :] *= np.linspace(1.0, 0.0, fade)
    return _encode(signal, audio_format)


def convert(audio: bytes, *, source: Mapping[str, Any], target: Mapping[str, Any]) -> bytes:
    """Convert encoded audio between two GA formats.

    Identical formats return the input unchanged, byte for byte. Otherwise the
    audio is decoded, resampled by linear interpolation and encoded again.

    Args:
        audio: Encoded audio in ``source``.
        source: Format of ``audio``.
        target: Format wanted.
    """
    if source.get("type") == target.get("type"):
        return audio
    samples = _decode(audio, source)
    src_rate, dst_rate = format_rate_hz(source), format_rate_hz(target)
    if src_rate != dst_rate and samples.size:
        count = max(1, round(samples.size * dst_rate / src_rate))
        positions = np.arange(count, dtype=np.float64) * src_rate / dst_rate
        samples = np.interp(positions, np.arange(samples.size, dtype=np.float64), samples)
    return _encode(samples, target)


def chunk_sizes(total_bytes: int, *, audio_format: Mapping[str, Any]) -> list[int]:
    """Split ``total_bytes`` of audio into delta sizes of 100-200 ms of audio each.

    Sizes follow ``CHUNK_PATTERN_MS``, are whole samples, and add up to
    ``total_bytes``; the last one may be shorter.
    """
    step = sample_bytes(audio_format)
    sizes: list[int] = []
    remaining = total_bytes
    index = 0
    while remaining > 0:
        wanted_ms = CHUNK_PATTERN_MS[index % len(CHUNK_PATTERN_MS)]
        size = int(wanted_ms * bytes_per_ms(audio_format)) // step * step
        size = min(max(size, step), remaining)
        sizes.append(size)
        remaining -= size
        index += 1
    return sizes


def _decode(audio: bytes, audio_format: Mapping[str, Any]) -> _Samples:
    """Decode to floats in [-1, 1]."""
    kind = audio_format.get("type")
    if kind == "audio/pcm":
        usable = len(audio) - len(audio) % 2
        pcm = np.frombuffer(audio[:usable], dtype="<i2").astype(np.float64)
    elif kind == "audio/pcmu":
        pcm = _ulaw_decode(np.frombuffer(audio, dtype=np.uint8))
    else:
        pcm = _alaw_decode(np.frombuffer(audio, dtype=np.uint8))
    return pcm / 32768.0


def _encode(samples: _Samples, audio_format: Mapping[str, Any]) -> bytes:
    """Encode floats in [-1, 1]."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int64)
    kind = audio_format.get("type")
    if kind == "audio/pcm":
        return pcm.astype("<i2").tobytes()
    if kind == "audio/pcmu":
        return _ulaw_encode(pcm).tobytes()
    return _alaw_encode(pcm).tobytes()


_ULAW_BIAS = 0x84
_ULAW_CLIP_14 = 8159


def _segment(magnitude: npt.NDArray[np.int64], *, low_bits: int) -> npt.NDArray[np.int64]:
    """G.711 segment (exponent) 0-7 of a magnitude whose segment 0 spans ``low_bits`` bits."""
    exponent = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) - low_bits
    return np.clip(exponent, 0, 7)


def _ulaw_encode(pcm: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    # As the CCITT reference (and the stdlib's old audioop): work on 14 bits.
    value = pcm >> 2
    negative = value < 0
    magnitude: npt.NDArray[np.int64] = np.minimum(
        np.minimum(np.where(negative, -value, value), _ULAW_CLIP_14) + (_ULAW_BIAS >> 2),
        0x1FFF,  # the clipped top maps to the largest code
    )
    exponent = _segment(magnitude, low_bits=5)
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    mask = np.where(negative, 0x7F, 0xFF)
    codes: npt.NDArray[np.uint8] = (((exponent << 4) | mantissa) ^ mask).astype(np.uint8)
    return codes


def _ulaw_decode(codes: npt.NDArray[np.uint8]) -> _Samples:
    value = ~codes.astype(np.int64) & 0xFF
    exponent = (value >> 4) & 0x07
    mantissa = value & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(value & 0x80, -magnitude, magnitude).astype(np.float64)


def _alaw_encode(pcm: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 32767)
    exponent = np.where(magnitude < 256, 0, _segment(magnitude, low_bits=7))
    shift = np.where(exponent == 0, 4, exponent + 3)
    mantissa = (magnitude >> shift) & 0x0F
    return (((exponent << 4) | mantissa) ^ mask).astype(np.uint8)


def _alaw_decode(codes: npt.NDArray[np.uint8]) -> _Samples:
    value = codes.astype(np.int64) ^ 0x55
    exponent = (value >> 4) & 0x07
    mantissa = value & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(value & 0x80, magnitude, -magnitude).astype(np.float64)
