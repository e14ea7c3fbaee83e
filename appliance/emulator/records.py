"""What tests inspect and steer: injected faults and the record of each connection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.emulator.conversation import Conversation
from appliance.emulator.responses import ResponseRecord

__all__ = ["Connection", "Direction", "Faults", "Observer"]

Direction = Literal["client", "server"]
Observer = Callable[[Direction, dict[str, Any]], None]


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject, read once per connection when it is accepted."""

    created_delay_s: float = 0.0
    """Wait this long after the handshake before sending ``session.created`` (seconds)."""
    updated_delay_s: float = 0.0
    """Wait this long before answering a valid ``session.update`` (seconds)."""
    reject_update: bool = False
    """Answer each ``session.update`` with an ``invalid_value`` error, no ``session.updated``."""
    drop_after_appends: int | None = None
    """Abort the connection, with no close frame, on this many ``input_audio_buffer.append``."""


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
