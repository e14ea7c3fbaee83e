"""Tests of WAV reading with conversion, whole or block by block, and of WAV writing."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from appliance.audio import pcm
from appliance.audio.convert import QUALITY
from appliance.audio.wav import WavReader, WavWriter, read_wav_pcm24k, write_wav
from appliance.errors import AudioFileError


def sine(freq_hz: float, seconds: float, rate_hz: int) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return np.asarray(np.sin(2 * np.pi * freq_hz * t), dtype=np.float64)


def encode(signal: npt.NDArray[np.float64], sampwidth: int) -> bytes:
    """Floats in [-1, 1] (frames x channels, or mono) to little-endian integer PCM."""
    if sampwidth == 1:
        return np.clip(np.rint(signal * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    full = float(2 ** (8 * sampwidth - 1) - 1)
    ints = np.rint(signal * full).astype(np.int64).reshape(-1)
    if sampwidth == 3:
        raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return raw.tobytes()
    return ints.astype("<i2" if sampwidth == 2 else "<i4").tobytes()


def write_test_wav(
    path: Path, signal: npt.NDArray[np.float64], *, rate_hz: int, sampwidth: int
) -> None:
    channels = 1 if signal.ndim == 1 else signal.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate_hz)
        w.writeframes(encode(signal, sampwidth))


def as_int16(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2")


def dominant_hz(samples: npt.NDArray[np.int16], rate_hz: int = pcm.RATE_HZ) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


@pytest.mark.parametrize(
    ("rate_hz", "channels", "sampwidth"),
    [
        (44_100, 2, 2),
        (44_100, 1, 1),
        (48_000, 2, 3),
        (16_000, 1, 4),
        (8_000, 3, 2),
        (24_000, 2, 3),
    ],
)
def test_conversion_keeps_length_and_pitch(
    tmp_path: Path, rate_hz: int, channels: int, sampwidth: int
) -> None:
    seconds = 0.5
    mono = 0.5 * sine(440.0, seconds, rate_hz)
    signal = np.stack([mono] * channels, axis=1)
    path = tmp_path / "in.wav"
    write_test_wav(path, signal, rate_hz=rate_hz, sampwidth=sampwidth)

    out = as_int16(read_wav_pcm24k(path))

    assert abs(len(out) - round(seconds * pcm.RATE_HZ)) <= 2
    assert abs(dominant_hz(out) - 440.0) <= 4.0  # FFT bins are 2 Hz wide here
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert 0.45 * 32768 < np.max(np.abs(middle)) < 0.55 * 32768


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left = np.full(2400, 0.5)
    right = np.full(2400, -0.25)
    path = tmp_path / "stereo.wav"
    write_test_wav(path, np.stack([left, right], axis=1), rate_hz=24_000, sampwidth=2)

    out = as_int16(read_wav_pcm24k(path))

    assert len(out) == 2400
    expected = round((round(0.5 * 32767) + round(-0.25 * 32767)) / 2)
    assert np.all(np.abs(out.astype(np.int32) - expected) <= 1)


def test_24k_mono_16bit_passes_through_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(-32768, 32768, 4800, dtype=np.int64).astype("<i2").tobytes()
    path = tmp_path / "same.wav"
    write_wav(path, data)
    assert read_wav_pcm24k(path) == data


def test_full_scale_is_clipped_not_wrapped(tmp_path: Path) -> None:
    # Resampling a full-scale square wave overshoots; the result must saturate.
    square = np.sign(sine(1000.0, 0.1, 44_100))
    path = tmp_path / "loud.wav"
    write_test_wav(path, square, rate_hz=44_100, sampwidth=2)
    out = as_int16(read_wav_pcm24k(path))
    # Wrapping would put large values of the wrong sign right next to each other.
    assert np.max(np.abs(np.diff(out.astype(np.int32)))) < 65535


def test_empty_wav_gives_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    write_test_wav(path, np.zeros((0, 2)), rate_hz=44_100, sampwidth=2)
    assert read_wav_pcm24k(path) == b""


def float_wav() -> bytes:
    data = struct.pack("<4f", 0.0, 0.5, -0.5, 0.0)
    fmt = struct.pack("<HHIIHH", 3, 1, 24_000, 96_000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def zero_channel_wav() -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 0, 24_000, 0, 0, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not a wav file at all", "RIFF"),
        (b"", "truncated"),
        (float_wav(), "format: 3 (32/64-bit float)"),
        (zero_channel_wav(), "zero channels"),
        (float_wav()[:30], "WAV"),  # header cut short inside the fmt chunk
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
    ],
    ids=["garbage", "empty-file", "float", "zero-channels", "truncated-fmt", "truncated-chunk"],
)
def test_unusable_files_raise_audio_file_error(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "bad-input.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError, match=r"bad-input\.wav") as info:
        read_wav_pcm24k(path)
    assert problem in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_raises_audio_file_error(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"no-such-file\.wav"):
        read_wav_pcm24k(tmp_path / "no-such-file.wav")


def test_directory_raises_audio_file_error(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=re.escape(str(tmp_path))):
        read_wav_pcm24k(tmp_path)


def test_truncated_data_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_wav(path, bytes(range(200)) * 10)
    path.write_bytes(path.read_bytes()[:-501])  # declared size now exceeds the data
    assert len(read_wav_pcm24k(path)) == (2000 - 501) // 2 * 2


def read_all(reader: WavReader) -> list[bytes]:
    return list(iter(reader.read, b""))


def one_shot_reference(path: Path) -> npt.NDArray[np.int16]:
    """The whole file converted in one go, independently of the module under test."""
    with wave.open(str(path), "rb") as r:
        channels, rate_hz = r.getnchannels(), r.getframerate()
        assert r.getsampwidth() == 2
        frames = np.frombuffer(r.readframes(r.getnframes()), dtype="<i2")
    mono = (frames.astype(np.float64) / 32768.0).reshape(-1, channels).mean(axis=1)
    converted = soxr.resample(mono, rate_hz, pcm.RATE_HZ, quality=QUALITY)
    return np.clip(np.rint(converted * 32768.0), -32768, 32767).astype(np.int16)


def test_reader_44k_stereo_matches_a_one_shot_conversion(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    seconds = 1.3  # several blocks and a partial one
    music = 0.4 * np.stack([sine(440.0, seconds, 44_100), sine(1234.5, seconds, 44_100)], axis=1)
    noise = rng.uniform(-0.1, 0.1, music.shape)
    path = tmp_path / "in.wav"
    write_test_wav(path, music + noise, rate_hz=44_100, sampwidth=2)

    with WavReader(path) as reader:
        assert (reader.rate_hz, reader.channels, reader.sample_width) == (44_100, 2, 2)
        blocks = read_all(reader)
        assert reader.read() == b""  # and so on, once the end is reached
    assert len(blocks) >= 6
    out = as_int16(b"".join(blocks)).astype(np.int32)

    reference = one_shot_reference(path).astype(np.int32)
    assert len(out) == len(reference)
    # Stream and one-shot conversion by the same library: at most a rounding apart.
    assert np.max(np.abs(out - reference)) <= 1


def test_reader_passes_24k_mono_16bit_through_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    data = rng.integers(-32768, 32768, 3 * pcm.RATE_HZ + 123, dtype=np.int64)
    pcm_bytes = data.astype("<i2").tobytes()
    path = tmp_path / "same.wav"
    write_wav(path, pcm_bytes)
    with WavReader(path) as reader:
        assert reader.duration_ms == 3005
        blocks = read_all(reader)
    assert len(blocks) > 1
    assert b"".join(blocks) == pcm_bytes


READ_AND_MEASURE = """
import sys, tracemalloc
from pathlib import Path
from appliance.audio.wav import WavReader
tracemalloc.start()
converted = 0
with WavReader(Path(sys.argv[1])) as reader:
    while block := reader.read():
        converted += len(block)
