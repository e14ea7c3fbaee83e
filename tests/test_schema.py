"""The GA validators of tests/schema.py can fail: they are not rubber stamps."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from schema import SchemaError, schema_observer, validate_client_event, validate_server_event

from appliance.emulator.conversation import Conversation

GOOD_CLIENT: list[dict[str, Any]] = [
    {
        "type": "session.update",
        "event_id": "cfg-1",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime-2",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
            },
        },
    },
    {"type": "input_audio_buffer.append", "audio": "AAAA"},
    {"type": "input_audio_buffer.commit"},
    {"type": "response.create"},
    {"type": "response.cancel"},
    {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 5},
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello."}],
        },
    },
]

GOOD_SERVER: list[dict[str, Any]] = [
    Conversation("gpt-realtime-2", reply="echo", created_at_s=0).created(),
    {
        "type": "response.output_audio.delta",
        "event_id": "event_1",
        "response_id": "resp_1",
        "item_id": "item_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA",
    },
    {
        "type": "error",
        "event_id": "event_2",
        "error": {
            "type": "invalid_request_error",
            "code": "input_audio_buffer_commit_empty",
            "message": "buffer too small",
            "param": None,
            "event_id": None,
        },
    },
    {
        "type": "response.done",
        "event_id": "event_3",
        "response": {
            "object": "realtime.response",
            "id": "resp_1",
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "client_cancelled"},
            "output": [
                {
                    "id": "item_1",
                    "type": "message",
                    "object": "realtime.item",
                    "status": "incomplete",
                    "role": "assistant",
                    "content": [{"type": "output_audio", "transcript": "Hi"}],
                }
            ],
        },
    },
]


@pytest.mark.parametrize("message", GOOD_CLIENT, ids=lambda m: m["type"])
def test_good_client_events_pass(message: dict[str, Any]) -> None:
    validate_client_event(message)


@pytest.mark.parametrize("message", GOOD_SERVER, ids=lambda m: m["type"])
def test_good_server_events_pass(message: dict[str, Any]) -> None:
    validate_server_event(message)


def _with(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``message`` with ``value`` set at the dotted ``path`` (list index: digits)."""
    changed = copy.deepcopy(message)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return changed


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (GOOD_CLIENT[0], "extra"),
        (GOOD_CLIENT[0], "session.temperature"),
        (GOOD_CLIENT[0], "session.audio.input.format.bits"),
        (GOOD_CLIENT[6], "item.content.0.annotations"),
    ],
)
def test_client_event_with_an_extra_key_fails(message: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaError, match="keys the GA types lack"):
        validate_client_event(_with(message, path, 1))


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (GOOD_SERVER[1], "extra"),
        (GOOD_SERVER[2], "error.details"),
        (GOOD_SERVER[3], "response.output.0.content.0.audio_ms"),
        (GOOD_SERVER[0], "session.audio.output.sample_rate"),
        (GOOD_SERVER[0], "session.created_at"),
        # The allowance for session.id/object/expires_at is for session events only.
        (GOOD_SERVER[3], "response.expires_at"),
    ],
)
def test_server_event_with_an_extra_key_fails(message: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaError, match="keys the GA types lack"):
        validate_server_event(_with(message, path, 1))


def test_session_extras_of_the_real_service_are_allowed() -> None:
    created = GOOD_SERVER[0]
    assert {"id", "object", "expires_at"} <= set(created["session"])
    validate_server_event(created)
    validate_server_event({**created, "type": "session.updated"})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "session.update", "session": {"modalities": ["audio"], "voice": "alloy"}},
        {"type": "session.update", "session": {"type": "realtime", "modalities": ["audio"]}},
        {"type": "session.update", "session": {"type": "realtime", "input_audio_format": "pcm16"}},
        {"type": "transcription_session.update", "session": {}},
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "assistant", "content": [{"type": "text"}]},
        },
    ],
    ids=["no-type", "modalities", "input_audio_format", "transcription_session", "text-part"],
)
def test_beta_client_shapes_fail(message: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        validate_client_event(message)


@pytest.mark.parametrize(
    "kind", ["response.audio.delta", "response.audio_transcript.delta", "response.text.delta"]
)
def test_beta_server_event_names_fail(kind: str) -> None:
    with pytest.raises(SchemaError, match="does not match"):
        validate_server_event({**GOOD_SERVER[1], "type": kind})


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (GOOD_SERVER[1], "delta"),
        (GOOD_SERVER[1], "event_id"),
        (GOOD_SERVER[2], "error"),
    ],
)
def test_server_event_missing_a_required_field_fails(message: dict[str, Any], field: str) -> None:
    broken = {key: value for key, value in message.items() if key != field}
    with pytest.raises(SchemaError, match="does not match"):
        validate_server_event(broken)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "input_audio_buffer.append"},
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0},
        {"type": "session.update"},
        {"type": "input_audio_buffer.append", "audio": 5},
    ],
)
def test_client_event_missing_or_mistyped_field_fails(message: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match="does not match"):
        validate_client_event(message)


def test_observer_collects_violations_instead_of_raising() -> None:
    observe, violations = schema_observer()
    observe("client", GOOD_CLIENT[0])
    observe("server", GOOD_SERVER[0])
    assert violations == []
    observe("client", {"type": "response.create", "modalities": ["text"]})
    observe("server", {"type": "response.audio.delta"})
    assert len(violations) == 2
    assert violations[0].startswith("client")
    assert violations[1].startswith("server")
