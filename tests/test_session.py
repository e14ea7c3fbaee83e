"""The session state machine: handshake, readiness (R1), single-flight responses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from schema import validate_client_event

from appliance.errors import LocalProtocolError, RemoteProtocolError, SessionFailed
from appliance.realtime import events
from appliance.realtime.session import Session, SessionState

PTT_SESSION = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
}


def msg(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "event_x", **fields})


def created() -> str:
    return msg("session.created", session={"id": "sess_1", "expires_at": 1_800_000_000})


def updated(session: dict[str, Any] = PTT_SESSION) -> str:
    return msg("session.updated", session=session)


def sent(session: Session) -> list[dict[str, Any]]:
    out = [json.loads(event.to_json()) for event in session.outgoing()]
    for message in out:
        validate_client_event(message)
    return out


def ready_session() -> Session:
    session = Session(voice="marin", instructions="Be brief.")
    session.receive(created())
    session.receive(updated())
    session.outgoing()
    return session


def test_handshake_sends_update_after_created_and_is_ready_after_checked_update() -> None:
    session = Session(voice="cedar", instructions="Hi.")
    assert session.state is SessionState.AWAITING_CREATED
    assert sent(session) == []
    assert session.receive(created()) == []
    assert session.state is SessionState.CONFIGURING
    assert session.session_id == "sess_1"
    assert session.expires_at == 1_800_000_000
    (update,) = sent(session)
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["output"]["voice"] == "cedar"
    assert session.receive(updated()) == []
    assert session.ready


@pytest.mark.parametrize("action", ["append", "commit", "clear", "create_response"])
def test_nothing_can_be_sent_before_ready(action: str) -> None:
    session = Session(voice="marin", instructions="x")
    session.receive(created())
    with pytest.raises(LocalProtocolError):
        if action == "append":
            session.append(b"\x00\x00" * 480)
        else:
            getattr(session, action)()
    assert [e["type"] for e in sent(session)] == ["session.update"]


def test_rejected_update_fails_the_session() -> None:
    session = Session(voice="marin", instructions="x")
    session.receive(created())
    (update,) = sent(session)
    error = {
        "type": "invalid_request_error",
        "code": "unknown_parameter",
        "message": "Unknown parameter: 'session.foo'.",
        "param": "session.foo",
        "event_id": update["event_id"],
    }
    with pytest.raises(SessionFailed, match="unknown_parameter"):
        session.receive(msg("error", error=error))
    assert session.state is SessionState.FAILED
    assert not session.ready
    with pytest.raises(LocalProtocolError):
        session.append(b"\x00\x00")
    assert session.receive(updated()) == []  # a failed session stays failed


@pytest.mark.parametrize(
    "problem",
    [
        {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}},
        {"audio": {"input": {"turn_detection": None, "format": {"type": "audio/pcmu"}}}},
        {"audio": {}},
    ],
)
def test_update_that_does_not_confirm_push_to_talk_fails(problem: dict[str, Any]) -> None:
    session = Session(voice="marin", instructions="x")
    session.receive(created())
    with pytest.raises(SessionFailed):
        session.receive(updated({"type": "realtime", **problem}))


def test_first_event_must_be_session_created() -> None:
    session = Session(voice="marin", instructions="x")
    with pytest.raises(SessionFailed, match=r"session\.created"):
        session.receive(updated())


def test_malformed_event_raises_remote_protocol_error() -> None:
    session = ready_session()
    with pytest.raises(RemoteProtocolError):
        session.receive("{")


def test_single_flight_response() -> None:
    session = ready_session()
    session.append(b"\x00\x00" * 2400)
    session.commit()
    session.create_response()
    with pytest.raises(LocalProtocolError, match="active"):
        session.create_response()
    done = msg("response.done", response={"id": "r1", "status": "completed"})
    (event,) = session.receive(done)
    assert isinstance(event, events.ResponseDone)
    session.create_response()  # allowed again
    assert [e["type"] for e in sent(session)] == [
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
        "response.create",
    ]


def test_refused_response_create_clears_the_active_flag() -> None:
    session = ready_session()
    session.create_response()
    (create,) = sent(session)
    error = {"type": "invalid_request_error", "message": "no", "event_id": create["event_id"]}
    session.receive(msg("error", error=error))
    assert not session.response_active


def test_commit_needs_100_ms() -> None:
    session = ready_session()
    session.append(b"\x00\x00" * 2399)
    with pytest.raises(LocalProtocolError, match="at least"):
        session.commit()
    session.append(b"\x00\x00")
    session.commit()
    assert session.uncommitted_bytes == 0


def test_truncate_at_zero_is_refused() -> None:
    session = ready_session()
    with pytest.raises(LocalProtocolError):
        session.truncate("i1", audio_end_ms=0)
    session.truncate("i1", audio_end_ms=20)
    session.delete_item("i1")
    assert [e["type"] for e in sent(session)] == [
        "conversation.item.truncate",
        "conversation.item.delete",
    ]


def test_cancel_needs_an_active_response() -> None:
    session = ready_session()
    with pytest.raises(LocalProtocolError):
        session.cancel_response()


def test_error_is_logged_with_the_client_event_it_refers_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = ready_session()
    session.clear()
    (clear,) = sent(session)
    error = {"type": "invalid_request_error", "message": "bad", "event_id": clear["event_id"]}
    (event,) = session.receive(msg("error", error=error))
    assert isinstance(event, events.ServerError)
    assert session.sent_type(clear["event_id"]) == "input_audio_buffer.clear"
    assert f"input_audio_buffer.clear ({clear['event_id']})" in caplog.text


def test_unknown_events_are_ignored_and_event_ids_are_unique() -> None:
    session = ready_session()
    assert session.receive(msg("some.future.event")) == []
    for _ in range(3):
        session.clear()
    ids = [e["event_id"] for e in sent(session)]
    assert len(set(ids)) == 3
