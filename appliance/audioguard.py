"""Ends the daemon when the microphone has been silent too long, so systemd restarts it."""

from __future__ import annotations

import asyncio
import logging

from appliance.errors import AudioDeviceError
from appliance.status import Health, Status

logger = logging.getLogger(__name__)


class AudioGuard:
    """A :class:`~appliance.status.Companion` that fails when audio is gone for good.

    The audio adapters reopen a failed device on their own, for as long as
    it takes; this guard sets the limit. With no audio for ``lost_exit_s``
    seconds, :meth:`run` raises :class:`~appliance.errors.AudioDeviceError`:
    the daemon's task group ends, ``appliance run`` exits non-zero, and
    systemd restarts the process (which also rescans the sound cards).

    Args:
        lost_exit_s: Seconds without audio before giving up.
    """

    def __init__(self, *, lost_exit_s: float) -> None:
        if lost_exit_s <= 0:
            raise ValueError(f"lost_exit_s must be positive, got {lost_exit_s}")
        self.lost_exit_s = lost_exit_s
        self._started_at: float | None = None

    def started(self) -> None:
        """Start counting: a microphone that never delivers counts from here."""
        self._started_at = asyncio.get_running_loop().time()

    def status(self, status: Status) -> None:
        """Nothing to show."""

    def stopping(self) -> None:
        """Nothing to release."""

    async def run(self, health: Health) -> None:
        """Wait while audio arrives; raise once it has been gone ``lost_exit_s`` seconds.

        Raises:
            AudioDeviceError: no audio for ``lost_exit_s`` seconds.
        """
        loop = asyncio.get_running_loop()
        since = self._started_at if self._started_at is not None else loop.time()
        while True:
            last = health.audio_at if health.audio_at is not None else since
            remaining_s = last + self.lost_exit_s - loop.time()
            if remaining_s <= 0:
                logger.critical(
                    "no audio from the microphone for %g s: exiting so that the service restarts",
                    self.lost_exit_s,
                )
                raise AudioDeviceError(f"no audio from the microphone for {self.lost_exit_s:g} s")
            await asyncio.sleep(remaining_s)
