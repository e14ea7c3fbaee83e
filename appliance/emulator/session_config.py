"""The emulated session's configuration: GA defaults and how ``session.update`` merges in."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["DEFAULT_INSTRUCTIONS", "SESSION_LIFETIME_S", "default_session", "merge_session"]

SESSION_LIFETIME_S = 3600
"""Seconds from creation to ``expires_at``, as the real service (60 minutes)."""

DEFAULT_INSTRUCTIONS = (
    "You are a helpful, witty, and friendly AI. Act like a human, but remember that you "
    "aren't a human and that you can't do human things in the real world. Your voice and "
    "personality should be warm and engaging. Talk quickly."
)
"""Placeholder for the long default instructions the real service sends."""

# Objects that merge key by key; every other key is replaced whole by an update
# (``turn_detection``, ``format``, ``tools``, ...), as the real service does.
_MERGED = frozenset({"", "audio", "audio.input", "audio.output"})

_SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
_SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}


def default_session(
    *, session_id: str, model: str, created_at_s: float, lifetime_s: float = SESSION_LIFETIME_S
) -> dict[str, Any]:
    """The configuration a new session starts with, as sent in ``session.created``.

    Server VAD is on, which answers by itself: a push-to-talk client must turn it off.

    Args:
        session_id: ``sess_...`` identifier.
        model: The model from the ``?model=`` query.
        created_at_s: Creation time, Unix seconds.
        lifetime_s: ``expires_at`` is this long after creation (seconds; one hour).
    """
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "truncation": "auto",
        "expires_at": int(created_at_s + lifetime_s),
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(_SERVER_VAD_DEFAULTS),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Apply a validated ``session`` object of ``session.update`` to a configuration.

    Only keys present change; ``null`` clears (``turn_detection``, ``noise_reduction``).
    Replaced objects get the service's defaults filled in.

    Args:
        current: The effective configuration; not modified.
        update: The ``session`` object of a valid ``session.update``.

    Returns:
        The new effective configuration.
    """
    merged = copy.deepcopy(current)
    _merge_into(merged, copy.deepcopy(update), "")
    return merged


def _merge_into(target: dict[str, Any], update: dict[str, Any], path: str) -> None:
    for key, value in update.items():
        child = f"{path}.{key}" if path else key
        if child in _MERGED and isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value, child)
        else:
            target[key] = _with_defaults(child, value)


def _with_defaults(path: str, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if path == "audio.input.turn_detection":
        defaults = (
            _SERVER_VAD_DEFAULTS if value.get("type") == "server_vad" else _SEMANTIC_VAD_DEFAULTS
        )
        return {**defaults, **value}
    if path.endswith(".format") and value.get("type") == "audio/pcm":
        return {"rate": 24_000, **value}
    if path in ("audio", "audio.input", "audio.output"):
        # A container the current config lacked: merge into an empty one for defaults.
        filled: dict[str, Any] = {}
        _merge_into(filled, value, path)
        return filled
    return value
