"""The emulator's WebSocket server: handshake, authentication, faults, and its connections.

Each connection is served by a ``Handler`` (see ``handler``). The faults of a
connection are chosen when its handshake arrives: ``Emulator.faults``, or
what ``faults_for`` answers for that handshake.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from appliance.emulator.checks import Problem
from appliance.emulator.conversation import Conversation
from appliance.emulator.faults import handshake_refusal
from appliance.emulator.handler import Handler, Link
from appliance.emulator.records import Connection, Faults, Observer
from appliance.emulator.session_config import SESSION_LIFETIME_S
from appliance.emulator.wire import error_event
from appliance.upstream_http import http_error

__all__ = ["Connection", "Emulator", "Faults", "Observer", "run_emulator"]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest client message accepted (bytes): appends may carry up to 15 MiB."""

CHUNK_INTERVAL_S = 0.005
"""Pause between reply deltas (seconds): replies stream much faster than real time."""

BETA_MESSAGE = (
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
)
BETA_CLOSE_CODE = 4000

NO_FAULTS = Faults()
"""The default: behave like the real service."""


class Emulator:
    """A local server speaking the OpenAI Realtime GA protocol strictly.

    Args:
        api_key: The only key accepted as ``Authorization: Bearer <key>``.
        reply: ``echo`` answers with the last committed audio; ``tone`` with a chime.
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        faults: Misbehaviour to inject; tests may replace ``faults`` between connections.
        observer: Called with ``("client", event)`` for each client event received
            and ``("server", event)`` before each server event is sent (never with
            a malformed message: see ``Connection.malformed``).
        chunk_interval_s: Pause between reply deltas, in seconds.
        faults_for: Called with the handshake's number (1 for the first) as each
            handshake arrives; its answer replaces ``faults`` for that handshake
            and its connection (chaos tests vary faults from one to the next).
    """

    def __init__(
        self,
        *,
        api_key: str,
        reply: Literal["echo", "tone"] = "echo",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults = NO_FAULTS,
        observer: Observer | None = None,
        chunk_interval_s: float = CHUNK_INTERVAL_S,
        faults_for: Callable[[int], Faults] | None = None,
    ) -> None:
        if reply not in ("echo", "tone"):
            raise ValueError(f"reply must be 'echo' or 'tone', not {reply!r}")
        self.faults = faults
        self.connections: list[Connection] = []
        self._api_key = api_key.encode()
        self._reply: Literal["echo", "tone"] = reply
        self._host = host
        self._port = port
        self._observer = observer
        self._chunk_interval_s = chunk_interval_s
        self._faults_for = faults_for
        self._handshakes = 0
        self._faults_of: weakref.WeakKeyDictionary[ServerConnection, Faults] = (
            weakref.WeakKeyDictionary()
        )
        self._silent: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The WebSocket endpoint, without query: ``ws://HOST:PORT/v1/realtime``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self.port}/v1/realtime"

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._check_handshake,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,  # the client's keepalive is what is tested; stalls stay silent
        )
        logger.debug("emulator bound to %s", self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001; silent ones abruptly) and the server."""
        if self._server is not None:
            for ws in list(self._silent):
                ws.transport.abort()  # it reads nothing: no closing handshake could finish
            await asyncio.sleep(0)
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10) -> None:
        """Wait until ``predicate()`` is true, polling every 5 ms.

        Raises:
            TimeoutError: It stayed false for ``timeout_s`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if predicate():
                return
            if loop.time() >= deadline:
                raise TimeoutError(f"condition still false after {timeout_s} seconds")
            await asyncio.sleep(0.005)

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake with an HTTP error, as the real service does, or accept it."""
        target = urlsplit(request.path)
        if not target.path.rstrip("/").endswith("/realtime"):
            return http_error(connection, HTTPStatus.NOT_FOUND, "Not found.", None)
        self._handshakes += 1
        faults = self.faults if self._faults_for is None else self._faults_for(self._handshakes)
        if faults.reject_handshake is not None:
            logger.info("fault: refusing the handshake with HTTP %d", faults.reject_handshake)
            message, code = handshake_refusal(faults.reject_handshake)
            return http_error(connection, HTTPStatus(faults.reject_handshake), message, code)
        authorization = request.headers.get("Authorization", "")
        scheme, _, key = authorization.partition(" ")
        if not authorization:
            logger.info("refused a connection: no API key")
            return http_error(
                connection,
                HTTPStatus.UNAUTHORIZED,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                None,
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), self._api_key
        ):
            logger.info("refused a connection: wrong API key")
            return http_error(
                connection,
                HTTPStatus.UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_api_key",
            )
        if not parse_qs(target.query).get("model"):
            return http_error(
                connection,
                HTTPStatus.BAD_REQUEST,
                "Missing required parameter: 'model'.",
                "missing_required_parameter",
            )
        self._faults_of[connection] = faults
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one connection until the client closes it or the server stops."""
        request = ws.request
        assert request is not None  # set once the handshake succeeded
        model = parse_qs(urlsplit(request.path).query)["model"][0]
        faults = self._faults_of.pop(ws, self.faults)
        lifetime_s = faults.expires_in_s
        if lifetime_s is None:
            lifetime_s = faults.expire_after_s
        conversation = Conversation(
            model,
            reply=self._reply,
            created_at_s=time.time(),
            lifetime_s=SESSION_LIFETIME_S if lifetime_s is None else lifetime_s,
        )
        record = Connection(
            model=model,
            conversation=conversation,
            faults=faults,
            opened_at=asyncio.get_running_loop().time(),
        )
        self.connections.append(record)
        logger.info(
            "connection %d opened: session %s, model %s",
            len(self.connections),
            record.session_id,
            model,
        )
        try:
            if "OpenAI-Beta" in request.headers:
                await self._refuse_beta(ws, record)
                return
            handler = Handler(
                ws,
                record,
                faults=faults,
                observer=self._observer,
                chunk_interval_s=self._chunk_interval_s,
                on_stall=self._silent.add,
            )
            await handler.run()
        finally:
            self._silent.discard(ws)
            record.closed = True
            record.closed_at = asyncio.get_running_loop().time()
            record.close_code = ws.close_code
            logger.info("connection closed: session %s, code %s", record.session_id, ws.close_code)

    async def _refuse_beta(self, ws: ServerConnection, record: Connection) -> None:
        problem = Problem("beta_api_shape_disabled", BETA_MESSAGE, None)
        logger.info("refusing a beta client (OpenAI-Beta header)")
        link = Link(ws, record, self._observer, NO_FAULTS)
        writer = asyncio.create_task(link.write())
        try:
            link.put([error_event(problem, client_event_id=None)])
            await link.drain()
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        await ws.close(BETA_CLOSE_CODE, BETA_MESSAGE)


async def run_emulator(
    *, host: str, port: int, api_key: str, reply: str, faults: Faults = NO_FAULTS
) -> None:
    """Serve the emulator until cancelled.

    Args:
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        api_key: The only key accepted.
        reply: ``echo`` or ``tone``.
        faults: Misbehaviour to inject into every connection (default: none).

    Raises:
        ValueError: ``reply`` is neither ``echo`` nor ``tone``.
    """
    if reply not in ("echo", "tone"):
        raise ValueError(f"reply must be 'echo' or 'tone', not {reply!r}")
    mode: Literal["echo", "tone"] = "echo" if reply == "echo" else "tone"
    async with Emulator(
        api_key=api_key, reply=mode, host=host, port=port, faults=faults
    ) as emulator:
        logger.info("emulator listening on %s", emulator.url)
        if faults != NO_FAULTS:
            logger.info("emulator faults: %s", faults)
        await asyncio.Future()
