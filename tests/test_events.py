"""The Realtime codec: client event builders and server event parsing."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schema import validate_client_event

from appliance.errors import RemoteProtocolError
from appliance.realtime import events


def wire(event: events.ClientEvent) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(event.to_json())
    return decoded


BUILT = [
    events.session_update("e1", voice="marin", instructions="Be brief."),
    events.input_audio_append("e2", b"\x01\x00" * 480),
    events.input_audio_commit("e3"),
    events.input_audio_clear("e4"),
    events.response_create("e5"),
    events.response_cancel("e6"),
    events.response_cancel("e7", "resp_1"),
    events.item_truncate("e8", item_id="item_1", audio_end_ms=640),
    events.item_delete("e9", item_id="item_1"),
]


@pytest.mark.parametrize("event", BUILT, ids=lambda e: e.type)
def test_every_client_event_is_ga_and_carries_its_id(event: events.ClientEvent) -> None:
    message = wire(event)
    validate_client_event(message)
    assert message["event_id"] == event.event_id
    assert message["type"] == event.type


def test_session_update_switches_turn_detection_off_explicitly() -> None:
    session = wire(BUILT[0])["session"]
    assert session["type"] == "realtime"
    assert session["output_modalities"] == ["audio"]
    assert "turn_detection" in session["audio"]["input"]
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "marin",
    }


def test_append_round_trips_audio_and_describe_hides_it() -> None:
    pcm = bytes(range(256)) * 4
    event = events.input_audio_append("e1", pcm)
    assert base64.b64decode(wire(event)["audio"]) == pcm
    assert "audio" not in event.describe() or event.describe() == ("input_audio_buffer.append (e1)")
    assert base64.b64encode(pcm).decode() not in event.describe()


def server(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "event_1", **fields})


def test_parse_session_created() -> None:
    event = events.parse(
        server("session.created", session={"id": "sess_1", "expires_at": 1700003600})
    )
    assert event == events.SessionCreated(session_id="sess_1", expires_at=1700003600)


def test_parse_audio_delta_decodes_pcm() -> None:
    pcm = b"\x10\x00" * 100
    event = events.parse(
        server(
            "response.output_audio.delta",
            response_id="r1",
            item_id="i1",
            output_index=0,
            content_index=0,
            delta=base64.b64encode(pcm).decode(),
        )
    )
    assert event == events.AudioDelta(response_id="r1", item_id="i1", audio=pcm)


def test_parse_accepts_beta_audio_names_on_input() -> None:
    event = events.parse(
        server("response.audio.delta", response_id="r1", item_id="i1", delta="AAA=")
    )
    assert isinstance(event, events.AudioDelta)


def test_parse_error_keeps_the_client_event_id() -> None:
    event = events.parse(
        server(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "input_audio_buffer_commit_empty",
                "message": "buffer too small",
                "param": None,
                "event_id": "c1_7",
            },
        )
    )
    assert event == events.ServerError(
        kind="invalid_request_error",
        code="input_audio_buffer_commit_empty",
        message="buffer too small",
        param=None,
        client_event_id="c1_7",
    )


def test_parse_response_done_status_and_reason() -> None:
    event = events.parse(
        server(
            "response.done",
            response={
                "id": "r1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "client_cancelled"},
            },
        )
    )
    assert event == events.ResponseDone(
        response_id="r1", status="cancelled", reason="client_cancelled"
    )


def test_unknown_and_unused_types_are_other_events() -> None:
    assert events.parse(server("rate_limits.updated", rate_limits=[])) == events.OtherEvent(
        type="rate_limits.updated", known=True
    )
    assert events.parse(server("future.thing")) == events.OtherEvent(
        type="future.thing", known=False
    )


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        "not json",
        "[]",
        "42",
        "{}",
        '{"type": 3}',
        server("session.created"),
        server("session.created", session={"id": 5}),
        server("response.output_audio.delta", response_id="r", item_id="i", delta="!!"),
        server("response.output_audio.delta", response_id="r", item_id="i", delta="AAAA"[:3]),
        server(
            "response.output_audio.delta", response_id="r", item_id="i", delta="AAA="[:0] + "AA=="
        ),
        server("conversation.item.truncated", item_id="i", audio_end_ms=True),
        server("error", error="boom"),
        "[" * 100_000,
        '{"type": "error", "error": {"type": "x", "message": "m", "code": 1e999999}}',
    ],
)
def test_malformed_input_raises_remote_protocol_error(data: str | bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        events.parse(data)


@settings(max_examples=400)
@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_input_yields_an_event_or_remote_protocol_error(data: str | bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        events.parse(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KNOWN_TYPES = st.sampled_from(
    [
        "session.created",
        "session.updated",
        "input_audio_buffer.committed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.done",
        "conversation.item.truncated",
        "error",
        "rate_limits.updated",
    ]
)
FIELD_NAMES = st.sampled_from(
    [
        "session",
        "response",
        "error",
        "item_id",
        "response_id",
        "delta",
        "transcript",
        "audio_end_ms",
        "id",
        "status",
        "type",
        "message",
        "event_id",
        "expires_at",
    ]
)


@settings(max_examples=600)
@given(KNOWN_TYPES, st.dictionaries(FIELD_NAMES, JSON | st.dictionaries(FIELD_NAMES, JSON)))
def test_structured_garbage_yields_an_event_or_remote_protocol_error(
    type_: str, fields: dict[str, Any]
) -> None:
    fields["type"] = type_
    with contextlib.suppress(RemoteProtocolError):
        events.parse(json.dumps(fields))
