"""The turn state machine, sans-I/O: press, speak, release, hear the reply.

A turn is the audio from press to release (R2). It is kept whole until its
reply is heard, so that a session lost on the way costs nothing: the
next session gets the whole turn again before the commit. Audio captured
while no session is ready is held, in order, up to ``hold_s`` (R1). Only one
response is ever active (R3): a press during a reply stops playback, cancels
the response and truncates the reply at the milliseconds actually played.
A turn shorter than ``min_turn_ms`` is dropped with a cue (R4).

The machine takes its sessions from :class:`~appliance.sessions.Sessions`:
the current :class:`~appliance.realtime.session.Session` and, while a
rotation is under way (R8), the spare that will replace it before the
current one expires. The spare is switched to only once it is ready and no
turn is in progress (make before break). Every new session is re-seeded with
the conversation so far before it takes a turn (R9).

Inputs are method calls with a timestamp ``now`` (seconds, any monotonic
clock); outputs are the client events to send (:meth:`TurnMachine.outgoing`)
and effects to perform (:meth:`TurnMachine.effects`). :meth:`deadline` says
when :meth:`tick` must next be called.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Hashable

from appliance.audio import pcm
from appliance.effects import (
    DropSession,
    Effect,
    Mark,
    Outcome,
    PlayAudio,
    PlayCue,
    SessionReady,
    StopPlayback,
    TurnDone,
)
from appliance.errors import LocalProtocolError, RemoteProtocolError, SessionFailed
from appliance.memory import Memory
from appliance.realtime import events
from appliance.realtime.events import ClientEvent
from appliance.realtime.session import MIN_COMMIT_BYTES, Session
from appliance.sessions import Sessions
from appliance.turnrecord import Turn

logger = logging.getLogger(__name__)

RESEND_CHUNK_BYTES = 48_000
"""Held audio is sent to a new session in appends of one second each."""

MAX_ATTEMPTS = 2
"""A committed turn whose session died before any reply is sent once more."""


class TurnState(enum.Enum):
    """What the appliance is doing, as the person would describe it."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


_TRANSITIONS: frozenset[tuple[TurnState, TurnState]] = frozenset(
    {
        (TurnState.IDLE, TurnState.LISTENING),
        (TurnState.LISTENING, TurnState.IDLE),  # too short, or failed
        (TurnState.LISTENING, TurnState.THINKING),  # released
        (TurnState.THINKING, TurnState.SPEAKING),  # first reply audio
        (TurnState.THINKING, TurnState.IDLE),  # failed, no audio, or pressed again
        (TurnState.SPEAKING, TurnState.IDLE),  # played to the end, failed, or barge-in
        (TurnState.SPEAKING, TurnState.THINKING),  # session lost before a sample was heard
    }
)


