"""The per-device limit on connection attempts: a sliding window, sans-I/O."""

from __future__ import annotations

from collections import deque

__all__ = ["AttemptLimiter"]


class AttemptLimiter:
    """Allows each key at most ``limit`` attempts in any ``window_s`` seconds.

    Args:
        limit: Attempts allowed per window.
        window_s: The window's length (seconds).
    """

    def __init__(self, limit: int, *, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._attempts: dict[str, deque[float]] = {}

    def attempt(self, key: str, now: float) -> float:
        """Counts an attempt by ``key`` at ``now`` (seconds, any monotonic clock).

        Refused attempts are not counted, so a device that waits as told gets in.

        Returns:
            0 if it is allowed, else the seconds until the next one would be.
        """
        attempts = self._attempts.setdefault(key, deque())
        while attempts and attempts[0] <= now - self._window_s:
            attempts.popleft()
        if len(attempts) >= self._limit:
            return attempts[0] + self._window_s - now
        attempts.append(now)
        return 0.0

    def forget(self, keep: set[str]) -> None:
        """Drops the history of every key not in ``keep`` (removed devices)."""
        for key in set(self._attempts) - keep:
            del self._attempts[key]
