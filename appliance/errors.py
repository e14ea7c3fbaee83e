"""The appliance's exceptions: one base, a subclass per layer, local and remote apart.

::

    ApplianceError
    ├── ConfigError                 bad configuration or credential; exit code 78
    ├── HardwareError
    │   ├── AudioDeviceError        also an OSError: a device that fails or vanishes
    │   └── AudioFileError          also a ValueError: a WAV file that cannot be used
    ├── ProtocolError
    │   ├── LocalProtocolError      our own bug: an illegal move of a state machine
    │   └── RemoteProtocolError     the upstream sent something invalid
    └── UpstreamError               the upstream could not be reached or used
        ├── CredentialsRejected     401/403 at the handshake
        └── SessionFailed           the session cannot be used (rejected update, expiry, ...)

A ``RemoteProtocolError`` fails the session and the daemon reconnects; a
``LocalProtocolError`` is a bug and is allowed to crash loudly.
"""

from __future__ import annotations

from collections.abc import Iterable


class ApplianceError(Exception):
    """Base class of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """The configuration or the credential is unusable.

    Carries every problem found, not just the first, so one run of
    ``appliance config`` or ``appliance run`` shows all there is to fix.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"invalid configuration: {self.problems[0]}"
        listed = "".join(f"\n  - {problem}" for problem in self.problems)
        return f"invalid configuration ({len(self.problems)} problems):{listed}"


class HardwareError(ApplianceError):
    """A device or a file standing in for one failed."""


class AudioDeviceError(HardwareError, OSError):
    """An audio device failed to open, or stopped delivering."""


class AudioFileError(HardwareError, ValueError):
    """An audio file is missing, malformed or in an encoding we cannot read."""


class ProtocolError(ApplianceError):
    """Base class of protocol violations."""


class LocalProtocolError(ProtocolError):
    """We attempted something the protocol or a state machine forbids: a bug."""


class RemoteProtocolError(ProtocolError):
    """The upstream sent something that is not a valid Realtime event."""


class UpstreamError(ApplianceError):
    """The upstream could not be reached, or refused to serve us."""


class CredentialsRejected(UpstreamError):
    """The upstream refused the credential (HTTP 401 or 403 at the handshake)."""


class SessionFailed(UpstreamError):
    """An upstream session cannot be used and must be replaced."""
