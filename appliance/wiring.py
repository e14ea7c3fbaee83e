"""Builds the adapters a configuration asks for and runs the daemon with them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from appliance.audio.filedev import FileMicrophone, FileSpeaker
from appliance.audio.ports import Microphone, Speaker
from appliance.button import Button, ScriptButton
from appliance.config import Config
from appliance.daemon import Daemon, Observer
from appliance.errors import ConfigError
from appliance.status import Companion
from appliance.transport import Backoff, WebSocketUpstream

logger = logging.getLogger(__name__)


def audio_devices(config: Config) -> tuple[Microphone, Speaker]:
    """The microphone and speaker of ``config.audio``.

    Raises:
        ConfigError: the backend is not available in this build.
    """
    audio = config.audio
    if audio.backend == "file":
        return FileMicrophone(Path(audio.input)), FileSpeaker(Path(audio.output))
    raise ConfigError(
        [f'audio.backend = {audio.backend!r} is not available yet: use "file" for now']
    )


def talk_button(config: Config) -> Button:
    """The button of ``config.button``.

    Raises:
        ConfigError: the backend is not available in this build.
    """
    button = config.button
    if button.backend == "script":
        return ScriptButton(button.script)
    raise ConfigError(
        [f'button.backend = {button.backend!r} is not available yet: use "script" for now']
    )


def upstream_link(config: Config) -> WebSocketUpstream:
    """The WebSocket link of ``config.upstream`` with the ``[watchdog]`` timings."""
    watchdog = config.watchdog
    return WebSocketUpstream(
        config.upstream.url,
        model=config.upstream.model,
        api_key=config.api_key.reveal(),
        ping_interval_s=watchdog.ping_interval_s,
        ping_timeout_s=watchdog.ping_timeout_s,
        backoff=Backoff(base_s=watchdog.reconnect_base_s, max_s=watchdog.reconnect_max_s),
        rejected_retry_s=watchdog.rejected_retry_s,
    )


def build_daemon(
    config: Config,
    *,
    observer: Observer | None = None,
    companions: Sequence[Companion] = (),
) -> Daemon:
    """The daemon with the adapters ``config`` selects.

    Raises:
        ConfigError: an adapter the configuration names is not available.
    """
    microphone, speaker = audio_devices(config)
    return Daemon(
        config,
        microphone=microphone,
        speaker=speaker,
        button=talk_button(config),
        upstream=upstream_link(config),
        observer=observer,
        companions=companions,
    )


async def run_until_stopped(daemon: Daemon) -> int:
    """Run ``daemon``; SIGTERM and SIGINT stop it cleanly.

    Returns:
        The daemon's exit code (0 also when stopped by a signal).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop(signum: int) -> None:
        nonlocal stopping
        logger.info("stopping on %s", signal.Signals(signum).name)
        stopping = True
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await daemon.run()
    except asyncio.CancelledError:
        if not stopping:
            raise
        task.uncancel()
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
