"""Realtime GA wire JSON to and from typed events.

Client events are built by the functions below, one per event the appliance
sends; each carries an ``event_id`` so that an ``error`` from the server can be
matched to what caused it. Server text is parsed by :func:`parse` into one of
the frozen dataclasses below. :func:`parse` returns an event or raises
:class:`~appliance.errors.RemoteProtocolError`, nothing else, whatever it is fed.

Beta-era names of the audio and transcript events are accepted on input (some
third-party servers still send them); only GA shapes are ever sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from appliance.errors import RemoteProtocolError

PCM_FORMAT: Mapping[str, Any] = {"type": "audio/pcm", "rate": 24_000}
"""The only audio format the appliance uses, both ways."""


# --------------------------------------------------------------------------
# Client events


@dataclass(frozen=True)
class ClientEvent:
    """One event for the server: its ``type``, ``event_id`` and other fields."""

    type: str
    event_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The wire form: one JSON object."""
        return json.dumps(
            {"type": self.type, "event_id": self.event_id, **self.fields},
            separators=(",", ":"),
        )

    def describe(self) -> str:
        """A short description for logs; never includes audio."""
        return f"{self.type} ({self.event_id})"


def session_update(
    event_id: str, *, voice: str, instructions: str, transcription_model: str | None = None
) -> ClientEvent:
    """``session.update`` for push-to-talk: audio only, PCM 24 kHz, no turn detection.

    Turn detection is switched off explicitly (``null``): the server's default
    voice activity detection answers on its own, which would make a
    push-to-talk appliance always listening. With ``transcription_model``,
    the person's turns are transcribed too (for the conversation memory).
    """
    audio_in: dict[str, Any] = {"format": dict(PCM_FORMAT), "turn_detection": None}
    if transcription_model:
        audio_in["transcription"] = {"model": transcription_model}
    session = {
        "type": "realtime",
        "instructions": instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": audio_in,
            "output": {"format": dict(PCM_FORMAT), "voice": voice},
        },
    }
    return ClientEvent("session.update", event_id, {"session": session})


