"""Tests of the WAV-file microphone and speaker, and of the audio fakes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import subprocess
import sys
import wave
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeMicrophone, FakeSpeaker

from appliance.audio import pcm
from appliance.audio.filemic import FileMicrophone
from appliance.audio.filepace import BATCH_MS
from appliance.audio.filespeaker import FileSpeaker
from appliance.audio.ports import ChunkSink, Microphone, Speaker
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.errors import AudioFileError

PERIOD_S = pcm.PERIOD_MS / 1000
BATCH_PERIODS = BATCH_MS // pcm.PERIOD_MS
EPSILON_S = 1e-6
"""Float rounding between the adapter's deadline arithmetic and the test's."""


def deadline(start: float, n: int) -> float:
    """When period ``n`` (0-based) of a device opened at ``start`` is complete (seconds)."""
    return start + (n + 1) * pcm.PERIOD_MS / 1000.0


def test_real_adapters_satisfy_protocols(tmp_path: Path) -> None:
    _mic: Microphone = FileMicrophone(tmp_path / "in.wav")
    _speaker: Speaker = FileSpeaker(tmp_path / "out.wav")


def write_stereo_44k(path: Path, seconds: float) -> None:
    rng = np.random.default_rng(1)
    frames = (rng.uniform(-0.3, 0.3, (round(seconds * 44_100), 2)) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes(frames.tobytes())


def test_microphone_delivers_file_then_silence_on_schedule(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_stereo_44k(path, 0.1)  # 5 periods, the last one partial after conversion
    converted = read_wav_pcm24k(path)
    chunks: list[bytes] = []
    arrivals: list[float] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        mic = FileMicrophone(path)
        opened = loop.time()

        enough = asyncio.Event()

        def sink(chunk: bytes) -> None:
            chunks.append(chunk)
            arrivals.append(loop.time())
            if len(chunks) == 10:
                enough.set()

        await mic.open(sink)
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await enough.wait()
        await mic.close()
        await mic.close()  # idempotent
        return opened

    opened = asyncio.run(scenario())
    assert all(len(chunk) == pcm.PERIOD_BYTES for chunk in chunks)
    joined = b"".join(chunks)
    assert joined[: len(converted)] == converted
    assert joined[len(converted) :] == bytes(len(joined) - len(converted))
    for n, arrived in enumerate(arrivals):
        assert arrived >= opened + (n + 1) * PERIOD_S - EPSILON_S, n


def test_microphone_late_loop_catches_up_in_order(tmp_path: Path) -> None:
    path = tmp_path / "ramp.wav"
    ramp = np.arange(pcm.PERIOD_SAMPLES * 40, dtype="<i2")
    write_wav(path, ramp.tobytes())
    chunks: list[bytes] = []

    async def scenario() -> None:
        mic = FileMicrophone(path)
        await mic.open(chunks.append)
        # Block the event loop past the first wake: a batch and 5 periods fall due
        # while nothing runs.
        await asyncio.sleep(0)
        blocked_until = asyncio.get_running_loop().time() + (BATCH_PERIODS + 5.5) * PERIOD_S
        while asyncio.get_running_loop().time() < blocked_until:
            pass
        for _ in range(5):  # a few loop iterations, no real time: the timer fires once
            await asyncio.sleep(0)
        caught_up = len(chunks)
        await mic.close()
        assert caught_up >= BATCH_PERIODS + 5

    asyncio.run(scenario())
    assert b"".join(chunks) == ramp.tobytes()[: len(chunks) * pcm.PERIOD_BYTES]


def test_microphone_wakes_once_per_batch(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_wav(path, bytes(pcm.PERIOD_BYTES * 5))
    bursts: list[int] = []  # chunks delivered per turn of the event loop

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        mic = FileMicrophone(path)
        in_burst = [False]
        enough = asyncio.Event()

        def end_burst() -> None:
            in_burst[0] = False

        def sink(_chunk: bytes) -> None:
            if not in_burst[0]:
                in_burst[0] = True
                bursts.append(0)
                loop.call_soon(end_burst)  # runs once this turn of the loop is over
            bursts[-1] += 1
            if sum(bursts) >= 3 * BATCH_PERIODS:
                enough.set()

        await mic.open(sink)
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await enough.wait()
        await mic.close()

    asyncio.run(scenario())
    # Each wake delivers a whole batch at least; a late loop merges batches, never splits them.
    assert all(burst >= BATCH_PERIODS for burst in bursts), bursts


def test_microphone_batches_stay_under_a_quarter_of_stall_s(tmp_path: Path) -> None:
    """A short ``audio.stall_s`` must not take the gaps between batches for a lost device."""
    path = tmp_path / "in.wav"
    write_wav(path, bytes(pcm.PERIOD_BYTES * 5))

    async def scenario() -> list[float | None]:
        wakes = []
        for stall_s in (None, 2.0, 0.2):
            mic = FileMicrophone(path, clock=lambda: 100.0, stall_s=stall_s)
            await mic.open(lambda _chunk: None)
            wakes.append(mic.wakes_at)
            await mic.close()
        return wakes

    assert asyncio.run(scenario()) == pytest.approx(
        [deadline(100.0, BATCH_PERIODS - 1), deadline(100.0, BATCH_PERIODS - 1), deadline(100.0, 1)]
    )


def test_microphone_deliver_now_gives_what_is_due_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ramp.wav"
    ramp = np.arange(pcm.PERIOD_SAMPLES * 20, dtype="<i2")
    write_wav(path, ramp.tobytes())
    now = [100.0]
    chunks: list[bytes] = []

    async def scenario() -> None:
        mic = FileMicrophone(path, clock=lambda: now[0])
        mic.deliver_now()  # not open: nothing to do
        await mic.open(chunks.append)
        assert mic.wakes_at == pytest.approx(deadline(100.0, BATCH_PERIODS - 1))
        mic.deliver_now()
        assert chunks == []  # nothing is complete yet
        now[0] = deadline(100.0, 2) + EPSILON_S
        mic.deliver_now()  # synchronously, no waiting for the loop
        assert len(chunks) == 3
        # The next wake is a batch after what was delivered.
        assert mic.wakes_at == pytest.approx(deadline(100.0, 3 + BATCH_PERIODS - 1))
        mic.deliver_now()
        assert len(chunks) == 3  # chunk 3 is not complete: never early
        now[0] = deadline(100.0, 4) + EPSILON_S
        mic.deliver_now()
        assert len(chunks) == 5
        assert mic.chunks_delivered == 5
        await mic.close()
        assert mic.wakes_at is None
        mic.deliver_now()  # closed: nothing to do
        assert len(chunks) == 5

    asyncio.run(scenario())
    assert b"".join(chunks) == ramp.tobytes()[: 5 * pcm.PERIOD_BYTES]


def test_microphone_fake_clock_never_early(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_wav(path, bytes(pcm.PERIOD_BYTES * 3))
    now = [100.0]
    chunks: list[float] = []

    async def scenario() -> None:
        mic = FileMicrophone(path, clock=lambda: now[0])
        three = asyncio.Event()

        def sink(_chunk: bytes) -> None:
            chunks.append(now[0])
            if len(chunks) == 3:
                three.set()

        await mic.open(sink)
        for _ in range(6):
            await asyncio.sleep(0.001)  # the fake clock has not moved: nothing due
        assert chunks == []
        now[0] += 3 * PERIOD_S + 1e-9
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await three.wait()
        await asyncio.sleep(2 * PERIOD_S)
        await mic.close()

    asyncio.run(scenario())
    assert len(chunks) == 3


def stream(path: Path, periods: int, sink: ChunkSink) -> None:
    """Open a microphone on ``path`` and take ``periods`` chunks from it, without waiting.

    Each delivery moves the fake clock on by one period, so one more chunk falls
    due at a time, as in real use, and the whole file streams as fast as it can be
    read and converted.
    """
    now = [0.0]
    delivered = [0]

    async def scenario() -> None:
        done = asyncio.Event()

        def sink_and_tick(chunk: bytes) -> None:
            sink(chunk)
            delivered[0] += 1
            if delivered[0] < periods:
                # Set, not added to: a sum of periods would drift from the deadlines.
                now[0] = (delivered[0] + 1) * PERIOD_S + EPSILON_S
            else:
                done.set()

        mic = FileMicrophone(path, clock=lambda: now[0])
        await mic.open(sink_and_tick)
        now[0] = PERIOD_S + EPSILON_S  # the first chunk is due; each delivery, the next one
        async with asyncio.timeout(30):  # a safety net, not a timing assertion
            await done.wait()
        await mic.close()

    asyncio.run(scenario())
    assert delivered[0] == periods


def periods_of(audio: bytes, silence_periods: int) -> int:
    """Periods holding ``audio`` (the last one padded), then ``silence_periods`` more."""
    return -(-len(audio) // pcm.PERIOD_BYTES) + silence_periods


def test_microphone_24k_mono_is_bit_exact(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(-32768, 32768, pcm.RATE_HZ + 100, dtype=np.int64).astype("<i2").tobytes()
    path = tmp_path / "in.wav"
    write_wav(path, data)
    chunks: list[bytes] = []
    with caplog.at_level(logging.INFO, logger="appliance.audio.filemic"):
        stream(path, periods_of(data, 3), chunks.append)
    assert "(1004 ms of audio, then silence)" in caplog.text
    assert all(len(chunk) == pcm.PERIOD_BYTES for chunk in chunks)
    joined = b"".join(chunks)
    assert joined[: len(data)] == data
    assert joined[len(data) :] == bytes(len(joined) - len(data))


def test_microphone_44k_stereo_gives_the_whole_file_conversion(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_stereo_44k(path, 1.37)  # several blocks, the last one partial
    converted = read_wav_pcm24k(path)
    chunks: list[bytes] = []
    stream(path, periods_of(converted, 2), chunks.append)
    joined = b"".join(chunks)
    # The same conversion, block by block: not just close, identical.
    assert joined[: len(converted)] == converted
    assert joined[len(converted) :] == bytes(len(joined) - len(converted))


@pytest.mark.parametrize("rate_hz", [24_000, 44_100])
def test_microphone_truncated_file_ends_where_its_data_ends(tmp_path: Path, rate_hz: int) -> None:
    path = tmp_path / "cut.wav"
    rng = np.random.default_rng(6)
    frames = rng.integers(-9000, 9000, (rate_hz, 2), dtype=np.int64).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(frames.tobytes())
    # Cut 0.4 s in, inside a frame: the header still declares a whole second.
    path.write_bytes(path.read_bytes()[: 44 + 4 * (rate_hz * 2 // 5) + 3])
    converted = read_wav_pcm24k(path)
    assert abs(len(converted) // 2 - 9600) <= 2
    chunks: list[bytes] = []
    stream(path, periods_of(converted, 10), chunks.append)
    joined = b"".join(chunks)
    assert joined[: len(converted)] == converted
    assert joined[len(converted) :] == bytes(len(joined) - len(converted))


STREAM_AND_MEASURE = """
import hashlib, sys, tracemalloc
from pathlib import Path
from test_filedev import stream
received = hashlib.sha256()  # keeps nothing: only the streaming is measured
tracemalloc.start()
stream(Path(sys.argv[1]), int(sys.argv[2]), received.update)
print(received.hexdigest(), tracemalloc.get_traced_memory()[1])
"""


def stream_in_a_fresh_process(path: Path) -> tuple[str, int, str]:
    """Stream ``path`` through the microphone alone in a process: no other thread counts.

    Returns:
        The digest of what was delivered, the Python heap's peak, the expected digest.
    """
    converted = read_wav_pcm24k(path)
    periods = periods_of(converted, 5)
    expected = hashlib.sha256(converted + bytes(periods * pcm.PERIOD_BYTES - len(converted)))
    done = subprocess.run(
        [sys.executable, "-c", STREAM_AND_MEASURE, str(path), str(periods)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    digest, peak = done.stdout.split()
    return digest, int(peak), expected.hexdigest()


def test_microphone_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    write_stereo_44k(short, 3.0)
    write_stereo_44k(long, 30.0)
    short_digest, short_peak, short_expected = stream_in_a_fresh_process(short)
    long_digest, long_peak, long_expected = stream_in_a_fresh_process(long)
    assert (short_digest, long_digest) == (short_expected, long_expected)
    # Converting the whole file at once takes several times its size, ten times more
    # for ten times the length; streaming, one block at a time, the same few hundred kB.
    assert long_peak < 1.5 * short_peak, (short_peak, long_peak)
    assert long_peak < long.stat().st_size / 8, (long_peak, long.stat().st_size)


def float_wav() -> bytes:
    fmt = struct.pack("<HHIIHH", 3, 1, 24_000, 96_000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "content",
    [b"not a wave file, really not", b"RIFF\x24\x00\x00\x00WAVEfmt ", float_wav()],
    ids=["garbage", "truncated-header", "float"],
)
def test_microphone_bad_file_fails_at_open(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as whole_file:
        read_wav_pcm24k(path)

    async def scenario() -> None:
        mic = FileMicrophone(path)
        with pytest.raises(AudioFileError, match=r"garbage\.wav") as info:
            await mic.open(lambda _chunk: None)
        assert str(info.value) == str(whole_file.value)
        await mic.close()

    asyncio.run(scenario())


def read_back(path: Path) -> bytes:
    with wave.open(str(path), "rb") as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (1, 2, pcm.RATE_HZ)
        return r.readframes(r.getnframes())


def segment(value: int, samples: int) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def test_speaker_writes_segments_in_order_and_reports_per_tag(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    # Lengths chosen so that boundaries fall inside periods.
    segments = [("a", segment(1, 700)), ("b", segment(2, 100)), ("c", segment(3, 1300))]
    reports: list[tuple[Hashable, int]] = []
    mid_run: list[bytes] = []

    async def scenario() -> None:
        speaker = FileSpeaker(path)
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        assert read_back(path) == b""  # a valid empty WAV from the start
        for tag, data in segments:
            speaker.play(data, tag)
        assert speaker.queued_samples == 2100
        await asyncio.sleep(3 * PERIOD_S)
        mid_run.append(read_back(path))  # valid while still open
        await speaker.drain(5.0)
        assert speaker.queued_samples == 0
        await asyncio.sleep(2 * PERIOD_S)  # idle time writes nothing
        await speaker.close()
        await speaker.close()  # idempotent

    asyncio.run(scenario())
    everything = b"".join(data for _, data in segments)
    assert read_back(path) == everything
    assert len(mid_run[0]) > 0 and everything.startswith(mid_run[0])
    for tag, data in segments:
        assert sum(n for t, n in reports if t == tag) == len(data) // 2
    # In order; a wake reports each segment once, however many periods of it it played.
    tags = [str(t) for t, _ in reports]
    assert tags == sorted(tags)
    assert ("b", 100) in reports


def test_speaker_plays_period_by_period_and_reports_per_segment(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    now = [50.0]
    reports: list[tuple[Hashable, int]] = []

    def played_since(first: int) -> list[tuple[Hashable, int]]:
        return reports[first:]

    async def scenario() -> None:
        speaker = FileSpeaker(path, clock=lambda: now[0])
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        # Boundaries inside periods: "b" falls inside the second period.
        speaker.play(segment(1, 700), "a")
        speaker.play(segment(2, 100), "b")
        speaker.play(segment(3, 1300), "c")
        now[0] = deadline(50.0, 0) + EPSILON_S
        speaker.report_played()
        assert played_since(0) == [("a", 480)]
        now[0] = deadline(50.0, 1) + EPSILON_S
        speaker.report_played()
        assert played_since(1) == [("a", 220), ("b", 100), ("c", 160)]
        now[0] = deadline(50.0, 4) + EPSILON_S  # a late caller: three periods at once
        speaker.report_played()
        assert played_since(4) == [("c", 1140)]  # one report for the segment
        assert read_back(path) == segment(1, 700) + segment(2, 100) + segment(3, 1300)
        await speaker.close()

    asyncio.run(scenario())


def test_speaker_file_and_reports_keep_up_with_the_schedule(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    now = [10.0]
    reports: list[tuple[Hashable, int]] = []
    periods = 2 * BATCH_PERIODS + 5

    def reported() -> int:
        return sum(n for _, n in reports)

    async def scenario() -> None:
        speaker = FileSpeaker(path, clock=lambda: now[0])
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        assert speaker.wakes_at is None  # idle: no wakes at all
        now[0] = deadline(10.0, 2) + 0.005  # into period 3
        speaker.play(segment(4, pcm.PERIOD_SAMPLES * periods), "x")
        # Playback starts: its first period, the one under way, is reported as it ends.
        assert speaker.wakes_at == pytest.approx(deadline(10.0, 3))
        now[0] = deadline(10.0, 3) + EPSILON_S
        speaker.report_played()
        assert reported() == pcm.PERIOD_SAMPLES
        for n in range(4, 3 + periods):
            now[0] = deadline(10.0, n) + EPSILON_S
            speaker.report_played()
            # What the file holds is what was reported, period by period, a valid WAV.
            assert read_back(path) == segment(4, reported())
            assert reported() == (n - 2) * pcm.PERIOD_SAMPLES
        assert speaker.queued_samples == 0
        assert speaker.wakes_at is None
        await speaker.drain(0.001)  # returns at once: everything is written
        await speaker.close()

    asyncio.run(scenario())


async def let_it_wake(speaker: FileSpeaker, now: list[float]) -> None:
    """Move the fake clock to when ``speaker`` wakes, and wait for its timer to fire."""
    at = speaker.wakes_at
    assert at is not None
    now[0] = at
    async with asyncio.timeout(5):  # a safety net, not a timing assertion
        while speaker.wakes_at == at:  # noqa: ASYNC110 - the timer sets no event
            await asyncio.sleep(0.005)


def test_speaker_wakes_at_start_every_batch_and_when_the_queue_runs_out(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    now = [0.0]
    reports: list[tuple[Hashable, int]] = []

    async def scenario() -> None:
        speaker = FileSpeaker(path, clock=lambda: now[0])
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        speaker.play(segment(1, pcm.PERIOD_SAMPLES * 25), "x")
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 0))  # playback starts
        await let_it_wake(speaker, now)
        assert reports == [("x", pcm.PERIOD_SAMPLES)]
        # Then a batch after each wake...
        assert speaker.wakes_at == pytest.approx(deadline(0.0, BATCH_PERIODS))
        await let_it_wake(speaker, now)
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 2 * BATCH_PERIODS))
        await let_it_wake(speaker, now)
        # ... up to when the queue runs out, exactly.
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 24))
        # More audio puts that off, up to a batch.
        speaker.play(segment(2, pcm.PERIOD_SAMPLES * 25), "y")
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 3 * BATCH_PERIODS))
        # A caller who asks for reports puts the next wake a whole batch after the ask,
        # so that a daemon asking once per batch of captured audio is never overtaken.
        now[0] = deadline(0.0, 25) + 0.003
        speaker.report_played()
        assert speaker.wakes_at is not None
        assert speaker.wakes_at >= now[0] + BATCH_MS / 1000
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 25 + BATCH_PERIODS + 1))
        speaker.stop()
        assert speaker.wakes_at is None  # nothing to play: no wakes
        await speaker.close()

    asyncio.run(scenario())
    assert reports[-2:] == [("x", 4 * pcm.PERIOD_SAMPLES), ("y", pcm.PERIOD_SAMPLES)]
    assert sum(n for _, n in reports) == 26 * pcm.PERIOD_SAMPLES


def test_speaker_audio_queued_after_the_queue_ran_out_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    now = [0.0]
    reports: list[tuple[Hashable, float]] = []

    async def scenario() -> None:
        speaker = FileSpeaker(path, clock=lambda: now[0])
        await speaker.open(lambda tag, n: reports.append((tag, now[0])))
        speaker.play(segment(1, pcm.PERIOD_SAMPLES + 10), "a")  # two periods
        # The wake that would have played it out has not come yet (a late loop) when
        # more audio is queued: the periods due are played from the queue as it was.
        now[0] = deadline(0.0, 4) + 0.005
        speaker.play(segment(2, 100), "b")
        assert reports == [("a", now[0])]
        assert read_back(path) == segment(1, pcm.PERIOD_SAMPLES + 10)
        # "b" starts with the period under way, as on any idle speaker.
        assert speaker.wakes_at == pytest.approx(deadline(0.0, 5))
        now[0] = deadline(0.0, 5)
        speaker.report_played()
        assert [tag for tag, _ in reports] == ["a", "b"]
        assert read_back(path) == segment(1, pcm.PERIOD_SAMPLES + 10) + segment(2, 100)
        await speaker.close()

    asyncio.run(scenario())


def test_speaker_stop_and_close_report_what_was_due(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    now = [0.0]
    reports: list[tuple[Hashable, int]] = []

    async def scenario() -> None:
        speaker = FileSpeaker(path, clock=lambda: now[0])
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        speaker.play(segment(1, pcm.PERIOD_SAMPLES * 30), "a")
        now[0] = deadline(0.0, 6) + 0.015  # a barge-in: period 7 is under way
        speaker.stop()  # no wake came: stop() plays what was due first
        assert reports == [("a", 7 * pcm.PERIOD_SAMPLES)]
        assert read_back(path) == segment(1, 7 * pcm.PERIOD_SAMPLES)
        assert speaker.queued_samples == 0
        speaker.play(segment(2, pcm.PERIOD_SAMPLES * 30), "b")
        now[0] = deadline(0.0, 9) + 0.001  # "b" started with period 7: 3 periods due
        await speaker.close()  # what was due is written, the rest discarded
        assert reports[1:] == [("b", 3 * pcm.PERIOD_SAMPLES)]

    asyncio.run(scenario())
    expected = segment(1, 7 * pcm.PERIOD_SAMPLES) + segment(2, 3 * pcm.PERIOD_SAMPLES)
    assert read_back(path) == expected


def test_speaker_paces_playback(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    reports: list[tuple[float, int]] = []
    periods = 3 * BATCH_PERIODS + 5

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        speaker = FileSpeaker(path)
        opened = loop.time()
        await speaker.open(lambda _tag, n: reports.append((loop.time(), n)))
        speaker.play(segment(5, pcm.PERIOD_SAMPLES * periods), "x")
        await speaker.drain(5.0)
        await speaker.close()
        return opened

    opened = asyncio.run(scenario())
    # Never reported before it was played; a late loop merges wakes, never splits them.
    played = 0
    for at, samples in reports:
        played += samples
        whole_periods = -(-played // pcm.PERIOD_SAMPLES)
        assert at >= opened + whole_periods * PERIOD_S - EPSILON_S
    assert played == periods * pcm.PERIOD_SAMPLES
    # The start, then a batch at a time, the last when the queue ran out.
    assert 1 <= len(reports) <= 1 + -(-(periods - 1) // BATCH_PERIODS), reports


def test_speaker_stop_drops_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    reports: list[tuple[Hashable, int]] = []

    async def scenario() -> None:
        speaker = FileSpeaker(path)
        playing = asyncio.Event()

        def report(tag: Hashable, samples: int) -> None:
            reports.append((tag, samples))
            playing.set()

        await speaker.open(report)
        speaker.play(segment(7, pcm.RATE_HZ * 10), "long")
        speaker.play(segment(8, 100), "next")
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await playing.wait()
        speaker.stop()
        assert speaker.queued_samples == 0
        await speaker.drain(0.001)  # returns at once: the queue is empty
        await asyncio.sleep(3 * PERIOD_S)
        speaker.play(segment(9, 10), "after")
        await speaker.drain(5.0)
        await speaker.close()

    asyncio.run(scenario())
    written = np.frombuffer(read_back(path), dtype="<i2")
    played_long = sum(n for t, n in reports if t == "long")
    assert 0 < played_long < pcm.RATE_HZ
    assert "next" not in [t for t, _ in reports]
    assert list(written) == [7] * played_long + [9] * 10


def test_speaker_close_discards_queue_and_drain_times_out(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"

    async def scenario() -> None:
        speaker = FileSpeaker(path)
        await speaker.open(lambda _tag, _n: None)
        speaker.play(segment(1, pcm.RATE_HZ * 10), "long")
        await speaker.drain(2 * PERIOD_S)  # times out without raising
        assert speaker.queued_samples > 0
        await speaker.close()
        assert speaker.queued_samples == 0

    asyncio.run(scenario())
    assert len(read_back(path)) % pcm.SAMPLE_BYTES == 0


def test_speaker_unwritable_path(tmp_path: Path) -> None:
    async def scenario() -> None:
        speaker = FileSpeaker(tmp_path / "nope" / "out.wav")
        with pytest.raises(AudioFileError, match="nope"):
            await speaker.open(lambda _tag, _n: None)
        await speaker.close()

    asyncio.run(scenario())


def test_fake_speaker_reports_like_the_real_one() -> None:
    reports: list[tuple[Hashable, int]] = []

    async def scenario() -> None:
        speaker = FakeSpeaker()
        await speaker.open(lambda tag, n: reports.append((tag, n)))
        speaker.play(segment(1, 300), "a")
        speaker.play(segment(2, 300), "b")
        assert speaker.advance(480) == 480
        assert reports == [("a", 300), ("b", 180)]
        speaker.stop()
        assert speaker.advance(480) == 0
        await speaker.drain(0.001)
        assert speaker.plays == [(segment(1, 300), "a"), (segment(2, 300), "b")]
        assert speaker.stops == 1
        await speaker.close()

    asyncio.run(scenario())


def test_fake_microphone_pushes_synchronously() -> None:
    received: list[bytes] = []

    async def scenario() -> None:
        mic = FakeMicrophone()
        await mic.open(received.append)
        mic.push_periods(2, value=3)
        await mic.close()
        assert (mic.opens, mic.closes) == (1, 1)
        with pytest.raises(RuntimeError):
            mic.push(b"\x00\x00")

    asyncio.run(scenario())
    assert received == [segment(3, pcm.PERIOD_SAMPLES)] * 2


def test_speaker_goes_on_when_a_report_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A report callback that fails once costs neither the other reports nor the playback."""
    calls: list[tuple[Hashable, int]] = []

    def report(tag: Hashable, samples: int) -> None:
        calls.append((tag, samples))
        if len(calls) == 1:
            raise RuntimeError("a bug in whoever listens")

    async def scenario() -> int:
        speaker = FileSpeaker(tmp_path / "out.wav")
        await speaker.open(report)
        speaker.play(segment(1, pcm.PERIOD_SAMPLES * 3), "a")
        speaker.play(segment(2, pcm.PERIOD_SAMPLES * 3), "b")
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await speaker.drain(5.0)
        written = speaker.samples_written
        await speaker.close()
        return written

    with caplog.at_level(logging.ERROR):
        written = asyncio.run(scenario())
    assert written == pcm.PERIOD_SAMPLES * 6
    assert sum(n for _, n in calls) == written
    assert "a played report failed" in caplog.text
