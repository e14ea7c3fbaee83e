"""Composable checks of JSON values, reporting problems in the real service's wording.

A check is a function ``(value, path) -> Problem | None``. ``path`` is the
dotted name the service reports in ``error.param`` (``session.audio.output.voice``,
``item.content[0].type``). Objects are allowlists: an unknown key is an
``unknown_parameter``. The first problem wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Check",
    "Problem",
    "anything",
    "array",
    "bad_value",
    "boolean",
    "by_json_type",
    "const",
    "integer",
    "mapping",
    "nullable",
    "number",
    "obj",
    "string",
    "tagged",
    "wrong_type",
]


@dataclass(frozen=True)
class Problem:
    """Why a client event is rejected: the fields of an ``error`` event's ``error``."""

    code: str | None
    message: str
    param: str | None


Check = Callable[[Any, str], Problem | None]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def wrong_type(value: Any, path: str, expected: str) -> Problem:
    actual = _article(_json_type(value))
    return Problem(
        "invalid_type",
        f"Invalid type for '{path}': expected {expected}, but got {actual} instead.",
        path,
    )


def _listing(values: tuple[object, ...]) -> str:
    shown = [f"'{v}'" if isinstance(v, str) else str(v) for v in values]
    if len(shown) <= 2:
        return " and ".join(shown)
    return ", ".join(shown[:-1]) + f", and {shown[-1]}"


def bad_value(value: Any, path: str, choices: tuple[object, ...]) -> Problem:
    shown = f"'{value}'" if isinstance(value, str) else repr(value)
    return Problem(
        "invalid_value",
        f"Invalid value: {shown}. Supported values are: {_listing(choices)}.",
        path,
    )


def anything() -> Check:
    """Accept any JSON value (free-form fields such as tool parameters)."""
    return lambda value, path: None


def string(*choices: str) -> Check:
    """A string, optionally one of ``choices``."""

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, str):
            return wrong_type(value, path, "a string")
        if choices and value not in choices:
            return bad_value(value, path, choices)
        return None

    return check


def boolean() -> Check:
    """A JSON boolean."""

    def check(value: Any, path: str) -> Problem | None:
        return None if isinstance(value, bool) else wrong_type(value, path, "a boolean")

    return check


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Check:
    """An integer within ``[minimum, maximum]`` (either bound optional)."""

    def check(value: Any, path: str) -> Problem | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return wrong_type(value, path, "an integer")
        if minimum is not None and value < minimum:
            return Problem(
                "integer_below_min_value",
                f"Invalid '{path}': integer below minimum value. "
                f"Expected a value >= {minimum}, but got {value} instead.",
                path,
            )
        if maximum is not None and value > maximum:
            return Problem(
                "integer_above_max_value",
                f"Invalid '{path}': integer above maximum value. "
                f"Expected a value <= {maximum}, but got {value} instead.",
                path,
            )
        return None

    return check


def number(*, minimum: float, maximum: float) -> Check:
    """A number (integer or decimal) within ``[minimum, maximum]``."""

    def check(value: Any, path: str) -> Problem | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return wrong_type(value, path, "a decimal")
        if value < minimum:
            return Problem(
                "decimal_below_min_value",
                f"Invalid '{path}': decimal below minimum value. "
                f"Expected a value >= {minimum}, but got {value} instead.",
                path,
            )
        if value > maximum:
            return Problem(
                "decimal_above_max_value",
                f"Invalid '{path}': decimal above maximum value. "
                f"Expected a value <= {maximum}, but got {value} instead.",
                path,
            )
        return None

    return check


def const(*choices: int) -> Check:
    """One of a few integers (``rate`` of ``audio/pcm``: 24000 only)."""

    def check(value: Any, path: str) -> Problem | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return wrong_type(value, path, "an integer")
        return None if value in choices else bad_value(value, path, choices)

    return check


def nullable(inner: Check) -> Check:
    """``null`` or whatever ``inner`` accepts."""
    return lambda value, path: None if value is None else inner(value, path)


def array(item: Check) -> Check:
    """A JSON array whose every element passes ``item``."""

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, list):
            return wrong_type(value, path, "an array")
        for index, element in enumerate(value):
            problem = item(element, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    return check


def mapping(item: Check) -> Check:
    """A JSON object with free keys whose every value passes ``item``."""

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return wrong_type(value, path, "an object")
        for key, element in value.items():
            problem = item(element, _join(path, str(key)))
            if problem is not None:
                return problem
        return None

    return check


def obj(fields: Mapping[str, Check], *, required: tuple[str, ...] = ()) -> Check:
    """A JSON object with exactly the keys in ``fields`` allowed.

    Checked in this order: required keys present, no unknown key, then each value.
    """

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return wrong_type(value, path, "an object")
        for key in required:
            if key not in value:
                name = _join(path, key)
                return Problem(
                    "missing_required_parameter",
                    f"Missing required parameter: '{name}'.",
                    name,
                )
        for key in value:
            if key not in fields:
                name = _join(path, str(key))
                return Problem("unknown_parameter", f"Unknown parameter: '{name}'.", name)
        for key, element in value.items():
            problem = fields[key](element, _join(path, key))
            if problem is not None:
                return problem
        return None

    return check


def tagged(tag: str, variants: Mapping[str, Check]) -> Check:
    """An object whose ``tag`` key picks the check for the rest (``type``, ``role``)."""
    choices = tuple(variants)

    def check(value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return wrong_type(value, path, "an object")
        name = _join(path, tag)
        if tag not in value:
            return Problem(
                "missing_required_parameter", f"Missing required parameter: '{name}'.", name
            )
        kind = value[tag]
        if not isinstance(kind, str):
            return wrong_type(kind, name, "a string")
        if kind not in variants:
            return bad_value(kind, name, choices)
        return variants[kind](value, path)

    return check


def by_json_type(**variants: Check) -> Check:
    """Dispatch on the JSON type (``string``, ``object``, ``null``, ``integer``, ...)."""
    expected = " or ".join(_article(name) for name in variants)

    def check(value: Any, path: str) -> Problem | None:
        kind = _json_type(value)
        if kind not in variants:
            return wrong_type(value, path, expected)
        return variants[kind](value, path)

    return check
