"""The speaker's playout buffer: tagged 24 kHz audio in, device periods out, what was played.

Pure logic, no device and no lock: the speaker adapter calls :meth:`Playout.add`
and :meth:`Playout.clear` from the event loop and :meth:`Playout.pull` from
its device callback, always under its own lock.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable

import numpy as np
import soxr

from appliance.audio import pcm
from appliance.audio.convert import QUALITY

Played = list[tuple[Hashable, int]]
"""``(tag, samples)`` pairs: that many 24 kHz samples of that segment were played."""


@dataclasses.dataclass(slots=True)
class _Segment:
    tag: Hashable
    samples: np.ndarray  # int16, 24 kHz mono
    offset: int = 0  # samples already fed to the device side


@dataclasses.dataclass(slots=True)
class _Fed:
    tag: Hashable
    unreported: int  # samples fed to the device side and not yet reported


class Playout:
    """A queue of tagged 24 kHz segments played out at the device's rate.

    - Prebuffer: after silence, playback starts once ``prebuffer_ms`` of audio
      is queued, or once the first audio has waited that long, so a reply
      that streams in does not stutter at its start and a short cue is not
      held back.
    - Underruns: when the queue runs dry the period is zero-filled; if the
      next audio continues the same tag, that gap was an underrun and is
      counted.
    - Played: samples are reported as played when the device takes their
      resampled counterpart (soxr removes its own delay, so output sample
      ``j`` is input time ``j / device rate``); a resampler tail is flushed
      when the queue runs dry, so a reply always plays to its very end.

    Args:
        device_rate_hz: The device's sample rate (hertz).
        channels: Channels per device frame; the mono signal is copied to each.
        prebuffer_ms: Audio to gather before playback starts (milliseconds).
    """

    def __init__(self, device_rate_hz: int, *, channels: int = 1, prebuffer_ms: int = 60) -> None:
        if device_rate_hz <= 0 or channels <= 0 or prebuffer_ms < 0:
            raise ValueError("rate and channels must be positive, prebuffer 0 or more")
        self._queue: collections.deque[_Segment] = collections.deque()
        self._queued = 0  # 24 kHz samples not yet fed to the device side
        self._prebuffer = prebuffer_ms * pcm.RATE_HZ // 1000
        self.channels = channels
        self.underruns = 0
        """Times the queue ran dry in the middle of a tag's audio."""
        self._starved_tag: Hashable | None = None
        self._last_tag: Hashable | None = None
        self.device_rate_hz = device_rate_hz
        self._reset_device_side()

    def _reset_device_side(self) -> None:
        rate = self.device_rate_hz
        self._stream = (
            None
            if rate == pcm.RATE_HZ
            else soxr.ResampleStream(pcm.RATE_HZ, rate, 1, dtype="int16", quality=QUALITY)
        )
        self._fifo = np.zeros(0, dtype=np.int16)  # device-rate output not yet taken
        self._fed: collections.deque[_Fed] = collections.deque()
        self._fed_total = 0  # 24 kHz samples fed since the reset
        self._reported = 0  # of those, reported as played
        self._emitted = 0  # device samples taken since the reset
        self._flushed = True  # nothing is held inside the resampler
        self._ended = False  # the resampler was flushed and takes no more input
        self._playing = False
        self._waited = 0  # device frames the gate has waited with audio queued

    @property
    def queued_samples(self) -> int:
        """24 kHz samples queued and not yet handed to the device side."""
        return self._queued

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing on its way to the device: all reported."""
        return not self._queue and not self._fed and self._fifo.size == 0

    def add(self, data: bytes, tag: Hashable) -> None:
        """Queue 24 kHz mono s16le ``data`` after everything queued.

        Raises:
            ValueError: ``data`` is not whole 16-bit samples.
        """
        if len(data) % pcm.SAMPLE_BYTES:
            raise ValueError(f"PCM of {len(data)} bytes is not whole 16-bit samples")
        if data:
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
            self._queue.append(_Segment(tag, samples))
            self._queued += samples.size

    def clear(self) -> None:
        """Discard everything queued or on its way; nothing of it is reported."""
        self._queue.clear()
        self._queued = 0
        self._starved_tag = None
        self._reset_device_side()

    def change_device(self, device_rate_hz: int, *, channels: int) -> Played:
        """A new device stream: what was on its way to the old one counts as played.

        Returns:
            The reports for that audio, so every queued sample is reported once.
        """
        unreported = self._report_up_to(self._fed_total)
        self.device_rate_hz = device_rate_hz
        self.channels = channels
        self._reset_device_side()
        return unreported

    def pull(self, frames: int) -> tuple[bytes, Played]:
        """Take the next ``frames`` device frames; silence where there is nothing to play.

        Returns:
            The interleaved s16le frames and what of the queued audio they played.
        """
        out = np.zeros(frames, dtype=np.int16)
        if not self._playing and not self._gate_opens(frames):
            return self._frames(out), []
        filled = 0
        while filled < frames:
            if self._fifo.size:
                n = min(self._fifo.size, frames - filled)
                out[filled : filled + n] = self._fifo[:n]
                self._fifo = self._fifo[n:]
                filled += n
                self._emitted += n
            elif self._queue:
                self._feed()
            elif not self._flushed:
                assert self._stream is not None
                self._fifo = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
                self._flushed = self._ended = True
            else:
                break
        if filled < frames:  # the queue ran dry: everything fed has been played
            played = self._report_up_to(self._fed_total)
            self._starved_tag = self._last_tag
            self._reset_device_side()
        else:
            played = self._report_up_to(self._emitted * pcm.RATE_HZ // self.device_rate_hz)
        return self._frames(out), played

    def _gate_opens(self, frames: int) -> bool:
        if not self._queue:
            self._waited = 0
            return False
        self._waited += frames
        waited_24k = self._waited * pcm.RATE_HZ // self.device_rate_hz
        if self._queued < self._prebuffer and waited_24k < self._prebuffer:
            return False
        if self._starved_tag is not None and self._queue[0].tag == self._starved_tag:
            self.underruns += 1
        self._starved_tag = None
        self._playing = True
        return True

    def _feed(self) -> None:
        """Move up to one period of queued audio through the resampler into the FIFO."""
        parts = []
        wanted = pcm.PERIOD_SAMPLES
        while wanted and self._queue:
            segment = self._queue[0]
            part = segment.samples[segment.offset : segment.offset + wanted]
            parts.append(part)
            segment.offset += part.size
            wanted -= part.size
            self._queued -= part.size
            self._fed_total += part.size
            self._last_tag = segment.tag
            if self._fed and self._fed[-1].tag == segment.tag:
                self._fed[-1].unreported += part.size
            else:
                self._fed.append(_Fed(segment.tag, part.size))
            if segment.offset == segment.samples.size:
                self._queue.popleft()
        chunk = np.concatenate(parts)
        if self._stream is None:
            self._fifo = np.concatenate([self._fifo, chunk])
            return
        if self._ended:  # flushed, its tail still playing: audio came after all
            self._stream = soxr.ResampleStream(
                pcm.RATE_HZ, self.device_rate_hz, 1, dtype="int16", quality=QUALITY
            )
            self._ended = False
        self._flushed = False
        self._fifo = np.concatenate([self._fifo, self._stream.resample_chunk(chunk)])

    def _report_up_to(self, position: int) -> Played:
        """Report fed samples up to input ``position`` (24 kHz samples since the reset)."""
        position = min(position, self._fed_total)
        played: Played = []
        remaining = position - self._reported
        while remaining > 0 and self._fed:
            entry = self._fed[0]
            n = min(entry.unreported, remaining)
            played.append((entry.tag, n))
            remaining -= n
            self._reported += n
            entry.unreported -= n
            if not entry.unreported:
                self._fed.popleft()
        return played

    def _frames(self, mono: np.ndarray) -> bytes:
        if self.channels > 1:
            mono = np.repeat(mono, self.channels)
        data: bytes = mono.astype("<i2", copy=False).tobytes()
        return data
