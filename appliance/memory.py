"""The conversation so far, kept to re-seed a new session with it (R9)."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

_PENDING_TRANSCRIPTS = 16
"""User transcripts remembered while their exchange is still open."""


@dataclass
class Exchange:
    """One turn that was answered: what the person said (if known) and the reply."""

    user_item_id: str | None
    user: str | None
    assistant: str


class Memory:
    """The last ``turns`` exchanges, oldest first.

    Args:
        turns: how many exchanges to keep; 0 keeps none.
    """

    def __init__(self, *, turns: int) -> None:
        self._exchanges: deque[Exchange] = deque(maxlen=max(turns, 0) or None)
        self._enabled = turns > 0
        self._transcripts: OrderedDict[str, str] = OrderedDict()

    def remember(self, *, user_item_id: str | None, assistant: str) -> None:
        """An answered turn: the user item's id and the reply's transcript."""
        if not self._enabled or not assistant:
            return
        user = self._transcripts.pop(user_item_id, None) if user_item_id else None
        self._exchanges.append(Exchange(user_item_id, user, assistant))

    def heard(self, item_id: str, transcript: str) -> None:
        """The transcript of user item ``item_id`` arrived (it may trail the reply)."""
        if not self._enabled or not transcript:
            return
        for exchange in self._exchanges:
            if exchange.user_item_id == item_id:
                exchange.user = transcript
                return
        self._transcripts[item_id] = transcript
        while len(self._transcripts) > _PENDING_TRANSCRIPTS:
            self._transcripts.popitem(last=False)

    def messages(self) -> list[tuple[str, str]]:
        """``(role, text)`` pairs to re-seed a session with, oldest first."""
        seeded: list[tuple[str, str]] = []
        for exchange in self._exchanges:
            if exchange.user:
                seeded.append(("user", exchange.user))
            seeded.append(("assistant", exchange.assistant))
        return seeded
