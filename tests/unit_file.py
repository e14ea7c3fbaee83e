"""The shipped systemd unit read as settings, and with its paths substituted for tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "appliance.service"
SYSUSERS = REPO / "systemd" / "appliance.sysusers"

SHIPPED_EXECUTABLE = "/opt/appliance/venv/bin/appliance"
"""Where the unit expects the installed command."""
SHIPPED_ETC = "/etc/appliance/"
"""Where the unit expects the config and the key."""


def settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given, in order (systemd allows repeats)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def substituted(*, executable: str, etc: str) -> str:
    """The shipped unit with only its paths changed: the command's, and the config folder's.

    Args:
        executable: Replaces ``/opt/appliance/venv/bin/appliance``.
        etc: Replaces ``/etc/appliance/`` (end it with a slash).
    """
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXECUTABLE) == 1, "the unit names the command once, in ExecStart="
    return text.replace(SHIPPED_EXECUTABLE, executable).replace(SHIPPED_ETC, etc)
