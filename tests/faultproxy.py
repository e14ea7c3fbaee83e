"""A fault-injecting TCP proxy on loopback for chaos tests: abrupt cuts, stalls, sliced bytes.

Each accepted connection gets a ``Plan``, drawn from a ``random.Random``
seeded with the proxy's seed and the connection's number, so the same seed
gives the same plans in the same order. A plan may cut both sides abruptly
(RST) or stall both directions for a while, at a moment given in seconds
after accept or in bytes forwarded; and it may forward in small slices with
tiny delays. Everything is bounded: at most ``Chaos.budget`` connections get
a cut or stall, a stall lasts at most ``Chaos.stall_max_s``, and slicing
never holds a piece more than ``Chaos.slice_delay_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Chaos", "FaultProxy", "Plan", "ProxyEvent"]

logger = logging.getLogger(__name__)

READ_BYTES = 65_536
"""Largest read from either side (bytes)."""


@dataclass(frozen=True)
class Chaos:
    """How often and how hard the proxy misbehaves.

    Attributes:
        cut: Probability that a connection is cut (both sides reset).
        stall: Probability that a connection stalls (nothing forwarded either way).
        slice: Probability that a connection forwards in slices with tiny delays.
        at_s_max: A timed fault happens within this long after accept (seconds).
        at_bytes_max: A counted fault happens within this many bytes (both ways).
        stall_min_s: The shortest stall (seconds).
        stall_max_s: The longest stall (seconds).
        slice_max_bytes: The largest slice (bytes).
        slice_delay_max_s: The longest pause after a slice (seconds).
        budget: At most this many connections get a cut or a stall.
        life_max_s: If set, every connection is cut at last within this long
            after accept (seconds), at a moment drawn from its second half, so
            that no connection stays clean for ever.
    """

    cut: float = 0.2
    stall: float = 0.15
    slice: float = 0.3
    at_s_max: float = 6.0
    at_bytes_max: int = 200_000
    stall_min_s: float = 0.2
    stall_max_s: float = 4.0
    slice_max_bytes: int = 700
    slice_delay_max_s: float = 0.002
    budget: int = 1_000
    life_max_s: float | None = None


@dataclass(frozen=True)
class Plan:
    """What the proxy does to one connection.

    Attributes:
        fault: ``cut``, ``stall`` or None.
        at_s: The fault happens this long after accept (seconds), if set.
        at_bytes: The fault happens once this many bytes were forwarded, if set.
        stall_s: How long a stall lasts (seconds).
        sliced: Forward in small slices with tiny delays.
        seed: Seeds the slicing of this connection.
        life_s: If set, the connection is cut this long after accept (seconds).
    """

    fault: Literal["cut", "stall"] | None = None
    at_s: float | None = None
    at_bytes: int | None = None
    stall_s: float = 0.0
    sliced: bool = False
    seed: int = 0
    life_s: float | None = None

    def describe(self) -> str:
        """A short human description, for logs and reports."""
        parts = []
        if self.fault is not None:
            when = f"{self.at_s:.2f} s" if self.at_s is not None else f"{self.at_bytes} bytes"
            extra = f" for {self.stall_s:.2f} s" if self.fault == "stall" else ""
            parts.append(f"{self.fault}{extra} at {when}")
        if self.sliced:
            parts.append("sliced")
        if self.life_s is not None:
            parts.append(f"cut at {self.life_s:.2f} s at last")
        return ", ".join(parts) or "clean"


def draw_plan(rng: random.Random, chaos: Chaos, *, budget_left: bool) -> Plan:
    """One connection's plan, drawn from ``rng`` (always the same draws, in the same order)."""
    roll, timed, at_s, at_bytes, stall_s, sliced_roll, seed, life = (
        rng.random(),
        rng.random() < 0.5,
        rng.uniform(0, chaos.at_s_max),
        rng.randrange(chaos.at_bytes_max + 1),
        rng.uniform(chaos.stall_min_s, chaos.stall_max_s),
        rng.random(),
        rng.randrange(2**32),
        rng.uniform(0.5, 1.0),
    )
    fault: Literal["cut", "stall"] | None = None
    if budget_left and roll < chaos.cut:
        fault = "cut"
    elif budget_left and roll < chaos.cut + chaos.stall:
        fault = "stall"
    return Plan(
        fault=fault,
        at_s=at_s if fault is not None and timed else None,
        at_bytes=at_bytes if fault is not None and not timed else None,
        stall_s=stall_s if fault == "stall" else 0.0,
        sliced=sliced_roll < chaos.slice,
        seed=seed,
        life_s=None if chaos.life_max_s is None else life * chaos.life_max_s,
    )


@dataclass(frozen=True)
class ProxyEvent:
    """One thing the proxy did: when (loop clock, seconds), to which connection, what."""

    at: float
    connection: int
    what: str


