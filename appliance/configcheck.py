"""The checks of coerced config sections: ranges, choices and settings that must agree."""

from __future__ import annotations

import ipaddress
import typing
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appliance.configtext import did_you_mean, show
from appliance.hardware import PROFILES

if TYPE_CHECKING:
    from appliance.config import (
        AudioConfig,
        ButtonConfig,
        HardwareConfig,
        LedConfig,
        UpstreamConfig,
        WatchdogConfig,
    )

__all__ = [
    "CUES",
    "VOICES",
    "Problem",
    "check_audio",
    "check_button",
    "check_devices",
    "check_upstream",
    "check_watchdog",
]

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
"""The voices the upstream offers."""

CUES = ("listening", "done_listening", "too_short", "error", "reconnected")
"""The earcons, by name (``audio.muted_cues``)."""


class Problem(typing.NamedTuple):
    """A problem found by a check, reported unless a key it involves was mistyped."""

    key: str
    """The dotted key the problem is reported under."""
    detail: str
    """What is wrong."""
    other: str = ""
    """Another dotted key the check involves, if any."""


def check_upstream(upstream: UpstreamConfig) -> list[Problem]:
    """The upstream URL, model, voice and context."""
    problems = []
    url, shown = upstream.url, show(upstream.url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        problems.append(Problem("upstream.url", f"not a valid URL ({exc}): {shown}"))
    else:
        if parts.scheme not in ("ws", "wss"):
            problems.append(Problem("upstream.url", f"expected a ws:// or wss:// URL, got {shown}"))
        elif not parts.hostname:
            problems.append(Problem("upstream.url", f"no host in {shown}"))
        elif (
            parts.scheme == "ws" and not upstream.allow_insecure and not is_loopback(parts.hostname)
        ):
            detail = (
                f"ws:// (no TLS) is only allowed to a loopback host unless "
                f"upstream.allow_insecure = true; use wss://, got {shown}"
            )
            problems.append(Problem("upstream.url", detail, "upstream.allow_insecure"))
    if not upstream.model.strip():
        problems.append(Problem("upstream.model", "must not be empty"))
    if upstream.context_turns < 0:
        problems.append(Problem("upstream.context_turns", "must be 0 or more"))
    if upstream.voice not in VOICES:
        hint = did_you_mean(upstream.voice, list(VOICES))
        detail = f"expected one of {', '.join(VOICES)}, got {show(upstream.voice)}{hint}"
        problems.append(Problem("upstream.voice", detail))
    return problems


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``, ...)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_audio(audio: AudioConfig) -> list[Problem]:
    """The turn limits, the echo tail and the devices or WAV files."""
    problems = []
    if audio.min_turn_ms < 0:
        problems.append(Problem("audio.min_turn_ms", f"must be 0 or more, got {audio.min_turn_ms}"))
    problems += _positive("audio.max_turn_s", audio.max_turn_s)
    problems += _positive("audio.hold_s", audio.hold_s)
    if audio.echo_tail_ms < 0:
        detail = f"must be 0 or more, got {audio.echo_tail_ms}"
        problems.append(Problem("audio.echo_tail_ms", detail))
    if audio.min_turn_ms >= audio.max_turn_s * 1000 > 0:
        detail = f"must be less than audio.max_turn_s ({audio.max_turn_s:g} s): no turn would fit"
        problems.append(Problem("audio.min_turn_ms", detail, "audio.max_turn_s"))
    for key in ("input", "output"):
        if not getattr(audio, key).strip():
            problems.append(Problem(f"audio.{key}", "must not be empty"))
    if audio.backend == "file":
        source, sink = Path(audio.input), Path(audio.output)
        if not source.is_file():
            detail = f'with backend = "file", expected an existing WAV file, got {source}'
            problems.append(Problem("audio.input", detail, "audio.backend"))
        if audio.output == "default" or sink.is_dir() or not sink.absolute().parent.is_dir():
            detail = f'with backend = "file", expected a WAV path in an existing folder, got {sink}'
            problems.append(Problem("audio.output", detail, "audio.backend"))
    return problems


def check_button(button: ButtonConfig) -> list[Problem]:
    """The button's pin and script."""
    problems = []
    if not 0 <= button.pin <= 27:
        detail = f"expected a GPIO pin (BCM) from 0 to 27, got {button.pin}"
        problems.append(Problem("button.pin", detail))
    previous = 0.0
    for index, (seconds, action) in enumerate(button.script, 1):
        if seconds < previous:
            what = "negative" if seconds < 0 else f"before step {index - 1}"
            detail = f"step {index}: {seconds:g} seconds is {what}"
            problems.append(Problem("button.script", detail))
        expected = "press" if index % 2 else "release"
        if action != expected:
            detail = f'step {index}: expected "{expected}": steps alternate, starting with "press"'
            problems.append(Problem("button.script", detail))
        previous = max(previous, seconds)
    return problems


