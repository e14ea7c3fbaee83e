"""WAV files standing in for the microphone and the speaker, paced by the event loop clock."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable, Hashable
from pathlib import Path

from appliance.audio.pcm import PERIOD_BYTES, PERIOD_MS, SAMPLE_BYTES, samples_to_ms
from appliance.audio.ports import ChunkSink, PlayedReport
from appliance.audio.wav import WavReader, WavWriter
from appliance.errors import AudioFileError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A monotonic clock in seconds; by default the running event loop's ``time``."""

_SILENCE = bytes(PERIOD_BYTES)


def _period_deadline(start: float, n: int) -> float:
    """When period ``n`` (0-based) is complete: ``start`` plus (n + 1) periods, in seconds."""
    return start + (n + 1) * PERIOD_MS / 1000.0


async def _sleep_until(clock: Clock, deadline: float) -> None:
    """Sleep until about ``deadline`` (seconds on ``clock``).

    The loop may wake a hair early: callers compare with ``clock()`` again and
    sleep once more if needed, so nothing is ever delivered before its time.
    """
    delay = deadline - clock()
    if delay > 0:
        await asyncio.sleep(delay)


def _log_failure(what: str) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback that logs the task's exception, so a failure is never silent."""

    def callback(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("%s failed", what, exc_info=exc)

    return callback


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to finish, without swallowing our own cancellation."""
    task.cancel()
    await asyncio.wait([task])


class FileMicrophone:
    """A WAV file as an always-on microphone.

    Sample k of the (converted) file is captured k / 24000 seconds after
    :meth:`open`; after the end of the file, silence. Chunk n (samples
    ``[n * 480, (n + 1) * 480)``) is delivered once it is complete, at
    ``open time + (n + 1) * 20`` milliseconds on an absolute schedule: a late
    loop gets the overdue chunks at once, in order, none dropped.

    The file is read and converted a block (about 200 ms) at a time as
    periods fall due, so memory does not grow with its length. A file cut
    short ends where its data ends; a read error ends it there too (logged).
    """

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        """Prepare to read ``path``; nothing is read until :meth:`open`.

        Args:
            path: A PCM WAV file of any rate and channel count.
            clock: A monotonic clock in seconds that decides when things are
                due; by default the event loop's. Waiting is still done with
                ``asyncio.sleep`` and re-checked against this clock on waking.
        """
        self.path = path
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._reader: WavReader | None = None
        self._chunks_delivered = 0

    @property
    def chunks_delivered(self) -> int:
        """Chunks delivered since the last :meth:`open`."""
        return self._chunks_delivered

    async def open(self, sink: ChunkSink) -> None:
        """Check the file's header and start capturing into ``sink``, one period per call.

        Raises:
            AudioFileError: the file is unusable.
            RuntimeError: the microphone is already open.
        """
        if self._task is not None:
            raise RuntimeError("microphone is already open")
        # Only the header is read here (off the event loop thread, as the disk may
        # be slow); the audio follows block by block in ``_capture``.
        reader = await asyncio.to_thread(WavReader, self.path)
        clock = self._clock or asyncio.get_running_loop().time
        start = clock()
        self._chunks_delivered = 0
        self._reader = reader
        self._task = asyncio.create_task(
            self._capture(reader, sink, clock, start), name=f"file microphone {self.path}"
        )
        self._task.add_done_callback(_log_failure("file microphone"))
        logger.info(
            "file microphone open: %s (%d ms of audio, then silence)",
            self.path,
            reader.duration_ms,
        )

    async def _capture(
        self, reader: WavReader, sink: ChunkSink, clock: Clock, start: float
    ) -> None:
        # Converted audio not yet delivered: at most one block and one period.
        pending = bytearray()
        reading = True
        n = 0
        while True:
            await _sleep_until(clock, _period_deadline(start, n))
            # Everything that is due now, in order: a late wake-up catches up.
            now = clock()
            while _period_deadline(start, n) <= now:
                while reading and len(pending) < PERIOD_BYTES:
                    # One small block of a local file: a short enough stop for the loop.
                    block = _read_block(reader)
                    pending += block
                    reading = bool(block)
                chunk = bytes(pending[:PERIOD_BYTES])
                del pending[:PERIOD_BYTES]
                if len(chunk) < PERIOD_BYTES:
                    chunk = chunk + _SILENCE[len(chunk) :]
                n += 1
                self._chunks_delivered = n
                sink(chunk)

    def deliver_now(self) -> None:
        """Nothing to do: every period is delivered when its time comes."""

    async def close(self) -> None:
        """Stop capturing and close the file. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        await _cancel(task)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        logger.info("file microphone closed: %s", self.path)


def _read_block(reader: WavReader) -> bytes:
    """The next block of ``reader``; ``b""`` at the end of the audio or on a read error."""
    try:
        return reader.read()
    except AudioFileError as exc:
        # The microphone keeps its schedule (silence from here): the daemon must not hang.
        logger.error("file microphone stops reading: %s", exc)
        return b""


@dataclasses.dataclass(slots=True)
class _Segment:
    """One queued ``play``: its tag, its PCM and how many bytes of it were played."""

    tag: Hashable
    data: bytes
    offset: int = 0


class FileSpeaker:
    """A WAV file (24 kHz mono 16-bit) as a speaker with a playout queue.

    Every 20 milliseconds, on an absolute schedule, up to one period of queued
    audio is "played": appended to the file (idle time writes nothing) and
    reported per segment, so the file holds exactly what was played, in order,
    and is a valid WAV at every moment.
    """

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        """Prepare to write ``path``; the file is created by :meth:`open`.

        Args:
            path: The WAV file to create or truncate.
            clock: A monotonic clock in seconds that decides when things are
                due; by default the event loop's. Waiting is still done with
                ``asyncio.sleep`` and re-checked against this clock on waking.
        """
        self.trouble: str | None = None
        """Always None: a file does not go away while it is written."""
        self.path = path
        self._clock = clock
        self._queue: collections.deque[_Segment] = collections.deque()
        self._queued_bytes = 0
        self._empty = asyncio.Event()
        self._empty.set()
        self._writer: WavWriter | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_samples(self) -> int:
        """Samples queued and not yet played."""
        return self._queued_bytes // SAMPLE_BYTES

    @property
    def samples_written(self) -> int:
        """Samples written to the file since :meth:`open`."""
        return 0 if self._writer is None else self._writer.samples_written

    async def open(self, report: PlayedReport) -> None:
        """Create the output file (a valid empty WAV) and start playing.

        Raises:
            AudioFileError: the file cannot be created.
            RuntimeError: the speaker is already open.
        """
        if self._task is not None:
            raise RuntimeError("speaker is already open")
        self._writer = WavWriter(self.path)
        clock = self._clock or asyncio.get_running_loop().time
        self._task = asyncio.create_task(
            self._playout(self._writer, report, clock, clock()), name=f"file speaker {self.path}"
        )
        self._task.add_done_callback(_log_failure("file speaker"))
        logger.info("file speaker open: %s", self.path)

    def play(self, pcm: bytes, tag: Hashable) -> None:
        """Queue ``pcm`` (24 kHz mono s16le) after everything already queued.

        Raises:
            ValueError: ``pcm`` is not a whole number of samples.
        """
        if len(pcm) % SAMPLE_BYTES:
            raise ValueError(f"PCM of {len(pcm)} bytes is not whole 16-bit samples")
        if not pcm:
            return
        self._queue.append(_Segment(tag, pcm))
        self._queued_bytes += len(pcm)
        self._empty.clear()

    def report_played(self) -> None:
        """Nothing to do: every period is reported as it is written."""

    def stop(self) -> None:
        """Discard everything queued; what was already written stays."""
        self._queue.clear()
        self._queued_bytes = 0
        self._empty.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait until the queue has played out, or ``timeout_s`` seconds passed."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            logger.debug("drain timed out with %d samples queued", self.queued_samples)

    async def close(self) -> None:
        """Stop playing, discard the queue and close the file. Idempotent.

        Raises:
            AudioFileError: the file could not be closed cleanly.
        """
        task, self._task = self._task, None
        if task is not None:
            await _cancel(task)
        self.stop()
        writer, self._writer = self._writer, None
        if writer is not None:
            logger.info(
                "file speaker closed: %s (%d ms written)",
                self.path,
                samples_to_ms(writer.samples_written),
            )
            writer.close()

    def _take_period(self) -> tuple[bytes, list[tuple[Hashable, int]]]:
        """Dequeue up to one period, across segment boundaries.

        Returns:
            The bytes taken, and (tag, samples) for each segment's portion.
        """
        parts: list[bytes] = []
        played: list[tuple[Hashable, int]] = []
        wanted = PERIOD_BYTES
        while wanted and self._queue:
            segment = self._queue[0]
            part = segment.data[segment.offset : segment.offset + wanted]
            parts.append(part)
            played.append((segment.tag, len(part) // SAMPLE_BYTES))
            wanted -= len(part)
            segment.offset += len(part)
            if segment.offset == len(segment.data):
                self._queue.popleft()
        taken = b"".join(parts)
        self._queued_bytes -= len(taken)
        if not self._queue:
            self._empty.set()
        return taken, played

    async def _playout(
        self, writer: WavWriter, report: PlayedReport, clock: Clock, start: float
    ) -> None:
        n = 0
        writing = True
        while True:
            await _sleep_until(clock, _period_deadline(start, n))
            now = clock()
            # One period per tick; ticks missed by a late loop are caught up in order,
            # as a device with its own clock would have played them.
            while _period_deadline(start, n) <= now:
                n += 1
                if not self._queue:
                    continue
                taken, played = self._take_period()
                if writing:
                    try:
                        writer.append(taken)
                    except AudioFileError as exc:
                        # Keep the clock and the reports going: the daemon must not hang.
                        logger.error("file speaker stops writing: %s", exc)
                        writing = False
                for tag, samples in played:
                    report(tag, samples)
