"""The speaker's playout buffer, without a device: prebuffer, underruns, what was played."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest

from appliance.audio import pcm
from appliance.audio.convert import CaptureConverter
from appliance.audio.playout import Playout


def tone(seconds: float, *, freq_hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * pcm.RATE_HZ)) / pcm.RATE_HZ
    return bytes((8000 * np.sin(2 * np.pi * freq_hz * t) + 1).astype("<i2").tobytes())


def pull_all(playout: Playout, frames: int, periods: int) -> tuple[bytes, dict[Hashable, int]]:
    out = bytearray()
    played: dict[Hashable, int] = {}
    for _ in range(periods):
        data, reports = playout.pull(frames)
        assert len(data) == frames * pcm.SAMPLE_BYTES * playout.channels
        out += data
        for tag, n in reports:
            played[tag] = played.get(tag, 0) + n
    return bytes(out), played


@pytest.mark.parametrize("rate_hz", [24_000, 48_000, 44_100, 16_000])
def test_every_sample_is_played_and_reported_once(rate_hz: int) -> None:
    playout = Playout(rate_hz, prebuffer_ms=60)
    a, b = tone(1.0), tone(0.5, freq_hz=660)
    playout.add(a, "a")
    playout.add(b, "b")
    out, played = pull_all(playout, rate_hz // 50, 100)
    assert played == {"a": len(a) // 2, "b": len(b) // 2}
    assert playout.idle and playout.underruns == 0
    sounding = np.nonzero(np.frombuffer(out, dtype="<i2"))[0]
    expected = (len(a) + len(b)) // 2 * rate_hz // pcm.RATE_HZ
    assert abs(int(sounding[-1] - sounding[0] + 1) - expected) <= 2


def test_at_24_khz_the_output_is_the_input_bit_for_bit() -> None:
    playout = Playout(pcm.RATE_HZ, prebuffer_ms=0)
    audio = tone(0.3)
    playout.add(audio, "x")
    out, _ = pull_all(playout, 480, 20)
    assert out.startswith(audio)


def test_the_prebuffer_holds_playback_until_enough_is_queued() -> None:
    playout = Playout(pcm.RATE_HZ, prebuffer_ms=60)
    playout.add(tone(0.04), "reply")  # 40 ms: under the prebuffer
    data, played = playout.pull(480)
    assert played == [] and not any(data)
    playout.add(tone(0.04), "reply")  # now 80 ms
    data, played = playout.pull(480)
    assert played == [("reply", 480)] and any(data)


def test_a_short_cue_plays_once_it_has_waited_the_prebuffer() -> None:
    playout = Playout(pcm.RATE_HZ, prebuffer_ms=60)
    playout.add(tone(0.03), "cue")
    silent = [playout.pull(480)[1] for _ in range(2)]
    assert silent == [[], []]
    _, played = pull_all(playout, 480, 3)
    assert played == {"cue": 720}


def test_a_gap_inside_one_tag_is_an_underrun_and_a_new_tag_is_not() -> None:
    playout = Playout(pcm.RATE_HZ, prebuffer_ms=0)
    playout.add(tone(0.1), "reply")
    pull_all(playout, 480, 10)  # runs dry: the reply's end, or a late delta
    playout.add(tone(0.1), "reply")  # it was a late delta
    pull_all(playout, 480, 10)
    assert playout.underruns == 1
    playout.add(tone(0.1), ("cue", "listening"))
    pull_all(playout, 480, 10)
    assert playout.underruns == 1


def test_clear_stops_at_once_and_reports_nothing_more() -> None:
    playout = Playout(48_000, prebuffer_ms=0)
    playout.add(tone(1.0), "reply")
    _, before = pull_all(playout, 960, 10)
    playout.clear()
    data, after = pull_all(playout, 960, 5)
    assert not any(data) and after == {}
    assert 0.2 * pcm.RATE_HZ - 480 <= before["reply"] <= 0.2 * pcm.RATE_HZ + 480
    assert playout.idle


def test_a_new_device_plays_what_the_old_one_had_not_taken() -> None:
    playout = Playout(48_000, prebuffer_ms=0)
    playout.add(tone(1.0), "reply")
    _, first = pull_all(playout, 960, 10)
    playout.change_device(44_100, channels=2)
    rest_out, rest = pull_all(playout, 882, 60)
    assert first["reply"] + rest["reply"] == pcm.RATE_HZ
    assert playout.channels == 2 and playout.idle
    # The rest of the second, at the new rate, on both channels alike.
    left = np.frombuffer(rest_out, dtype="<i2")[::2]
    assert np.array_equal(left, np.frombuffer(rest_out, dtype="<i2")[1::2])
    sounding = np.nonzero(left)[0]
    assert abs(int(sounding[-1] - sounding[0] + 1) - 0.8 * 44_100) <= 882


def test_played_counts_follow_the_device_within_a_period_while_resampling() -> None:
    playout = Playout(44_100, prebuffer_ms=0)
    playout.add(tone(2.0), "reply")
    reported = 0
    for period in range(1, 41):
        _, played = playout.pull(882)
        reported += sum(n for _, n in played)
        # The device has taken ``period`` periods: that much of the reply was played.
        assert abs(reported - period * pcm.PERIOD_SAMPLES) <= 1


def test_capture_converts_to_exact_periods_at_any_rate() -> None:
    for rate_hz, channels in ((48_000, 1), (44_100, 2), (24_000, 1), (16_000, 1)):
        converter = CaptureConverter(rate_hz, channels=channels)
        frames = rate_hz // 50
        periods: list[bytes] = []
        for _ in range(100):
            periods += converter.feed(bytes(frames * 2 * channels))
        assert all(len(p) == pcm.PERIOD_BYTES for p in periods)
        assert abs(len(periods) - 100) <= 3  # soxr holds back a few milliseconds
        assert converter.clips == 0


def test_capture_of_a_tone_at_48_khz_keeps_it_clean() -> None:
    t = np.arange(48_000) / 48_000
    source = (8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    converter = CaptureConverter(48_000)
    out = b"".join(
        p for i in range(0, source.size, 960) for p in converter.feed(source[i : i + 960].tobytes())
    )
    got = np.frombuffer(out, dtype="<i2").astype(float)[480:12_000]
    expected = 8000 * np.sin(2 * np.pi * 1000 * (np.arange(480, 480 + got.size) / 24_000))
    snr = 10 * np.log10(np.sum(expected**2) / np.sum((got - expected) ** 2))
    assert snr > 50


def test_audio_that_comes_while_the_resampler_tail_plays_is_played_too() -> None:
    """The queue ran dry, the resampler was flushed, and then more audio came."""
    playout = Playout(48_000, prebuffer_ms=0)
    playout.add(tone(0.025), "reply")
    played = 0
    for _ in range(6):  # small device periods: the flushed tail is still in the FIFO
        _, reports = playout.pull(100)
        played += sum(n for _, n in reports)
    playout.add(tone(0.1), "reply")
    _, rest = pull_all(playout, 960, 20)
    assert played + rest["reply"] == int(0.125 * pcm.RATE_HZ)
    assert playout.idle