class TurnMachine:
    """Turns, their audio and their replies over a sequence of sessions.

    Args:
        min_turn_ms: turns with less audio than this are dropped (R4); never
            below the server's own minimum of 100 ms.
        max_turn_s: a button held longer ends the turn (stuck-button guard).
        hold_s: how long a turn may wait for a ready session before it fails.
        response_timeout_s: a requested response with no server event for
            this long means the session is dead.
        rotate_before_expiry_s: open the next session this long before the
            current one expires (seconds).
        context_turns: how many exchanges to re-seed a new session with.
        echo_tail_ms: half-duplex: captured audio is silenced while the
            speaker plays anything and for this long after (milliseconds);
            None turns the gate off (a device with echo cancellation).
    """

    def __init__(
        self,
        *,
        min_turn_ms: int = 150,
        max_turn_s: float = 60.0,
        hold_s: float = 30.0,
        response_timeout_s: float = 15.0,
        rotate_before_expiry_s: float = 300.0,
        context_turns: int = 5,
        echo_tail_ms: int | None = 150,
    ) -> None:
        self._min_turn_bytes = max(pcm.ms_to_bytes(min_turn_ms), MIN_COMMIT_BYTES)
        self._max_turn_s = max_turn_s
        self._hold_s = hold_s
        self._response_timeout_s = response_timeout_s
        self._memory = Memory(turns=context_turns)
        self._echo_tail_s = None if echo_tail_ms is None else echo_tail_ms / 1000
        self._speaker_busy_from = float("-inf")
        self._speaker_busy_until = float("-inf")
        self._state = TurnState.IDLE
        self._turn: Turn | None = None
        self._turns = 0
        self._outage_noticed = False
        self._ever_ready = False
        # Never rebound: the sessions emit into it too, so all effects keep one order.
        self._effects: list[Effect] = []
        self._sessions = Sessions(
            self._memory,
            rotate_before_expiry_s=rotate_before_expiry_s,
            emit=self._effects.append,
        )
        self.malformed_events = 0
        """Server events that could not be parsed (each one cost a session)."""

    # ------------------------------------------------------------------
    # State

    @property
    def state(self) -> TurnState:
        """The current state."""
        return self._state

    @property
    def session(self) -> Session | None:
        """The session of the current connection, if there is one."""
        return self._sessions.current

    @property
    def spare(self) -> Session | None:
        """The session being prepared to replace the current one, if any."""
        return self._sessions.spare

    @property
    def idle(self) -> bool:
        """True when no turn is in progress."""
        return self._state is TurnState.IDLE

    def _set_state(self, state: TurnState) -> None:
        if (self._state, state) not in _TRANSITIONS:
            raise LocalProtocolError(f"can't go from {self._state.name} to {state.name}")
        logger.debug("= turn state is %s", state.value)
        self._state = state

    def outgoing(self) -> list[tuple[str, ClientEvent]]:
        """Take the client events to send, each with the name of its session, in order."""
        return self._sessions.outgoing()

    def effects(self) -> list[Effect]:
        """Take the effects to perform, in order."""
        queued = self._effects.copy()
        self._effects.clear()
        return queued

    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next, if ever."""
        candidates = []
        turn = self._turn
        if turn is not None:
            if self._state is TurnState.LISTENING:
                candidates.append(turn.pressed_at + self._max_turn_s)
            if turn.waiting_since is not None:
                candidates.append(turn.waiting_since + self._hold_s)
            if self._awaiting_response(turn):
                candidates.append(self._response_deadline(turn))
        else:  # idle: time to rotate, or to switch to a ready spare?
            rotation = self._sessions.rotation_deadline()
            if rotation is not None:
                candidates.append(rotation)
        return min(candidates, default=None)

    def _response_deadline(self, turn: Turn) -> float:
        """A requested response must show a server event by then (R7)."""
        assert turn.committed_at is not None
        quiet_since = max(self._sessions.last_event_at, turn.committed_at)
        return quiet_since + self._response_timeout_s

    def _awaiting_response(self, turn: Turn) -> bool:
        requested = turn.response_requested or turn.create_pending
        return requested and not turn.response_done and self._sessions.ready

    # ------------------------------------------------------------------
    # Connections

    def connected(
        self, session: Session, now: float, *, wall_s: float, spare: bool = False
    ) -> None:
        """A new connection is open; ``session`` will do its handshake on it.

        Args:
            session: the new connection's session.
            now: the time (seconds, the machine's clock).
            wall_s: Unix time at ``now``, to place the session's ``expires_at``.
            spare: the connection was opened for a rotation (:class:`OpenSpare`).
        """
        if not spare and self._sessions.current is not None:
            self._lose_session("replaced by a new connection", now)
        self._sessions.connected(session, now, wall_s=wall_s, spare=spare)

    def disconnected(self, session: Session, reason: str, now: float) -> None:
        """The connection of ``session`` closed."""
        if session is self._sessions.current:
            self._lose_session(reason, now)
        elif session is self._sessions.spare:
            self._sessions.lose_spare(reason, now)
        self._sessions.forget(session)

    def receive(self, session: Session, data: str | bytes, now: float) -> None:
        """One message from the server on the connection of ``session``."""
        sessions = self._sessions
        if not sessions.holds(session):
            return  # a retired session's last words
        try:
            received = sessions.receive(session, data, now)
        except RemoteProtocolError as exc:
            self.malformed_events += 1
            self._drop(session, f"malformed server event: {exc}", now)
            return
        except SessionFailed as exc:
            self._drop(session, str(exc), now)
            return
        if sessions.announce(session) and session is sessions.current:
            self._on_ready(session, now)
        if session is sessions.current:
            for event in received:
                self._on_event(event, now)
        # A spare acts on nothing but its handshake until it takes over.

    def _drop(self, session: Session, reason: str, now: float) -> None:
        self._effects.append(DropSession(session.name, reason))
        self.disconnected(session, reason, now)

    def _lose_session(self, reason: str, now: float) -> None:
        self._sessions.lose_current(reason)
        turn = self._turn
        if turn is None:
            return
        if self._state is TurnState.SPEAKING:
            if turn.response_done:
                return  # a reply that arrived whole plays on
            self._effects.append(StopPlayback())
            if turn.reply_played:
                self._fail(f"the session was lost during the reply: {reason}", now)
                return
            # Nothing of the reply was heard yet: ask again, as if it never came.
            turn.forget_reply()
            self._set_state(TurnState.THINKING)
        self._outage_noticed = True
        if self._state is TurnState.THINKING and turn.committed_at is not None:
            if turn.attempts >= MAX_ATTEMPTS:
                self._fail(f"the session was lost twice during this turn: {reason}", now)
                return
            turn.attempts += 1
        turn.reset_submission()  # the next session gets the whole turn again (R2)
        if turn.waiting_since is None:
            turn.waiting_since = now  # the hold bound counts from the first loss

    def _on_ready(self, session: Session, now: float) -> None:
        self._effects.append(SessionReady(session.session_id or "?"))
        self._ever_ready = True
        if self._outage_noticed:
            # Only after an outage the person ran into, never at random times.
            self._outage_noticed = False
            self._effects.append(PlayCue("reconnected"))
        turn = self._turn
        if turn is not None and self._state is not TurnState.SPEAKING:
            self._resume(session, turn, now)

    def _resume(self, session: Session, turn: Turn, now: float) -> None:
        """Give a ready session the turn in progress: its audio, and its commit if released."""
        turn.waiting_since = None
        self._send_held_audio(session, turn)
        if self._state is TurnState.THINKING:
            self._submit(session, turn, now)

    # ------------------------------------------------------------------
    # The person

    def press(self, now: float) -> None:
        """The button went down."""
        if self._state is TurnState.LISTENING:
            logger.debug("press while already listening: ignored")
            return
        if self._state is not TurnState.IDLE:
            self._interrupt(now)
        self._turns += 1
        turn = Turn(number=self._turns, pressed_at=now)
        self._turn = turn
        self._set_state(TurnState.LISTENING)
        self._effects += [PlayCue("listening"), Mark("pressed", turn.number, now)]
        session = self._sessions.current
        if session is not None and session.ready:
            if session.uncommitted_bytes:
                session.clear()
        else:
            turn.waiting_since = now
            self._outage_noticed |= self._ever_ready

    def release(self, now: float) -> None:
        """The button came up."""
        turn = self._turn
        if self._state is not TurnState.LISTENING or turn is None:
            logger.debug("release while %s: ignored", self._state.value)
            return
        turn.released_at = now
        self._effects.append(Mark("released", turn.number, now))
        session = self._sessions.current if self._sessions.ready else None
        if len(turn.audio) < self._min_turn_bytes:
            if session is not None and session.uncommitted_bytes:
                session.clear()
            self._effects.append(PlayCue("too_short"))
            self._finish(turn, "too_short", now)
            return
        self._set_state(TurnState.THINKING)
        self._effects.append(PlayCue("done_listening"))
        if session is not None:
            self._submit(session, turn, now)

    def audio(self, chunk: bytes, now: float) -> None:
        """One captured chunk of 24 kHz mono s16le audio.

        The chunk's place in the turn says when it was heard: the turn's audio
        starts at the press and runs on without gaps (unless a late loop made
        the microphone drop some), whenever the microphone gets round to
        delivering it (a device microphone delivers in batches). The
        half-duplex gate silences what was heard from when the speaker
        started to ``echo_tail_ms`` after it last played.
        """
        turn = self._turn
        if self._state is not TurnState.LISTENING or turn is None:
            return
        heard_until = turn.pressed_at + pcm.bytes_to_s(turn.audio_bytes + len(chunk))
        if self._speaker_busy_from < heard_until < self._speaker_busy_until:
            # Half-duplex: what the microphone heard then was the speaker, not the person.
            chunk = bytes(len(chunk))
        turn.audio += chunk
        turn.audio_bytes += len(chunk)
        session = self._sessions.current
        if session is not None and session.ready:
            session.append(chunk)
            turn.sent += len(chunk)

    def played(self, tag: Hashable, samples: int, now: float) -> None:
        """The speaker played ``samples`` more samples of the segment tagged ``tag``."""
        if self._echo_tail_s is not None:
            if now > self._speaker_busy_until:  # it was quiet: it started this long ago
                self._speaker_busy_from = now - pcm.samples_to_s(samples)
            self._speaker_busy_until = now + self._echo_tail_s
        turn = self._turn
        if turn is None or tag != turn.reply_tag or self._state is not TurnState.SPEAKING:
            return  # a report late for a reply that was stopped and is asked for again
        if turn.first_play_at is None:
            turn.first_play_at = now
            turn.audio = bytearray()  # the reply is being heard: the turn is done with
        turn.reply_played += samples
        self._finish_if_played_out(turn, now)

    def tick(self, now: float) -> None:
        """Time passed; act on any deadline that has come."""
        turn = self._turn
        if turn is None:
            promoted = self._sessions.rotate(now)  # idle: rotate when it is time (R8)
            if promoted is not None:
                self._on_ready(promoted, now)
            return
        if self._state is TurnState.LISTENING and now >= turn.pressed_at + self._max_turn_s:
            logger.warning(
                "button held for %.0f s: ending turn %d there", self._max_turn_s, turn.number
            )
            self.release(now)
            if self._turn is not turn:
                return  # too short to send: that ended it
        if turn.waiting_since is not None and now >= turn.waiting_since + self._hold_s:
            self._fail(f"no upstream session for {self._hold_s:.0f} s", now)
        elif (
            (session := self._sessions.current) is not None
            and self._awaiting_response(turn)
            and now >= self._response_deadline(turn)
        ):
            reason = f"no server event for {self._response_timeout_s:.0f} s during a response"
            self._drop(session, reason, now)

    # ------------------------------------------------------------------
    # Internals

    def _send_held_audio(self, session: Session, turn: Turn) -> None:
        while turn.sent < len(turn.audio):
            chunk = bytes(turn.audio[turn.sent : turn.sent + RESEND_CHUNK_BYTES])
            session.append(chunk)
            turn.sent += len(chunk)

    def _submit(self, session: Session, turn: Turn, now: float) -> None:
        """Commit the whole turn and ask for the reply (once no response is active)."""
        self._send_held_audio(session, turn)
        session.commit()
        turn.committed_at = now
        self._effects.append(Mark("committed", turn.number, now))
        if session.response_active:
            # A cancelled response has not reported response.done yet: one
            # response at a time, so response.create follows it.
            turn.create_pending = True
        else:
            session.create_response()
            turn.response_requested = True

    def _interrupt(self, now: float) -> None:
        """A press while thinking or speaking: stop, cancel, truncate (R3)."""
        turn = self._turn
        assert turn is not None
        if self._state is TurnState.SPEAKING:
            self._effects.append(StopPlayback())
        session = self._sessions.current
        if session is not None and session.ready:
            if turn.response_requested and not turn.response_done and session.response_active:
                session.cancel_response()
            if turn.reply_item_id is not None:
                # What the person heard is what the model should believe was said.
                if turn.played_ms > 0:
                    session.truncate(turn.reply_item_id, audio_end_ms=turn.played_ms)
                else:
                    session.delete_item(turn.reply_item_id)
        self._finish(turn, "interrupted", now)

    def _on_event(self, event: events.ServerEvent, now: float) -> None:
        session = self._sessions.current
        turn = self._turn
        if isinstance(event, events.ResponseDone) and session is not None:
            self._after_response_done(session, event, now)
            return
        if isinstance(event, events.InputTranscript):
            self._memory.heard(event.item_id, event.transcript)
            return
        if turn is None:
            return
        if isinstance(event, events.InputAudioCommitted):
            if turn.committed_at is not None and turn.user_item_id is None:
                turn.user_item_id = event.item_id
        elif isinstance(event, events.TranscriptDone):
            if event.response_id == turn.response_id:
                turn.transcript = event.transcript
        elif isinstance(event, events.ResponseCreated):
            if turn.response_requested and turn.response_id is None:
                turn.response_id = event.response_id
        elif isinstance(event, events.AudioDelta):
            if event.response_id == turn.response_id:
                self._on_reply_audio(turn, event, now)
        elif isinstance(event, events.TranscriptDelta):
            if event.response_id == turn.response_id:
                turn.transcript += event.delta
        elif isinstance(event, events.ServerError) and session is not None:
            refers_to = session.sent_type(event.client_event_id)
            if refers_to in ("input_audio_buffer.commit", "response.create") and (
                self._state is TurnState.THINKING
            ):
                self._fail(f"the upstream refused {refers_to}: {event.message}", now)

    def _on_reply_audio(self, turn: Turn, event: events.AudioDelta, now: float) -> None:
        if self._state is TurnState.THINKING:
            self._set_state(TurnState.SPEAKING)
            turn.first_audio_at = now
            turn.reply_item_id = event.item_id
            self._effects.append(Mark("first_audio", turn.number, now))
        turn.reply_queued += len(event.audio) // pcm.SAMPLE_BYTES
        self._effects.append(PlayAudio(event.audio, turn.reply_tag))

    def _after_response_done(
        self, session: Session, event: events.ResponseDone, now: float
    ) -> None:
        turn = self._turn
        if turn is not None and event.response_id == turn.response_id:
            turn.response_done = True
            if self._state is TurnState.SPEAKING:
                self._finish_if_played_out(turn, now)
            elif self._state is TurnState.THINKING:
                self._fail(f"the reply ended without audio ({event.status})", now)
        elif turn is not None and turn.create_pending and not session.response_active:
            # The response this turn was waiting behind has ended.
            turn.create_pending = False
            session.create_response()
            turn.response_requested = True

    def _finish_if_played_out(self, turn: Turn, now: float) -> None:
        if (
            self._state is TurnState.SPEAKING
            and turn.response_done
            and turn.reply_played >= turn.reply_queued
        ):
            self._effects.append(Mark("played_out", turn.number, now))
            self._finish(turn, "replied", now)

    def _fail(self, reason: str, now: float) -> None:
        turn = self._turn
        assert turn is not None
        logger.warning("turn %d failed: %s", turn.number, reason)
        self._effects.append(PlayCue("error"))
        self._finish(turn, "failed", now, reason=reason)

    def _finish(
        self, turn: Turn, outcome: Outcome, now: float, *, reason: str | None = None
    ) -> None:
        self._effects.append(TurnDone(turn.metrics(outcome), reason))
        if outcome == "replied":
            self._memory.remember(user_item_id=turn.user_item_id, assistant=turn.transcript)
        self._turn = None
        self._set_state(TurnState.IDLE)
