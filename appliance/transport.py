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

CREDENTIALS_RETRY_S = 60.0
"""A rejected credential is retried at most this often (seconds), R6."""


@dataclass(frozen=True)
class Connected:
    """Connection ``link`` is open; ``attempt_started_at`` is when dialling began."""

    link: int
    attempt_started_at: float


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


class WebSocketUpstream:
    """The Realtime endpoint over ``websockets``, reconnecting forever.

    Args:
        url: the WebSocket endpoint, without the query.
        model: sent as ``?model=``.
        api_key: the bearer credential. Never logged.
        ping_interval_s: keepalive ping period (seconds).
        ping_timeout_s: a ping unanswered this long kills the link (seconds).
        backoff: the reconnect policy.
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
        open_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._uri = f"{url}?{urlencode({'model': model})}"
        self._loopback = _is_loopback(urlsplit(url).hostname)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._backoff = backoff
        self._open_timeout_s = open_timeout_s
        self._rng = rng or random.Random()
        self._link = 0
        self._queue: asyncio.Queue[str] | None = None
        self._dropped: asyncio.Future[str] | None = None

    def send(self, link: int, text: str) -> None:
        """Queue ``text`` for connection ``link``; dropped if that link is gone."""
        if link == self._link and self._queue is not None:
            self._queue.put_nowait(text)

    def drop(self, link: int, reason: str) -> None:
        """Close connection ``link`` (its session is unusable)."""
        if link == self._link and self._dropped is not None and not self._dropped.done():
            self._dropped.set_result(reason)

    async def run(self, post: Callable[[LinkEvent], None]) -> None:
        """Connect, report, reconnect, forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            started = loop.time()
            try:
                ws = await self._connect()
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    logger.error(
                        "upstream rejected the credential (HTTP %d): check the API key; "
                        "retrying in %.0f seconds",
                        status,
                        CREDENTIALS_RETRY_S,
                    )
                    post(Retrying(CREDENTIALS_RETRY_S, f"credential rejected (HTTP {status})"))
                    await asyncio.sleep(CREDENTIALS_RETRY_S)
                    continue
                cause = f"upstream answered HTTP {status}"
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                cause = f"cannot connect: {_describe(exc)}"
            else:
                self._link += 1
                post(Connected(self._link, started))
                reason = await self._pump(ws, self._link, post)
                post(Closed(self._link, reason))
                cause = reason
                if loop.time() - started >= self._backoff.stable_s:
                    attempt = 0
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            logger.info("reconnecting in %.1f seconds: %s", delay, cause)
            post(Retrying(delay, cause))
            await asyncio.sleep(delay)

    async def _connect(self) -> ClientConnection:
        return await connect(
            self._uri,
            additional_headers=self._headers,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=self._open_timeout_s,
            ping_interval=self._ping_interval_s,
            ping_timeout=self._ping_timeout_s,
            close_timeout=2,
            proxy=None if self._loopback else True,
        )

    async def _pump(
        self, ws: ClientConnection, link: int, post: Callable[[LinkEvent], None]
    ) -> str:
        """Move messages both ways until the connection ends; return why it ended."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        dropped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue, self._dropped = queue, dropped

        async def read() -> str:
            async for message in ws:
                post(Received(link, message))
            return _close_reason(ws, "closed by upstream")

        async def write() -> str:
            while True:
                await ws.send(await queue.get())

        tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write()), dropped]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            if finished is dropped:
                reason = f"dropped: {dropped.result()}"
            elif isinstance(finished.exception(), ConnectionClosed):
                reason = _close_reason(ws, "connection lost")
            else:
                reason = finished.result()
        finally:
            self._queue, self._dropped = None, None
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
        return reason


def _close_reason(ws: ClientConnection, what: str) -> str:
    code, text = ws.close_code, ws.close_reason
    if code is None or code == 1006:
        return f"{what} without a close frame"
    return f"{what} ({code}{' ' + text if text else ''})"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | TimeoutError) else f"{type(exc).__name__}: {text}"
