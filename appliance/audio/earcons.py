"""Earcons: short, soft cues synthesised in code (24 kHz mono s16le), no binary assets."""

from __future__ import annotations

import enum
import functools

import numpy as np
import numpy.typing as npt

from appliance.audio import pcm


class Cue(enum.Enum):
    """What an earcon tells the person."""

    LISTENING = "listening"
    DONE_LISTENING = "done_listening"
    TOO_SHORT = "too_short"
    ERROR = "error"
    RECONNECTED = "reconnected"


PEAK_DBFS = -12.0
"""Peak level of every earcon (dB relative to full scale)."""

FADE_MS = 5.0
"""Raised-cosine fade at both ends of every note (milliseconds), so nothing clicks."""

_SEMITONE = 2.0 ** (1.0 / 12.0)

# (frequency in hertz or None for a rest, duration in milliseconds). Frequencies stay
# at or above 330 Hz: the small speakers of a Pi appliance reproduce little below.
_NOTES: dict[Cue, tuple[tuple[float | None, float], ...]] = {
    # Rising fourth, E5 then A5: "go ahead".
    Cue.LISTENING: ((659.26, 70.0), (880.0, 90.0)),
    # Falling fourth, A5 then E5: "got it".
    Cue.DONE_LISTENING: ((880.0, 70.0), (659.26, 90.0)),
    # Two quick low blips on E4.
    Cue.TOO_SHORT: ((329.63, 45.0), (None, 35.0), (329.63, 45.0)),
    # A low descending minor third, A4 then F#4.
    Cue.ERROR: ((440.0, 110.0), (440.0 / _SEMITONE**3, 130.0)),
    # A rising major arpeggio, C5 E5 G5.
    Cue.RECONNECTED: ((523.25, 60.0), (659.26, 60.0), (783.99, 90.0)),
}


@functools.cache
def render(kind: Cue) -> bytes:
    """The earcon for ``kind`` as 24 kHz mono s16le PCM (80 to 250 milliseconds).

    Args:
        kind: The cue.

    Returns:
        PCM peaking at :data:`PEAK_DBFS`, starting and ending at silence.
    """
    signal = np.concatenate([_note(freq_hz, ms) for freq_hz, ms in _NOTES[kind]])
    peak = float(np.max(np.abs(signal)))
    target = 10.0 ** (PEAK_DBFS / 20.0) * 32767.0
    scaled = np.rint(signal * (target / peak))
    data: bytes = scaled.astype("<i2").tobytes()
    return data


def duration_ms(kind: Cue) -> int:
    """Length of the earcon for ``kind`` (milliseconds, rounded down)."""
    return pcm.bytes_to_ms(len(render(kind)))


def _note(freq_hz: float | None, ms: float) -> npt.NDArray[np.float64]:
    """One faded note (a sine with a little second harmonic), or a rest, unscaled."""
    n = round(ms * pcm.RATE_HZ / 1000.0)
    if freq_hz is None:
        return np.zeros(n)
    t = np.arange(n) / pcm.RATE_HZ
    phase = 2.0 * np.pi * freq_hz * t
    # The second harmonic makes the cue audible on speakers that roll off low notes.
    tone = np.sin(phase) + 0.25 * np.sin(2.0 * phase)
    fade = round(FADE_MS * pcm.RATE_HZ / 1000.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)  # 0 up to just below 1
    envelope = np.ones(n)
    envelope[:fade] = ramp
    envelope[n - fade :] = ramp[::-1]
    return tone * envelope
