"""Builds the adapters a configuration asks for and runs the daemon with them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.audio.filemic import FileMicrophone
from appliance.audio.filespeaker import FileSpeaker
from appliance.audio.ports import Microphone, Speaker
from appliance.audioguard import AudioGuard
from appliance.button import Button, ScriptButton
from appliance.config import Config
from appliance.daemon import Daemon, Observer
from appliance.errors import ApplianceError, ConfigError
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
        microphone = FileMicrophone(Path(audio.input), stall_s=audio.stall_s)
        return microphone, FileSpeaker(Path(audio.output))
    if audio.backend == "pyaudio":
        # Imported here: the file backend (demo, tests) needs no PortAudio.
        from appliance.audio.pa_microphone import PyAudioMicrophone
        from appliance.audio.pa_speaker import PyAudioSpeaker

        return PyAudioMicrophone(
            audio.input,
            rate_hz=audio.input_rate_hz,
            period_ms=audio.period_ms,
            stall_s=audio.stall_s,
        ), PyAudioSpeaker(
            audio.output,
            rate_hz=audio.output_rate_hz,
            period_ms=audio.period_ms,
            prebuffer_ms=audio.prebuffer_ms,
            stall_s=audio.stall_s,
        )
    raise ConfigError([f"audio.backend = {audio.backend!r} is not available in this build"])


def talk_button(config: Config) -> Button:
    """The button of ``config.button``.

    Raises:
        ConfigError: the backend is not available in this build.
    """
    button = config.button
    if button.backend == "script":
        return ScriptButton(button.script)
    if button.backend == "gpio":
        from appliance.gpio_button import GpioButton

        return GpioButton(
            button.pin, pull=button.pull, active=button.active, debounce_ms=button.debounce_ms
        )
    if button.backend == "keyboard":
        from appliance.keyboard_button import KeyboardButton

        return KeyboardButton()
    raise ConfigError([f"button.backend = {button.backend!r} is not available in this build"])


def device_companions(config: Config) -> list[Companion]:
    """The companions the devices of ``config`` bring: the status LED and the audio guard."""
    found: list[Companion] = [AudioGuard(lost_exit_s=config.audio.lost_exit_s)]
    led = config.led
    if led.kind != "none":
        from appliance.indicator import LedIndicator

        pins = (led.red_pin, led.green_pin, led.blue_pin) if led.kind == "rgb" else (led.pin,)
        found.append(LedIndicator(led.kind, pins, active_high=led.active_high))
    return found


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
        companions=(*companions, *device_companions(config)),
    )


Reload = Callable[[], Daemon]
"""Builds a daemon from the configuration read anew; raises ``ApplianceError`` if it is bad."""


async def run_until_stopped(daemon: Daemon, *, reload: Reload | None = None) -> int:
    """Run ``daemon``; SIGTERM and SIGINT stop it cleanly, SIGHUP reloads the configuration.

    On SIGHUP, ``reload`` builds the daemon of the new configuration. If that
    fails (a bad config), the error is logged and the running daemon goes on;
    otherwise the running daemon stops (devices closed) and the new one
    starts, and connects afresh.

    Args:
        daemon: The daemon to run first.
        reload: Builds the replacement on SIGHUP; ``None``: SIGHUP is logged and ignored.

    Returns:
        The daemon's exit code (0 also when stopped by a signal).
    """
    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for signum in handled:
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    running = asyncio.create_task(daemon.run(), name="daemon")
    try:
        while True:
            received = asyncio.create_task(signals.get(), name="signals")
            try:
                await asyncio.wait({running, received}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                received.cancel()
            if running.done():
                return running.result()
            signum = received.result()
            if signum is not signal.SIGHUP:
                logger.info("stopping on %s", signum.name)
                await _stop(running)
                return 0
            replacement = _reloaded(reload)
            if replacement is not None:
                await _stop(running)
                running = asyncio.create_task(replacement.run(), name="daemon")
    finally:
        for signum in handled:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        if not running.done():  # we were cancelled ourselves
            await _stop(running)


def _reloaded(reload: Reload | None) -> Daemon | None:
    """The replacement daemon ``reload`` builds, or None (logged) if there is none."""
    if reload is None:
        logger.warning("SIGHUP: nothing to reload, carrying on")
        return None
    logger.info("SIGHUP: reloading the configuration")
    try:
        return reload()
    except ApplianceError as exc:
        logger.error("reload refused, the running configuration stays: %s", exc)
        return None


async def _stop(task: asyncio.Task[int]) -> None:
    """Cancel the daemon's task and wait until it has closed its devices.

    Raises:
        Exception: whatever the daemon failed with, other than the cancellation.
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        task.result()
