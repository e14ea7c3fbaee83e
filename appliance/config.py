"""Configuration: frozen dataclasses loaded from defaults < TOML < environment < overrides."""

from __future__ import annotations

import difflib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from appliance.errors import ConfigError
from appliance.hardware import PROFILES

DEFAULT_PATH = Path("/etc/appliance/appliance.toml")
"""The config file ``appliance run`` reads when given no ``--config``."""

CREDENTIAL_NAME = "openai-api-key"
"""The systemd credential (``LoadCredential=``) holding the API key."""

ENV_PREFIX = "APPLIANCE_"
"""Environment variables ``APPLIANCE_<SECTION>_<KEY>`` override the config file."""

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
"""The voices the upstream offers."""

MASK = "********"

CUES = ("listening", "done_listening", "too_short", "error", "reconnected")
"""The earcons, by name (``audio.muted_cues``)."""
"""What a secret looks like wherever it is shown."""

_NO_KEY_IN_CONFIG = (
    "the API key never goes in the config: put the key in a file (chmod 600) "
    "and set upstream.api_key_file"
)


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
    """No audio for this long (seconds) ends the process, for systemd to restart it."""
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


class _Invalid(ValueError):
    """A value that cannot be used; the message says what was expected."""


@dataclass
class _Setting:
    value: object
    origin: str
    text: bool  # from the environment: a string still to be parsed


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
    problems: list[str] = []
    settings: dict[str, dict[str, _Setting]] = {name: {} for name in _SECTIONS}
    if path is not None:
        _layer_file(path, settings, problems)
    _layer_env(env, settings, problems)
    _layer_overrides(overrides or {}, settings, problems)
    _layer_profile(settings)

    bad: set[str] = set()
    default_origin = str(path) if path is not None else ""

    def where(dotted: str, other: str = "") -> str:
        """Prefixes ``dotted`` with where it was set, or else ``other``, or else the file."""
        for candidate in (dotted, other):
            section, _, key = candidate.partition(".")
            if key in settings.get(section, {}):
                return f"{settings[section][key].origin}: {dotted}"
        return f"{default_origin}: {dotted}" if default_origin else dotted

    def build(cls: type[_T], section: str) -> _T:
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for key, setting in settings[section].items():
            try:
                values[key] = _coerce(setting.value, hints[key], text=setting.text)
            except _Invalid as exc:
                problems.append(f"{where(f'{section}.{key}')}: {exc}")
                bad.add(f"{section}.{key}")
        return cls(**values)

    upstream = build(UpstreamConfig, "upstream")
    audio = build(AudioConfig, "audio")
    button = build(ButtonConfig, "button")
    watchdog = build(WatchdogConfig, "watchdog")
    led = build(LedConfig, "led")
    hardware = build(HardwareConfig, "hardware")
    checks = _check_upstream(upstream) + _check_audio(audio) + _check_button(button)
    checks += _check_watchdog(watchdog) + _check_devices(audio, button, led, hardware)
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


def _layer_profile(settings: dict[str, dict[str, _Setting]]) -> None:
    """Adds the settings of ``hardware.profile`` under everything set explicitly.

    An unknown or mistyped profile adds nothing: ``_check_devices`` reports it.
    """
    chosen = settings["hardware"].get("profile")
    profile = PROFILES.get(chosen.value) if chosen and isinstance(chosen.value, str) else None
    if profile is None:
        return
    for dotted, value in profile.settings.items():
        section, _, key = dotted.partition(".")
        settings[section].setdefault(key, _Setting(value, f"profile {profile.name}", False))


def _layer_file(path: Path, settings: dict[str, dict[str, _Setting]], problems: list[str]) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: no such config file")
        return
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
        return
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: TOML syntax error: {exc}")
        return
    for section, table in document.items():
        if section == "api_key":
            problems.append(f"{path}: api_key: {_NO_KEY_IN_CONFIG}")
        elif section not in _SECTIONS:
            problems.append(f"{path}: {_unknown_section(section)}")
        elif not isinstance(table, dict):
            problems.append(f"{path}: {section}: expected a [{section}] table, got {_show(table)}")
        else:
            for key, value in table.items():
                _put(settings, section, key, _Setting(value, str(path), False), problems)


def _layer_env(
    env: Mapping[str, str], settings: dict[str, dict[str, _Setting]], problems: list[str]
) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        # Section names have no underscores, so the first one ends the section.
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        origin = f"${name}"
        if section not in _SECTIONS:
            problems.append(f"{origin}: {_unknown_section(section)}")
        elif not key:
            problems.append(f"{origin}: expected {ENV_PREFIX}{section.upper()}_<KEY>")
        else:
            _put(settings, section, key, _Setting(env[name], origin, True), problems)