print(converted, tracemalloc.get_traced_memory()[1])
"""


def read_in_a_fresh_process(path: Path) -> tuple[int, int]:
    """Bytes converted and the Python heap's peak, alone in a process: no other thread counts."""
    done = subprocess.run(
        [sys.executable, "-c", READ_AND_MEASURE, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    converted, peak = done.stdout.split()
    return int(converted), int(peak)


def write_noise_44k_stereo(path: Path, seconds: int) -> None:
    rng = np.random.default_rng(4)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        for _ in range(seconds):
            w.writeframes(rng.integers(-8000, 8000, 2 * 44_100, dtype=np.int64).astype("<i2"))


def test_reader_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    write_noise_44k_stereo(short, 3)
    write_noise_44k_stereo(long, 30)
    short_converted, short_peak = read_in_a_fresh_process(short)
    long_converted, long_peak = read_in_a_fresh_process(long)
    assert abs(short_converted // 2 - 3 * pcm.RATE_HZ) <= 2
    assert abs(long_converted // 2 - 30 * pcm.RATE_HZ) <= 2
    # Converting the whole file at once takes several times its size, ten times more
    # for ten times the length; one block at a time, the same few hundred kilobytes.
    assert long_peak < 1.5 * short_peak, (short_peak, long_peak)
    assert long_peak < long.stat().st_size / 8, (long_peak, long.stat().st_size)


def test_reader_of_a_truncated_file_counts_and_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_test_wav(path, 0.3 * sine(300.0, 1.0, 44_100), rate_hz=44_100, sampwidth=2)
    path.write_bytes(path.read_bytes()[: 44 + 2 * 22_050 + 1])  # half a second and a byte
    with WavReader(path) as reader:
        assert reader.frames == 22_050
        assert reader.duration_ms == 500
        out = b"".join(read_all(reader))
    assert abs(len(out) // 2 - 12_000) <= 2
    assert out == read_wav_pcm24k(path)


def test_reader_refuses_to_read_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    write_wav(path, bytes(pcm.PERIOD_BYTES))
    reader = WavReader(path)
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        reader.read()


def read_back(path: Path) -> tuple[wave._wave_params, bytes]:
    with wave.open(str(path), "rb") as r:
        return r.getparams(), r.readframes(r.getnframes())


def test_write_wav_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    data = as_int16(bytes(range(256)) * 4).tobytes()
    write_wav(path, data)
    params, frames = read_back(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, pcm.RATE_HZ)
    assert frames == data


def test_wav_writer_is_valid_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    written = b""
    with WavWriter(path) as writer:
        params, frames = read_back(path)
        assert params.nframes == 0 and frames == b""
        for i in range(5):
            chunk = bytes([i]) * (pcm.PERIOD_BYTES + 2 * i)
            writer.append(chunk)
            written += chunk
            params, frames = read_back(path)  # while still open
            assert frames == written
            assert params.nframes == len(written) // 2
            assert path.stat().st_size == 44 + len(written)
        assert writer.samples_written == len(written) // 2
    assert writer.closed
    writer.close()  # idempotent
    assert read_back(path)[1] == written


def test_wav_writer_rejects_odd_bytes_and_use_after_close(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "x.wav")
    with pytest.raises(ValueError, match="whole"):
        writer.append(b"\x01")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.append(b"\x01\x02")


def test_wav_writer_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="missing-dir"):
        WavWriter(tmp_path / "missing-dir" / "out.wav")
