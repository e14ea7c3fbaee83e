"""One turn in progress: its audio, its submission to a session, and its reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.audio import pcm
from appliance.effects import Outcome, ReplyTag, TurnMetrics


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
    """The turn's audio, kept whole until the reply is heard (R2)."""
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
    reply_attempt: int = 0
    """Replies forgotten unheard so far: the current one's attempt number."""
    transcript: str = ""
    """The reply's transcript, as far as it arrived."""
    user_item_id: str | None = None
    """The conversation item the committed audio became."""

    @property
    def reply_tag(self) -> ReplyTag:
        """The tag of the current reply's audio in the speaker's queue."""
        return ReplyTag(self.number, self.reply_attempt)

    @property
    def played_ms(self) -> int:
        """Milliseconds of the reply actually played."""
        return pcm.samples_to_ms(self.reply_played)

    def forget_reply(self) -> None:
        """Forget a reply that arrived in part but was never heard: the next is a new attempt."""
        self.reply_attempt += 1
        self.first_audio_at = None
        self.first_play_at = None
        self.reply_item_id = None
        self.reply_queued = 0
        self.reply_played = 0
        self.transcript = ""

    def reset_submission(self) -> None:
        """Forget what was submitted to a session that is gone."""
        self.sent = 0
        self.committed_at = None
        self.create_pending = False
        self.response_requested = False
        self.response_id = None
        self.response_done = False
        self.user_item_id = None

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
