"""Bounded, drop-oldest queues from device threads to the event loop.

:class:`Handoff` wakes the loop for each item (a button's edges);
:class:`Batches` wakes it once per batch (fifty audio periods a second).
"""

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

    The consumer awaits :meth:`get`. Each item wakes the loop: for items
    that come fifty times a second, see :class:`Batches`.

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
        self._ready.set()

    async def get(self) -> T:
        """Wait for the oldest item and take it."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def clear(self) -> None:
        """Forget everything waiting (not counted as dropped)."""
        self._items.clear()


class Batches(Generic[T]):
    """Where a device thread leaves items for the event loop, waking it once per batch.

    Each wake of the loop costs CPU, far more than the handful of bytes an
    audio period carries. :meth:`put_threadsafe` appends on the device's own
    thread (a ``deque`` append is atomic) and wakes the loop, with
    ``loop.call_soon_threadsafe``, only when ``batch`` items are waiting;
    the loop then calls ``on_batch``, which takes them with :meth:`take`. The
    loop may also :meth:`take` at any moment, e.g. to have everything captured
    before a button press delivered ahead of it. At most ``maxlen`` items
    wait: the device thread drops the oldest beyond that and counts it in
    :attr:`dropped`, so a stalled loop costs the oldest audio, never memory.

    Args:
        loop: The event loop that takes the items.
        batch: Items gathered before the loop is woken (at least 1).
        maxlen: How many items may wait (at least ``batch``).
        on_batch: Called on the loop once a batch is waiting.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        batch: int,
        maxlen: int,
        on_batch: Callable[[], None],
    ) -> None:
        if batch < 1 or maxlen < batch:
            raise ValueError(f"need 1 <= batch <= maxlen, got batch {batch}, maxlen {maxlen}")
        self._loop = loop
        self._items: collections.deque[T] = collections.deque(maxlen=maxlen)
        self._batch = batch
        self._on_batch = on_batch
        self._waking = False
        self.dropped = 0
        """Items dropped because the loop fell behind (oldest first)."""

    def __len__(self) -> int:
        return len(self._items)

    def put_threadsafe(self, item: T) -> None:
        """Hand ``item`` over from the device thread. Never blocks.

        Raises:
            RuntimeError: the loop is closed (the device outlived it).
        """
        items = self._items
        if len(items) == items.maxlen:
            self.dropped += 1  # the append below pushes the oldest out
        items.append(item)
        if len(items) >= self._batch and not self._waking:
            self._waking = True
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._waking = False  # before taking: what arrives meanwhile starts the next batch
        self._on_batch()

    def take(self) -> list[T]:
        """Take every waiting item, oldest first; on the loop's thread only."""
        items = self._items
        taken: list[T] = []
        while items:
            taken.append(items.popleft())
        return taken
