"""One emulator connection: read client events, answer in order, pace replies, inject faults.

A connection runs a reader (records client events as they arrive), a
processor (feeds them to its ``Conversation`` in order, after the configured
delays), one streaming task per response, a writer (sends server events in
the order they were produced), and a timer per timed fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from appliance.emulator.checks import Problem
from appliance.emulator.faults import (
    SESSION_EXPIRED_MESSAGE,
    Faults,
    expired_error,
    injected_error,
    malformed_message,
)
from appliance.emulator.records import Connection, Direction, Observer
from appliance.emulator.wire import error_event

__all__ = ["Handler", "Link"]

logger = logging.getLogger(__name__)

HANGUP_POLL_S = 0.05
"""How often a silent (stalled) connection checks whether the client hung up (seconds)."""

_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR | select.POLLNVAL

_Inbox = asyncio.Queue[dict[str, Any] | Problem | None]


class Link:
    """The sending side of a connection: one queue, one writer, order preserved.

    Args:
        ws: The connection.
        record: Its record; every event sent is appended to it.
        observer: Sees each server event before it is sent.
        faults: Its faults (``malformed_after_events``).
    """

    def __init__(
        self,
        ws: ServerConnection,
        record: Connection,
        observer: Observer | None,
        faults: Faults,
    ) -> None:
        self._ws = ws
        self._record = record
        self._observer = observer
        self._faults = faults
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._response_id: str | None = None
        self._item_id: str | None = None

    def put(self, events: list[dict[str, Any]]) -> None:
        """Queue server events to send, in order."""
        for event in events:
            self._queue.put_nowait(event)

    async def drain(self) -> None:
        """Wait until everything queued has been written."""
        await self._queue.join()

    async def write(self) -> None:
        """Send queued events until cancelled; after the connection is lost, drop them."""
        await self._maybe_malformed()
        while True:
            event = await self._queue.get()
            try:
                self._record.sent.append(event)
                self._record.log.append(("server", event))
                notify(self._observer, "server", event)
                if "response_id" in event:
                    self._response_id, self._item_id = event["response_id"], event.get("item_id")
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(json.dumps(event))
                await self._maybe_malformed()
            finally:
                self._queue.task_done()

    async def _maybe_malformed(self) -> None:
        faults = self._faults
        if faults.malformed_after_events != len(self._record.sent) or self._record.malformed:
            return
        text = malformed_message(
            faults.malformed_kind, response_id=self._response_id, item_id=self._item_id
        )
        logger.info(
            "fault: a malformed message (%s) after %d server events",
            faults.malformed_kind,
            len(self._record.sent),
        )
        self._record.malformed.append((len(self._record.sent), text))
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(text)


class Handler:
    """Serves one accepted connection until it ends.

    Args:
        ws: The connection, handshake done.
        record: Its record (already listed by the emulator).
        faults: Its faults.
        observer: Sees every event both ways.
        chunk_interval_s: Pause between reply deltas (seconds), unless a fault says otherwise.
        on_stall: Called once if the connection goes silent under a stall fault.
    """

    def __init__(
        self,
        ws: ServerConnection,
        record: Connection,
        *,
        faults: Faults,
        observer: Observer | None,
        chunk_interval_s: float,
        on_stall: Callable[[ServerConnection], None],
    ) -> None:
        self._ws = ws
        self._record = record
        self._conversation = record.conversation
        self._faults = faults
        self._observer = observer
        self._chunk_interval_s = chunk_interval_s
        self._on_stall = on_stall
        self._link = Link(ws, record, observer, faults)
        self._inbox: _Inbox = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._processor: asyncio.Task[None] | None = None
        self._stalled = False

    async def run(self) -> None:
        """Serve until the client closes, the connection drops, or a stall ends in a hang-up."""
        faults = self._faults
        try:
            if faults.stall_after_events == 0:
                self._stall("from the handshake on")
            else:
                self._spawn(self._link.write())
                self._processor = self._spawn(self._process())
                if faults.stall_after_s is not None:
                    self._spawn(self._stall_later(faults.stall_after_s))
                if faults.expire_after_s is not None:
                    self._spawn(self._expire_later(faults.expire_after_s))
                self._reader = self._spawn(self._read())
                await asyncio.wait([self._reader])
            if self._stalled:
                await self._wait_for_hangup()
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read(self) -> None:
        """Record each client message as it arrives and queue it for processing."""
        faults = self._faults
        record = self._record
        messages = appends = 0
        try:
            async for raw in self._ws:
                messages += 1
                try:
                    message = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    logger.info("client sent invalid JSON: %s", exc)
                    message = Problem("invalid_json", f"Invalid JSON in client event: {exc}.", None)
                if not isinstance(message, dict | Problem):
                    message = Problem(
                        "invalid_json", "Invalid client event: expected a JSON object.", None
                    )
                if isinstance(message, dict):
                    record.received.append(message)
                    record.log.append(("client", message))
                    notify(self._observer, "client", message)
                if messages == faults.stall_after_events:
                    self._stall(f"after {messages} client events")
                    return
                self._inbox.put_nowait(message)
                if isinstance(message, dict) and message.get("type") == "input_audio_buffer.append":
                    appends += 1
                    if appends == faults.drop_after_appends:
                        logger.info("fault: dropping the connection after %d appends", appends)
                        self._ws.transport.abort()
                        return
        except ConnectionClosed as exc:
            logger.debug("connection lost: %s", exc)
        finally:
            self._inbox.put_nowait(None)

    async def _process(self) -> None:
        """Answer client events in order; stream each response from its own task."""
        faults, conversation, link = self._faults, self._conversation, self._link
        streams: set[asyncio.Task[None]] = set()
        try:
            if faults.created_delay_s > 0:
                await asyncio.sleep(faults.created_delay_s)
            link.put([conversation.created()])
            while (message := await self._inbox.get()) is not None:
                if isinstance(message, Problem):
                    link.put([error_event(message, client_event_id=None)])
                    continue
                try:
                    events = conversation.receive(message, reject_update=faults.reject_update)
                except Exception:
                    logger.exception("emulator failed on a %s event", message.get("type"))
                    events = [_server_error(message)]
                kinds = {event["type"] for event in events}
                if faults.updated_delay_s > 0 and "session.updated" in kinds:
                    await asyncio.sleep(faults.updated_delay_s)
                if faults.error_after_commit and "input_audio_buffer.committed" in kinds:
                    events.append(self._injected_error(faults.error_after_commit))
                link.put(events)
                for event in events:
                    if event["type"] == "response.created" and conversation.active is not None:
                        task = asyncio.create_task(self._stream(event["response"]["id"]))
                        streams.add(task)
                        task.add_done_callback(streams.discard)
        finally:
            for task in list(streams):
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    def _injected_error(self, code: str) -> dict[str, Any]:
        error = injected_error(code)
        logger.info("fault: error %s after a commit; the next response fails", code)
        self._conversation.fail_next_response(error)
        event = error_event(Problem(code, error["message"], None), client_event_id=None)
        event["error"]["type"] = error["type"]
        return event

    async def _stream(self, response_id: str) -> None:
        """Pace one response: deltas with pauses (or in bursts), until it ends or is cancelled."""
        faults = self._faults
        interval_s = self._chunk_interval_s
        if faults.delta_interval_s is not None:
            interval_s = faults.delta_interval_s
        steps = 0
        more = True
        while more:
            if faults.burst_deltas is None:
                await asyncio.sleep(interval_s)
            elif steps and steps % faults.burst_deltas == 0:
                await asyncio.sleep(faults.burst_pause_s)
            events, more = self._conversation.advance(response_id)
            steps += 1
            self._link.put(events)
            await self._link.drain()

    async def _stall_later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._stall(f"{after_s:g} s after the handshake")

    def _stall(self, when: str) -> None:
        """Go silent: read nothing more (pings included), send nothing more."""
        if self._stalled:
            return
        logger.info("fault: session %s goes silent %s", self._record.session_id, when)
        self._stalled = True
        self._record.stalled_at = asyncio.get_running_loop().time()
        self._ws.transport.pause_reading()
        self._on_stall(self._ws)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _wait_for_hangup(self) -> None:
        """Keep a silent connection open until the client hangs up (or the emulator stops)."""
        transport = self._ws.transport
        if transport.is_closing():
            return
        poller = select.poll()
        sock = transport.get_extra_info("socket")
        poller.register(sock.fileno(), _HANGUP)
        while not transport.is_closing():
            if poller.poll(0):
                logger.info("client hung up on silent session %s", self._record.session_id)
                transport.abort()
                break
            await asyncio.sleep(HANGUP_POLL_S)

    async def _expire_later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        logger.info("fault: session %s expires", self._record.session_id)
        if self._processor is not None:
            self._processor.cancel()
            await asyncio.wait([self._processor])
        self._link.put([expired_error()])
        await self._link.drain()
        await self._ws.close(1001, SESSION_EXPIRED_MESSAGE)


def notify(observer: Observer | None, direction: Direction, message: dict[str, Any]) -> None:
    """Show ``message`` to ``observer``; a failing observer is logged, never fatal."""
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
