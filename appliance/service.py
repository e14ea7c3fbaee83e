"""``appliance run``: the daemon as a service, telling systemd, reloading its config on SIGHUP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance import config
from appliance.daemon import Daemon
from appliance.status import Companion
from appliance.systemd import SystemdNotifier
from appliance.wiring import build_daemon, run_until_stopped


async def serve(
    path: Path,
    *,
    companions: Sequence[Companion] = (),
    env: Mapping[str, str] | None = None,
) -> int:
    """Runs the daemon of the config file ``path`` until SIGTERM or SIGINT.

    systemd is told ``READY=1``, ``STATUS=``, ``WATCHDOG=1`` and ``STOPPING=1``
    (nothing is sent without ``NOTIFY_SOCKET``). SIGHUP reads ``path`` again:
    a good config replaces the running daemon (``RELOADING=1``, then
    ``READY=1``); a bad one is logged and the running daemon goes on.

    Args:
        path: The TOML config file.
        companions: More companions (an LED, ...), kept across reloads.
        env: The environment, for ``APPLIANCE_*``, ``CREDENTIALS_DIRECTORY`` and
            ``WATCHDOG_USEC``; ``None`` means ``os.environ``.

    Returns:
        The exit code: 0 once stopped.

    Raises:
        ConfigError: the configuration at start is bad (exit code 78).
    """
    notifier = SystemdNotifier(env)
    everyone = (notifier, *companions)

    def build() -> Daemon:
        return build_daemon(config.load(path, env=env), companions=everyone)

    def reload() -> Daemon:
        replacement = build()  # raises on a bad config, before anything is stopped
        notifier.reloading()
        return replacement

    return await run_until_stopped(build(), reload=reload)
