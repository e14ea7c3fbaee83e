"""The turn state machine, sans-I/O: press, speak, release, hear the reply.

A turn is the audio from press to release (R2). It is kept whole until its
reply starts playing, so that a session lost on the way costs nothing: the
next session gets the whole turn again before the commit. Audio captured
while no session is ready is held, in order, up to ``hold_s`` (R1). Only one
response is ever active (R3): a press during a reply stops playback, cancels
the response and truncates the reply at the milliseconds actually played.
A turn shorter than ``min_turn_ms`` is dropped with a cue (R4).

The machine owns the current :class:`~appliance.realtime.session.Session`.
Inputs are method calls with a timestamp ``now`` (seconds, any monotonic
clock); outputs are the client events to send (:meth:`TurnMachine.outgoing`)
and effects to perform (:meth:`TurnMachine.effects`). :meth:`deadline` says
when :meth:`tick` must next be called.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field

from appliance.audio import pcm
from appliance.effects import (
    DropSession,
    Effect,
    Mark,
    Outcome,
    PlayAudio,
    PlayCue,
    ReplyTag,
    SessionLost,
    SessionReady,
    StopPlayback,
    TurnDone,
    TurnMetrics,
)
from appliance.errors import LocalProtocolError, RemoteProtocolError, SessionFailed
from appliance.realtime import events
from appliance.realtime.events import ClientEvent
from appliance.realtime.session import MIN_COMMIT_BYTES, Session

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
    }
)


def _ms(start: float | None, end: float | None) -> int | None:
    """Milliseconds from ``start`` to ``end`` (seconds), if both happened."""
    if start is None or end is None:
        return None
    return round((end - start) * 1000)


@dataclass
class Turn:
    """One turn in progress: its audio, its submission and its reply."""

    number: int
    pressed_at: float
    audio: bytearray = field(default_factory=bytearray)
    """The turn's audio, kept whole until the reply starts (R2)."""
    audio_bytes: int = 0
    """All audio captured for the turn (bytes)."""
    sent: int = 0
    """Bytes of ``audio`` the current session already has."""
    waiting_since: float | None = None
    """Since when the turn waits for a ready session (the hold bound, R1)."""
    released_at: float | None = None
    attempts: int = 1
    committed_at: float | None = None
    create_pending: bool = False
    """Committed, but response.create waits for an earlier response to end."""
    response_requested: bool = False
    """response.create was sent."""
    response_id: str | None = None
    response_done: bool = False
    first_audio_at: float | None = None
    first_play_at: float | None = None
    reply_item_id: str | None = None
    reply_queued: int = 0
    """Samples of reply audio handed to the speaker."""
    reply_played: int = 0
    """Samples of reply audio the speaker reported as played."""
    transcript: str = ""

    @property
    def played_ms(self) -> int:
        """Milliseconds of the reply actually played."""
        return pcm.samples_to_ms(self.reply_played)

    def reset_submission(self) -> None:
        """Forget what was submitted to a session that is gone."""
        self.sent = 0
        self.committed_at = None
        self.create_pending = False
        self.response_requested = False
        self.response_id = None
        self.response_done = False

    def metrics(self, outcome: Outcome) -> TurnMetrics:
        """The figures of this turn, ended with ``outcome``."""
        heard = self.first_audio_at is not None
        return TurnMetrics(
            turn=self.number,
            outcome=outcome,
            audio_in_ms=pcm.bytes_to_ms(self.audio_bytes),
            release_to_commit_ms=_ms(self.released_at, self.committed_at),
            commit_to_first_audio_ms=_ms(self.committed_at, self.first_audio_at),
            first_audio_to_play_ms=_ms(self.first_audio_at, self.first_play_at),
            audio_out_ms=self.played_ms if heard else None,
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
    """

    def __init__(
        self,
        *,
        min_turn_ms: int = 150,
        max_turn_s: float = 60.0,
        hold_s: float = 30.0,
        response_timeout_s: float = 15.0,
    ) -> None:
        self._min_turn_bytes = max(pcm.ms_to_bytes(min_turn_ms), MIN_COMMIT_BYTES)
        self._max_turn_s = max_turn_s
        self._hold_s = hold_s
        self._response_timeout_s = response_timeout_s
        self._state = TurnState.IDLE
        self._turn: Turn | None = None
        self._turns = 0
        self._session: Session | None = None
        self._session_announced = False
        self._outage_noticed = False
        self._ever_ready = False
        self._effects: list[Effect] = []
        self._last_server_event_at = 0.0
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
        return self._session

    @property
    def idle(self) -> bool:
        """True when no turn is in progress."""
        return self._state is TurnState.IDLE

    def _set_state(self, state: TurnState) -> None:
        if (self._state, state) not in _TRANSITIONS:
            raise LocalProtocolError(f"can't go from {self._state.name} to {state.name}")
        logger.debug("= turn state is %s", state.value)
        self._state = state

    def outgoing(self) -> list[ClientEvent]:
        """Take the client events to send on the current connection, in order."""
        return [] if self._session is None else self._session.outgoing()

    def effects(self) -> list[Effect]:
        """Take the effects to perform, in order."""
        queued, self._effects = self._effects, []
        return queued

    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next, if ever."""
        turn = self._turn
        if turn is None:
            return None
        candidates = []
        if self._state is TurnState.LISTENING:
            candidates.append(turn.pressed_at + self._max_turn_s)
        if turn.waiting_since is not None:
            candidates.append(turn.waiting_since + self._hold_s)
        if self._awaiting_response(turn):
            candidates.append(self._response_deadline(turn))
        return min(candidates, default=None)

    def _response_deadline(self, turn: Turn) -> float:
        """A requested response must show a server event by then (R7)."""
        assert turn.committed_at is not None
        quiet_since = max(self._last_server_event_at, turn.committed_at)
        return quiet_since + self._response_timeout_s

    def _awaiting_response(self, turn: Turn) -> bool:
        requested = turn.response_requested or turn.create_pending
        return requested and not turn.response_done and self._ready

    @property
    def _ready(self) -> bool:
        return self._session is not None and self._session.ready

    # ------------------------------------------------------------------
    # Connections

    def connected(self, session: Session, now: float) -> None:
        """A new connection is open; ``session`` will do its handshake."""
        if self._session is not None:
            raise LocalProtocolError("can't connect: the previous session was not lost first")
        self._session = session
        self._session_announced = False
        self._last_server_event_at = now

    def disconnected(self, reason: str, now: float) -> None:
        """The connection closed. Idempotent: a session dropped already stays dropped."""
        if self._session is not None:
            self._lose_session(reason, now)

    def receive(self, data: str | bytes, now: float) -> None:
        """One message from the server on the current connection."""
        session = self._session
        if session is None:
            return
        self._last_server_event_at = now
        try:
            received = session.receive(data)
        except RemoteProtocolError as exc:
            self.malformed_events += 1
            self._drop(f"malformed server event: {exc}", now)
            return
        except SessionFailed as exc:
            self._drop(str(exc), now)
            return
        if session.ready and not self._session_announced:
            self._session_announced = True
            self._on_ready(session, now)
        for event in received:
            self._on_event(event, now)

    def _drop(self, reason: str, now: float) -> None:
        self._effects.append(DropSession(reason))
        self._lose_session(reason, now)

    def _lose_session(self, reason: str, now: float) -> None:
        session = self._session
        assert session is not None
        self._session = None
        self._effects.append(SessionLost(session.session_id, reason))
        turn = self._turn
        if turn is None:
            return
        if self._state is TurnState.SPEAKING:
            if not turn.response_done:
                self._effects.append(StopPlayback())
                self._fail(f"the session was lost during the reply: {reason}", now)
            return  # a reply that arrived whole plays on
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
        if turn is None or self._state is TurnState.SPEAKING:
            return
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
        session = self._session
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
        if len(turn.audio) < self._min_turn_bytes:
            if self._ready and self._session is not None and self._session.uncommitted_bytes:
                self._session.clear()
            self._effects.append(PlayCue("too_short"))
            self._finish(turn, "too_short", now)
            return
        self._set_state(TurnState.THINKING)
        self._effects.append(PlayCue("done_listening"))
        if self._session is not None and self._session.ready:
            self._submit(self._session, turn, now)

    def audio(self, pcm: bytes, now: float) -> None:
        """One captured chunk of 24 kHz mono s16le audio."""
        turn = self._turn
        if self._state is not TurnState.LISTENING or turn is None:
            return
        turn.audio += pcm
        turn.audio_bytes += len(pcm)
        session = self._session
        if session is not None and session.ready:
            session.append(pcm)
            turn.sent += len(pcm)

    def played(self, tag: Hashable, samples: int, now: float) -> None:
        """The speaker played ``samples`` more samples of the segment tagged ``tag``."""
        turn = self._turn
        if turn is None or tag != ReplyTag(turn.number):
            return
        if turn.first_play_at is None:
            turn.first_play_at = now
        turn.reply_played += samples
        self._finish_if_played_out(turn, now)

    def tick(self, now: float) -> None:
        """Time passed; act on any deadline that has come."""
        turn = self._turn
        if turn is None:
            return
        if self._state is TurnState.LISTENING and now >= turn.pressed_at + self._max_turn_s:
            logger.warning(
                "button held for %.0f s: ending turn %d there", self._max_turn_s, turn.number
            )
            self.release(now)
        if turn.waiting_since is not None and now >= turn.waiting_since + self._hold_s:
            self._fail(f"no upstream session for {self._hold_s:.0f} s", now)
        elif self._awaiting_response(turn) and now >= self._response_deadline(turn):
            self._drop(
                f"no server event for {self._response_timeout_s:.0f} s during a response", now
            )

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
        session = self._session
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
        session = self._session
        turn = self._turn
        if isinstance(event, events.ResponseDone) and session is not None:
            self._after_response_done(session, event, now)
            return
        if turn is None:
            return
        if isinstance(event, events.ResponseCreated):
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
            turn.audio = bytearray()  # the reply has started: the turn is no longer needed
            self._effects.append(Mark("first_audio", turn.number, now))
        turn.reply_queued += len(event.audio) // pcm.SAMPLE_BYTES
        self._effects.append(PlayAudio(event.audio, ReplyTag(turn.number)))

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
        self._turn = None
        self._set_state(TurnState.IDLE)
