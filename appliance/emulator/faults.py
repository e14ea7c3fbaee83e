"""The emulator's injectable faults, parsing ``NAME=VALUE`` settings, and their texts."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from appliance.emulator.wire import new_id

__all__ = [
    "SESSION_EXPIRED_MESSAGE",
    "Faults",
    "MalformedKind",
    "expired_error",
    "handshake_refusal",
    "injected_error",
    "malformed_message",
    "parse_fault",
]

MalformedKind = Literal["json", "field", "base64"]
"""What a malformed server message is: invalid JSON, a mistyped field, or bad base64."""

SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
"""The real service's wording of ``session_expired``, also the reason of its 1001 close."""


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject, read once per connection when its handshake arrives.

    Every fault is off by default. Counts are of events on one connection;
    times (seconds) count from the handshake.

    Raises:
        ValueError: A value is out of range (the message names the field).
    """

    created_delay_s: float = 0.0
    """Wait this long after the handshake before sending ``session.created`` (seconds)."""
    updated_delay_s: float = 0.0
    """Wait this long before answering a valid ``session.update`` (seconds)."""
    reject_update: bool = False
    """Answer each ``session.update`` with an ``invalid_value`` error, no ``session.updated``."""
    drop_after_appends: int | None = None
    """Abort the connection, with no close frame, on this many ``input_audio_buffer.append``."""
    stall_after_events: int | None = None
    """Go silent on reading this many client events (0: from the handshake on).

    That event and all later ones go unanswered; the emulator reads nothing
    more from the socket (so pings go unanswered too, and a client that keeps
    sending fills the TCP buffers) and sends nothing more, while the TCP
    connection stays open until the client gives up on it.
    """
    stall_after_s: float | None = None
    """Go silent, as ``stall_after_events`` does, this long after the handshake (seconds)."""
    expire_after_s: float | None = None
    """Expire the session this long after the handshake (seconds), as the real service at 60 min.

    It sends ``error`` (``invalid_request_error``, code ``session_expired``,
    ``event_id`` null), then closes with 1001 and the same message. Any
    response in progress stops there. ``expires_at`` in ``session.created``
    is the handshake time plus this (unless ``expires_in_s`` is set).
    """
    expires_in_s: float | None = None
    """Announce ``expires_at`` = handshake time plus this (seconds), without expiring then."""
    reject_handshake: int | None = None
    """Answer every handshake with this HTTP status (400-599), even with the right key.

    401 is the real service's answer to a bad key (``invalid_api_key``), 403
    one to a key without access; 429 and 5xx are offered too.
    """
    error_after_commit: str | None = None
    """After each successful commit, send an ``error`` with this code and fail that turn.

    The ``error`` (``event_id`` null: no client event caused it) follows
    ``input_audio_buffer.committed``. The next ``response.create`` then gets
    ``response.created`` and at once ``response.done`` with status
    ``failed`` and ``status_details.error`` of the same type and code, and no
    output: the way the real service reports a response that could not run
    (a server error, a rate limit, an exhausted quota). ``server_error`` has
    type ``server_error``; ``rate_limit_exceeded`` type ``tokens``;
    ``insufficient_quota`` its own type; any other code ``invalid_request_error``.
    """
    delta_interval_s: float | None = None
    """Pause between reply deltas (seconds), instead of the emulator's ``chunk_interval_s``."""
    burst_deltas: int | None = None
    """Send reply deltas in bursts of this many, back to back, then pause ``burst_pause_s``."""
    burst_pause_s: float = 0.0
    """The pause after each burst of ``burst_deltas`` (seconds)."""
    malformed_after_events: int | None = None
    """Once this many server events were sent (0: before any), send one malformed message."""
    malformed_kind: MalformedKind = "json"
    """The malformed message: ``json`` (not valid JSON), ``field`` (an audio delta whose
    ``delta`` is a number) or ``base64`` (an audio delta whose ``delta`` is not base64)."""

    def __post_init__(self) -> None:
        problems = [
            problem
            for f in dataclasses.fields(self)
            if (problem := _check(f.name, getattr(self, f.name))) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))


_AT_LEAST_ONE = frozenset({"drop_after_appends", "burst_deltas"})
_MALFORMED_KINDS: tuple[MalformedKind, ...] = get_args(MalformedKind)


