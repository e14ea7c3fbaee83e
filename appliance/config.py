"""Configuration: frozen dataclasses loaded from defaults < TOML < environment < overrides.

The steps of :func:`load` live in their own modules, re-exported here:
``configlayers`` (the layers and where each setting came from), ``configcoerce``
(values made into their fields' types), ``configcheck`` (ranges, choices and
settings that must agree), ``configkey`` (the API key) and ``configtext``
(TOML for ``appliance config`` and values in problem messages). They import
nothing from this module at run time, so the dataclasses can stay here.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from appliance.configcheck import (
    CUES,
    VOICES,
    check_audio,
    check_button,
    check_devices,
    check_upstream,
    check_watchdog,
)
from appliance.configcoerce import Invalid, coerce, coerce_setting
from appliance.configkey import CREDENTIAL_NAME, Secret, read_key
from appliance.configlayers import ENV_PREFIX, Layers
from appliance.configtext import MASK, render, show
from appliance.errors import ConfigError

__all__ = [
    "CREDENTIAL_NAME",
    "CUES",
    "DEFAULT_PATH",
    "ENV_PREFIX",
    "MASK",
    "VOICES",
    "AudioConfig",
    "ButtonAction",
    "ButtonConfig",
    "Config",
    "ConfigError",
    "HardwareConfig",
    "LedConfig",
    "ScriptStep",
    "Secret",
    "UpstreamConfig",
    "WatchdogConfig",
    "coerce",
    "load",
    "read_key",
    "render",
    "show",
]

DEFAULT_PATH = Path("/etc/appliance/appliance.toml")
"""The config file ``appliance run`` reads when given no ``--config``."""

ButtonAction = Literal["press", "release"]
ScriptStep = tuple[float, ButtonAction]


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the speech-to-speech upstream is and how to talk to it."""

    url: str = "wss://api.openai.com/v1/realtime"
    """The full WebSocket endpoint (``ws://`` or ``wss://``); the model goes in ``?model=``."""
    model: str = "gpt-realtime-2"
    """The model name, sent as ``?model=``."""
    api_key_file: Path = Path("/etc/appliance/openai-api-key")
    """The file holding the API key (mode 0600); the systemd credential wins over it."""
    voice: str = "marin"
    """The voice of the replies, one of ``VOICES``."""
    instructions: str = "You are a helpful voice assistant. Answer briefly."
    """The system instructions of every session."""
    allow_insecure: bool = False
    """Allow ``ws://`` (no TLS) to a host that is not the loopback."""
    context_turns: int = 5
    """How many recent exchanges a new session is re-seeded with (0: none)."""
    transcription_model: str = ""
    """Transcribe the person's turns with this model, for the re-seeded context ("": off)."""


@dataclass(frozen=True)
class AudioConfig:
    """The microphone, the speaker and the turn limits."""

    backend: Literal["pyaudio", "file"] = "pyaudio"
    """``pyaudio`` for sound devices, ``file`` for WAV files standing in for them."""
    input: str = "default"
    """The microphone: a device name, substring or index; with ``file``, a WAV path."""
    output: str = "default"
    """The speaker: a device name, substring or index; with ``file``, a WAV path."""
    earcons: bool = True
    """Play short cues for listening, thinking, errors and the like (the master switch)."""
    muted_cues: tuple[str, ...] = ()
    """Cues not to play although ``earcons`` is on, from ``CUES``."""
    min_turn_ms: int = 150
    """Turns with less audio than this (milliseconds) are dropped as too short."""
    max_turn_s: float = 60.0
    """A button held longer than this (seconds) ends the turn: the stuck-button guard."""
    hold_s: float = 30.0
    """Audio captured before the session is ready is held up to this long (seconds) (R1)."""
    input_rate_hz: int = 0
    """The microphone's rate (hertz); 0: 24 kHz if it takes it, else its native rate."""
    output_rate_hz: int = 0
    """The speaker's rate (hertz); 0: 24 kHz if it takes it, else its native rate."""
    period_ms: int = 20
    """The period of the sound devices (milliseconds)."""
    prebuffer_ms: int = 60
    """Audio gathered before playback starts after silence (milliseconds)."""
    stall_s: float = 2.0
    """A device silent this long (seconds) shows the error and is reopened."""
    lost_exit_s: float = 300.0
    """No audio for this long (seconds) ends the process, for systemd to restart it.

    It also bounds the wait for a sound device missing at start."""
    half_duplex: bool = True
    """Silence the microphone while the speaker plays, and ``echo_tail_ms`` after."""
    echo_tail_ms: int = 150
    """How long the room still echoes after the speaker stops (milliseconds)."""


@dataclass(frozen=True)
class ButtonConfig:
    """The push-to-talk button."""

    backend: Literal["gpio", "keyboard", "script"] = "gpio"
    """``gpio`` for the real button, ``keyboard`` for a key, ``script`` for timed presses."""
    pin: int = 17
    """The GPIO pin (BCM number, 0 to 27) of the button."""
    script: tuple[ScriptStep, ...] = ((0.5, "press"), (2.5, "release"))
    """With ``script``: ``(seconds after the daemon is ready, action)`` steps, in order."""
    exit_after_script: bool = False
    """With ``script``: exit 0 once the last scripted turn has ended."""
    pull: Literal["up", "down", "none"] = "up"
    """With ``gpio``: the pin's pull resistor (``up``: the button connects the pin to ground)."""
    active: Literal["low", "high"] = "low"
    """With ``gpio``: the pin's level while the button is held."""
    debounce_ms: int = 20
    """With ``gpio``: a new level must hold this long (milliseconds) to count."""


