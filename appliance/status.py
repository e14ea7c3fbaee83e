"""What the appliance is doing, in one word and a reason, for everything that shows it.

The daemon computes one :class:`Status` from the turn machine and the link,
and tells every :class:`Companion` (the status LED, systemd's ``STATUS=``, the
journal) whenever it changes (R5, R10).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Phase(enum.Enum):
    """The appliance's state as a person would name it; each has an LED pattern."""

    STARTING = "starting"
    CONNECTING = "connecting"
    READY = "ready"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    OFFLINE = "offline"
    ERROR = "error"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Status:
    """A phase and, where it helps, why: ``offline: reconnecting in 4 s (refused)``."""

    phase: Phase
    detail: str = ""

    def text(self) -> str:
        """Plain words for ``STATUS=`` and logs. Never holds a secret."""
        return f"{self.phase.value}: {self.detail}" if self.detail else self.phase.value


@dataclass
class Health:
    """Signs of life that a watchdog checks (loop clock, seconds)."""

    audio_at: float | None = None
    """When the microphone last delivered audio."""
    loop_at: float | None = None
    """When the daemon's loop last handled something or woke up."""


class Companion(Protocol):
    """Follows the daemon's life and shows it: an LED, systemd, a test recorder."""

    def started(self) -> None:
        """The devices are open: the daemon is ready in the systemd sense."""

    def status(self, status: Status) -> None:
        """The status changed (or is told again: each try for a device still missing)."""

    def stopping(self) -> None:
        """The daemon is on its way out."""

    async def run(self, health: Health) -> None:
        """Runs beside the daemon from ``started`` until it stops (may just wait)."""
