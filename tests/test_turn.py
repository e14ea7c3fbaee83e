"""The turn state machine: R1 (ready before audio), R2 (atomic turns), R3, R4."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from schema import validate_client_event

from appliance.effects import (
    DropSession,
    Effect,
    Mark,
    OpenSpare,
    PlayAudio,
    PlayCue,
    Promote,
    ReplyTag,
    SessionLost,
    SessionReady,
    StopPlayback,
    TurnDone,
)
from appliance.realtime.session import Session
from appliance.turn import TurnMachine, TurnState

CHUNK = b"\x01\x00" * 480  # 20 ms
PTT = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
}


def server(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "event_s", **fields})


class Harness:
    """A turn machine, a clock, and a record of everything it sent and asked for."""

    def __init__(self, **kwargs: Any) -> None:
        self.machine = TurnMachine(**kwargs)
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []
        self.effects: list[Effect] = []
        self.links = 0
        self.current: Session | None = None
        self.wall = 1_000_000.0

    def drain(self) -> None:
        for name, event in self.machine.outgoing():
            message = json.loads(event.to_json())
            validate_client_event(message)
            message["_session"] = name
            self.sent.append(message)
        self.effects += self.machine.effects()

    def at(self, now: float) -> Harness:
        self.now = now
        return self

    def open(self, *, spare: bool = False) -> Session:
        self.links += 1
        session = Session(voice="marin", instructions="x", name=f"c{self.links}")
        self.machine.connected(session, self.now, wall_s=self.wall + self.now, spare=spare)
        self.drain()
        return session

    def connect(self, *, ready: bool = True, expires_in: float = 3600.0) -> Session:
        session = self.open()
        self.current = session
        expires_at = int(self.wall + self.now + expires_in)
        self.receive(
            "session.created", session={"id": f"sess_{self.links}", "expires_at": expires_at}
        )
        if ready:
            self.receive("session.updated", session=PTT)
        return session

    def receive(self, type_: str, *, to: Session | None = None, **fields: Any) -> None:
        session = to or self.current
        assert session is not None
        self.machine.receive(session, server(type_, **fields), self.now)
        self.drain()

    def press(self) -> None:
        self.machine.press(self.now)
        self.drain()

    def release(self) -> None:
        self.machine.release(self.now)
        self.drain()

    def speak(self, chunks: int) -> None:
        for _ in range(chunks):
            self.now += 0.02
            self.machine.audio(CHUNK, self.now)
        self.drain()

    def played(self, tag: Any, samples: int) -> None:
        self.machine.played(tag, samples, self.now)
        self.drain()

    def tick(self, now: float) -> None:
        self.now = now
        self.machine.tick(now)
        self.drain()

    def lose(self, reason: str = "connection lost") -> None:
        assert self.current is not None
        self.machine.disconnected(self.current, reason, self.now)
        self.drain()

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]

    def appended(self) -> bytes:
        return b"".join(
            base64.b64decode(m["audio"])
            for m in self.sent
            if m["type"] == "input_audio_buffer.append"
        )

    def id_of(self, type_: str) -> str:
        return str([m for m in self.sent if m["type"] == type_][-1]["event_id"])

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]

    def done(self) -> list[TurnDone]:
        return self.of(TurnDone)

    def reply(self, response: str = "r1", item: str = "i1", samples: int = 4800) -> None:
        self.receive("response.created", response={"id": response, "status": "in_progress"})
        self.delta(response, item, samples)

    def delta(self, response: str = "r1", item: str = "i1", samples: int = 4800) -> None:
        audio = base64.b64encode(b"\x02\x00" * samples).decode()
        self.receive(
            "response.output_audio.delta",
            response_id=response,
            item_id=item,
            output_index=0,
            content_index=0,
            delta=audio,
        )

    def response_done(self, response: str = "r1", status: str = "completed") -> None:
        self.receive("response.done", response={"id": response, "status": status})


def test_whole_turn_happy_path_with_metrics() -> None:
    h = Harness()
    h.connect()
    assert h.of(SessionReady) == [SessionReady("sess_1")]
    h.at(1.0).press()
    assert h.machine.state is TurnState.LISTENING
    h.speak(50)  # one second
    h.at(2.0).release()
    assert h.machine.state is TurnState.THINKING
    assert h.types()[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert h.types()[1:-2] == ["input_audio_buffer.append"] * 50
    h.at(2.3).reply(samples=4800)
    assert h.machine.state is TurnState.SPEAKING
    (play,) = h.of(PlayAudio)
    assert play.tag == ReplyTag(1) and len(play.pcm) == 9600
    h.at(2.35).played(ReplyTag(1), 2400)
    h.response_done()
    assert h.machine.state is TurnState.SPEAKING  # still playing: never cut at response.done
    h.at(2.5).played(ReplyTag(1), 2400)
    assert h.machine.state is TurnState.IDLE
    (done,) = h.done()
    m = done.metrics
    assert (m.turn, m.outcome, m.audio_in_ms, m.audio_out_ms) == (1, "replied", 1000, 200)
    assert m.release_to_commit_ms == 0
    assert m.commit_to_first_audio_ms == 300
    assert m.first_audio_to_play_ms == 50
    names = [mark.name for mark in h.of(Mark)]
    assert names == ["pressed", "released", "committed", "first_audio", "played_out"]
    cues = [c.cue for c in h.of(PlayCue)]
    assert cues == ["listening", "done_listening"]


def test_audio_after_done_events_is_still_played() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply(samples=2400)
    h.receive(
        "response.output_audio.done",
        response_id="r1",
        item_id="i1",
        output_index=0,
        content_index=0,
    )
    h.delta(samples=2400)  # late audio
    h.response_done()
    assert len(h.of(PlayAudio)) == 2
    h.played(ReplyTag(1), 2400)
    assert h.machine.state is TurnState.SPEAKING
    h.played(ReplyTag(1), 2400)
    assert h.done()[0].metrics.audio_out_ms == 200


def test_press_before_session_ready_holds_audio_and_sends_one_commit_after_update() -> None:
    h = Harness()
    h.press()
    h.speak(25)
    h.connect(ready=False)
    h.speak(25)
    assert "input_audio_buffer.append" not in h.types()
    h.release()
    assert h.types() == ["session.update"]
    assert h.machine.state is TurnState.THINKING
    h.receive("session.updated", session=PTT)
    assert h.types()[0] == "session.update"
    assert h.types()[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert h.types().count("input_audio_buffer.commit") == 1
    assert h.appended() == CHUNK * 50  # the whole turn, in order


def test_session_lost_while_listening_resends_the_whole_turn() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(20)
    h.lose()
    assert h.of(SessionLost)[0].reason == "connection lost"
    h.speak(10)
    h.release()
    first_session = len(h.sent)
    h.connect()
    second = h.sent[first_session:]
    audio = b"".join(
        base64.b64decode(m["audio"]) for m in second if m["type"] == "input_audio_buffer.append"
    )
    assert audio == CHUNK * 30
    assert [m["type"] for m in second][-2:] == ["input_audio_buffer.commit", "response.create"]
    assert PlayCue("reconnected") in h.effects


def test_session_lost_after_commit_resends_once_then_fails() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.lose()
    h.connect()
    assert h.types().count("input_audio_buffer.commit") == 2
    assert h.machine.state is TurnState.THINKING
    h.lose()
    assert h.machine.state is TurnState.IDLE
    (done,) = h.done()
    assert done.metrics.outcome == "failed"
    assert PlayCue("error") in h.effects


def test_session_lost_during_a_reply_being_heard_stops_and_fails() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply()
    h.played(ReplyTag(1), 480)
    h.lose()
    assert h.of(StopPlayback)
    assert h.done()[0].metrics.outcome == "failed"
    assert PlayCue("error") in h.effects


def test_session_lost_before_any_reply_was_heard_asks_again() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply()  # audio arrived, but the speaker has not played a sample of it
    h.lose()
    assert h.of(StopPlayback)
    assert not h.done()
    assert h.machine.state is TurnState.THINKING
    before = len(h.sent)
    h.connect()
    again = h.sent[before:]
    assert [m["type"] for m in again][-2:] == ["input_audio_buffer.commit", "response.create"]
    resent = b"".join(
        base64.b64decode(m["audio"]) for m in again if m["type"] == "input_audio_buffer.append"
    )
    assert resent == CHUNK * 10
    h.reply(response="r2", samples=480)
    assert [e.tag for e in h.of(PlayAudio)][-1] == ReplyTag(1, attempt=1)
    h.response_done("r2")
    h.played(ReplyTag(1), 480)  # late news of the first reply, stopped unheard: not this one
    assert not h.done()
    h.played(ReplyTag(1, attempt=1), 480)
    assert h.done()[0].metrics.outcome == "replied"


def test_a_played_report_late_for_a_reply_already_stopped_loses_nothing() -> None:
    """The speaker played a little of the reply, but the report came after the loss."""
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply()
    h.lose()  # nothing reported played yet: asked again, as if it never came
    h.played(ReplyTag(1), 240)  # played just before the stop, reported just after it
    before = len(h.sent)
    h.connect()
    resent = b"".join(
        base64.b64decode(m["audio"])
        for m in h.sent[before:]
        if m["type"] == "input_audio_buffer.append"
    )
    assert resent == CHUNK * 10
    assert h.types()[-2:] == ["input_audio_buffer.commit", "response.create"]


def test_session_lost_after_all_reply_audio_arrived_keeps_playing() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply(samples=2400)
    h.response_done()
    h.lose()
    assert not h.of(StopPlayback)
    h.played(ReplyTag(1), 2400)
    assert h.done()[0].metrics.outcome == "replied"


def test_barge_in_stops_cancels_and_truncates_at_played_ms() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply(samples=24000)  # one second of reply queued
    h.played(ReplyTag(1), 480 * 17)  # 340 ms played
    h.press()
    assert h.of(StopPlayback)
    assert h.types()[-2:] == ["response.cancel", "conversation.item.truncate"]
    truncate = h.sent[-1]
    assert truncate["item_id"] == "i1" and truncate["audio_end_ms"] == 340
    assert h.machine.state is TurnState.LISTENING
    assert h.done()[0].metrics.outcome == "interrupted"
    assert h.done()[0].metrics.audio_out_ms == 340
    # Late audio of the cancelled response is not played.
    before = len(h.of(PlayAudio))
    h.delta()
    assert len(h.of(PlayAudio)) == before
    h.played(ReplyTag(1), 480)  # late report for the old reply: ignored
    # The next turn's response waits for the cancelled one's response.done.
    h.speak(10)
    h.release()
    assert h.types()[-1] == "input_audio_buffer.commit"
    h.response_done(status="cancelled")
    assert h.types()[-1] == "response.create"
    assert h.types().count("response.create") == 2


def test_barge_in_after_response_done_truncates_without_cancel() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply(samples=24000)
    h.response_done()
    h.played(ReplyTag(1), 480)
    h.press()
    assert "response.cancel" not in h.types()
    assert h.sent[-1]["type"] == "conversation.item.truncate"
    assert h.sent[-1]["audio_end_ms"] == 20


def test_barge_in_before_anything_played_deletes_the_item() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.reply()
    h.press()
    assert h.types()[-2:] == ["response.cancel", "conversation.item.delete"]


def test_press_while_thinking_cancels_the_pending_response() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.press()
    assert h.types()[-1] == "response.cancel"
    assert h.done()[0].metrics.outcome == "interrupted"
    assert h.machine.state is TurnState.LISTENING


@pytest.mark.parametrize("chunks", [0, 1, 7])
def test_short_tap_clears_and_never_commits(chunks: int) -> None:
    h = Harness(min_turn_ms=150)
    h.connect()
    h.press()
    h.speak(chunks)
    h.release()
    assert "input_audio_buffer.commit" not in h.types()
    if chunks:
        assert h.types()[-1] == "input_audio_buffer.clear"
    (done,) = h.done()
    assert done.metrics.outcome == "too_short"
    assert done.metrics.audio_out_ms is None
    assert PlayCue("too_short") in h.effects
    assert h.machine.state is TurnState.IDLE


def test_min_turn_never_goes_below_the_servers_100_ms() -> None:
    h = Harness(min_turn_ms=20)
    h.connect()
    h.press()
    h.speak(4)  # 80 ms
    h.release()
    assert "input_audio_buffer.commit" not in h.types()


def test_stuck_button_ends_the_turn_at_max_turn_s() -> None:
    h = Harness(max_turn_s=2.0)
    h.connect()
    h.at(10.0).press()
    assert h.machine.deadline() == 12.0
    h.speak(10)
    h.tick(12.0)
    assert h.machine.state is TurnState.THINKING
    assert h.types()[-1] == "response.create"


def test_turn_fails_when_no_session_is_ready_within_hold_s() -> None:
    h = Harness(hold_s=5.0)
    h.at(1.0).press()
    h.speak(10)
    h.release()
    assert h.machine.deadline() == 6.0
    h.tick(6.0)
    assert h.done()[0].metrics.outcome == "failed"
    assert PlayCue("error") in h.effects


def test_response_timeout_drops_the_session_and_resends() -> None:
    h = Harness(response_timeout_s=15.0)
    h.connect()
    h.at(1.0).press()
    h.speak(10)
    h.release()
    assert h.machine.deadline() == pytest.approx(h.now + 15.0)
    h.tick(h.now + 15.0)
    assert h.of(DropSession)
    assert h.machine.session is None
    h.connect()
    assert h.types().count("input_audio_buffer.commit") == 2


def test_commit_refused_by_server_fails_the_turn() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    error = {
        "type": "invalid_request_error",
        "code": "input_audio_buffer_commit_empty",
        "message": "buffer too small",
        "event_id": h.id_of("input_audio_buffer.commit"),
    }
    h.receive("error", error=error)
    assert h.done()[0].metrics.outcome == "failed"


def test_reply_without_audio_fails_visibly() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.release()
    h.receive("response.created", response={"id": "r1"})
    h.response_done(status="failed")
    assert h.done()[0].metrics.outcome == "failed"


def test_rejected_update_drops_the_session_and_never_appends() -> None:
    h = Harness()
    h.connect(ready=False)
    h.press()
    h.speak(10)
    error = {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "no",
        "event_id": h.id_of("session.update"),
    }
    h.receive("error", error=error)
    assert h.of(DropSession)
    assert "input_audio_buffer.append" not in h.types()
    assert h.machine.state is TurnState.LISTENING  # the turn waits for the next session


def test_malformed_event_costs_the_session_not_the_turn() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    assert h.current is not None
    h.machine.receive(h.current, "{not json", h.now)
    h.drain()
    assert h.machine.malformed_events == 1
    assert h.of(DropSession)
    h.release()
    h.connect()
    assert h.types()[-1] == "response.create"


def test_duplicate_press_and_stray_release_are_ignored() -> None:
    h = Harness()
    h.connect()
    h.release()
    h.press()
    h.press()
    assert len(h.of(Mark)) == 1
    assert h.machine.state is TurnState.LISTENING


def test_a_new_primary_connection_replaces_the_current_session() -> None:
    h = Harness()
    h.connect()
    h.press()
    h.speak(10)
    h.connect()
    assert h.of(SessionLost)[0].reason == "replaced by a new connection"
    h.release()
    assert h.types()[-1] == "response.create"


def test_reconnected_cue_only_after_an_outage_the_person_ran_into() -> None:
    h = Harness()
    h.connect()
    h.lose()  # idle: nobody noticed
    h.connect()
    assert PlayCue("reconnected") not in h.effects
    h.lose()
    h.press()  # pressed while offline
    h.connect()
    assert h.effects.count(PlayCue("reconnected")) == 1


def test_first_session_after_a_press_at_start_up_is_no_reconnection() -> None:
    h = Harness()
    h.press()
    h.connect()
    assert PlayCue("reconnected") not in h.effects


# Rotation (R8) and context carry-over (R9)


def answered_turn(h: Harness, *, transcript: str, user_item: str = "u1") -> None:
    h.press()
    h.speak(10)
    h.release()
    h.receive("input_audio_buffer.committed", item_id=user_item, previous_item_id=None)
    h.reply(samples=480)
    h.receive(
        "response.output_audio_transcript.done",
        response_id="r1",
        item_id="i1",
        output_index=0,
        content_index=0,
        transcript=transcript,
    )
    h.response_done()
    h.played(ReplyTag(h.done().__len__() + 1), 480)


def ready_spare(h: Harness, spare: Session) -> None:
    h.receive(
        "session.created", to=spare, session={"id": f"sess_{spare.name}", "expires_at": 10**9}
    )
    h.receive("session.updated", to=spare, session=PTT)


def test_rotation_opens_the_next_session_first_and_switches_when_it_is_ready() -> None:
    h = Harness(rotate_before_expiry_s=15.0)
    old = h.connect(expires_in=20)
    deadline = h.machine.deadline()
    assert deadline is not None and 4.0 <= deadline <= 5.0
    h.tick(deadline)
    assert h.of(OpenSpare) == [OpenSpare()]
    assert h.machine.deadline() is None  # nothing to do until the spare is ready
    spare = h.open(spare=True)
    assert h.machine.spare is spare and h.machine.session is old
    ready_spare(h, spare)
    assert h.machine.session is old  # not yet: the switch happens at the next tick
    h.tick(h.machine.deadline() or h.now)
    (promote,) = h.of(Promote)
    assert promote.name == spare.name and promote.old_session_id == "sess_1"
    assert h.machine.session is spare and h.machine.spare is None
    assert h.of(SessionReady)[-1] == SessionReady(f"sess_{spare.name}")
    assert not h.of(SessionLost)
    h.current = spare
    answered = len(h.done())
    answered_turn(h, transcript="fine")
    assert h.done()[answered].metrics.outcome == "replied"
    assert {m["_session"] for m in h.sent if m["type"] == "input_audio_buffer.commit"} == {
        spare.name
    }


def test_rotation_never_interrupts_a_turn() -> None:
    h = Harness(rotate_before_expiry_s=15.0)
    h.connect(expires_in=20)
    h.at(4.0).press()
    h.speak(100)  # two seconds: the rotation falls due meanwhile
    h.tick(h.now)
    assert not h.of(OpenSpare)
    h.release()
    h.reply(samples=480)
    h.response_done()
    h.played(ReplyTag(1), 480)
    assert h.machine.idle
    h.tick(h.machine.deadline() or h.now)
    assert h.of(OpenSpare)
    spare = h.open(spare=True)
    h.press()  # a new turn before the spare is ready: it runs on the old session
    ready_spare(h, spare)
    h.tick(h.now)
    assert not h.of(Promote)
    h.speak(10)
    h.release()
    assert h.sent[-1]["_session"] == "c1"


def test_losing_the_current_session_abandons_the_spare_and_keeps_the_turn() -> None:
    h = Harness(rotate_before_expiry_s=15.0)
    h.connect(expires_in=20)
    h.tick(h.machine.deadline() or 0.0)
    spare = h.open(spare=True)
    h.press()
    h.speak(10)
    h.lose()
    assert DropSession(spare.name, "the current session was lost") in h.effects
    assert h.machine.spare is None
    h.release()
    h.connect()
    assert h.types()[-1] == "response.create"
    assert h.sent[-1]["_session"] == h.current.name if h.current else False


def test_an_unrequested_spare_is_dropped() -> None:
    h = Harness()
    h.connect()
    spare = h.open(spare=True)
    assert h.of(DropSession) == [DropSession(spare.name, "no longer needed")]
    assert h.machine.spare is None


def test_a_failed_spare_is_retried_later() -> None:
    h = Harness(rotate_before_expiry_s=15.0)
    h.connect(expires_in=20)
    h.tick(h.machine.deadline() or 0.0)
    spare = h.open(spare=True)
    h.machine.disconnected(spare, "refused", h.now)
    h.drain()
    retry = h.machine.deadline()
    assert retry is not None and retry > h.now
    h.tick(retry)
    assert len(h.of(OpenSpare)) == 2


def test_a_new_session_is_reseeded_with_the_conversation() -> None:
    h = Harness(context_turns=2)
    h.connect()
    answered_turn(h, transcript="It is sunny.")
    h.receive(
        "conversation.item.input_audio_transcription.completed",
        item_id="u1",
        content_index=0,
        transcript="What is the weather?",
    )
    h.lose()
    before = len(h.sent)
    h.connect()
    seeded = [m for m in h.sent[before:] if m["type"] == "conversation.item.create"]
    assert [(m["item"]["role"], m["item"]["content"][0]) for m in seeded] == [
        ("user", {"type": "input_text", "text": "What is the weather?"}),
        ("assistant", {"type": "output_text", "text": "It is sunny."}),
    ]
    types = [m["type"] for m in h.sent[before:]]
    assert types.index("conversation.item.create") == types.index("session.update") + 1


def test_context_keeps_only_the_last_exchanges_and_never_an_interrupted_reply() -> None:
    h = Harness(context_turns=1)
    h.connect()
    answered_turn(h, transcript="first")
    answered_turn(h, transcript="second", user_item="u2")
    h.press()
    h.speak(10)
    h.release()
    h.reply()
    h.press()  # barge-in: the reply was cut
    h.lose()
    before = len(h.sent)
    h.connect()
    seeded = [
        m["item"]["content"][0]["text"]
        for m in h.sent[before:]
        if m["type"] == "conversation.item.create"
    ]
    assert seeded == ["second"]


def test_half_duplex_silences_the_microphone_while_the_speaker_plays_and_a_tail_after() -> None:
    h = Harness(echo_tail_ms=110)
    h.connect()
    h.at(1.0).press()
    h.played(("cue", "listening"), 480)  # the listening cue plays at 1.0 s
    h.speak(5)  # 1.02 .. 1.10 s: within the tail
    h.speak(5)  # 1.12 .. 1.20 s: the person
    assert h.appended() == bytes(len(CHUNK) * 5) + CHUNK * 5


def test_without_half_duplex_the_microphone_is_never_silenced() -> None:
    h = Harness(echo_tail_ms=None)
    h.connect()
    h.press()
    h.played(("cue", "listening"), 480)
    h.speak(5)
    assert h.appended() == CHUNK * 5


def test_nothing_is_kept_about_sessions_that_are_gone() -> None:
    h = Harness()
    for _ in range(50):
        h.connect()
        h.lose()
    sessions = h.machine._sessions
    assert sessions.announced == set() and sessions.wall_offsets_s == {}


def test_half_duplex_judges_audio_by_when_it_was_heard_not_when_it_came() -> None:
    """A device microphone delivers in batches: a late batch is still gated by its place."""
    h = Harness(echo_tail_ms=110)
    h.connect()
    h.at(1.0).press()
    h.played(("cue", "listening"), 480)  # the listening cue plays at 1.0 s
    h.now = 1.5  # ten periods heard from 1.0 s on come only now, all at once
    for _ in range(10):
        h.machine.audio(CHUNK, h.now)
    h.drain()
    assert h.appended() == bytes(len(CHUNK) * 5) + CHUNK * 5


def test_half_duplex_keeps_what_was_heard_before_a_cue_that_came_mid_batch() -> None:
    """A cue starts mid-turn; the batch it came in also holds the person, before it."""
    h = Harness(echo_tail_ms=110)
    h.connect()
    h.at(0.8).press()
    h.now = 1.0
    h.played(("cue", "reconnected"), 1200)  # 50 ms played by now: it started at 0.95 s
    for _ in range(10):  # heard from 0.80 to 1.00 s, delivered together after the report
        h.machine.audio(CHUNK, h.now)
    h.drain()
    assert h.appended() == CHUNK * 7 + bytes(len(CHUNK) * 3)
