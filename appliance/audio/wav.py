"""WAV files: read any integer PCM WAV as 24 kHz mono, write 24 kHz mono; both incrementally."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soxr

from appliance.audio.convert import QUALITY
from appliance.audio.pcm import RATE_HZ, SAMPLE_BYTES
from appliance.errors import AudioFileError

_HEADER_BYTES = 44
"""Bytes of the canonical WAV header this module writes (RIFF + fmt + data chunk header)."""

_RIFF_SIZE_OFFSET = 4
_DATA_SIZE_OFFSET = 40
_MAX_DATA_BYTES = 0xFFFF_FFFF - (_HEADER_BYTES - 8)
"""The RIFF size field is 32 bits: the most data a plain WAV can declare."""

_FULL_SCALE = {1: 128.0, 2: 32768.0, 3: 8388608.0, 4: 2147483648.0}
"""Full-scale magnitude per sample width (bytes) of integer PCM."""

_BLOCK_MS = 200
"""Audio read from the file and converted per :meth:`WavReader.read` (milliseconds)."""


def read_wav_pcm24k(path: Path) -> bytes:
    """Read a whole integer PCM WAV file and convert it to the appliance's format.

    The same conversion as :class:`WavReader`, all at once. A file with no
    frames gives ``b""``.

    Args:
        path: The WAV file: 8, 16, 24 or 32-bit integer PCM, any channel
            count, any rate.

    Returns:
        24 kHz mono s16le PCM.

    Raises:
        AudioFileError: as :class:`WavReader` does.
    """
    with WavReader(path) as reader:
        return b"".join(iter(reader.read, b""))


class WavReader:
    """An integer PCM WAV file read block by block as 24 kHz mono s16le.

    Opening parses and checks the header only. Each :meth:`read` then reads
    about 200 milliseconds of the file and converts it, so memory does not
    grow with the file's length. Channels are averaged, the rate is converted
    with a soxr stream (``QUALITY``) flushed at the end of the data, and the
    result is clipped to int16: the output is the same whatever the block
    size, and a 24 kHz mono 16-bit file passes through bit for bit. A file
    cut short ends where its data ends.
    """

    def __init__(self, path: Path) -> None:
        """Open ``path`` and check its header; no audio is read yet.

        Args:
            path: The WAV file: 8, 16, 24 or 32-bit integer PCM, any channel
                count, any rate.

        Raises:
            AudioFileError: the file is missing, unreadable, not a WAV, or in
                an encoding other than plain integer PCM (float, compressed,
                extensible). The message names the file and the problem.
        """
        self.path = path
        try:
            self._file: BinaryIO | None = path.open("rb")
        except OSError as exc:
            raise AudioFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        try:
            self._wave, held_bytes = _open_wave(path, self._file)
        except BaseException:
            self._file.close()
            self._file = None
            raise
        self.channels = self._wave.getnchannels()
        """Interleaved channels per frame in the file."""
        self.sample_width = self._wave.getsampwidth()
        """Bytes per sample in the file."""
        self.rate_hz = self._wave.getframerate()
        """The file's sample rate (hertz)."""
        frame_bytes = self.channels * self.sample_width
        # A file cut short declares more frames than it holds: count what is there.
        self.frames = min(self._wave.getnframes(), held_bytes // frame_bytes)
        """Frames the file holds."""
        self._block_frames = max(1, self.rate_hz * _BLOCK_MS // 1000)
        self._stream = (
            None
            if self.rate_hz == RATE_HZ
            else soxr.ResampleStream(self.rate_hz, RATE_HZ, 1, dtype="float64", quality=QUALITY)
        )
        self._done = False

    @property
    def duration_ms(self) -> int:
        """Milliseconds of audio the file holds, rounded down."""
        return self.frames * 1000 // self.rate_hz

    def read(self) -> bytes:
        """Read and convert the next block.

        Returns:
            24 kHz mono s16le PCM, about 200 milliseconds of it; ``b""`` once
            everything has been returned, and on every call after that.

        Raises:
            AudioFileError: reading the file failed.
            ValueError: the reader is closed.
        """
        while not self._done:
            if self._file is None:
                raise ValueError(f"{self.path}: WAV reader is closed")
            try:
                data = self._wave.readframes(self._block_frames)
            except OSError as exc:
                raise AudioFileError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
            # Only the end of the file gives a short read, so a partial frame is the
            # last thing there is: dropped, as a frame nobody can play.
            whole = len(data) - len(data) % (self.channels * self.sample_width)
            if whole:
                samples = _decode(data[:whole], self.sample_width)
                mono = samples.reshape(-1, self.channels).mean(axis=1)
            else:
                self._done = True
                mono = np.zeros(0)
            if self._stream is not None:
                mono = self._stream.resample_chunk(mono, last=self._done)
            # The resampler may hold back a whole block while it fills up: read on.
            if len(mono):
                return _to_s16le(mono)
        return b""

    def close(self) -> None:
        """Close the file. Idempotent."""
        f, self._file = self._file, None
        if f is not None:
            self._wave.close()
            f.close()

    def __enter__(self) -> WavReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_FORMAT_NAMES = {3: "32/64-bit float", 6: "A-law", 7: "mu-law", 0xFFFE: "extensible"}
"""Names of the WAV format tags met most often besides integer PCM (tag 1)."""


def _explain(exc: Exception) -> str:
    """A reason a person can act on, from what ``wave`` raised."""
    text = str(exc)
    if isinstance(exc, EOFError | struct.error) or not text:
        return "truncated header"
    if text.startswith("unknown format: "):
        tag_text = text.removeprefix("unknown format: ")
        tag = int(tag_text) if tag_text.isdigit() else -1
        name = _FORMAT_NAMES.get(tag, "compressed")
        return (
            f"{text} ({name}); only integer PCM is supported "
            "(convert with e.g. `sox in.wav -e signed -b 16 out.wav`)"
        )
    if text == "bad # of channels":
        return "zero channels"
    return text


def _open_wave(path: Path, f: BinaryIO) -> tuple[wave.Wave_read, int]:
    """Parse and check the header of the WAV file open as ``f``.

    Returns:
        The reader, positioned at the first frame, and the bytes the file
        holds from there on (its declared data size may be larger).

    Raises:
        AudioFileError: the header is unusable; the message says why.
    """
    try:
        reader = wave.Wave_read(f)
        held_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (wave.Error, EOFError, struct.error) as exc:
        raise AudioFileError(f"{path}: not a usable PCM WAV file: {_explain(exc)}") from exc
    sample_width = reader.getsampwidth()
    if sample_width not in _FULL_SCALE:
        raise AudioFileError(f"{path}: unsupported sample width of {sample_width * 8} bits")
    if reader.getframerate() <= 0:
        raise AudioFileError(f"{path}: invalid sample rate {reader.getframerate()} Hz")
    return reader, held_bytes


def _decode(frames: bytes, sampwidth: int) -> npt.NDArray[np.float64]:
    """Little-endian integer PCM to floats in [-1, 1), interleaved channels kept."""
    if sampwidth == 1:
        # 8-bit WAV is unsigned, centred on 128.
        values = np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128.0
    elif sampwidth == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3)
        padded = np.zeros((raw.shape[0], 4), dtype=np.uint8)
        padded[:, 1:] = raw  # the 24 bits become the top of an int32, sign included
        values = (padded.view("<i4").reshape(-1) >> 8).astype(np.float64)
    else:
        dtype = "<i2" if sampwidth == 2 else "<i4"
        values = np.frombuffer(frames, dtype=dtype).astype(np.float64)
    return values / _FULL_SCALE[sampwidth]


def _to_s16le(signal: npt.NDArray[np.float64]) -> bytes:
    """Floats in [-1, 1) to s16le, rounded and clipped."""
    scaled = np.clip(np.rint(signal * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes) -> None:
    """Write a complete 24 kHz mono 16-bit WAV file.

    Args:
        path: The file to create or truncate.
        pcm: 24 kHz mono s16le PCM.

    Raises:
        AudioFileError: the file cannot be written.
        ValueError: ``pcm`` is not a whole number of samples.
    """
    with WavWriter(path) as writer:
        writer.append(pcm)


def _header(data_bytes: int) -> bytes:
    """The canonical 44-byte header of a 24 kHz mono 16-bit WAV holding ``data_bytes`` bytes."""
    byte_rate = RATE_HZ * SAMPLE_BYTES
    return (
        struct.pack("<4sI4s", b"RIFF", _HEADER_BYTES - 8 + data_bytes, b"WAVE")
        + struct.pack(
            "<4sIHHIIHH",
            b"fmt ",
            16,
            1,  # WAVE_FORMAT_PCM
            1,  # channels
            RATE_HZ,
            byte_rate,
            SAMPLE_BYTES,  # block align
            SAMPLE_BYTES * 8,  # bits per sample
        )
        + struct.pack("<4sI", b"data", data_bytes)
    )


class WavWriter:
    """Writes a 24 kHz mono 16-bit WAV file chunk by chunk.

    The file on disk is a valid WAV after every :meth:`append`: the data is
    written first, then the RIFF and data sizes are rewritten and the file is
    flushed to the operating system. A process killed between the two steps
    leaves a file whose declared size is at most what it holds, which is still
    valid. (No fsync: durability across a power cut is not the goal, and an
    fsync every period would wear an SD card.)
    """

    def __init__(self, path: Path) -> None:
        """Create or truncate ``path`` and write a valid empty WAV.

        Args:
            path: The file to write.

        Raises:
            AudioFileError: the file cannot be created or is not seekable.
        """
        self.path = path
        self._data_bytes = 0
        try:
            self._file: BinaryIO | None = path.open("wb")
        except OSError as exc:
            raise AudioFileError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        try:
            if not self._file.seekable():
                raise AudioFileError(f"{path}: cannot write a WAV file here: not seekable")
            self._file.write(_header(0))
            self._file.flush()
        except BaseException as exc:
            self._file.close()
            self._file = None
            if isinstance(exc, OSError):
                raise AudioFileError(f"{path}: cannot write: {exc.strerror or exc}") from exc
            raise

    @property
    def samples_written(self) -> int:
        """Samples written so far."""
        return self._data_bytes // SAMPLE_BYTES

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or opening failed)."""
        return self._file is None

    def append(self, pcm: bytes) -> None:
        """Append PCM and update the header so the file stays a valid WAV.

        Args:
            pcm: 24 kHz mono s16le PCM; may be empty.

        Raises:
            AudioFileError: the write failed, or the file would exceed the
                4 GiB a WAV can declare (about 24 hours at 24 kHz).
            ValueError: ``pcm`` is not a whole number of samples, or
                the writer is closed.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: WAV writer is closed")
        if len(pcm) % SAMPLE_BYTES:
            raise ValueError(f"PCM of {len(pcm)} bytes is not whole 16-bit samples")
        if not pcm:
            return
        total = self._data_bytes + len(pcm)
        if total > _MAX_DATA_BYTES:
            raise AudioFileError(f"{self.path}: WAV file full (4 GiB limit)")
        f = self._file
        try:
            f.seek(_HEADER_BYTES + self._data_bytes)
            f.write(pcm)
            f.flush()
            f.seek(_RIFF_SIZE_OFFSET)
            f.write(struct.pack("<I", _HEADER_BYTES - 8 + total))
            f.seek(_DATA_SIZE_OFFSET)
            f.write(struct.pack("<I", total))
            f.flush()
        except OSError as exc:
            raise AudioFileError(f"{self.path}: write failed: {exc.strerror or exc}") from exc
        self._data_bytes = total

    def close(self) -> None:
        """Close the file. Idempotent.

        Raises:
            AudioFileError: the final flush failed.
        """
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.close()
        except OSError as exc:
            raise AudioFileError(f"{self.path}: close failed: {exc.strerror or exc}") from exc

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
