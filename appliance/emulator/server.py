"""The emulator's WebSocket server: handshake, authentication, and the per-connection loop.

Each connection runs three tasks: the handler reads and records client events
as they arrive; a processor feeds them to a ``Conversation`` in order (after
the configured delays) and paces responses; a writer sends server events in
the order they were produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from appliance.emulator.checks import Problem
from appliance.emulator.conversation import Conversation
from appliance.emulator.records import Connection, Direction, Faults, Observer
from appliance.emulator.wire import error_event

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
            and ``("server", event)`` before each server event is sent.
        chunk_interval_s: Pause between reply deltas, in seconds.
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
        )
        logger.debug("emulator bound to %s", self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001) and the server."""
        if self._server is not None:
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
            return _http_error(connection, HTTPStatus.NOT_FOUND, "Not found.", None)
        authorization = request.headers.get("Authorization", "")
        scheme, _, key = authorization.partition(" ")
        if not authorization:
            logger.info("refused a connection: no API key")
            return _http_error(
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
            return _http_error(
                connection,
                HTTPStatus.UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_api_key",
            )
        if not parse_qs(target.query).get("model"):
            return _http_error(
                connection,
                HTTPStatus.BAD_REQUEST,
                "Missing required parameter: 'model'.",
                "missing_required_parameter",
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one connection until the client closes it or the server stops."""
        request = ws.request
        assert request is not None  # set once the handshake succeeded
        model = parse_qs(urlsplit(request.path).query)["model"][0]
        faults = self.faults
        conversation = Conversation(model, reply=self._reply, created_at_s=time.time())
        record = Connection(model=model, conversation=conversation)
        self.connections.append(record)
        logger.info(
            "connection %d opened: session %s, model %s",
            len(self.connections),
            record.session_id,
            model,
        )
        link = _Link(ws, record, self._observer)
        tasks = [asyncio.create_task(link.write())]
        try:
            if "OpenAI-Beta" in request.headers:
                await self._refuse_beta(ws, link)
                return
            inbox: asyncio.Queue[dict[str, Any] | Problem | None] = asyncio.Queue()
            tasks.append(asyncio.create_task(self._process(conversation, inbox, link, faults)))
            await self._read(ws, record, inbox, faults)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            record.closed = True
            record.close_code = ws.close_code
            logger.info("connection closed: session %s, code %s", record.session_id, ws.close_code)

    async def _refuse_beta(self, ws: ServerConnection, link: _Link) -> None:
        problem = Problem("beta_api_shape_disabled", BETA_MESSAGE, None)
        logger.info("refusing a beta client (OpenAI-Beta header)")
        link.put([error_event(problem, client_event_id=None)])
        await link.drain()
        await ws.close(BETA_CLOSE_CODE, BETA_MESSAGE)

    async def _read(
        self,
        ws: ServerConnection,
        record: Connection,
        inbox: asyncio.Queue[dict[str, Any] | Problem | None],
        faults: Faults,
    ) -> None:
        """Record each client message as it arrives and queue it for processing."""
        appends = 0
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    logger.info("client sent invalid JSON: %s", exc)
                    inbox.put_nowait(
                        Problem("invalid_json", f"Invalid JSON in client event: {exc}.", None)
                    )
                    continue
                if not isinstance(message, dict):
                    inbox.put_nowait(
                        Problem(
                            "invalid_json",
                            "Invalid client event: expected a JSON object.",
                            None,
                        )
                    )
                    continue
                record.received.append(message)
                record.log.append(("client", message))
                _notify(self._observer, "client", message)
                inbox.put_nowait(message)
                if message.get("type") == "input_audio_buffer.append":
                    appends += 1
                    if appends == faults.drop_after_appends:
                        logger.info("fault: dropping the connection after %d appends", appends)
                        ws.transport.abort()
                        return
        except ConnectionClosed as exc:
            logger.debug("connection lost: %s", exc)
        finally:
            inbox.put_nowait(None)

    async def _process(
        self,
        conversation: Conversation,
        inbox: asyncio.Queue[dict[str, Any] | Problem | None],
        link: _Link,
        faults: Faults,
    ) -> None:
        """Answer client events in order; stream each response from its own task."""
        streams: set[asyncio.Task[None]] = set()
        try:
            if faults.created_delay_s > 0:
                await asyncio.sleep(faults.created_delay_s)
            link.put([conversation.created()])
            while (message := await inbox.get()) is not None:
                if isinstance(message, Problem):
                    link.put([error_event(message, client_event_id=None)])
                    continue
                try:
                    events = conversation.receive(message, reject_update=faults.reject_update)
                except Exception:
                    logger.exception("emulator failed on a %s event", message.get("type"))
                    events = [_server_error(message)]
                if faults.updated_delay_s > 0 and any(
                    event["type"] == "session.updated" for event in events
                ):
                    await asyncio.sleep(faults.updated_delay_s)
                link.put(events)
                for event in events:
                    if event["type"] == "response.created":
                        task = asyncio.create_task(
                            self._stream(conversation, event["response"]["id"], link)
                        )
                        streams.add(task)
                        task.add_done_callback(streams.discard)
        finally:
            for task in list(streams):
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    async def _stream(self, conversation: Conversation, response_id: str, link: _Link) -> None:
        """Pace one response: a delta, then a short pause, until it ends or is cancelled."""
        more = True
        while more:
            await asyncio.sleep(self._chunk_interval_s)
            events, more = conversation.advance(response_id)
            link.put(events)
            await link.drain()


class _Link:
    """The sending side of a connection: one queue, one writer, order preserved."""

    def __init__(self, ws: ServerConnection, record: Connection, observer: Observer | None):
        self._ws = ws
        self._record = record
        self._observer = observer
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def put(self, events: list[dict[str, Any]]) -> None:
        """Queue server events to send, in order."""
        for event in events:
            self._queue.put_nowait(event)

    async def drain(self) -> None:
        """Wait until everything queued has been written."""
        await self._queue.join()

    async def write(self) -> None:
        """Send queued events until cancelled; after the connection is lost, drop them."""
        while True:
            event = await self._queue.get()
            try:
                self._record.sent.append(event)
                self._record.log.append(("server", event))
                _notify(self._observer, "server", event)
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(json.dumps(event))
            finally:
                self._queue.task_done()


def _notify(observer: Observer | None, direction: Direction, message: dict[str, Any]) -> None:
    if observer is None:
        return
    try:
        observer(direction, message)
    except Exception:
        logger.exception("the emulator's observer failed on a %s event", direction)


def _server_error(message: dict[str, Any]) -> dict[str, Any]:
    raw_id = message.get("event_id")
    event = error_event(
        Problem(None, "The server had an error while processing your request.", None),
        client_event_id=raw_id if isinstance(raw_id, str) else None,
    )
    event["error"]["type"] = "server_error"
    return event


def _http_error(
    connection: ServerConnection, status: HTTPStatus, message: str, code: str | None
) -> Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


async def run_emulator(*, host: str, port: int, api_key: str, reply: str) -> None:
    """Serve the emulator until cancelled.

    Args:
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        api_key: The only key accepted.
        reply: ``echo`` or ``tone``.

    Raises:
        ValueError: ``reply`` is neither ``echo`` nor ``tone``.
    """
    if reply not in ("echo", "tone"):
        raise ValueError(f"reply must be 'echo' or 'tone', not {reply!r}")
    mode: Literal["echo", "tone"] = "echo" if reply == "echo" else "tone"
    async with Emulator(api_key=api_key, reply=mode, host=host, port=port) as emulator:
        logger.info("emulator listening on %s", emulator.url)
        await asyncio.Future()
