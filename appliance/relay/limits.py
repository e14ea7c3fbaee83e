"""The relay's limits on connection attempts, per device and per address: sans-I/O."""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["AttemptLimiter", "FailureLimiter"]


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


class _Failures:
    """One key's recent failures (oldest first) and the end of its block."""

    __slots__ = ("blocked_until", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.blocked_until = 0.0


class FailureLimiter:
    """Blocks a key for ``window_s`` seconds once it fails ``limit`` times within ``window_s``.

    The keys are the addresses devices connect from, and they cost nothing to
    make up, so at most ``max_keys`` are tracked. Keys are kept in the order of
    their last failure, which is also the order their history expires in (a
    block lasts ``window_s`` from the last failure, and a blocked key's
    attempts are not counted): expired keys are dropped from the front, and
    when all ``max_keys`` are live the one closest to expiring makes room.

    Args:
        limit: Failures allowed within a window; the last of them starts the block.
        window_s: The window's length, and the block's (seconds).
        max_keys: Keys tracked at most.
    """

    def __init__(self, limit: int, *, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be 1 or more, window_s more than 0")
        self._limit = limit
        self._window_s = window_s
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        """The number of keys tracked."""
        return len(self._keys)

    def blocked(self, key: str, now: float) -> float:
        """The seconds ``key``'s block lasts after ``now`` (seconds, any monotonic clock).

        Returns:
            More than 0 while ``key`` is blocked, else 0.
        """
        failures = self._keys.get(key)
        if failures is None or failures.blocked_until <= now:
            return 0.0
        return failures.blocked_until - now

    def failed(self, key: str, now: float) -> bool:
        """Counts a failure by ``key`` at ``now`` (seconds, any monotonic clock).

        A failure while ``key`` is blocked is not counted.

        Returns:
            True if this failure blocked ``key``: once per block.
        """
        if self.blocked(key, now) > 0:
            return False
        self._expire(now)
        failures = self._keys.pop(key, None)
        if failures is None:
            failures = _Failures()
            while len(self._keys) >= self._max_keys:
                self._keys.popitem(last=False)
        self._keys[key] = failures  # last: the latest failure
        times = failures.times
        start = 0
        while start < len(times) and times[start] <= now - self._window_s:
            start += 1
        del times[:start]
        times.append(now)
        if len(times) < self._limit:
            return False
        times.clear()
        failures.blocked_until = now + self._window_s
        return True

    def _expire(self, now: float) -> None:
        """Drops the keys whose last failure, and so any block, is a window old."""
        while self._keys:
            key, failures = next(iter(self._keys.items()))
            last = failures.times[-1] if failures.times else failures.blocked_until - self._window_s
            if last > now - self._window_s:
                return
            del self._keys[key]
