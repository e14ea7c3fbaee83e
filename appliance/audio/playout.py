"""The speaker's playout buffer: tagged 24 kHz audio in, device periods out, what was played.

Pure logic, no device and no lock: the speaker adapter calls :meth:`Playout.add`,
:meth:`Playout.clear` and :meth:`Playout.change_device` from the event loop and
:meth:`Playout.pull` from its device callback, always under its own lock. The
resampling happens in :meth:`Playout.add`, as the audio comes: the device's
callback, which runs fifty times a second on a thread of its own, only cuts
bytes from a FIFO, counts, and rarely flushes the resampler's tail.
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

_NOTHING = np.zeros(0, dtype=np.int16)


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
        self._prebuffer = prebuffer_ms * pcm.RATE_HZ // 1000
        self.device_rate_hz = device_rate_hz
        self.channels = channels
        self.underruns = 0
        """Times the queue ran dry in the middle of a tag's audio."""
        self._starved_tag: Hashable | None = None
        self._last_tag: Hashable | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the audio on its way: a new run of playback starts at position 0."""
        self._stream: soxr.ResampleStream | None = None  # holds input until flushed
        self._fifo = bytearray()  # device frames (s16le, interleaved) not yet taken
        self._fed: collections.deque[_Fed] = collections.deque()
        self._fed_total = 0  # 24 kHz samples fed since the reset
        self._reported = 0  # of those, reported as played
        self._base = 0  # the 24 kHz position of the FIFO's first frame when it changed rate
        self._emitted = 0  # device frames taken since then
        self._playing = False
        self._waited = 0  # device frames the gate has waited with audio queued

    @property
    def queued_samples(self) -> int:
        """24 kHz samples queued and not yet reported as played."""
        return self._fed_total - self._reported

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing on its way to the device: all reported."""
        return not self._fed and not self._fifo

    def add(self, data: bytes, tag: Hashable) -> None:
        """Queue 24 kHz mono s16le ``data`` after everything queued, at the device's rate.

        Raises:
            ValueError: ``data`` is not whole 16-bit samples.
        """
        if len(data) % pcm.SAMPLE_BYTES:
            raise ValueError(f"PCM of {len(data)} bytes is not whole 16-bit samples")
        if not data:
            return
        samples = np.frombuffer(data, dtype="<i2")
        if self._fed and self._fed[-1].tag == tag:
            self._fed[-1].unreported += samples.size
        else:
            self._fed.append(_Fed(tag, samples.size))
        self._fed_total += samples.size
        self._last_tag = tag
        if self.device_rate_hz != pcm.RATE_HZ:
            if self._stream is None:
                self._stream = soxr.ResampleStream(
                    pcm.RATE_HZ, self.device_rate_hz, 1, dtype="int16", quality=QUALITY
                )
            samples = self._stream.resample_chunk(samples)
        self._fifo += self._frames(samples)

    def clear(self) -> None:
        """Discard everything queued or on its way; nothing of it is reported."""
        self._starved_tag = None
        self._reset()

    def change_device(self, device_rate_hz: int, *, channels: int) -> None:
        """A new device stream: what the old one had not taken yet is played on this one."""
        self._flush()
        mono = np.frombuffer(bytes(self._fifo), dtype="<i2")[:: self.channels]
        if device_rate_hz != self.device_rate_hz and mono.size:
            mono = soxr.resample(mono, self.device_rate_hz, device_rate_hz, quality=QUALITY)
        self._base = self._position()
        self._emitted = 0
        self._waited = self._waited * device_rate_hz // self.device_rate_hz
        self.device_rate_hz = device_rate_hz
        self.channels = channels
        self._fifo = bytearray(self._frames(mono))

    def pull(self, frames: int) -> tuple[bytes, Played]:
        """Take the next ``frames`` device frames; silence where there is nothing to play.

        Returns:
            The interleaved s16le frames and what of the queued audio they played.
        """
        wanted = frames * self.channels * pcm.SAMPLE_BYTES
        if not self._playing and not self._gate_opens(frames):
            return bytes(wanted), []
        if len(self._fifo) < wanted:
            self._flush()  # the queue runs dry: the resampler's tail is the last of it
        taken = min(len(self._fifo), wanted)
        out = bytes(self._fifo[:taken])
        del self._fifo[:taken]
        self._emitted += taken // (self.channels * pcm.SAMPLE_BYTES)
        if taken == wanted:
            return out, self._report_up_to(self._position())
        # Dry: everything fed has been played.
        played = self._report_up_to(self._fed_total)
        self._starved_tag = self._last_tag
        self._reset()
        return out + bytes(wanted - taken), played

    def _position(self) -> int:
        """The 24 kHz position the device has played up to, since the reset."""
        return self._base + self._emitted * pcm.RATE_HZ // self.device_rate_hz

    def _flush(self) -> None:
        """Let the resampler go of the input it holds back (its end; no more input follows)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._fifo += self._frames(stream.resample_chunk(_NOTHING, last=True))

    def _gate_opens(self, frames: int) -> bool:
        if not self._fed:
            self._waited = 0
            return False
        self._waited += frames
        waited_24k = self._waited * pcm.RATE_HZ // self.device_rate_hz
        if self._fed_total < self._prebuffer and waited_24k < self._prebuffer:
            return False
        if self._starved_tag is not None and self._fed[0].tag == self._starved_tag:
            self.underruns += 1
        self._starved_tag = None
        self._playing = True
        return True

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