@dataclass(eq=False)
class _Link:
    """The state of one proxied connection."""

    number: int
    plan: Plan
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    forwarded: int = 0
    open_gate: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to a target on loopback, injecting faults per connection.

    Args:
        target_port: Where to forward (on 127.0.0.1).
        seed: Seeds every plan (with the connection's number).
        chaos: How often and how hard to misbehave.
        plan_for: If given, chooses each connection's plan (by number, from 1)
            instead of drawing it (for focused tests).
    """

    def __init__(
        self,
        *,
        target_port: int,
        seed: int | str,
        chaos: Chaos | None = None,
        plan_for: Callable[[int], Plan] | None = None,
    ) -> None:
        self.log: list[ProxyEvent] = []
        """Everything the proxy did, in order."""
        self.plans: list[Plan] = []
        """The plan of each connection, in order of accept."""
        self._target_port = target_port
        self._seed = seed
        self._chaos = chaos or Chaos()
        self._plan_for = plan_for
        self._faults = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: set[_Link] = set()

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen on 127.0.0.1, on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and cut every connection still open."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._cut(link, "proxy stopped", log=False)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _note(self, link: _Link, what: str) -> None:
        self.log.append(ProxyEvent(asyncio.get_running_loop().time(), link.number, what))
        logger.debug("proxy connection %d: %s", link.number, what)

    def _plan(self, number: int) -> Plan:
        if self._plan_for is not None:
            return self._plan_for(number)
        rng = random.Random(f"{self._seed}/{number}")
        plan = draw_plan(rng, self._chaos, budget_left=self._faults < self._chaos.budget)
        self._faults += plan.fault is not None
        return plan

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        number = len(self.plans) + 1
        plan = self._plan(number)
        self.plans.append(plan)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        link = _Link(number, plan, (writer, up_writer))
        link.open_gate.set()
        self._links.add(link)
        self._note(link, f"open: {plan.describe()}")
        slicer = random.Random(plan.seed)
        pumps = [
            asyncio.create_task(self._pump(link, reader, up_writer, slicer)),
            asyncio.create_task(self._pump(link, up_reader, writer, slicer)),
        ]
        if plan.fault is not None and plan.at_s is not None:
            pumps.append(asyncio.create_task(self._timed(link, plan.at_s)))
        if plan.life_s is not None:
            pumps.append(asyncio.create_task(self._end_of_life(link, plan.life_s)))
        try:
            await asyncio.wait(pumps[:2], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            if not link.done:
                link.done = True
                for side in link.writers:
                    side.close()
                self._note(link, "closed")
            self._links.discard(link)
            self._tasks.discard(task)

    async def _timed(self, link: _Link, at_s: float) -> None:
        await asyncio.sleep(at_s)
        self._strike(link)

    async def _end_of_life(self, link: _Link, life_s: float) -> None:
        await asyncio.sleep(life_s)
        self._cut(link, f"cut at the end of its life after {link.forwarded} bytes")

    def _strike(self, link: _Link) -> None:
        """Inject the connection's fault now."""
        plan = link.plan
        if plan.fault == "cut":
            self._cut(link, f"cut after {link.forwarded} bytes")
        elif plan.fault == "stall" and link.open_gate.is_set():
            self._note(link, f"stall for {plan.stall_s:.2f} s after {link.forwarded} bytes")
            link.open_gate.clear()
            asyncio.get_running_loop().call_later(plan.stall_s, self._resume, link)

    def _resume(self, link: _Link) -> None:
        if not link.done:
            self._note(link, "resume")
            link.open_gate.set()

    def _cut(self, link: _Link, why: str, *, log: bool = True) -> None:
        """Reset both sides at once: no FIN, no close frame, unread data dropped."""
        if link.done:
            return
        link.done = True
        if log:
            self._note(link, why)
        for side in link.writers:
            sock = side.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            side.transport.abort()
        link.open_gate.set()  # let stalled pumps run into the closed sockets

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        slicer: random.Random,
    ) -> None:
        plan = link.plan
        try:
            while not link.done:
                await link.open_gate.wait()
                data = await reader.read(READ_BYTES)
                if not data:
                    return
                before, link.forwarded = link.forwarded, link.forwarded + len(data)
                if plan.at_bytes is not None and before <= plan.at_bytes <= link.forwarded:
                    self._strike(link)
                await link.open_gate.wait()  # a stall holds back what was read already
                if link.done:
                    return
                if plan.sliced:
                    await self._sliced(link, data, writer, slicer)
                else:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            return

    async def _sliced(
        self, link: _Link, data: bytes, writer: asyncio.StreamWriter, slicer: random.Random
    ) -> None:
        chaos = self._chaos
        offset = 0
        while offset < len(data) and not link.done:
            size = slicer.randint(1, chaos.slice_max_bytes)
            writer.write(data[offset : offset + size])
            offset += size
            await writer.drain()
            if slicer.random() < 0.3:
                await asyncio.sleep(slicer.uniform(0, chaos.slice_delay_max_s))