def check_devices(
    audio: AudioConfig, button: ButtonConfig, led: LedConfig, hardware: HardwareConfig
) -> list[Problem]:
    """The sound device, GPIO and profile settings (see ``appliance.hardware``)."""
    problems = []
    if hardware.profile and hardware.profile not in PROFILES:
        choices = ", ".join(f'"{name}"' for name in PROFILES)
        hint = did_you_mean(hardware.profile, list(PROFILES))
        detail = f'expected "" or one of {choices}, got {show(hardware.profile)}{hint}'
        problems.append(Problem("hardware.profile", detail))
    for cue in audio.muted_cues:
        if cue not in CUES:
            hint = did_you_mean(cue, list(CUES))
            detail = f"expected cues from {', '.join(CUES)}, got {show(cue)}{hint}"
            problems.append(Problem("audio.muted_cues", detail))
    for key in ("input_rate_hz", "output_rate_hz"):
        rate = getattr(audio, key)
        if rate and not 8_000 <= rate <= 192_000:
            detail = f"expected 0 (automatic) or a rate from 8000 to 192000 Hz, got {rate}"
            problems.append(Problem(f"audio.{key}", detail))
    if not 5 <= audio.period_ms <= 100:
        detail = f"expected 5 to 100 milliseconds, got {audio.period_ms}"
        problems.append(Problem("audio.period_ms", detail))
    if not 0 <= audio.prebuffer_ms <= 1000:
        detail = f"expected 0 to 1000 milliseconds, got {audio.prebuffer_ms}"
        problems.append(Problem("audio.prebuffer_ms", detail))
    problems += _positive("audio.stall_s", audio.stall_s)
    problems += _positive("audio.lost_exit_s", audio.lost_exit_s)
    if audio.lost_exit_s < audio.stall_s:
        detail = f"must not be less than audio.stall_s ({audio.stall_s:g} s)"
        problems.append(Problem("audio.lost_exit_s", detail, "audio.stall_s"))
    if (button.pull, button.active) in (("up", "high"), ("down", "low")):
        detail = f"a pull-{button.pull} button reads {'low' if button.pull == 'up' else 'high'}"
        detail += f' when held: set button.active = "{"low" if button.pull == "up" else "high"}"'
        problems.append(Problem("button.active", detail, "button.pull"))
    if not 0 <= button.debounce_ms <= 500:
        detail = f"expected 0 to 500 milliseconds, got {button.debounce_ms}"
        problems.append(Problem("button.debounce_ms", detail))
    pins = {"pin": led.pin} if led.kind in ("led", "pwm") else {}
    if led.kind == "rgb":
        pins = {"red_pin": led.red_pin, "green_pin": led.green_pin, "blue_pin": led.blue_pin}
    for key, pin in pins.items():
        if not 0 <= pin <= 27:
            detail = f"expected a GPIO pin (BCM) from 0 to 27, got {pin}"
            problems.append(Problem(f"led.{key}", detail))
        elif button.backend == "gpio" and pin == button.pin:
            detail = f"GPIO{pin} is the button's pin (button.pin)"
            problems.append(Problem(f"led.{key}", detail, "button.pin"))
    if len(set(pins.values())) < len(pins):
        problems.append(Problem("led.red_pin", "the red, green and blue pins must differ"))
    return problems


def check_watchdog(watchdog: WatchdogConfig) -> list[Problem]:
    """The watchdog's durations, all positive, and the reconnection delays."""
    problems = []
    for f in fields(watchdog):
        problems += _positive(f"watchdog.{f.name}", getattr(watchdog, f.name))
    if watchdog.reconnect_base_s > watchdog.reconnect_max_s:
        detail = (
            f"must not exceed watchdog.reconnect_max_s ({watchdog.reconnect_max_s:g}), "
            f"got {watchdog.reconnect_base_s:g}"
        )
        problems.append(Problem("watchdog.reconnect_base_s", detail, "watchdog.reconnect_max_s"))
    return problems


def _positive(dotted: str, value: float) -> list[Problem]:
    return [] if value > 0 else [Problem(dotted, f"must be more than 0, got {value:g}")]
