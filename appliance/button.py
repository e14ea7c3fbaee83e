"""The push-to-talk button protocol, and a button that follows a timed script."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

logger = logging.getLogger(__name__)

ButtonAction = Literal["press", "release"]
"""What the button did."""

ButtonSink = Callable[[ButtonAction], None]
"""Receives each press and release; always called on the event loop's thread."""

Clock = Callable[[], float]
"""A monotonic clock in seconds; by default the running event loop's ``time``."""


class Button(Protocol):
    """A push-to-talk button."""

    async def open(self, sink: ButtonSink) -> None:
        """Start delivering presses and releases to ``sink``."""

    async def close(self) -> None:
        """Stop delivering events and release the button. Idempotent."""

    @property
    def exhausted(self) -> bool:
        """True once the button will never produce another event (a finished script)."""


class ScriptButton:
    """A button that presses and releases itself at scripted times.

    Times are seconds after :meth:`open`; each event is delivered at
    ``open time + t`` on the event loop clock (an absolute deadline, so there
    is no drift). Events that fall due together are delivered together, in
    script order.
    """

    def __init__(
        self, script: Sequence[tuple[float, ButtonAction]], *, clock: Clock | None = None
    ) -> None:
        """Validate and keep the script.

        Args:
            script: ``(seconds after open, action)`` pairs: times non-negative
                and non-decreasing, actions alternating and starting with
                ``"press"``.
            clock: A monotonic clock in seconds that decides when things are
                due; by default the event loop's. Waiting is still done with
                ``asyncio.sleep`` and re-checked against this clock on waking.

        Raises:
            ValueError: the script is invalid; the message lists every problem.
        """
        problems = _validate(script)
        if problems:
            raise ValueError("invalid button script: " + "; ".join(problems))
        self._script: tuple[tuple[float, ButtonAction], ...] = tuple(
            (float(t), action) for t, action in script
        )
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._delivered = 0
        self._opened = False

    @property
    def exhausted(self) -> bool:
        """True once every scripted event was delivered (at once for an empty script)."""
        return self._delivered == len(self._script)

    async def open(self, sink: ButtonSink) -> None:
        """Start the script; its times count from now.

        Raises:
            RuntimeError: the button was opened before (a script runs once).
        """
        if self._opened:
            raise RuntimeError("script button can only be opened once")
        self._opened = True
        clock = self._clock or asyncio.get_running_loop().time
        self._task = asyncio.create_task(self._run(sink, clock, clock()), name="script button")
        self._task.add_done_callback(_log_failure)
        logger.info("script button open: %d events", len(self._script))

    async def _run(self, sink: ButtonSink, clock: Clock, start: float) -> None:
        script = self._script
        while self._delivered < len(script):
            delay = start + script[self._delivered][0] - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # Re-check: the loop may wake a hair early, and events due together go together.
            now = clock()
            while self._delivered < len(script) and start + script[self._delivered][0] <= now:
                t, action = script[self._delivered]
                self._delivered += 1
                logger.debug("script button: %s at %.3f s", action, t)
                sink(action)
        logger.info("script button: script finished")

    async def close(self) -> None:
        """Stop delivering events. Idempotent; ``exhausted`` is left as it was."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        # asyncio.wait does not raise the task's CancelledError, and lets our own through.
        await asyncio.wait([task])


def _log_failure(task: asyncio.Task[None]) -> None:
    """Logs the script task's exception (a failing sink), so it is never silent."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("script button failed", exc_info=exc)


def _validate(script: Sequence[tuple[float, ButtonAction]]) -> list[str]:
    """Every problem with ``script``, described for a person; empty if it is valid."""
    problems: list[str] = []
    previous_t = 0.0
    expected: ButtonAction = "press"
    for i, entry in enumerate(script):
        if not isinstance(entry, Sequence) or isinstance(entry, str | bytes) or len(entry) != 2:
            problems.append(f"event {i}: expected [seconds, action], got {entry!r}")
            continue
        t, action = entry
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            problems.append(f"event {i}: time {t!r} is not a number of seconds")
        elif t < 0:
            problems.append(f"event {i}: time {t} s is negative")
        elif t < previous_t:
            problems.append(f"event {i}: time {t} s is before the previous event ({previous_t} s)")
        else:
            previous_t = float(t)
        if action not in ("press", "release"):
            problems.append(f"event {i}: action {action!r} is not 'press' or 'release'")
            action = expected  # carry on as if it were right, to find the other problems
        elif action != expected:
            problems.append(f"event {i}: expected {expected!r} (actions alternate), got {action!r}")
        expected = "release" if action == "press" else "press"
    return problems
