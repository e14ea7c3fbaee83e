"""Tests of the synthesised earcons."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from appliance.audio import earcons, pcm
from appliance.audio.earcons import Cue


def samples(cue: Cue) -> npt.NDArray[np.int16]:
    return np.frombuffer(earcons.render(cue), dtype="<i2")


def dominant_hz(part: npt.NDArray[np.int16]) -> float:
    padded = np.zeros(pcm.RATE_HZ, dtype=np.float64)  # 1 Hz bins
    padded[: len(part)] = part * np.hanning(len(part))
    return float(np.argmax(np.abs(np.fft.rfft(padded))))


@pytest.mark.parametrize("cue", list(Cue))
def test_shape_and_level(cue: Cue) -> None:
    data = earcons.render(cue)
    assert len(data) % pcm.SAMPLE_BYTES == 0
    s = samples(cue)
    assert 80 <= len(s) * 1000 / pcm.RATE_HZ <= 250
    assert 80 <= earcons.duration_ms(cue) <= 250
    peak_dbfs = 20 * np.log10(np.max(np.abs(s)) / 32768)
    assert -14 < peak_dbfs < -6
    # Starts and ends at silence: no click.
    assert abs(int(s[0])) < 50 and abs(int(s[-1])) < 300
    assert np.max(np.abs(s[:24])) < 0.2 * np.max(np.abs(s))
    assert np.max(np.abs(s[-24:])) < 0.2 * np.max(np.abs(s))


def test_all_distinct() -> None:
    for a, b in itertools.combinations(Cue, 2):
        assert earcons.render(a) != earcons.render(b), (a, b)


def test_cached() -> None:
    assert earcons.render(Cue.LISTENING) is earcons.render(Cue.LISTENING)


def first_and_last_pitch_hz(cue: Cue) -> tuple[float, float]:
    s = samples(cue)
    return dominant_hz(s[: len(s) // 3]), dominant_hz(s[-len(s) // 3 :])


def test_listening_rises_and_done_falls() -> None:
    first, last = first_and_last_pitch_hz(Cue.LISTENING)
    assert first < last
    first, last = first_and_last_pitch_hz(Cue.DONE_LISTENING)
    assert first > last


def test_error_descends_a_minor_third_and_reconnected_rises() -> None:
    first, last = first_and_last_pitch_hz(Cue.ERROR)
    assert first > last
    assert abs(first / last - 2 ** (3 / 12)) < 0.02
    first, last = first_and_last_pitch_hz(Cue.RECONNECTED)
    assert first < last


def test_too_short_is_two_blips() -> None:
    s = np.abs(samples(Cue.TOO_SHORT).astype(np.int32))
    loud = s > 0.05 * s.max()
    # Count rising edges of the envelope (ignoring zero crossings within a blip).
    blocks = loud[: len(loud) // 48 * 48].reshape(-1, 48).any(axis=1)
    onsets = int(np.count_nonzero(blocks[1:] & ~blocks[:-1])) + int(blocks[0])
    assert onsets == 2
