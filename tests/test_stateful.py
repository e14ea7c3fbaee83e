"""No sequence of server events, button events and ticks leaves the machines stuck.

A hypothesis state machine drives the turn machine (and through it the
session) with everything the world can do to it, in any order. After every
step: no exception, and every state other than idle has a way out (a
deadline, or reply audio still to play). At the end, with nothing but time
passing and the speaker playing what it was given, the machine returns to
idle within a few steps.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from schema import validate_client_event

from appliance.effects import PlayAudio
from appliance.realtime.session import Session
from appliance.turn import TurnMachine, TurnState

PTT = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
}
RESPONSES = st.sampled_from(["r1", "r2", "r3"])


def message(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, "event_id": "e", **fields})


class Machines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = TurnMachine(
            min_turn_ms=100, max_turn_s=5, hold_s=3, response_timeout_s=2, context_turns=2
        )
        self.now = 0.0
        self.links = 0
        self.session: Session | None = None
        self.spare: Session | None = None
        self.queued: dict[Any, int] = {}
        self.played: dict[Any, int] = {}

    # The world

    def drain(self) -> None:
        for _, event in self.machine.outgoing():
            validate_client_event(json.loads(event.to_json()))
        for effect in self.machine.effects():
            if isinstance(effect, PlayAudio):
                self.queued[effect.tag] = self.queued.get(effect.tag, 0) + len(effect.pcm) // 2

    @rule(spare=st.booleans(), expires_in=st.sampled_from([5, 3600]))
    def connect(self, spare: bool, expires_in: int) -> None:
        self.links += 1
        session = Session(voice="marin", instructions="x", name=f"c{self.links}")
        self.machine.connected(session, self.now, wall_s=1e6 + self.now, spare=spare)
        if self.machine.session is session:
            self.session = session
        elif self.machine.spare is session:
            self.spare = session
        self.drain()
        target = session
        self.machine.receive(
            target,
            message(
                "session.created",
                session={
                    "id": f"sess_{self.links}",
                    "expires_at": int(1e6 + self.now + expires_in),
                },
            ),
            self.now,
        )
        self.drain()

    @precondition(lambda self: self.session is not None)
    @rule(ok=st.booleans())
    def update(self, ok: bool) -> None:
        assert self.session is not None
        session = PTT if ok else {"type": "realtime", "audio": {"input": {"turn_detection": {}}}}
        self.receive(message("session.updated", session=session))

    @precondition(lambda self: self.spare is not None)
    @rule()
    def spare_ready(self) -> None:
        assert self.spare is not None
        self.machine.receive(self.spare, message("session.updated", session=PTT), self.now)
        self.drain()

    def receive(self, data: str) -> None:
        if self.session is not None:
            self.machine.receive(self.session, data, self.now)
        self.drain()

    @rule()
    def lose(self) -> None:
        if self.session is not None:
            self.machine.disconnected(self.session, "lost", self.now)
        self.session = self.machine.session
        self.spare = self.machine.spare
        self.drain()

    @rule(item=st.sampled_from(["u1", "u2"]))
    def committed(self, item: str) -> None:
        self.receive(message("input_audio_buffer.committed", item_id=item, previous_item_id=None))

    @rule(response=RESPONSES)
    def created(self, response: str) -> None:
        self.receive(message("response.created", response={"id": response}))

    @rule(response=RESPONSES, samples=st.integers(1, 4800))
    def delta(self, response: str, samples: int) -> None:
        audio = base64.b64encode(b"\x01\x00" * samples).decode()
        self.receive(
            message(
                "response.output_audio.delta",
                response_id=response,
                item_id="i1",
                output_index=0,
                content_index=0,
                delta=audio,
            )
        )

    @rule(response=RESPONSES, status=st.sampled_from(["completed", "cancelled", "failed"]))
    def done(self, response: str, status: str) -> None:
        self.receive(message("response.done", response={"id": response, "status": status}))

    @rule(response=RESPONSES)
    def transcript(self, response: str) -> None:
        self.receive(
            message(
                "response.output_audio_transcript.done",
                response_id=response,
                item_id="i1",
                output_index=0,
                content_index=0,
                transcript="words",
            )
        )

    @rule(
        code=st.sampled_from(["input_audio_buffer_commit_empty", "server_error", None]),
        refers_to=st.integers(1, 9),
    )
    def error(self, code: str | None, refers_to: int) -> None:
        session = self.session
        sent_id = f"{session.name}_{refers_to}" if session else None
        self.receive(
            message(
                "error",
                error={
                    "type": "invalid_request_error",
                    "code": code,
                    "message": "m",
                    "event_id": sent_id,
                },
            )
        )

    @rule(data=st.sampled_from(["{", "[]", '{"type": 1}', message("response.output_audio.delta")]))
    def malformed(self, data: str) -> None:
        self.receive(data)
        self.session = self.machine.session

    @rule()
    def press(self) -> None:
        self.machine.press(self.now)
        self.drain()

    @rule()
    def release(self) -> None:
        self.machine.release(self.now)
        self.drain()

    @rule(chunks=st.integers(1, 20))
    def speak(self, chunks: int) -> None:
        for _ in range(chunks):
            self.now += 0.02
            self.machine.audio(b"\x02\x00" * 480, self.now)
        self.drain()

    @rule(samples=st.integers(1, 9600))
    def play(self, samples: int) -> None:
        for tag, queued in self.queued.items():
            step = min(samples, queued - self.played.get(tag, 0))
            if step > 0:
                self.played[tag] = self.played.get(tag, 0) + step
                self.machine.played(tag, step, self.now)
        self.drain()

    @rule(seconds=st.floats(0.0, 10.0))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        deadline = self.machine.deadline()
        if deadline is not None and deadline <= self.now:
            self.machine.tick(self.now)
        self.session = self.machine.session
        self.spare = self.machine.spare
        self.drain()

    # What must always hold

    def reply_left(self) -> bool:
        return any(self.played.get(tag, 0) < n for tag, n in self.queued.items())

    @invariant()
    def every_state_has_a_way_out(self) -> None:
        if self.machine.state is TurnState.IDLE:
            return
        assert self.machine.deadline() is not None or (
            self.machine.state is TurnState.SPEAKING and self.reply_left()
        ), f"stuck in {self.machine.state}"

    def teardown(self) -> None:
        for _ in range(20):
            if self.machine.idle:
                return
            for tag, queued in self.queued.items():
                rest = queued - self.played.get(tag, 0)
                if rest > 0:
                    self.played[tag] = queued
                    self.machine.played(tag, rest, self.now)
            deadline = self.machine.deadline()
            if deadline is not None:
                self.now = max(self.now, deadline)
                self.machine.tick(self.now)
            self.drain()
        assert self.machine.idle, f"never came back to idle from {self.machine.state}"


Machines.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestMachines = Machines.TestCase