def item_create_message(event_id: str, *, role: str, text: str) -> ClientEvent:
    """``conversation.item.create`` of a text message said earlier by ``role``.

    Used to re-seed a new session with the conversation so far (R9): the
    person's words as ``input_text``, the assistant's as ``output_text``.
    """
    part = "input_text" if role == "user" else "output_text"
    item = {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
    return ClientEvent("conversation.item.create", event_id, {"item": item})


def input_audio_append(event_id: str, pcm: bytes) -> ClientEvent:
    """``input_audio_buffer.append`` of 24 kHz mono s16le ``pcm``."""
    return ClientEvent(
        "input_audio_buffer.append",
        event_id,
        {"audio": base64.b64encode(pcm).decode("ascii")},
    )


def input_audio_commit(event_id: str) -> ClientEvent:
    """``input_audio_buffer.commit``: the appended audio becomes a user item."""
    return ClientEvent("input_audio_buffer.commit", event_id)


def input_audio_clear(event_id: str) -> ClientEvent:
    """``input_audio_buffer.clear``: discard the audio appended since the last commit."""
    return ClientEvent("input_audio_buffer.clear", event_id)


def response_create(event_id: str) -> ClientEvent:
    """``response.create`` with the session's configuration."""
    return ClientEvent("response.create", event_id)


def response_cancel(event_id: str, response_id: str | None = None) -> ClientEvent:
    """``response.cancel`` of ``response_id``, or of the active response."""
    fields = {} if response_id is None else {"response_id": response_id}
    return ClientEvent("response.cancel", event_id, fields)


def item_truncate(event_id: str, *, item_id: str, audio_end_ms: int) -> ClientEvent:
    """``conversation.item.truncate``: the person heard only ``audio_end_ms`` milliseconds."""
    return ClientEvent(
        "conversation.item.truncate",
        event_id,
        {"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms},
    )


def item_delete(event_id: str, *, item_id: str) -> ClientEvent:
    """``conversation.item.delete``: the person heard none of the item."""
    return ClientEvent("conversation.item.delete", event_id, {"item_id": item_id})


# --------------------------------------------------------------------------
# Server events


@dataclass(frozen=True)
class SessionCreated:
    """``session.created``: the first event of a connection."""

    session_id: str
    expires_at: int | None
    """Unix time (seconds) at which the server will end the session."""


@dataclass(frozen=True)
class SessionUpdated:
    """``session.updated``: the effective configuration after an update."""

    session: Mapping[str, Any]


@dataclass(frozen=True)
class InputAudioCommitted:
    """``input_audio_buffer.committed``: the appended audio is now a user item."""

    item_id: str


@dataclass(frozen=True)
class InputAudioCleared:
    """``input_audio_buffer.cleared``."""


@dataclass(frozen=True)
class ResponseCreated:
    """``response.created``: a response is active."""

    response_id: str


@dataclass(frozen=True)
class AudioDelta:
    """``response.output_audio.delta``: a piece of the reply, 24 kHz mono s16le."""

    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True)
class AudioDone:
    """``response.output_audio.done``: no more audio for this item."""

    response_id: str
    item_id: str


@dataclass(frozen=True)
class TranscriptDelta:
    """``response.output_audio_transcript.delta``."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptDone:
    """``response.output_audio_transcript.done``: the whole transcript of an item."""

    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class ResponseDone:
    """``response.done``: the response has ended, however it ended."""

    response_id: str | None
    status: str
    """completed, cancelled, failed or incomplete."""
    reason: str | None
    """From ``status_details``: client_cancelled, turn_detected, max_output_tokens, ..."""


@dataclass(frozen=True)
class ItemTruncated:
    """``conversation.item.truncated``."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class InputTranscript:
    """``conversation.item.input_audio_transcription.completed``: what the person said."""

    item_id: str
    transcript: str


@dataclass(frozen=True)
class ServerError:
    """``error``: the server refused something; the connection usually stays open."""

    kind: str
    """``error.type``: invalid_request_error, server_error, ..."""
    code: str | None
    message: str
    param: str | None
    client_event_id: str | None
    """The ``event_id`` of the client event that caused it, when the server says."""


@dataclass(frozen=True)
class OtherEvent:
    """A well-formed event the appliance does not act on (known or not)."""

    type: str
    known: bool
    """False for a type this codec has never heard of."""


ServerEvent: TypeAlias = (
    SessionCreated
    | SessionUpdated
    | InputAudioCommitted
    | InputAudioCleared
    | ResponseCreated
    | AudioDelta
    | AudioDone
    | TranscriptDelta
    | TranscriptDone
    | ResponseDone
    | ItemTruncated
    | InputTranscript
    | ServerError
    | OtherEvent
)


class _Fields:
    """Typed access to one event's fields; anything off raises RemoteProtocolError."""

    def __init__(self, type_: str, data: Mapping[str, Any]) -> None:
        self._type = type_
        self._data = data

    def _fail(self, key: str, expected: str) -> RemoteProtocolError:
        got = type(self._data.get(key)).__name__ if key in self._data else "nothing"
        return RemoteProtocolError(f"{self._type}: {key}: expected {expected}, got {got}")

    def text(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null")
        return value

    def integer(self, key: str) -> int:
        value = self._data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self._data.get(key)
        if value is None:
            return None
        return self.integer(key)

    def obj(self, key: str) -> _Fields:
        value = self._data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "an object")
        return _Fields(f"{self._type}: {key}", value)

    def opt_obj(self, key: str) -> _Fields | None:
        return None if self._data.get(key) is None else self.obj(key)

    def mapping(self) -> Mapping[str, Any]:
        return self._data

    def audio(self, key: str) -> bytes:
        try:
            pcm = base64.b64decode(self.text(key), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RemoteProtocolError(f"{self._type}: {key}: invalid base64") from exc
        if len(pcm) % 2:
            raise RemoteProtocolError(f"{self._type}: {key}: odd number of bytes for 16-bit PCM")
        return pcm


def _session_created(f: _Fields) -> ServerEvent:
    session = f.obj("session")
    return SessionCreated(
        session_id=session.text("id"), expires_at=session.opt_integer("expires_at")
    )


def _response_done(f: _Fields) -> ServerEvent:
    response = f.obj("response")
    details = response.opt_obj("status_details")
    return ResponseDone(
        response_id=response.opt_text("id"),
        status=response.text("status"),
        reason=None if details is None else details.opt_text("reason"),
    )


def _error(f: _Fields) -> ServerEvent:
    error = f.obj("error")
    return ServerError(
        kind=error.text("type"),
        code=error.opt_text("code"),
        message=error.text("message"),
        param=error.opt_text("param"),
        client_event_id=error.opt_text("event_id"),
    )


_PARSERS: dict[str, Callable[[_Fields], ServerEvent]] = {
    "session.created": _session_created,
    "session.updated": lambda f: SessionUpdated(session=f.obj("session").mapping()),
    "input_audio_buffer.committed": lambda f: InputAudioCommitted(item_id=f.text("item_id")),
    "input_audio_buffer.cleared": lambda f: InputAudioCleared(),
    "response.created": lambda f: ResponseCreated(response_id=f.obj("response").text("id")),
    "response.output_audio.delta": lambda f: AudioDelta(
        response_id=f.text("response_id"), item_id=f.text("item_id"), audio=f.audio("delta")
    ),
    "response.output_audio.done": lambda f: AudioDone(
        response_id=f.text("response_id"), item_id=f.text("item_id")
    ),
    "response.output_audio_transcript.delta": lambda f: TranscriptDelta(
        response_id=f.text("response_id"), item_id=f.text("item_id"), delta=f.text("delta")
    ),
    "response.output_audio_transcript.done": lambda f: TranscriptDone(
        response_id=f.text("response_id"),
        item_id=f.text("item_id"),
        transcript=f.text("transcript"),
    ),
    "response.done": _response_done,
    "conversation.item.truncated": lambda f: ItemTruncated(
        item_id=f.text("item_id"), audio_end_ms=f.integer("audio_end_ms")
    ),
    "conversation.item.input_audio_transcription.completed": lambda f: InputTranscript(
        item_id=f.text("item_id"), transcript=f.text("transcript")
    ),
    "error": _error,
}

_BETA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}

# Server events of the GA union that need no action from a push-to-talk client.
_KNOWN_IGNORED = frozenset(
    {
        "conversation.created",
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.done",
        "conversation.item.deleted",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.timeout_triggered",
        "rate_limits.updated",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
    }
)


def parse(data: str | bytes) -> ServerEvent:
    """Parse one WebSocket message from the server.

    Args:
        data: the message as received (text; bytes are decoded as UTF-8).

    Returns:
        The typed event; :class:`OtherEvent` for types the appliance does not use.

    Raises:
        RemoteProtocolError: the message is not a well-formed server event.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        message = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"server message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RemoteProtocolError(f"server message is not a JSON object: {type(message).__name__}")
    type_ = message.get("type")
    if not isinstance(type_, str):
        raise RemoteProtocolError("server message has no string 'type'")
    type_ = _BETA_NAMES.get(type_, type_)
    parser = _PARSERS.get(type_)
    if parser is None:
        return OtherEvent(type=type_, known=type_ in _KNOWN_IGNORED)
    return parser(_Fields(type_, message))
