"""What the sans-I/O core asks the orchestrator to do, and the figures of a turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

Outcome = Literal["replied", "interrupted", "too_short", "failed"]
"""How a turn ended."""

CueName = Literal["listening", "done_listening", "too_short", "error", "reconnected"]
"""The earcons the core asks for (see ``appliance.audio.earcons.Cue``)."""

MarkName = Literal["pressed", "released", "committed", "first_audio", "played_out"]
"""Points of a turn's timeline."""


@dataclass(frozen=True)
class ReplyTag:
    """Tags the reply audio of one turn in the speaker's queue.

    A reply asked for again (its session was lost before any of it was heard)
    is a new attempt: a late report of the first one is not taken for it.
    """

    turn: int
    attempt: int = 0


@dataclass(frozen=True)
class TurnMetrics:
    """The figures of one turn, as logged in ``turn.done`` (milliseconds)."""

    turn: int
    outcome: Outcome
    audio_in_ms: int
    release_to_commit_ms: int | None
    commit_to_first_audio_ms: int | None
    first_audio_to_play_ms: int | None
    audio_out_ms: int | None


@dataclass(frozen=True)
class PlayAudio:
    """Queue reply audio (24 kHz mono s16le) on the speaker."""

    pcm: bytes
    tag: ReplyTag


@dataclass(frozen=True)
class StopPlayback:
    """Discard everything queued on the speaker, now."""


@dataclass(frozen=True)
class PlayCue:
    """Play an earcon (if earcons are on)."""

    cue: CueName


@dataclass(frozen=True)
class Mark:
    """A point of a turn's timeline was reached at ``at`` (seconds)."""

    name: MarkName
    turn: int
    at: float


@dataclass(frozen=True)
class TurnDone:
    """A turn has ended; ``reason`` says why, when it failed."""

    metrics: TurnMetrics
    reason: str | None = None


@dataclass(frozen=True)
class SessionReady:
    """The session's configuration was confirmed; audio flows."""

    session_id: str


@dataclass(frozen=True)
class SessionLost:
    """The session ended; a new connection will bring a new one."""

    session_id: str | None
    reason: str


@dataclass(frozen=True)
class DropSession:
    """Session ``name`` is unusable: close its connection (a reconnect follows)."""

    name: str
    reason: str


@dataclass(frozen=True)
class OpenSpare:
    """Open a second connection now, for the session that will replace the current one."""


@dataclass(frozen=True)
class Promote:
    """Session ``name`` (the spare) takes over; close the old one's connection."""

    name: str
    session_id: str
    old_session_id: str | None


Effect: TypeAlias = (
    PlayAudio
    | StopPlayback
    | PlayCue
    | Mark
    | TurnDone
    | SessionReady
    | SessionLost
    | DropSession
    | OpenSpare
    | Promote
)
