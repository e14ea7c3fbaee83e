"""The microphone and speaker protocols every audio adapter implements.

All audio crossing these protocols is 24 kHz mono s16le (see ``pcm``). Adapters
convert to and from their device's own format. Callbacks given to ``open`` are
always invoked on the event loop's thread: an adapter whose device runs its
own thread hands over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

ChunkSink = Callable[[bytes], None]
"""Receives one captured chunk of PCM (normally one period)."""

PlayedReport = Callable[[Hashable, int], None]
"""Receives ``(tag, samples)``: that many more samples of the segment tagged
``tag`` have just been played."""


class Microphone(Protocol):
    """A source of captured audio that is always on once opened."""

    async def open(self, sink: ChunkSink) -> None:
        """Open the device and start delivering chunks to ``sink``.

        Raises:
            AudioDeviceError: the device cannot be opened.
            AudioFileError: the file standing in for the device is unusable.
        """

    def deliver_now(self) -> None:
        """Deliver at once everything captured so far.

        Chunks otherwise come as the microphone sees fit (a device
        microphone gathers them for up to ``BATCH_MS``); call this before an
        event that must fall after them, e.g. the release that ends a turn.
        """

    async def close(self) -> None:
        """Stop capturing and release the device. Idempotent."""


class Speaker(Protocol):
    """A sink of audio with a playout queue; reports what it actually played."""

    trouble: str | None
    """Why the device is not playing now (it is being reopened), in plain words, or None."""

    async def open(self, report: PlayedReport) -> None:
        """Open the device; ``report`` is told what is played, as it is played.

        Raises:
            AudioDeviceError: the device cannot be opened.
            AudioFileError: the file standing in for the device is unusable.
        """

    def play(self, pcm: bytes, tag: Hashable) -> None:
        """Queue ``pcm`` after everything already queued. Never blocks."""

    def stop(self) -> None:
        """Discard everything queued; playback falls silent within one period."""

    def report_played(self) -> None:
        """Report at once what has been played so far.

        Reports otherwise come as the speaker sees fit (a device speaker
        batches them, over several periods); call this before acting on the
        played count, e.g. to truncate a reply that is interrupted, or to
        judge whether captured audio is the speaker's echo.
        """

    async def drain(self, timeout_s: float) -> None:
        """Wait until the queue has played out, or ``timeout_s`` seconds passed."""

    async def close(self) -> None:
        """Stop and release the device. Idempotent. Queued audio is discarded."""
