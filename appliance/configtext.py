"""The configuration as text: TOML for ``appliance config``, and values in problem messages."""

from __future__ import annotations

import difflib
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.config import Config

__all__ = ["MASK", "did_you_mean", "redact", "render", "show", "toml_value"]

MASK = "********"
"""What a secret looks like wherever it is shown."""


def render(config: Config) -> str:
    """Renders the effective config as TOML, with ``api_key = "********"`` under ``[upstream]``.

    Args:
        config: The configuration to show.

    Returns:
        TOML text, one section per dataclass; loading it back (less the
        ``api_key`` line) gives the same values.
    """
    lines = ["# the effective configuration of appliance; secrets masked"]
    if config.path is not None:
        lines.append(f"# read from {config.path}")
    for part in fields(config):
        section = getattr(config, part.name)
        if not is_dataclass(section):
            continue  # the key and the path: shown above, not sections
        lines += ["", f"[{part.name}]"]
        for f in fields(section):
            lines.append(f"{f.name} = {toml_value(getattr(section, f.name))}")
            if f.name == "api_key_file":
                lines.append(f"api_key = {toml_value(str(config.api_key))}")
    return "\n".join(lines) + "\n"


def toml_value(value: object) -> str:
    """Returns ``value`` as a TOML value; strings, paths, numbers, booleans and arrays.

    Raises:
        TypeError: ``value`` is of none of those types.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).translate(_TOML_ESCAPES) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


_TOML_ESCAPES: dict[int, str] = {c: f"\\u{c:04X}" for c in [*range(0x20), 0x7F]}
_TOML_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t"})


def show(value: object) -> str:
    """Shows a bad value in a message: short, TOML-like, and never a key."""
    if isinstance(value, str):
        shown = redact(value)
        return json.dumps(shown if len(shown) <= 60 else shown[:57] + "...", ensure_ascii=False)
    try:
        return toml_value(value)
    except TypeError:
        shown = repr(value)
        return shown if len(shown) <= 60 else shown[:57] + "..."


def redact(text: str) -> str:
    """Returns ``text``, or ``MASK`` if it looks like an API key."""
    # OpenAI keys start with "sk-": one pasted into the wrong place is not echoed.
    return MASK if text.strip().startswith("sk-") else text


def did_you_mean(word: str, choices: list[str]) -> str:
    """Returns ``"; did you mean <choice>?"`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]}?" if close else ""
