"""The upstream link: one WebSocket at a time, reconnected forever with backoff.

:class:`WebSocketUpstream` is the thin adapter between the network and the
orchestrator. It posts :class:`Connected`, :class:`Received` and
:class:`Closed` for each connection, numbered so that nothing meant for one
connection is ever sent on the next. Sending never waits on the network: texts
go into a queue that a sender task drains, so capture is never held up by a
slow or stalled socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""Largest server message accepted (bytes).

Reply deltas and ``conversation.item.retrieved`` carry base64 audio and can
exceed the library's 1 MiB default; 32 MiB holds several minutes of audio
while still bounding memory on a small board.
"""

REJECTED_RETRY_S = 60.0
"""A rejected credential is retried at most this often (seconds), R6."""

QUICK_CLOSE_S = 2.0
"""A connection that ends sooner than this (seconds) after it opened closed quickly."""

QUICK_CLOSES = 3
"""This many quick closes in a row are treated like a rejected credential (no tight loop)."""

CLOSE_TIMEOUT_S = 0.5
"""How long the closing handshake may take before the connection is dropped (seconds)."""


@dataclass(frozen=True)
class Connected:
    """Connection ``link`` is open; ``attempt_started_at`` is when dialling began."""

    link: int
    attempt_started_at: float
    spare: bool = False
    """Opened by :meth:`Upstream.rotate`, beside the current connection."""


@dataclass(frozen=True)
class Received:
    """One message arrived on connection ``link``."""

    link: int
    data: str | bytes


@dataclass(frozen=True)
class Closed:
    """Connection ``link`` is gone, for ``reason``."""

    link: int
    reason: str


@dataclass(frozen=True)
class Retrying:
    """No connection; the next attempt is in ``delay_s`` seconds, because of ``cause``."""

    delay_s: float
    cause: str


LinkEvent: TypeAlias = Connected | Received | Closed | Retrying


class Upstream(Protocol):
    """A source of connections to the upstream, as the orchestrator sees it."""

    async def run(self, post: Callable[[LinkEvent], None]) -> None:
        """Connect, report, reconnect, forever (until cancelled)."""

    def send(self, link: int, text: str) -> None:
        """Send ``text`` on connection ``link``; dropped if that link is gone."""

    def drop(self, link: int, reason: str) -> None:
        """Close connection ``link`` because its session is unusable."""

    def rotate(self) -> None:
        """Open a spare connection beside the current one (posts Connected)."""

    def promote(self, link: int) -> None:
        """Make spare connection ``link`` the current one and close the old."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (R6).

    Attributes:
        base_s: the first delay's upper bound (seconds).
        max_s: the cap on any delay (seconds).
        stable_s: a connection that lasted this long resets the backoff (seconds).
    """

    base_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry number ``attempt`` (0-based), in seconds."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempt, 32))
        return rng.uniform(0, ceiling)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Conn:
    """One open WebSocket: its send queue, its pump task, and how it ended."""

    def __init__(self, link: int, ws: ClientConnection) -> None:
        self.link = link
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.dropped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.abrupt = False
        """The connection died without a close frame (the network, not the peer)."""

    def drop(self, reason: str) -> None:
        if not self.dropped.done():
            self.dropped.set_result(reason)


