"""Config values made into their fields' types: TOML values as they are, environment text parsed."""

from __future__ import annotations

import json
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from appliance.configtext import did_you_mean, show

if TYPE_CHECKING:
    from appliance.config import ScriptStep

__all__ = ["Invalid", "coerce", "coerce_setting"]


class Invalid(ValueError):
    """A value that cannot be used; the message says what was expected."""


def coerce(value: object, hint: object) -> object:
    """Returns the TOML ``value`` as the type ``hint``, with this module's rules.

    Raises:
        ValueError: the value is not of that type; the message says what was expected.
    """
    return coerce_setting(value, hint, text=False)


def coerce_setting(value: object, hint: object, *, text: bool) -> object:
    """Returns ``value`` as the type ``hint``, parsing it first if it is ``text``.

    Args:
        value: The value as set: from TOML or the overrides, or a string from the environment.
        hint: The field's type.
        text: ``value`` is a string still to be parsed (it came from the environment).

    Raises:
        Invalid: the value is not of (or does not parse to) that type.
    """
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        shown = ", ".join(json.dumps(c) for c in choices)
        close = did_you_mean(str(value), list(choices)) if isinstance(value, str) else ""
        raise Invalid(f"expected one of {shown}, got {show(value)}{close}")
    if hint == tuple[str, ...]:  # a list of names: a TOML array, or commas in the environment
        if text:
            assert isinstance(value, str)
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise Invalid(f"expected a list of names, got {show(value)}")
    if origin is tuple:  # the button script
        if text:
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                raise Invalid(f"expected a TOML array of pairs, got {show(value)}") from None
        return _coerce_script(value)
    if text:
        assert isinstance(value, str)
        return _parse_text(value, hint)
    if hint is str or hint is Path:
        if isinstance(value, str | os.PathLike):
            return hint(os.fspath(value))
        raise Invalid(f"expected a string, got {show(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise Invalid(f"expected true or false, got {show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid(f"expected an integer, got {show(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise Invalid(f"expected a number, got {show(value)}")
    raise AssertionError(f"no coercion to {hint}")  # a field of a type added without one


def _parse_text(value: str, hint: object) -> object:
    if hint is str:
        return value
    if hint is Path:
        return Path(value)
    if hint is bool:
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise Invalid(f"expected true or false, got {show(value)}")
    expected = "an integer" if hint is int else "a number"
    try:
        number = int(value) if hint is int else float(value)
    except ValueError:
        raise Invalid(f"expected {expected}, got {show(value)}") from None
    if not math.isfinite(number):
        raise Invalid(f"expected {expected}, got {show(value)}")
    return number


def _coerce_script(value: object) -> tuple[ScriptStep, ...]:
    if not isinstance(value, list | tuple):
        raise Invalid(f'expected a list of [seconds, "press" or "release"], got {show(value)}')
    steps: list[ScriptStep] = []
    for index, step in enumerate(value, 1):
        if (
            isinstance(step, list | tuple)
            and len(step) == 2
            and isinstance(step[0], int | float)
            and not isinstance(step[0], bool)
            and math.isfinite(step[0])
            and step[1] in ("press", "release")
        ):
            steps.append((float(step[0]), step[1]))
        else:
            raise Invalid(
                f'step {index}: expected [seconds, "press" or "release"], got {show(step)}'
            )
    return tuple(steps)
