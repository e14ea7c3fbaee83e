"""Validation of Realtime messages against the official ``openai`` package's GA types.

The SDK's models accept unknown keys silently (pydantic ``extra="allow"``) and its
own discriminator is not pydantic's, so a beta-era key or a misspelt field would
pass. Here the unions are rebuilt with a real ``discriminator="type"``, and the
validated model is walked for extras, which are rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Union, get_args

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

__all__ = [
    "SERVER_EXTRAS",
    "SchemaError",
    "schema_observer",
    "validate_client_event",
    "validate_server_event",
]

SERVER_EXTRAS: frozenset[tuple[str, str]] = frozenset(
    {
        # The real service sends these in every session object, but the SDK's
        # RealtimeSessionCreateRequest (a request type reused for responses) lacks them.
        ("session.created", "session.id"),
        ("session.created", "session.object"),
        ("session.created", "session.expires_at"),
        ("session.updated", "session.id"),
        ("session.updated", "session.object"),
        ("session.updated", "session.expires_at"),
    }
)
"""(event type, key path) pairs a server event may carry beyond the SDK's types."""


class SchemaError(AssertionError):
    """A message does not match the GA types."""


def _members(alias: Any) -> tuple[type[pydantic.BaseModel], ...]:
    """The event classes of one of the SDK's ``Annotated[Union[...], PropertyInfo]`` aliases."""
    union = get_args(alias)[0]
    members = get_args(union)
    assert members, f"no union members in {alias!r}"
    return members


@functools.cache
def _adapter(direction: str) -> pydantic.TypeAdapter[Any]:
    alias = RealtimeClientEvent if direction == "client" else RealtimeServerEvent
    union = Union[_members(alias)]  # type: ignore[valid-type]  # noqa: UP007
    discriminated: Any = Annotated[union, pydantic.Field(discriminator="type")]
    return pydantic.TypeAdapter(discriminated)


def _extras(value: Any, path: str) -> Iterator[str]:
    """Dotted paths of every key the types do not define, found recursively."""
    if isinstance(value, pydantic.BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, element in enumerate(value):
            yield from _extras(element, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, element in value.items():
            yield from _extras(element, f"{path}.{key}" if path else str(key))


def _validate(direction: str, message: dict[str, Any]) -> None:
    if not isinstance(message, dict):
        raise SchemaError(f"{direction} message is not a JSON object: {message!r}")
    try:
        model = _adapter(direction).validate_python(message)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SchemaError(
            f"{direction} event {message.get('type')!r} does not match the GA types: {problems}"
        ) from None
    kind = str(message.get("type"))
    unknown = [
        path
        for path in _extras(model, "")
        if direction == "client" or (kind, path) not in SERVER_EXTRAS
    ]
    if unknown:
        raise SchemaError(f"{direction} event {kind!r} has keys the GA types lack: {unknown}")


def validate_client_event(message: dict[str, Any]) -> None:
    """Check a client event against ``openai.types.realtime.RealtimeClientEvent``.

    Raises:
        SchemaError: Unknown type, missing or mistyped field, or any unknown key.
    """
    _validate("client", message)


def validate_server_event(message: dict[str, Any]) -> None:
    """Check a server event against ``openai.types.realtime.RealtimeServerEvent``.

    Keys beyond the types are rejected, except those in ``SERVER_EXTRAS``.

    Raises:
        SchemaError: Unknown type, missing or mistyped field, or an unknown key.
    """
    _validate("server", message)


def schema_observer() -> tuple[Callable[[str, dict[str, Any]], None], list[str]]:
    """An ``Emulator`` observer that validates every message, and the list it fills.

    Returns:
        The observer, and a list that collects one description per violation.
    """
    violations: list[str] = []

    def observe(direction: str, message: dict[str, Any]) -> None:
        try:
            if direction == "client":
                validate_client_event(message)
            else:
                validate_server_event(message)
        except SchemaError as exc:
            violations.append(str(exc))

    return observe, violations
