"""The schedule the WAV-file devices keep: 20 ms periods on the event loop's clock, few wakes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from appliance.audio.pcm import PERIOD_BYTES, PERIOD_MS

logger = logging.getLogger(__name__)

BATCH_MS = 200
"""Audio the file devices let gather between two wakes of the event loop (milliseconds).

Each wake of the loop costs CPU, ten times more for ten 20 ms periods than for
one batch of them. Nothing needs the audio sooner: the microphone delivers
at once whatever is due when asked (:meth:`FileMicrophone.deliver_now`, on
every press and release), and the speaker writes and reports at once when
asked (:meth:`FileSpeaker.report_played`, with captured audio and on a
press), when playback starts and when its queue runs out."""

BATCH_PERIODS = BATCH_MS // PERIOD_MS

Clock = Callable[[], float]
"""A monotonic clock in seconds; by default the running event loop's ``time``."""

SILENCE = bytes(PERIOD_BYTES)


def period_deadline(start: float, n: int) -> float:
    """When period ``n`` (0-based) is complete: ``start`` plus (n + 1) periods, in seconds."""
    return start + (n + 1) * PERIOD_MS / 1000.0


def first_period_after(start: float, now: float) -> int:
    """The first period (0-based) not yet complete at ``now``: its deadline is after ``now``."""
    n = max(0, int((now - start) * 1000.0 / PERIOD_MS) - 1)  # never past the answer
    while period_deadline(start, n) <= now:
        n += 1
    return n


MIN_DELAY_S = 0.001
"""The shortest wait an :class:`Alarm` sets (seconds)."""


class Alarm:
    """One timer on the event loop that calls back at a time on ``clock``.

    Setting the time it already has costs nothing; a new time replaces the
    old one. The timer may fire before ``clock`` reaches the time (a fake
    clock does not follow the loop's): the callback checks what is due.
    A callback that raises is logged, and the alarm stays unset.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        callback: Callable[[], None],
        *,
        what: str,
    ) -> None:
        self.clock = clock
        self._loop = loop
        self._callback = callback
        self._what = what
        self._handle: asyncio.TimerHandle | None = None
        self.at: float | None = None
        """When it goes off (seconds on ``clock``), or None: it is not set."""

    def set(self, at: float | None) -> None:
        """Go off at ``at`` (seconds on the clock) rather than when it was set to; None: never."""
        if at == self.at:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = at
        if at is not None:
            # At least a millisecond: a clock that sits just short of ``at`` (a test's,
            # stepped in floats) must not turn the loop into a busy wait.
            delay_s = max(MIN_DELAY_S, at - self.clock())
            self._handle = self._loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._handle = self.at = None
        try:
            self._callback()
        except Exception:  # a bug must not be silent: the device stops, loudly
            logger.exception("%s failed", self._what)
