"""What tests inspect: the record of each connection (and ``Faults``, re-exported)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.emulator.conversation import Conversation
from appliance.emulator.faults import Faults
from appliance.emulator.responses import ResponseRecord

__all__ = ["Connection", "Direction", "Faults", "Observer"]

Direction = Literal["client", "server"]
Observer = Callable[[Direction, dict[str, Any]], None]


@dataclass(eq=False)
class Connection:
    """The record of one accepted connection, for tests to inspect."""

    model: str
    """The ``?model=`` of the handshake."""
    conversation: Conversation
    """The protocol state: config, items, commits, responses."""
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every client event (parsed JSON object), in order of arrival."""
    sent: list[dict[str, Any]] = field(default_factory=list)
    """Every server event, in order."""
    log: list[tuple[Direction, dict[str, Any]]] = field(default_factory=list)
    """Both directions interleaved, in the order they happened."""
    malformed: list[tuple[int, str]] = field(default_factory=list)
    """Malformed messages sent by the fault: (server events sent before it, its text)."""
    faults: Faults = field(default_factory=Faults)
    """The faults this connection was served with."""
    opened_at: float = 0.0
    """When it was accepted (loop clock, seconds)."""
    closed_at: float | None = None
    """When it ended (loop clock, seconds)."""
    stalled_at: float | None = None
    """When it went silent (loop clock, seconds), under a stall fault."""
    closed: bool = False
    """True once the connection has ended."""
    close_code: int | None = None
    """The close code received from the client, if any."""

    @property
    def session_id(self) -> str:
        """The ``sess_...`` id of the session."""
        return self.conversation.session_id

    @property
    def commits(self) -> list[bytes]:
        """Audio of each successful ``input_audio_buffer.commit``, in order."""
        return self.conversation.commits

    @property
    def responses(self) -> list[ResponseRecord]:
        """One record per response: status and milliseconds of audio per item."""
        return self.conversation.responses

    @property
    def session(self) -> dict[str, Any]:
        """The effective session configuration."""
        return self.conversation.config

    @property
    def appends_before_updated(self) -> int:
        """Appends received before the first ``session.updated`` was sent (all, if none was)."""
        count = 0
        for direction, message in self.log:
            if direction == "server" and message.get("type") == "session.updated":
                break
            if direction == "client" and message.get("type") == "input_audio_buffer.append":
                count += 1
        return count