def _layer_overrides(
    overrides: Mapping[str, object],
    settings: dict[str, dict[str, _Setting]],
    problems: list[str],
) -> None:
    for dotted, value in overrides.items():
        section, dot, key = dotted.partition(".")
        if not dot or "." in key:
            problems.append(f"overrides: {dotted}: expected a key like audio.min_turn_ms")
        elif section not in _SECTIONS:
            problems.append(f"overrides: {_unknown_section(section)}")
        else:
            _put(settings, section, key, _Setting(value, "overrides", False), problems)


def _put(
    settings: dict[str, dict[str, _Setting]],
    section: str,
    key: str,
    setting: _Setting,
    problems: list[str],
) -> None:
    known = [f.name for f in fields(_SECTIONS[section])]
    if key == "api_key":
        problems.append(f"{setting.origin}: {section}.api_key: {_NO_KEY_IN_CONFIG}")
    elif key not in known:
        hint = _did_you_mean(key, known)
        problems.append(f"{setting.origin}: unknown key {section}.{_redact(key)}{hint}")
    else:
        settings[section][key] = setting


def _unknown_section(section: str) -> str:
    for name, cls in _SECTIONS.items():
        if section in {f.name for f in fields(cls)}:
            return f"{section} is not a section: it belongs in [{name}]"
    return f"unknown section [{_redact(section)}]{_did_you_mean(section, list(_SECTIONS))}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def coerce(value: object, hint: object) -> object:
    """Returns the TOML ``value`` as the type ``hint``, with this module's rules.

    Raises:
        ValueError: the value is not of that type; the message says what was expected.
    """
    return _coerce(value, hint, text=False)


def show(value: object) -> str:
    """Shows a bad value in a message: short, TOML-like, and never a key."""
    return _show(value)


