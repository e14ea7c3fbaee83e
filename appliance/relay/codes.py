"""The close codes the relay sends to devices, and how an upstream close maps to one."""

from __future__ import annotations

__all__ = [
    "REPLACED",
    "REVOKED",
    "UPSTREAM_LOST",
    "UPSTREAM_UNAVAILABLE",
    "for_upstream_close",
]

REPLACED = 4001
"""A newer connection of the same device took this one's place."""

REVOKED = 4003
"""The device was removed from the devices file while connected."""

UPSTREAM_UNAVAILABLE = 1013
"""The upstream could not be reached or refused the relay ("try again later")."""

UPSTREAM_LOST = 1011
"""The upstream connection ended without a close frame, or with a code not passed on."""

# Codes an upstream close is passed on with: normal, going away (1001 is
# session expiry), and the "try again" family the SDK's reconnect also knows.
_PASSED_ON = frozenset({1000, 1001, 1011, 1012, 1013})

_MAX_REASON_BYTES = 123
"""A close frame's reason is at most 123 bytes of UTF-8."""


def for_upstream_close(code: int | None, reason: str) -> tuple[int, str]:
    """The close code and reason for a device whose upstream closed with ``code``.

    Every result is one the device's own recovery treats as a lost session:
    it reconnects with backoff and opens a fresh session.

    Args:
        code: The upstream's close code; ``None`` or 1006 if it sent none.
        reason: The upstream's close reason.

    Returns:
        ``(code, reason)`` to close the device's connection with.
    """
    if code in _PASSED_ON or (code is not None and 3000 <= code <= 4999):
        return code, clip(reason or f"upstream closed ({code})")
    if code is None or code in (1005, 1006, 1015):
        return UPSTREAM_LOST, "upstream connection lost"
    return UPSTREAM_LOST, clip(f"upstream closed ({code}{' ' + reason if reason else ''})")


def clip(reason: str) -> str:
    """``reason`` cut to fit a close frame (123 bytes of UTF-8)."""
    encoded = reason.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return reason
    return encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
