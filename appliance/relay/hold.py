"""The device-to-upstream queue: every message, in order, bounded in size."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Hold"]


class Hold:
    """Device messages on their way upstream, held while the upstream connects.

    Nothing is ever dropped or reordered: when the held messages reach the
    bound, :meth:`put` waits, so the relay stops reading from the device and
    TCP flow control slows the device down instead.

    Args:
        limit: The bound, in characters of text (or bytes of binary) held;
            one message is always admitted into an empty hold, however large.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[str | bytes] = deque()
        self._size = 0
        self._changed = asyncio.Condition()
        self.total = 0
        """Messages put so far."""
        self.waits = 0
        """How many times :meth:`put` had to wait for room."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        """Characters (or bytes) held now."""
        return self._size

    async def put(self, message: str | bytes) -> None:
        """Appends ``message``, first waiting for room if the hold is full."""
        async with self._changed:
            if not self._fits(message):
                self.waits += 1
                await self._changed.wait_for(lambda: self._fits(message))
            self._items.append(message)
            self._size += len(message)
            self.total += 1
            self._changed.notify_all()

    async def get(self) -> str | bytes:
        """Removes and returns the oldest message, waiting for one if the hold is empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            message = self._items.popleft()
            self._size -= len(message)
            self._changed.notify_all()
            return message

    def _fits(self, message: str | bytes) -> bool:
        return not self._items or self._size + len(message) <= self._limit
