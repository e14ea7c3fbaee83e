"""Server-side policy on device events: forced instructions and voice, sans-I/O."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["Policy", "Refused"]


@dataclass(frozen=True)
class Refused:
    """A device event the relay will not forward, and the ``error`` event that says why."""

    error: dict[str, Any]
    """The ``error`` server event to send back to the device."""


@dataclass(frozen=True)
class Policy:
    """What the relay imposes on every session, whatever the device asks for.

    Attributes:
        instructions: Forced into every ``session.update`` and every
            ``response.create`` that sets its own; empty: the device's own.
        voice: Forced the same way; empty: the device's own.
    """

    instructions: str = ""
    voice: str = ""

    @property
    def active(self) -> bool:
        """True if there is anything to impose (then every device event is parsed)."""
        return bool(self.instructions or self.voice)

    def apply(self, text: str | bytes) -> str | bytes | Refused:
        """The device event ``text`` as it may go upstream.

        Unchanged events come back as the very same object; events that are
        not JSON objects are left for the upstream to answer.

        Returns:
            The text to forward (rewritten if needed), or a :class:`Refused`.
        """
        try:
            event = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return text
        if not isinstance(event, dict):
            return text
        kind = event.get("type")
        changed = False
        if kind == "session.update":
            session = event.get("session")
            if isinstance(session, dict) and session.get("type") == "realtime":
                changed = self._impose(session, always=True)
        elif kind == "response.create":
            response = event.get("response")
            if isinstance(response, dict):
                changed = self._impose(response, always=False)
        elif kind == "conversation.item.create" and self.instructions:
            item = event.get("item")
            if isinstance(item, dict) and item.get("role") in ("system", "developer"):
                return Refused(_refusal(event, "item.role", "system messages are not allowed"))
        return json.dumps(event) if changed else text

    def _impose(self, target: dict[str, Any], *, always: bool) -> bool:
        """Sets the policy's fields in ``target`` (a session or a response); True if it did.

        Args:
            target: The ``session`` of an update or the ``response`` of a create.
            always: Set them even where the device did not (session updates),
                so that the session has them from its first update on.
        """
        changed = False
        wanted = self.instructions and (always or "instructions" in target)
        if wanted and target.get("instructions") != self.instructions:
            target["instructions"] = self.instructions
            changed = True
        if self.voice:
            audio = target.get("audio")
            output = audio.get("output") if isinstance(audio, dict) else None
            if always or (isinstance(output, dict) and "voice" in output):
                if not isinstance(audio, dict):
                    audio = target["audio"] = {}
                if not isinstance(output, dict):
                    output = audio["output"] = {}
                if output.get("voice") != self.voice:
                    output["voice"] = self.voice
                    changed = True
        return changed


def _refusal(event: dict[str, Any], param: str, why: str) -> dict[str, Any]:
    client_event_id = event.get("event_id")
    return {
        "type": "error",
        "event_id": f"event_relay_{secrets.token_hex(8)}",
        "error": {
            "type": "invalid_request_error",
            "code": "relay_policy",
            "message": f"Refused by the relay's policy: {why}.",
            "param": param,
            "event_id": client_event_id if isinstance(client_event_id, str) else None,
        },
    }