def _coerce(value: object, hint: object, *, text: bool) -> object:
    """Returns ``value`` as the type ``hint``, parsing it first if it is ``text``.

    Raises:
        _Invalid: the value is not of (or does not parse to) that type.
    """
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        shown = ", ".join(json.dumps(c) for c in choices)
        close = _did_you_mean(str(value), list(choices)) if isinstance(value, str) else ""
        raise _Invalid(f"expected one of {shown}, got {_show(value)}{close}")
    if hint == tuple[str, ...]:  # a list of names: a TOML array, or commas in the environment
        if text:
            assert isinstance(value, str)
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise _Invalid(f"expected a list of names, got {_show(value)}")
    if origin is tuple:  # the button script
        if text:
            try:
                value = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                raise _Invalid(f"expected a TOML array of pairs, got {_show(value)}") from None
        return _coerce_script(value)
    if text:
        assert isinstance(value, str)
        return _parse_text(value, hint)
    if hint is str or hint is Path:
        if isinstance(value, str | os.PathLike):
            return hint(os.fspath(value))
        raise _Invalid(f"expected a string, got {_show(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"expected true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid(f"expected an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Invalid(f"expected a number, got {_show(value)}")
    raise AssertionError(f"no coercion to {hint}")  # a field of a type added without one


def _parse_text(value: str, hint: object) -> object:
    if hint is str:
        return value
    if hint is Path:
        return Path(value)
    if hint is bool:
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise _Invalid(f"expected true or false, got {_show(value)}")
    expected = "an integer" if hint is int else "a number"
    try:
        number = int(value) if hint is int else float(value)
    except ValueError:
        raise _Invalid(f"expected {expected}, got {_show(value)}") from None
    if not math.isfinite(number):
        raise _Invalid(f"expected {expected}, got {_show(value)}")
    return number


def _coerce_script(value: object) -> tuple[ScriptStep, ...]:
    if not isinstance(value, list | tuple):
        raise _Invalid(f'expected a list of [seconds, "press" or "release"], got {_show(value)}')
    steps: list[ScriptStep] = []
    for index, step in enumerate(value, 1):
        if (
            isinstance(step, list | tuple)
            and len(step) == 2
            and isinstance(step[0], int | float)
            and not isinstance(step[0], bool)
            and math.isfinite(step[0])
            and step[1] in ("press", "release")
        ):
            steps.append((float(step[0]), step[1]))
        else:
            raise _Invalid(
                f'step {index}: expected [seconds, "press" or "release"], got {_show(step)}'
            )
    return tuple(steps)


class _Problem(typing.NamedTuple):
    """A problem found by a check, reported unless a key it involves was mistyped."""

    key: str
    """The dotted key the problem is reported under."""
    detail: str
    """What is wrong."""
    other: str = ""
    """Another dotted key the check involves, if any."""


def _check_upstream(upstream: UpstreamConfig) -> list[_Problem]:
    problems = []
    url, shown = upstream.url, _show(upstream.url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        problems.append(_Problem("upstream.url", f"not a valid URL ({exc}): {shown}"))
    else:
        if parts.scheme not in ("ws", "wss"):
            problems.append(
                _Problem("upstream.url", f"expected a ws:// or wss:// URL, got {shown}")
            )
        elif not parts.hostname:
            problems.append(_Problem("upstream.url", f"no host in {shown}"))
        elif parts.scheme == "ws" and not upstream.allow_insecure and not _loopback(parts.hostname):
            detail = (
                f"ws:// (no TLS) is only allowed to a loopback host unless "
                f"upstream.allow_insecure = true; use wss://, got {shown}"
            )
            problems.append(_Problem("upstream.url", detail, "upstream.allow_insecure"))
    if not upstream.model.strip():
        problems.append(_Problem("upstream.model", "must not be empty"))
    if upstream.context_turns < 0:
        problems.append(_Problem("upstream.context_turns", "must be 0 or more"))
    if upstream.voice not in VOICES:
        hint = _did_you_mean(upstream.voice, list(VOICES))
        detail = f"expected one of {', '.join(VOICES)}, got {_show(upstream.voice)}{hint}"
        problems.append(_Problem("upstream.voice", detail))
    return problems


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_audio(audio: AudioConfig) -> list[_Problem]:
    problems = []
    if audio.min_turn_ms < 0:
        problems.append(
            _Problem("audio.min_turn_ms", f"must be 0 or more, got {audio.min_turn_ms}")
        )
    problems += _positive("audio.max_turn_s", audio.max_turn_s)
    problems += _positive("audio.hold_s", audio.hold_s)
    if audio.echo_tail_ms < 0:
        detail = f"must be 0 or more, got {audio.echo_tail_ms}"
        problems.append(_Problem("audio.echo_tail_ms", detail))
    if audio.min_turn_ms >= audio.max_turn_s * 1000 > 0:
        detail = f"must be less than audio.max_turn_s ({audio.max_turn_s:g} s): no turn would fit"
        problems.append(_Problem("audio.min_turn_ms", detail, "audio.max_turn_s"))
    for key in ("input", "output"):
        if not getattr(audio, key).strip():
            problems.append(_Problem(f"audio.{key}", "must not be empty"))
    if audio.backend == "file":
        source, sink = Path(audio.input), Path(audio.output)
        if not source.is_file():
            detail = f'with backend = "file", expected an existing WAV file, got {source}'
            problems.append(_Problem("audio.input", detail, "audio.backend"))
        if audio.output == "default" or sink.is_dir() or not sink.absolute().parent.is_dir():
            detail = f'with backend = "file", expected a WAV path in an existing folder, got {sink}'
            problems.append(_Problem("audio.output", detail, "audio.backend"))
    return problems


def _check_button(button: ButtonConfig) -> list[_Problem]:
    problems = []
    if not 0 <= button.pin <= 27:
        detail = f"expected a GPIO pin (BCM) from 0 to 27, got {button.pin}"
        problems.append(_Problem("button.pin", detail))
    previous = 0.0
    for index, (seconds, action) in enumerate(button.script, 1):
        if seconds < previous:
            what = "negative" if seconds < 0 else f"before step {index - 1}"
            detail = f"step {index}: {seconds:g} seconds is {what}"
            problems.append(_Problem("button.script", detail))
        expected = "press" if index % 2 else "release"
        if action != expected:
            detail = f'step {index}: expected "{expected}": steps alternate, starting with "press"'
            problems.append(_Problem("button.script", detail))
        previous = max(previous, seconds)
    return problems


def _check_devices(
    audio: AudioConfig, button: ButtonConfig, led: LedConfig, hardware: HardwareConfig
) -> list[_Problem]:
    """The sound device, GPIO and profile settings (see ``appliance.hardware``)."""
    problems = []
    if hardware.profile and hardware.profile not in PROFILES:
        choices = ", ".join(f'"{name}"' for name in PROFILES)
        hint = _did_you_mean(hardware.profile, list(PROFILES))
        detail = f'expected "" or one of {choices}, got {_show(hardware.profile)}{hint}'
        problems.append(_Problem("hardware.profile", detail))
    for cue in audio.muted_cues:
        if cue not in CUES:
            hint = _did_you_mean(cue, list(CUES))
            detail = f"expected cues from {', '.join(CUES)}, got {_show(cue)}{hint}"
            problems.append(_Problem("audio.muted_cues", detail))
    for key in ("input_rate_hz", "output_rate_hz"):
        rate = getattr(audio, key)
        if rate and not 8_000 <= rate <= 192_000:
            detail = f"expected 0 (automatic) or a rate from 8000 to 192000 Hz, got {rate}"
            problems.append(_Problem(f"audio.{key}", detail))
    if not 5 <= audio.period_ms <= 100:
        detail = f"expected 5 to 100 milliseconds, got {audio.period_ms}"
        problems.append(_Problem("audio.period_ms", detail))
    if not 0 <= audio.prebuffer_ms <= 1000:
        detail = f"expected 0 to 1000 milliseconds, got {audio.prebuffer_ms}"
        problems.append(_Problem("audio.prebuffer_ms", detail))
    problems += _positive("audio.stall_s", audio.stall_s)
    problems += _positive("audio.lost_exit_s", audio.lost_exit_s)
    if audio.lost_exit_s < audio.stall_s:
        detail = f"must not be less than audio.stall_s ({audio.stall_s:g} s)"
        problems.append(_Problem("audio.lost_exit_s", detail, "audio.stall_s"))
    if (button.pull, button.active) in (("up", "high"), ("down", "low")):
        detail = f"a pull-{button.pull} button reads {'low' if button.pull == 'up' else 'high'}"
        detail += f' when held: set button.active = "{"low" if button.pull == "up" else "high"}"'
        problems.append(_Problem("button.active", detail, "button.pull"))
    if not 0 <= button.debounce_ms <= 500:
        detail = f"expected 0 to 500 milliseconds, got {button.debounce_ms}"
        problems.append(_Problem("button.debounce_ms", detail))
    pins = {"pin": led.pin} if led.kind in ("led", "pwm") else {}
    if led.kind == "rgb":
        pins = {"red_pin": led.red_pin, "green_pin": led.green_pin, "blue_pin": led.blue_pin}
    for key, pin in pins.items():
        if not 0 <= pin <= 27:
            detail = f"expected a GPIO pin (BCM) from 0 to 27, got {pin}"
            problems.append(_Problem(f"led.{key}", detail))
        elif button.backend == "gpio" and pin == button.pin:
            detail = f"GPIO{pin} is the button's pin (button.pin)"
            problems.append(_Problem(f"led.{key}", detail, "button.pin"))
    if len(set(pins.values())) < len(pins):
        problems.append(_Problem("led.red_pin", "the red, green and blue pins must differ"))
    return problems


def _check_watchdog(watchdog: WatchdogConfig) -> list[_Problem]:
    problems = []
    for f in fields(watchdog):
        problems += _positive(f"watchdog.{f.name}", getattr(watchdog, f.name))
    if watchdog.reconnect_base_s > watchdog.reconnect_max_s:
        detail = (
            f"must not exceed watchdog.reconnect_max_s ({watchdog.reconnect_max_s:g}), "
            f"got {watchdog.reconnect_base_s:g}"
        )
        problems.append(_Problem("watchdog.reconnect_base_s", detail, "watchdog.reconnect_max_s"))
    return problems


def _positive(dotted: str, value: float) -> list[_Problem]:
    return [] if value > 0 else [_Problem(dotted, f"must be more than 0, got {value:g}")]


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


def render(config: Config) -> str:
    """Renders the effective config as TOML, with ``api_key = "********"`` under ``[upstream]``.

    Args:
        config: The configuration to show.

    Returns:
        TOML text, one section per dataclass; loading it back (less the
        ``api_key`` line) gives the same values.
    """
    lines = ["# the effective configuration of appliance; secrets masked"]
    if config.path is not None:
        lines.append(f"# read from {config.path}")
    for name in _SECTIONS:
        section = getattr(config, name)
        lines += ["", f"[{name}]"]
        for f in fields(section):
            lines.append(f"{f.name} = {_toml(getattr(section, f.name))}")
            if f.name == "api_key_file":
                lines.append(f"api_key = {_toml(str(config.api_key))}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """Returns ``value`` as a TOML value; strings, paths, numbers, booleans and arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).translate(_TOML_ESCAPES) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


_TOML_ESCAPES: dict[int, str] = {c: f"\\u{c:04X}" for c in [*range(0x20), 0x7F]}
_TOML_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t"})


def _show(value: object) -> str:
    """Shows a bad value in a message: short, TOML-like, and never a key."""
    if isinstance(value, str):
        shown = _redact(value)
        return json.dumps(shown if len(shown) <= 60 else shown[:57] + "...", ensure_ascii=False)
    try:
        return _toml(value)
    except TypeError:
        shown = repr(value)
        return shown if len(shown) <= 60 else shown[:57] + "..."


def _redact(text: str) -> str:
    # OpenAI keys start with "sk-": one pasted into the wrong place is not echoed.
    return MASK if text.strip().startswith("sk-") else text