class WebSocketUpstream:
    """The Realtime endpoint over ``websockets``, reconnecting forever.

    One connection is the primary: when it ends, the next is dialled after a
    backoff delay. For a session rotation (R8) a spare connection can be
    opened beside it (:meth:`rotate`) and made the primary (:meth:`promote`),
    which closes the old one with no gap and no backoff.

    Args:
        url: the WebSocket endpoint, without the query.
        model: sent as ``?model=``.
        api_key: the bearer credential. Never logged.
        ping_interval_s: keepalive ping period (seconds).
        ping_timeout_s: a ping unanswered this long kills the link (seconds).
        backoff: the reconnect policy.
        rejected_retry_s: after a rejection (401/403, or connections that
            keep closing within ``QUICK_CLOSE_S``), wait this long (seconds).
        open_timeout_s: the handshake's time limit (seconds).
        rng: the randomness behind the jitter.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: str,
        ping_interval_s: float,
        ping_timeout_s: float,
        backoff: Backoff,
        rejected_retry_s: float = REJECTED_RETRY_S,
        open_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._uri = f"{url}?{urlencode({'model': model})}"
        self._loopback = _is_loopback(urlsplit(url).hostname)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._backoff = backoff
        self._rejected_retry_s = rejected_retry_s
        self._open_timeout_s = open_timeout_s
        self._rng = rng or random.Random()
        self._links = 0
        self._conns: dict[int, _Conn] = {}
        self._primary: _Conn | None = None
        self._spare_task: asyncio.Task[None] | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._post: Callable[[LinkEvent], None] = _nowhere

    def send(self, link: int, text: str) -> None:
        """Queue ``text`` for connection ``link``; dropped if that link is gone."""
        conn = self._conns.get(link)
        if conn is not None:
            conn.queue.put_nowait(text)

    def drop(self, link: int, reason: str) -> None:
        """Close connection ``link`` (its session is unusable)."""
        conn = self._conns.get(link)
        if conn is not None:
            conn.drop(reason)

    def rotate(self) -> None:
        """Open a spare connection beside the primary; it posts Connected when open."""
        if self._spare_task is None or self._spare_task.done():
            self._spare_task = asyncio.get_running_loop().create_task(self._dial_spare())

    def promote(self, link: int) -> None:
        """Make spare connection ``link`` the primary; the old primary is closed."""
        conn = self._conns.get(link)
        old = self._primary
        if conn is None or conn is old:
            return
        self._primary = conn
        if old is not None:
            old.drop("rotated to a new session")

    async def run(self, post: Callable[[LinkEvent], None]) -> None:
        """Connect, report, reconnect, forever (until cancelled)."""
        self._post = post
        loop = asyncio.get_running_loop()
        attempt = 0
        quick_closes = 0
        try:
            while True:
                if self._primary is None:
                    started = loop.time()
                    try:
                        self._primary = await self._open(started)
                    except InvalidStatus as exc:
                        status = exc.response.status_code
                        if status in (401, 403):
                            await self._wait_rejected(f"credential rejected (HTTP {status})")
                            continue
                        cause = f"upstream answered HTTP {status}"
                    except (OSError, TimeoutError, InvalidHandshake) as exc:
                        cause = f"cannot connect: {_describe(exc)}"
                    else:
                        continue
                else:
                    conn = self._primary
                    started = loop.time()
                    cause = await asyncio.shield(conn.ended)
                    if self._primary is not conn:
                        continue  # promoted away: the new primary carries on, no delay
                    self._primary = None
                    self._abandon_spares()
                    lasted = loop.time() - started
                    if lasted >= self._backoff.stable_s:
                        attempt = 0
                    # Only a peer that answers and then says no counts: a network that
                    # drops connections is not a refusal, and backoff handles it.
                    refused = lasted < QUICK_CLOSE_S and not conn.abrupt
                    quick_closes = quick_closes + 1 if refused else 0
                    if quick_closes >= QUICK_CLOSES:
                        quick_closes = 0
                        await self._wait_rejected(
                            f"{QUICK_CLOSES} connections in a row closed within "
                            f"{QUICK_CLOSE_S:.0f} s ({cause})"
                        )
                        continue
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                logger.info("reconnecting in %.1f seconds: %s", delay, cause)
                post(Retrying(delay, cause))
                await asyncio.sleep(delay)
        finally:
            await self._close_all()

    def _abandon_spares(self) -> None:
        """The primary died: a rotation under way is moot, recovery starts afresh."""
        if self._spare_task is not None:
            self._spare_task.cancel()
        for conn in self._conns.values():
            conn.drop("the current connection was lost")

    async def _wait_rejected(self, cause: str) -> None:
        logger.error(
            "upstream refuses us: %s; check the API key; retrying in %.0f seconds",
            cause,
            self._rejected_retry_s,
        )
        self._post(Retrying(self._rejected_retry_s, cause))
        await asyncio.sleep(self._rejected_retry_s)

    async def _open(self, started: float, *, spare: bool = False) -> _Conn:
        ws = await connect(
            self._uri,
            additional_headers=self._headers,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=self._open_timeout_s,
            ping_interval=self._ping_interval_s,
            ping_timeout=self._ping_timeout_s,
            # A dead peer never answers the close frame: give up quickly, so
            # a stall is noticed within ping_interval + ping_timeout + 1 s.
            close_timeout=CLOSE_TIMEOUT_S,
            proxy=None if self._loopback else True,
        )
        self._links += 1
        conn = _Conn(self._links, ws)
        self._conns[conn.link] = conn
        self._post(Connected(conn.link, started, spare=spare))
        task = asyncio.get_running_loop().create_task(self._pump(conn))
        self._pumps.add(task)
        task.add_done_callback(self._pump_ended)
        return conn

    def _pump_ended(self, task: asyncio.Task[None]) -> None:
        self._pumps.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("connection pump failed", exc_info=task.exception())

    async def _dial_spare(self) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await self._open(started, spare=True)
        except InvalidStatus as exc:
            logger.warning("spare connection refused: HTTP %d", exc.response.status_code)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            logger.warning("spare connection failed: %s", _describe(exc))

    async def _pump(self, conn: _Conn) -> None:
        """Move messages both ways until the connection ends; then report why."""
        ws, link, post = conn.ws, conn.link, self._post

        async def read() -> str:
            async for message in ws:
                post(Received(link, message))
            return _close_reason(ws, "closed by upstream")

        async def write() -> str:
            while True:
                await ws.send(await conn.queue.get())

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write()), conn.dropped]
        reason = "closed"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            if finished is conn.dropped:
                reason = f"dropped: {conn.dropped.result()}"
            elif isinstance(finished.exception(), ConnectionClosed):
                reason = _close_reason(ws, "connection lost")
            else:
                reason = finished.result()
            conn.abrupt = ws.close_code in (None, 1006) and finished is not conn.dropped
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            del self._conns[link]
            post(Closed(link, reason))
            if not conn.ended.done():
                conn.ended.set_result(reason)

    async def _close_all(self) -> None:
        if self._spare_task is not None:
            self._spare_task.cancel()
        for conn in list(self._conns.values()):
            conn.drop("shutting down")
        ended = [conn.ended for conn in self._conns.values()]
        if ended:
            await asyncio.wait(ended, timeout=CLOSE_TIMEOUT_S + 1)


def _nowhere(event: LinkEvent) -> None:
    """Where link events go before ``run`` is called: nowhere."""


def _close_reason(ws: ClientConnection, what: str) -> str:
    code, text = ws.close_code, ws.close_reason
    if code is None or code == 1006:
        return f"{what} without a close frame"
    return f"{what} ({code}{' ' + text if text else ''})"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | TimeoutError) else f"{type(exc).__name__}: {text}"
