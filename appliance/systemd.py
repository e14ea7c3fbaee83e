"""sd_notify for systemd: READY, WATCHDOG from a healthy loop, STATUS in plain words, STOPPING.

:class:`SystemdNotifier` is a :class:`~appliance.status.Companion` of the
daemon (R10). Without ``NOTIFY_SOCKET`` every message is dropped by
``sd_notify`` itself, so the same code runs under systemd and in a terminal.
The watchdog is fed from a coroutine on the daemon's event loop, and only
while the loop turns and the microphone delivers: a loop that is blocked, or
audio callbacks that stopped, starve systemd's watchdog and the service is
restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping

from appliance.status import Health, Phase, Status

logger = logging.getLogger(__name__)

HEALTHY_WITHIN_S = 2.0
"""The loop must have turned, and audio arrived, within this many seconds (R10)."""

EXTEND_WHILE_WAITING_US = 30_000_000
"""How far each error before ``READY=1`` (a device being waited for) pushes systemd's
start timeout away (microseconds): more than the longest wait between two tries."""

Send = Callable[[str], bool]
"""Sends one notification (``"READY=1"``, lines joined by ``\\n``); False if not sent."""


def sd_notify(message: str) -> bool:
    """Sends ``message`` to ``$NOTIFY_SOCKET`` (filesystem or ``@abstract``) with libsystemd.

    Returns:
        True if it was sent; False without ``NOTIFY_SOCKET``.

    Raises:
        OSError: the socket is set but the message could not be sent.
    """
    import systemd.daemon  # libsystemd's sd_notify, via systemd-python

    return bool(systemd.daemon.notify(message))


def watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, as ``sd_watchdog_enabled``.

    Args:
        env: The environment.

    Returns:
        The interval in seconds, or None if systemd asked for no watchdog, or
        asked another process (``$WATCHDOG_PID``).
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2


class SystemdNotifier:
    """Tells systemd what the daemon is doing; one notifier may serve several daemons (reload).

    Args:
        env: The environment, for ``WATCHDOG_USEC``; ``None`` means ``os.environ``.
        send: Sends one notification; the default is libsystemd's ``sd_notify``.
        healthy_within_s: How recent (seconds) the loop's and the audio's
            last signs of life must be for ``WATCHDOG=1``.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        send: Send = sd_notify,
        healthy_within_s: float = HEALTHY_WITHIN_S,
    ) -> None:
        self._env = os.environ if env is None else env
        self._send = send
        self._healthy_within_s = healthy_within_s
        self._reloading = False
        self._started_at: float | None = None
        self._ready = False
        self._sick: str | None = None

    def _notify(self, *lines: str) -> None:
        try:
            self._send("\n".join(lines))
        except OSError as exc:
            # systemd may be gone or restarting; the appliance goes on regardless.
            logger.warning("cannot notify systemd: %s", exc.strerror or exc)

    def started(self) -> None:
        """The devices are open: ``READY=1``."""
        self._started_at = _loop_time()
        self._ready = True
        self._reloading = False
        self._sick = None
        self._notify("READY=1")

    def status(self, status: Status) -> None:
        """``STATUS=`` in plain words, e.g. ``offline: reconnecting in 4 s (...)``.

        An error before ``READY=1`` is a device being waited for: it also sends
        ``EXTEND_TIMEOUT_USEC=``, so that systemd does not time the start out.
        """
        if self._reloading and status.phase is Phase.STOPPING:
            return  # the daemon stops only to be replaced: it says "reloading" already
        if not self._ready and status.phase is Phase.ERROR:
            # Still starting, held up by a missing device that is being waited for.
            self._notify(
                f"STATUS={status.text()}", f"EXTEND_TIMEOUT_USEC={EXTEND_WHILE_WAITING_US}"
            )
            return
        self._notify(f"STATUS={status.text()}")

    def reloading(self) -> None:
        """A new configuration is about to replace the running daemon: ``RELOADING=1``.

        The daemon that stops for the reload then sends no ``STOPPING=1``
        (systemd would wait for the process to exit); the next one's
        ``started`` sends ``READY=1``.
        """
        self._reloading = True
        self._ready = False
        self._notify("RELOADING=1", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        """``STOPPING=1``, unless the daemon stops only to be replaced (reload)."""
        if not self._reloading:
            self._notify("STOPPING=1")

    async def run(self, health: Health) -> None:
        """Sends ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while ``health`` is fresh.

        Returns at once when systemd asked for no watchdog.
        """
        interval_s = watchdog_interval_s(self._env)
        if interval_s is None:
            return
        logger.debug("feeding the systemd watchdog every %.3f s while healthy", interval_s)
        while True:
            problem = self._problem(health, _loop_time())
            if problem is None:
                if self._sick is not None:
                    logger.info("healthy again: feeding the systemd watchdog")
                self._notify("WATCHDOG=1")
            elif problem != self._sick:
                logger.warning("%s: not feeding the systemd watchdog", problem)
            self._sick = problem
            await asyncio.sleep(interval_s)

    def _problem(self, health: Health, now: float) -> str | None:
        """What is unhealthy, in words, or None; a sign never seen counts from ``started``."""
        since = self._started_at if self._started_at is not None else now
        limit = self._healthy_within_s
        audio_at = health.audio_at if health.audio_at is not None else since
        loop_at = health.loop_at if health.loop_at is not None else since
        if now - audio_at > limit:
            return f"no audio from the microphone for {now - audio_at:.1f} s"
        if now - loop_at > limit:
            return f"the daemon's loop has not turned for {now - loop_at:.1f} s"
        return None


def _loop_time() -> float:
    """The running loop's clock (seconds): the one ``Health`` is stamped with."""
    return asyncio.get_running_loop().time()
