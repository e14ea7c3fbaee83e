"""One upstream session, sans-I/O: handshake, readiness (R1), single-flight responses.

A :class:`Session` lives exactly as long as one WebSocket connection. It is
fed every message the server sends (:meth:`Session.receive`) and queues the
client events to send (:meth:`Session.outgoing`). Its lifecycle::

    AWAITING_CREATED --session.created--> CONFIGURING --checked session.updated--> READY
            |                                  |                                    |
            +------------- error / fail() ------+-------------> FAILED <-------------+

Audio can be appended only in READY: before that, :meth:`append` raises
:class:`LocalProtocolError`, so audio before the configuration was confirmed
is impossible by construction. A ``session.updated`` that does not confirm
push-to-talk (turn detection off, PCM 24 kHz both ways), or an ``error`` in
answer to the update, fails the session: the server's defaults (voice
activity detection that answers on its own) are never used.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from appliance.errors import LocalProtocolError, RemoteProtocolError, SessionFailed
from appliance.realtime import events
from appliance.realtime.events import ClientEvent, ServerEvent

logger = logging.getLogger(__name__)

MIN_COMMIT_BYTES = 4_800
"""The server refuses to commit less than 100 ms of audio (24 kHz, 16-bit)."""

_REMEMBERED_EVENTS = 256
"""How many sent client events are remembered to explain a server ``error``."""


class SessionState(enum.Enum):
    """Where a session is in its lifecycle."""

    AWAITING_CREATED = "awaiting session.created"
    CONFIGURING = "configuring"
    READY = "ready"
    FAILED = "failed"


_TRANSITIONS: frozenset[tuple[SessionState, SessionState]] = frozenset(
    {
        (SessionState.AWAITING_CREATED, SessionState.CONFIGURING),
        (SessionState.CONFIGURING, SessionState.READY),
        (SessionState.AWAITING_CREATED, SessionState.FAILED),
        (SessionState.CONFIGURING, SessionState.FAILED),
        (SessionState.READY, SessionState.FAILED),
    }
)


class Session:
    """The client side of one Realtime session.

    Args:
        voice: the voice of the replies.
        instructions: the system instructions.
        name: names the session for its owner, and prefixes the ``event_id``
            of every event sent, so events from different sessions never
            share an id.
        transcription_model: when set, the person's turns are transcribed.
    """

    def __init__(
        self,
        *,
        voice: str,
        instructions: str,
        name: str = "s1",
        transcription_model: str | None = None,
    ) -> None:
        self._voice = voice
        self._instructions = instructions
        self._transcription_model = transcription_model
        self._name = name
        self._counter = 0
        self._state = SessionState.AWAITING_CREATED
        self._outgoing: list[ClientEvent] = []
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._update_id: str | None = None
        self._response_request_id: str | None = None
        self.session_id: str | None = None
        """The server's id for this session, once ``session.created`` arrived."""
        self.expires_at: int | None = None
        """Unix time (seconds) at which the server will end the session, if it said."""
        self.failure: str | None = None
        """Why the session failed, once it has."""
        self.response_active = False
        """A ``response.create`` was sent and its ``response.done`` has not arrived."""
        self.uncommitted_bytes = 0
        """Bytes appended to the server's input buffer since the last commit or clear."""
        self.debug = logger.isEnabledFor(logging.DEBUG)

    @property
    def name(self) -> str:
        """The name its owner gave it."""
        return self._name

    @property
    def state(self) -> SessionState:
        """The current lifecycle state."""
        return self._state

    @property
    def ready(self) -> bool:
        """True once the configuration was confirmed and until the session fails."""
        return self._state is SessionState.READY

    def _set_state(self, state: SessionState) -> None:
        if (self._state, state) not in _TRANSITIONS:
            raise LocalProtocolError(f"session can't go from {self._state.name} to {state.name}")
        logger.debug("= session %s is %s", self.session_id or self._name, state.value)
        self._state = state

    def outgoing(self) -> list[ClientEvent]:
        """Take the client events queued since the last call, in order."""
        queued, self._outgoing = self._outgoing, []
        return queued

    def _send(self, build: Any, *args: Any, **kwargs: Any) -> str:
        self._counter += 1
        event_id = f"{self._name}_{self._counter}"
        event: ClientEvent = build(event_id, *args, **kwargs)
        self._outgoing.append(event)
        self._sent[event_id] = event.type
        if len(self._sent) > _REMEMBERED_EVENTS:
            self._sent.popitem(last=False)
        return event_id

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of the recently sent client event ``event_id``, if remembered."""
        return None if event_id is None else self._sent.get(event_id)

    def _require_ready(self, action: str) -> None:
        if self._state is not SessionState.READY:
            raise LocalProtocolError(f"can't {action} in state {self._state.name}")

    # ------------------------------------------------------------------
    # Server input

    def receive(self, data: str | bytes) -> list[ServerEvent]:
        """Handle one server message.

        Returns:
            The events the turn logic must see: none during the handshake;
            afterwards the parsed event (unless it is one nobody acts on).

        Raises:
            RemoteProtocolError: the message is malformed.
            SessionFailed: the session cannot be used any more (it is FAILED).
        """
        if self._state is SessionState.FAILED:
            return []
        try:
            event = events.parse(data)
        except RemoteProtocolError:
            logger.warning("malformed server event in session %s", self.session_id or self._name)
            raise
        if isinstance(event, events.OtherEvent):
            if not event.known:
                logger.debug("ignoring unknown server event type %r", event.type)
            return []
        if isinstance(event, events.ServerError):
            self._log_error(event)
        if self._state is SessionState.AWAITING_CREATED:
            self._while_awaiting_created(event)
            return []
        if self._state is SessionState.CONFIGURING:
            self._while_configuring(event)
            return []
        self._track(event)
        return [event]

    def _while_awaiting_created(self, event: ServerEvent) -> None:
        if isinstance(event, events.SessionCreated):
            self.session_id = event.session_id
            self.expires_at = event.expires_at
            self._update_id = self._send(
                events.session_update,
                voice=self._voice,
                instructions=self._instructions,
                transcription_model=self._transcription_model,
            )
            self._set_state(SessionState.CONFIGURING)
        elif isinstance(event, events.ServerError):
            self.fail(f"error before session.created: {event.code or event.kind}: {event.message}")
        else:
            self.fail(f"expected session.created first, got {_type_name(event)}")

    def _while_configuring(self, event: ServerEvent) -> None:
        if isinstance(event, events.SessionUpdated):
            problem = _check_push_to_talk(event.session)
            if problem is not None:
                self.fail(f"session.updated does not confirm push-to-talk: {problem}")
            self._set_state(SessionState.READY)
        elif isinstance(event, events.ServerError):
            if event.client_event_id in (None, self._update_id):
                self.fail(f"session.update rejected: {event.code or event.kind}: {event.message}")
        elif self.debug:
            logger.debug("ignoring %s while configuring", _type_name(event))

    def _track(self, event: ServerEvent) -> None:
        if isinstance(event, events.ResponseDone):
            self.response_active = False
            self._response_request_id = None
        elif isinstance(event, events.ServerError):
            request = self._response_request_id
            if request is not None and event.client_event_id == request:
                # The response.create was refused: no response.done will come.
                self.response_active = False
                self._response_request_id = None

    def _log_error(self, event: events.ServerError) -> None:
        cause = "an unknown client event"
        if event.client_event_id is not None:
            sent_type = self._sent.get(event.client_event_id)
            cause = f"{sent_type or 'an earlier event'} ({event.client_event_id})"
        harmless = event.code == "response_cancel_not_active"
        logger.log(
            logging.INFO if harmless else logging.WARNING,
            "upstream error %s in answer to %s: %s",
            event.code or event.kind,
            cause,
            event.message,
        )

    def fail(self, reason: str) -> None:
        """Mark the session unusable; raises :class:`SessionFailed` with the reason.

        Raises:
            SessionFailed: always.
        """
        self.failure = reason
        if self._state is not SessionState.FAILED:
            self._set_state(SessionState.FAILED)
        raise SessionFailed(reason)

    # ------------------------------------------------------------------
    # Client actions: only while READY

    def append(self, pcm: bytes) -> None:
        """Append 24 kHz mono s16le audio to the server's input buffer."""
        self._require_ready("append audio")
        if pcm:
            self._send(events.input_audio_append, pcm)
            self.uncommitted_bytes += len(pcm)

    def commit(self) -> None:
        """Commit the input buffer; it must hold at least 100 ms of audio."""
        self._require_ready("commit")
        if self.uncommitted_bytes < MIN_COMMIT_BYTES:
            raise LocalProtocolError(
                f"can't commit {self.uncommitted_bytes} bytes: the server needs at least "
                f"{MIN_COMMIT_BYTES}"
            )
        self._send(events.input_audio_commit)
        self.uncommitted_bytes = 0

    def clear(self) -> None:
        """Discard whatever was appended since the last commit."""
        self._require_ready("clear the input buffer")
        self._send(events.input_audio_clear)
        self.uncommitted_bytes = 0

    def create_response(self) -> None:
        """Ask for a response. Only one may be active at a time."""
        self._require_ready("create a response")
        if self.response_active:
            raise LocalProtocolError("can't create a response while one is active")
        self._response_request_id = self._send(events.response_create)
        self.response_active = True

    def cancel_response(self) -> None:
        """Cancel the active response; its ``response.done`` still arrives."""
        self._require_ready("cancel a response")
        if not self.response_active:
            raise LocalProtocolError("can't cancel: no response is active")
        self._send(events.response_cancel)

    def truncate(self, item_id: str, *, audio_end_ms: int) -> None:
        """Tell the server the person heard only the first ``audio_end_ms`` of ``item_id``."""
        self._require_ready("truncate an item")
        if audio_end_ms <= 0:
            raise LocalProtocolError("can't truncate at 0 ms: delete the item instead")
        self._send(events.item_truncate, item_id=item_id, audio_end_ms=audio_end_ms)

    def add_message(self, role: str, text: str) -> None:
        """Add an earlier message of ``role`` (user or assistant) to the conversation."""
        self._require_ready("add a message")
        if role not in ("user", "assistant"):
            raise LocalProtocolError(f"can't add a message from {role!r}")
        self._send(events.item_create_message, role=role, text=text)

    def delete_item(self, item_id: str) -> None:
        """Remove ``item_id`` from the conversation (a reply nobody heard)."""
        self._require_ready("delete an item")
        self._send(events.item_delete, item_id=item_id)


def _type_name(event: ServerEvent) -> str:
    return event.type if isinstance(event, events.OtherEvent) else type(event).__name__


def _dig(mapping: Mapping[str, Any], *path: str) -> Any:
    value: Any = mapping
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


_MISSING = object()


def _check_push_to_talk(session: Mapping[str, Any]) -> str | None:
    """What in an effective session configuration is not push-to-talk, if anything."""
    turn_detection = _dig(session, "audio", "input", "turn_detection")
    if turn_detection is _MISSING:
        return "turn detection is not reported"
    if turn_detection is not None:
        return "turn detection is still on"
    for side in ("input", "output"):
        fmt = _dig(session, "audio", side, "format")
        if fmt is _MISSING:
            return f"the {side} audio format is not reported"
        if not isinstance(fmt, Mapping) or any(
            fmt.get(key) != value for key, value in events.PCM_FORMAT.items()
        ):
            return f"the {side} audio format is {fmt!r}"
    return None
