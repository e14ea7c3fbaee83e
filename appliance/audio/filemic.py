"""A WAV file standing in for the microphone, paced by the event loop's clock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from appliance.audio.filepace import BATCH_MS, SILENCE, Alarm, Clock, period_deadline
from appliance.audio.pcm import PERIOD_BYTES, PERIOD_MS
from appliance.audio.ports import ChunkSink
from appliance.audio.wav import WavReader
from appliance.errors import AudioFileError

logger = logging.getLogger(__name__)


class FileMicrophone:
    """A WAV file as an always-on microphone.

    Sample k of the (converted) file is captured k / 24000 seconds after
    :meth:`open`; after the end of the file, silence. Chunk n (samples
    ``[n * 480, (n + 1) * 480)``) is complete at ``open time + (n + 1) * 20``
    milliseconds, on an absolute schedule, and never delivered earlier.

    Like a sound card's microphone, it wakes the event loop once per
    ``BATCH_MS`` of audio, not once per chunk, since each wake costs CPU: a
    wake delivers every chunk that is due, in order (a late loop catches up,
    nothing dropped), and :meth:`deliver_now` delivers them at once, so a
    turn's edges are exact to the chunk.

    The file is read and converted a block (about 200 ms) at a time as
    periods fall due, so memory does not grow with its length. A file cut
    short ends where its data ends; a read error ends it there too (logged).
    """

    def __init__(
        self, path: Path, *, clock: Clock | None = None, stall_s: float | None = None
    ) -> None:
        """Prepare to read ``path``; nothing is read until :meth:`open`.

        Args:
            path: A PCM WAV file of any rate and channel count.
            clock: A monotonic clock in seconds that decides when things are
                due; by default the event loop's. Waiting is still done with
                the loop's timers, and what is due is checked against this
                clock on waking.
            stall_s: The silence after which the daemon counts the microphone
                as lost: a batch is never longer than a quarter of it.
        """
        self.path = path
        self._clock = clock
        quarter_ms = BATCH_MS if stall_s is None else min(BATCH_MS, stall_s * 1000 / 4)
        self._batch = max(1, int(quarter_ms) // PERIOD_MS)
        self._alarm: Alarm | None = None
        self._reader: WavReader | None = None
        self._sink: ChunkSink | None = None
        self._start = 0.0
        self._pending = bytearray()  # converted and not yet delivered: a block and a period
        self._reading = False
        self._chunks_delivered = 0

    @property
    def chunks_delivered(self) -> int:
        """Chunks delivered since the last :meth:`open`."""
        return self._chunks_delivered

    @property
    def wakes_at(self) -> float | None:
        """When the microphone next wakes the event loop (seconds on its clock); None: closed."""
        return None if self._alarm is None else self._alarm.at

    async def open(self, sink: ChunkSink) -> None:
        """Check the file's header and start capturing into ``sink``, one period per call.

        Raises:
            AudioFileError: the file is unusable.
            RuntimeError: the microphone is already open.
        """
        if self._alarm is not None:
            raise RuntimeError("microphone is already open")
        # Only the header is read here (off the event loop thread, as the disk may
        # be slow); the audio follows block by block as it falls due.
        reader = await asyncio.to_thread(WavReader, self.path)
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        self._start = clock()
        self._chunks_delivered = 0
        self._pending.clear()
        self._reading = True
        self._reader, self._sink = reader, sink
        self._alarm = Alarm(loop, clock, self._deliver_due, what="file microphone")
        self._arm()
        logger.info(
            "file microphone open: %s (%d ms of audio, then silence)",
            self.path,
            reader.duration_ms,
        )

    def deliver_now(self) -> None:
        """Deliver at once every chunk due by now, rather than at the next wake."""
        if self._alarm is not None:
            self._deliver_due()

    def _deliver_due(self) -> None:
        alarm, reader, sink = self._alarm, self._reader, self._sink
        if alarm is None or reader is None or sink is None:
            return
        # Everything due, in order; the clock is read again after each chunk, as the
        # sink may take a while (a fake clock may even move on in it).
        while period_deadline(self._start, self._chunks_delivered) <= alarm.clock():
            chunk = self._next_chunk(reader)
            self._chunks_delivered += 1  # before the sink: it may ask for more
            sink(chunk)
        self._arm()

    def _next_chunk(self, reader: WavReader) -> bytes:
        """The next period of the file, padded with silence once it is over."""
        pending = self._pending
        while self._reading and len(pending) < PERIOD_BYTES:
            # One small block of a local file: a short enough stop for the loop.
            block = _read_block(reader)
            pending += block
            self._reading = bool(block)
        chunk = bytes(pending[:PERIOD_BYTES])
        del pending[:PERIOD_BYTES]
        if len(chunk) < PERIOD_BYTES:
            chunk += SILENCE[len(chunk) :]
        return chunk

    def _arm(self) -> None:
        """Wake once a batch is due after what was delivered (whatever delivered it)."""
        if self._alarm is not None:
            due = self._chunks_delivered + self._batch - 1
            self._alarm.set(period_deadline(self._start, due))

    async def close(self) -> None:
        """Stop capturing and close the file. Idempotent."""
        alarm, self._alarm = self._alarm, None
        if alarm is None:
            return
        alarm.set(None)
        reader, self._reader = self._reader, None
        self._sink = None
        self._pending.clear()
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
