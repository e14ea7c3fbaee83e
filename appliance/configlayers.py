"""The layers over the defaults: TOML file < environment < overrides, then the hardware profile."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from appliance.configtext import did_you_mean, redact, show
from appliance.hardware import PROFILES

__all__ = ["ENV_PREFIX", "Layers", "Setting"]

ENV_PREFIX = "APPLIANCE_"
"""Environment variables ``APPLIANCE_<SECTION>_<KEY>`` override the config file."""

_NO_KEY_IN_CONFIG = (
    "the API key never goes in the config: put the key in a file (chmod 600) "
    "and set upstream.api_key_file"
)


@dataclass
class Setting:
    """A value as set, before coercion, and where it was set."""

    value: object
    """The value: as TOML or the overrides give it, or a string from the environment."""
    origin: str
    """Where it was set: the file, ``$APPLIANCE_…``, ``overrides`` or ``profile <name>``."""
    text: bool
    """From the environment: a string still to be parsed."""


class Layers:
    """The settings by section and key; each layer added overrides the ones before.

    Problems with the layers themselves (an unreadable file, an unknown key) are
    appended to ``problems``; the values are checked once coerced, by the caller.

    Args:
        sections: The section dataclasses by name; their fields are the known keys.
    """

    def __init__(self, sections: Mapping[str, type[Any]]) -> None:
        self.sections = sections
        """The section dataclasses by name."""
        self.settings: dict[str, dict[str, Setting]] = {name: {} for name in sections}
        """The settings of each section, by key."""
        self.problems: list[str] = []
        """Every problem found so far, each prefixed with where it is."""
        self._file = ""

    def add_file(self, path: Path) -> None:
        """Adds the settings of the TOML file at ``path``."""
        self._file = str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.problems.append(f"{path}: no such config file")
            return
        except OSError as exc:
            self.problems.append(f"{path}: cannot read: {exc.strerror}")
            return
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
            return
        except tomllib.TOMLDecodeError as exc:
            self.problems.append(f"{path}: TOML syntax error: {exc}")
            return
        for section, table in document.items():
            if section == "api_key":
                self.problems.append(f"{path}: api_key: {_NO_KEY_IN_CONFIG}")
            elif section not in self.sections:
                self.problems.append(f"{path}: {self._unknown_section(section)}")
            elif not isinstance(table, dict):
                detail = f"expected a [{section}] table, got {show(table)}"
                self.problems.append(f"{path}: {section}: {detail}")
            else:
                for key, value in table.items():
                    self._put(section, key, Setting(value, str(path), False))

    def add_env(self, env: Mapping[str, str]) -> None:
        """Adds the ``APPLIANCE_<SECTION>_<KEY>`` variables of ``env``, as text to parse."""
        for name in sorted(env):
            if not name.startswith(ENV_PREFIX):
                continue
            # Section names have no underscores, so the first one ends the section.
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
            origin = f"${name}"
            if section not in self.sections:
                self.problems.append(f"{origin}: {self._unknown_section(section)}")
            elif not key:
                self.problems.append(f"{origin}: expected {ENV_PREFIX}{section.upper()}_<KEY>")
            else:
                self._put(section, key, Setting(env[name], origin, True))

    def add_overrides(self, overrides: Mapping[str, object]) -> None:
        """Adds already-typed values by dotted key (``"audio.min_turn_ms"``)."""
        for dotted, value in overrides.items():
            section, dot, key = dotted.partition(".")
            if not dot or "." in key:
                self.problems.append(f"overrides: {dotted}: expected a key like audio.min_turn_ms")
            elif section not in self.sections:
                self.problems.append(f"overrides: {self._unknown_section(section)}")
            else:
                self._put(section, key, Setting(value, "overrides", False))

    def add_profile(self) -> None:
        """Adds the settings of ``hardware.profile`` under everything set explicitly.

        An unknown or mistyped profile adds nothing: the checks report it.
        """
        chosen = self.settings["hardware"].get("profile")
        profile = PROFILES.get(chosen.value) if chosen and isinstance(chosen.value, str) else None
        if profile is None:
            return
        for dotted, value in profile.settings.items():
            section, _, key = dotted.partition(".")
            self.settings[section].setdefault(key, Setting(value, f"profile {profile.name}", False))

    def where(self, dotted: str, other: str = "") -> str:
        """Prefixes ``dotted`` with where it was set, or else ``other``, or else the file."""
        for candidate in (dotted, other):
            section, _, key = candidate.partition(".")
            if key in self.settings.get(section, {}):
                return f"{self.settings[section][key].origin}: {dotted}"
        return f"{self._file}: {dotted}" if self._file else dotted

    def _put(self, section: str, key: str, setting: Setting) -> None:
        known = [f.name for f in fields(self.sections[section])]
        if key == "api_key":
            self.problems.append(f"{setting.origin}: {section}.api_key: {_NO_KEY_IN_CONFIG}")
        elif key not in known:
            hint = did_you_mean(key, known)
            self.problems.append(f"{setting.origin}: unknown key {section}.{redact(key)}{hint}")
        else:
            self.settings[section][key] = setting

    def _unknown_section(self, section: str) -> str:
        for name, cls in self.sections.items():
            if section in {f.name for f in fields(cls)}:
                return f"{section} is not a section: it belongs in [{name}]"
        hint = did_you_mean(section, list(self.sections))
        return f"unknown section [{redact(section)}]{hint}"