def _check(name: str, value: object) -> str | None:
    """What is wrong with one field's value, or None."""
    if value is None or isinstance(value, bool):
        return None
    if name == "reject_handshake":
        if not isinstance(value, int) or not 400 <= value <= 599:
            return f"{name} must be an HTTP status from 400 to 599, not {value!r}"
        return None
    if name == "malformed_kind":
        if value not in _MALFORMED_KINDS:
            return f"{name} must be one of {', '.join(_MALFORMED_KINDS)}, not {value!r}"
        return None
    if name == "error_after_commit":
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty error code, not {value!r}"
        return None
    if isinstance(value, int):
        least = 1 if name in _AT_LEAST_ONE else 0
        return None if value >= least else f"{name} must be at least {least}, not {value}"
    if isinstance(value, float):
        if math.isfinite(value) and value >= 0:
            return None
        return f"{name} must be a finite number of seconds, 0 or more, not {value}"
    return f"{name} has an unexpected value {value!r}"


def parse_fault(setting: str) -> tuple[str, Any]:
    """Parse one ``NAME=VALUE`` fault setting, as given to ``appliance emulator --fault``.

    Args:
        setting: e.g. ``expire_after_s=30``, ``reject_update=true``, ``malformed_kind=base64``.

    Returns:
        The field name and its typed value, already checked by ``Faults``.

    Raises:
        ValueError: Unknown name or bad value; the message says which, and lists the names.
    """
    name, equals, text = setting.partition("=")
    name, text = name.strip(), text.strip()
    hints = get_type_hints(Faults)
    if not equals or name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(Faults))
        raise ValueError(f"unknown fault {name!r} (expected NAME=VALUE; names: {known})")
    value = _convert(name, hints[name], text)
    Faults(**{name: value})  # range checks
    return name, value


def _convert(name: str, hint: Any, text: str) -> Any:
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if type(None) in options and text.lower() in ("none", "null", ""):
        return None
    for option in options:
        if option is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} takes true or false, not {text!r}")
        if option is int:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{name} takes a whole number, not {text!r}") from None
        if option is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name} takes a number of seconds, not {text!r}") from None
        if option is str:
            return text
        if get_origin(option) is Literal:
            if text in get_args(option):
                return text
            raise ValueError(f"{name} takes one of {', '.join(get_args(option))}, not {text!r}")
    raise ValueError(f"{name} cannot be set from the command line")


def handshake_refusal(status: int) -> tuple[str, str | None]:
    """The message and code of an HTTP refusal the ``reject_handshake`` fault sends."""
    if status == HTTPStatus.UNAUTHORIZED:
        return "Incorrect API key provided.", "invalid_api_key"
    if status == HTTPStatus.FORBIDDEN:
        return "You are not allowed to use the Realtime API with this key.", None
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "Rate limit reached for requests.", "rate_limit_exceeded"
    try:
        return f"{HTTPStatus(status).phrase}.", None
    except ValueError:
        return "The emulator refused the handshake.", None


_INJECTED: dict[str, tuple[str, str]] = {
    "server_error": (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    "rate_limit_exceeded": (
        "tokens",
        "Rate limit reached for gpt-realtime on tokens per min (TPM): Limit 40000, "
        "Used 40000, Requested 1200. Please try again in 1.8s.",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
}


def injected_error(code: str) -> dict[str, Any]:
    """The ``type``, ``code`` and ``message`` of an error the ``error_after_commit`` fault sends."""
    kind, message = _INJECTED.get(
        code, ("invalid_request_error", f"Injected by the emulator's error_after_commit: {code}.")
    )
    return {"type": kind, "code": code, "message": message}


def expired_error() -> dict[str, Any]:
    """The ``error`` event of an expired session, as the real service sends it."""
    return {
        "type": "error",
        "event_id": new_id("event_"),
        "error": {
            "type": "invalid_request_error",
            "code": "session_expired",
            "message": SESSION_EXPIRED_MESSAGE,
            "param": None,
            "event_id": None,
        },
    }


def malformed_message(kind: MalformedKind, *, response_id: str | None, item_id: str | None) -> str:
    """The text of one malformed server message.

    Args:
        kind: See ``Faults.malformed_kind``.
        response_id: The response in progress, if any (else a made-up one).
        item_id: Its output item, if any (else a made-up one).
    """
    event: dict[str, Any] = {
        "type": "response.output_audio.delta",
        "event_id": new_id("event_"),
        "response_id": response_id or new_id("resp_"),
        "item_id": item_id or new_id("item_"),
        "output_index": 0,
        "content_index": 0,
        "delta": "AAAA",
    }
    if kind == "json":
        return json.dumps(event)[:-12]  # cut short: an unterminated string
    event["delta"] = 4096 if kind == "field" else "%% not base64 %%"
    return json.dumps(event)
