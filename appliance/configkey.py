"""The API key: read from the systemd credential or a key file, and masked wherever shown."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

from appliance.configtext import MASK

__all__ = ["CREDENTIAL_NAME", "Secret", "read_key"]

CREDENTIAL_NAME = "openai-api-key"
"""The systemd credential (``LoadCredential=``) holding the API key."""


class Secret:
    """A secret string that shows as ``********`` everywhere but in ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Returns the secret itself; only the code that sends it should call this."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # A digest, so the hash reveals nothing the value's own hash would.
        return hash(hashlib.sha256(self._value.encode()).digest())


def read_key(key_file: Path, env: Mapping[str, str]) -> tuple[str | None, str]:
    """Reads the API key from the systemd credential, or else from ``key_file``.

    Returns:
        ``(key, "")``, or ``(None or the key, problem)``: no message contains the key.
    """
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        # systemd keeps its credentials private to the unit: their mode is its business.
        source, check_mode = Path(credentials) / CREDENTIAL_NAME, False
    else:
        source, check_mode = key_file, True
    try:
        if check_mode and (mode := source.stat().st_mode & 0o777) & 0o044:
            return None, (
                f"{source} is readable by group or others (mode {mode:04o}), so the key is "
                f"refused; fix it with: chmod 600 {source}"
            )
        raw = source.read_bytes()
    except FileNotFoundError:
        return None, (
            f"no API key: {source} does not exist; put the key in it (chmod 600), "
            f"or give the systemd credential {CREDENTIAL_NAME}"
        )
    except OSError as exc:
        return None, f"cannot read the API key from {source}: {exc.strerror}"
    try:
        key = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"the API key in {source} is not UTF-8 text"
    if not key:
        return None, f"the API key file {source} is empty"
    if any(char.isspace() or not char.isprintable() for char in key):
        return key, f"the API key in {source} has spaces, control characters or several lines"
    return key, ""
