"""The PyAudio speaker against a private PulseAudio server: real-time pacing, what was played."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import numpy as np
from soundenv import (
    SoundEnv,
    sound_fixture,  # noqa: F401 - registers the fixture "sound"
)

from appliance.audio import pcm
from appliance.audio.pa_speaker import PyAudioSpeaker


def signal(seconds: float, *, seed: int) -> bytes:
    """Noise with no zero sample, so where it stops in the sink's output is unambiguous."""
    rng = np.random.default_rng(seed)
    n = int(seconds * pcm.RATE_HZ)
    magnitude = rng.integers(300, 6000, n)
    sign = rng.choice(np.array([-1, 1]), n)
    return bytes((magnitude * sign).astype("<i2").tobytes())


def matched_samples(played: bytes, sent: bytes) -> int:
    """How many samples of ``sent``, from its start, the sink played in a row."""
    start = played.find(sent[: pcm.PERIOD_BYTES])
    assert start != -1, "the start of the audio never reached the sink"
    assert start % pcm.SAMPLE_BYTES == 0
    out = np.frombuffer(played[start : start + len(sent)], dtype="<i2")
    ref = np.frombuffer(sent[: out.size * pcm.SAMPLE_BYTES], dtype="<i2")
    mismatch = np.nonzero(out != ref)[0]
    return int(mismatch[0]) if mismatch.size else int(out.size)


class Reports:
    def __init__(self) -> None:
        self.log: list[tuple[float, Hashable, int]] = []

    def __call__(self, tag: Hashable, samples: int) -> None:
        self.log.append((asyncio.get_running_loop().time(), tag, samples))

    def total(self, tag: Hashable) -> int:
        return sum(n for _, t, n in self.log if t == tag)


def test_a_10_s_reply_is_paced_in_real_time_and_plays_whole_without_underrun(
    sound: SoundEnv,
) -> None:
    reply = signal(10.0, seed=1)
    reports = Reports()

    async def scenario() -> PyAudioSpeaker:
        speaker = PyAudioSpeaker("pulse", rate_hz=pcm.RATE_HZ)
        await speaker.open(reports)
        await asyncio.sleep(0.3)  # the stream runs, playing silence
        sound.clear_played()
        step = pcm.ms_to_bytes(100)
        for offset in range(0, len(reply), step):  # deltas arrive at twice real time
            speaker.play(reply[offset : offset + step], "reply")
            await asyncio.sleep(0.05)
        await speaker.drain(30.0)
        await asyncio.sleep(0.3)  # what PulseAudio still buffers reaches the sink
        await speaker.close()
        return speaker

    speaker = asyncio.run(scenario())
    assert speaker.underruns == 0
    assert reports.total("reply") == len(reply) // pcm.SAMPLE_BYTES
    times = [t for t, tag, _ in reports.log if tag == "reply"]
    # Paced: 10 s of audio took 10 s to play (less a period for where the first report falls).
    assert times[-1] - times[0] >= 10.0 - 2 * pcm.PERIOD_MS / 1000
    assert matched_samples(sound.played, reply) == len(reply) // pcm.SAMPLE_BYTES


def test_played_count_at_a_stop_is_within_one_period_of_what_the_sink_played(
    sound: SoundEnv,
) -> None:
    reply = signal(5.0, seed=2)
    reports = Reports()

    async def scenario() -> int:
        speaker = PyAudioSpeaker("pulse", rate_hz=pcm.RATE_HZ)
        await speaker.open(reports)
        await asyncio.sleep(0.3)
        sound.clear_played()
        speaker.play(reply, "reply")
        await asyncio.sleep(1.7)
        speaker.stop()  # a barge-in
        reported = reports.total("reply")
        await asyncio.sleep(0.5)
        await speaker.close()
        assert reports.total("reply") == reported, "reports after the stop"
        return reported

    reported = asyncio.run(scenario())
    truth = matched_samples(sound.played, reply)
    assert 1.0 * pcm.RATE_HZ < truth < 2.5 * pcm.RATE_HZ
    assert abs(reported - truth) <= pcm.PERIOD_SAMPLES


def test_a_resampled_speaker_plays_a_short_cue_whole_without_waiting_for_more(
    sound: SoundEnv,
) -> None:
    """44.1 kHz device: a 40 ms cue (under the prebuffer) still plays, to its last sample."""
    cue = signal(0.04, seed=3)
    reports = Reports()

    async def scenario() -> None:
        speaker = PyAudioSpeaker("pulse", rate_hz=44_100, prebuffer_ms=60)
        await speaker.open(reports)
        await asyncio.sleep(0.2)
        speaker.play(cue, "cue")
        await speaker.drain(2.0)
        await speaker.close()

    asyncio.run(scenario())
    assert reports.total("cue") == len(cue) // pcm.SAMPLE_BYTES
