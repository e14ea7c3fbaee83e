"""The relay's limits on connection attempts, per device and per address: sans-I/O."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque

__all__ = ["AttemptLimiter", "FailureLimiter", "address_key"]


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


class FailureLimiter:
    """Blocks a key for ``window_s`` seconds once it fails ``limit`` times within ``window_s``.

    The keys are the addresses devices connect from (see :func:`address_key`),
    and they cost nothing to make up, so memory is bounded twice over: at most
    ``max_keys`` keys are counted and at most ``max_keys`` blocked, each table
    in the order its entries expire. A key whose history is a window old is
    forgotten; when the counting table is full, the key closest to expiring
    makes room. A flood of new keys, each failing once, therefore never
    lifts a block: blocked keys are only ever dropped for other blocked keys.

    Args:
        limit: Failures allowed within a window; the last of them starts the block.
        window_s: The window's length, and the block's (seconds).
        max_keys: Keys counted at most, and keys blocked at most.
    """

    def __init__(self, limit: int, *, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be 1 or more, window_s more than 0")
        self._limit = limit
        self._window_s = window_s
        self._max_keys = max_keys
        self._counting: OrderedDict[str, list[float]] = OrderedDict()  # by last failure
        self._blocked: OrderedDict[str, float] = OrderedDict()  # until when, by block start

    def __len__(self) -> int:
        """The number of keys tracked, counted or blocked."""
        return len(self._counting) + len(self._blocked)

    def blocked(self, key: str, now: float) -> float:
        """The seconds ``key``'s block lasts after ``now`` (seconds, any monotonic clock).

        Returns:
            More than 0 while ``key`` is blocked, else 0.
        """
        until = self._blocked.get(key)
        if until is None or until <= now:
            return 0.0
        return until - now

    def failed(self, key: str, now: float) -> bool:
        """Counts a failure by ``key`` at ``now`` (seconds, any monotonic clock).

        A failure while ``key`` is blocked is not counted.

        Returns:
            True if this failure blocked ``key``: once per block.
        """
        self._expire(now)
        if key in self._blocked:
            return False
        times = self._counting.pop(key, None)
        if times is None:
            times = []
            while len(self._counting) >= self._max_keys:
                self._counting.popitem(last=False)
        while times and times[0] <= now - self._window_s:
            del times[0]
        times.append(now)
        if len(times) < self._limit:
            self._counting[key] = times  # last: the latest failure
            return False
        while len(self._blocked) >= self._max_keys:
            self._blocked.popitem(last=False)
        self._blocked[key] = now + self._window_s
        return True

    def _expire(self, now: float) -> None:
        """Drops the blocks that are over, and the histories a window old."""
        while self._blocked and next(iter(self._blocked.values())) <= now:
            self._blocked.popitem(last=False)
        while self._counting and next(iter(self._counting.values()))[-1] <= now - self._window_s:
            self._counting.popitem(last=False)


def address_key(host: str) -> str:
    """What an address is counted as: itself for IPv4, its /64 for IPv6.

    One IPv6 host usually holds a whole /64 and may use a new address for
    every attempt; an IPv4 address mapped into IPv6 counts as the IPv4 one.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
