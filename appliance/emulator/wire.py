"""Identifiers, ``error`` events and stored conversation items: the emulator's wire basics."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from appliance.emulator.checks import Problem

__all__ = ["Item", "error_event", "new_id", "server_event"]

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A random identifier in the service's style: ``prefix`` then 21 letters or digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(21))


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event of type ``kind`` with a fresh ``event_id`` and ``fields``."""
    return {"type": kind, "event_id": new_id("event_"), **fields}


def error_event(problem: Problem, *, client_event_id: str | None) -> dict[str, Any]:
    """An ``error`` server event (type ``invalid_request_error``) for a problem."""
    return {
        "type": "error",
        "event_id": new_id("event_"),
        "error": {
            "type": "invalid_request_error",
            "code": problem.code,
            "message": problem.message,
            "param": problem.param,
            "event_id": client_event_id,
        },
    }


@dataclass
class Item:
    """A conversation item as the emulator keeps it."""

    id: str
    wire: dict[str, Any]
    """The item as sent in ``conversation.item.*`` events: no audio payloads."""
    audio: bytes = b""
    """Audio of its audio content part, if any (encoded in the format of the time)."""
    audio_ms: float = 0.0
    """Milliseconds of audio in it (for an assistant item: generated so far)."""
    sample_bytes: int = 2
    """Bytes per sample of ``audio``: 2 for ``audio/pcm``, 1 for G.711."""
