"""A bounded, drop-oldest queue that foreign threads feed through the event loop."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Where a device thread leaves items for the event loop.

    The device thread calls :meth:`put_threadsafe`, which is
    ``loop.call_soon_threadsafe(self.put, item)``: the only cross-thread call.
    :meth:`put` then runs on the loop's thread; when ``maxlen`` items are
    waiting already it drops the oldest and counts it in :attr:`dropped`, so a
    stalled consumer costs the oldest audio, never memory or latency.

    A consumer either awaits :meth:`get`, or gives :meth:`subscribe` a callback
    that takes everything waiting with :meth:`take`: it runs once after all
    the items handed over in one turn of the loop are in, so a late loop
    still drops the oldest, and no task wakes per item.

    Args:
        loop: The event loop the consumer runs on.
        maxlen: How many items may wait (at least 1).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        self._loop = loop
        self._items: collections.deque[T] = collections.deque()
        self._maxlen = maxlen
        self._ready = asyncio.Event()
        self._subscriber: Callable[[], None] | None = None
        self._scheduled = False
        self.dropped = 0
        """Items dropped because the queue was full (oldest first)."""

    def __len__(self) -> int:
        return len(self._items)

    def put_threadsafe(self, item: T) -> None:
        """Hand ``item`` over from any thread. Never blocks.

        Raises:
            RuntimeError: the loop is closed (the device outlived it).
        """
        self._loop.call_soon_threadsafe(self.put, item)

    def put(self, item: T) -> None:
        """Queue ``item``; on the loop's thread only. Drops the oldest when full."""
        if len(self._items) >= self._maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        if self._subscriber is None:
            self._ready.set()
        elif not self._scheduled:
            # After the other puts already queued on the loop: they may drop the oldest.
            self._scheduled = True
            self._loop.call_soon(self._notify)

    def subscribe(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` on the loop when items wait, instead of waking :meth:`get`.

        ``callback`` takes them with :meth:`take`; None ends the subscription.
        """
        self._subscriber = callback
        if callback is not None and self._items and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._notify)

    def _notify(self) -> None:
        self._scheduled = False
        if self._subscriber is not None and self._items:
            self._subscriber()

    def take(self) -> list[T]:
        """Take every waiting item, oldest first; on the loop's thread only."""
        items = list(self._items)
        self._items.clear()
        return items

    async def get(self) -> T:
        """Wait for the oldest item and take it."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def clear(self) -> None:
        """Forget everything waiting (not counted as dropped)."""
        self._items.clear()