@dataclass(frozen=True)
class WatchdogConfig:
    """Liveness checks, reconnection and session rotation."""

    ping_interval_s: float = 10.0
    """Seconds between WebSocket pings."""
    ping_timeout_s: float = 10.0
    """Seconds without a pong after which the link is dead."""
    response_timeout_s: float = 15.0
    """Seconds without a server event, once a response is requested, before the session is dead."""
    reconnect_base_s: float = 0.5
    """The first reconnection delay (seconds), before jitter; it doubles on each failure."""
    reconnect_max_s: float = 30.0
    """The cap on the reconnection delay (seconds)."""
    rotate_before_expiry_s: float = 300.0
    """Open the next session this many seconds before the current one expires."""
    rejected_retry_s: float = 60.0
    """Seconds between attempts while the upstream refuses the credential."""


@dataclass(frozen=True)
class LedConfig:
    """The status LED."""

    kind: Literal["none", "led", "pwm", "rgb"] = "none"
    """``led`` on/off, ``pwm`` dimmable, ``rgb`` red-green-blue, or ``none``."""
    pin: int = 27
    """The GPIO pin (BCM) of a ``led`` or ``pwm`` LED."""
    red_pin: int = 5
    """The GPIO pin (BCM) of an ``rgb`` LED's red."""
    green_pin: int = 6
    """The GPIO pin (BCM) of an ``rgb`` LED's green."""
    blue_pin: int = 13
    """The GPIO pin (BCM) of an ``rgb`` LED's blue."""
    active_high: bool = True
    """True if the LED lights when its pin is high (false for a common-anode RGB LED)."""


@dataclass(frozen=True)
class HardwareConfig:
    """The hardware profile."""

    profile: str = ""
    """A build in ``appliance.hardware.PROFILES`` whose settings are the defaults; "": none."""


@dataclass(frozen=True)
class Config:
    """The whole configuration, validated, with the API key read."""

    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    """The upstream section."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    """The audio section."""
    button: ButtonConfig = field(default_factory=ButtonConfig)
    """The button section."""
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    """The watchdog section."""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    """The API key, from the systemd credential or ``upstream.api_key_file``."""
    path: Path | None = None
    """The file the config was read from, if any."""
    led: LedConfig = field(default_factory=LedConfig)
    """The LED section."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """The hardware section."""


_SECTIONS: dict[str, type[Any]] = {
    "upstream": UpstreamConfig,
    "audio": AudioConfig,
    "button": ButtonConfig,
    "watchdog": WatchdogConfig,
    "led": LedConfig,
    "hardware": HardwareConfig,
}

_T = TypeVar("_T")


def load(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Loads, layers and validates the configuration, and reads the API key.

    Args:
        path: The TOML file to read; ``None`` reads none (defaults only).
        env: The environment, for ``APPLIANCE_<SECTION>_<KEY>`` and
            ``CREDENTIALS_DIRECTORY``; ``None`` means ``os.environ``.
        overrides: Already-typed values by dotted key (``"audio.min_turn_ms"``),
            applied last.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: listing every problem found, none of them showing the key.
    """
    env = os.environ if env is None else env
    layers = Layers(_SECTIONS)
    if path is not None:
        layers.add_file(path)
    layers.add_env(env)
    layers.add_overrides(overrides or {})
    layers.add_profile()
    problems, where = layers.problems, layers.where

    bad: set[str] = set()

    def build(cls: type[_T], section: str) -> _T:
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for key, setting in layers.settings[section].items():
            try:
                values[key] = coerce_setting(setting.value, hints[key], text=setting.text)
            except Invalid as exc:
                problems.append(f"{where(f'{section}.{key}')}: {exc}")
                bad.add(f"{section}.{key}")
        return cls(**values)

    upstream = build(UpstreamConfig, "upstream")
    audio = build(AudioConfig, "audio")
    button = build(ButtonConfig, "button")
    watchdog = build(WatchdogConfig, "watchdog")
    led = build(LedConfig, "led")
    hardware = build(HardwareConfig, "hardware")
    checks = check_upstream(upstream) + check_audio(audio) + check_button(button)
    checks += check_watchdog(watchdog) + check_devices(audio, button, led, hardware)
    for check in checks:
        if check.key not in bad and check.other not in bad:
            problems.append(f"{where(check.key, check.other)}: {check.detail}")

    key = None
    if "upstream.api_key_file" not in bad:
        key, detail = read_key(upstream.api_key_file, env)
        if detail:
            problems.append(f"{where('upstream.api_key_file')}: {detail}")
    if problems:
        if key and len(key) >= 8:  # belt and braces: no message may carry the key
            problems = [problem.replace(key, MASK) for problem in problems]
        raise ConfigError(problems)
    assert key is not None
    return Config(upstream, audio, button, watchdog, Secret(key), path, led=led, hardware=hardware)
