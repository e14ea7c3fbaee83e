"""Hardware checks for ``appliance check`` (sound devices, button, LED); ``appliance devices``."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from appliance.audio import pcm, portaudio
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.hardware import HEADER_PINS
from appliance.selfcheck import Context, Result, register
from appliance.status import Health, Phase, Status

LISTEN_S = 0.5
"""How long the microphone check listens (seconds)."""

_BUSY_FIX = (
    "check the name with `appliance devices`; if the service runs, stop it first "
    "(systemctl stop appliance): a sound card has one owner"
)


def _config(context: Context) -> Config:
    # The registry runs backend-specific checks only with a valid configuration.
    assert context.config is not None
    return context.config


def _pin(gpio: int) -> str:
    physical = HEADER_PINS.get(gpio)
    return f"GPIO{gpio} (pin {physical})" if physical else f"GPIO{gpio}"


@register("audio input", backend=("audio", "pyaudio"))
async def check_pyaudio_input(context: Context) -> Result:
    """Opens the microphone as the daemon does and listens for half a second."""
    from appliance.audio.pa_microphone import PyAudioMicrophone

    audio = _config(context).audio
    microphone = PyAudioMicrophone(
        audio.input, rate_hz=audio.input_rate_hz, period_ms=audio.period_ms, stall_s=LISTEN_S
    )
    periods: list[bytes] = []
    try:
        await microphone.open(periods.append)
        await asyncio.sleep(LISTEN_S)
        microphone.deliver_now()  # the last batch too
    except ApplianceError as exc:
        return Result.failed(str(exc), fix=_BUSY_FIX)
    finally:
        await microphone.close()
    if not periods:
        return Result.failed(
            f"{audio.input!r} opened but delivered no audio in {LISTEN_S:g} s", fix=_BUSY_FIX
        )
    peak = max(max(abs(s) for s in memoryview(p).cast("h")) for p in periods)
    return Result.passed(
        f"{audio.input!r}: {len(periods)} periods of {pcm.PERIOD_MS} ms in {LISTEN_S:g} s "
        f"at 24 kHz, peak {peak} of 32767 (details in the log line above)"
    )


@register("audio output", backend=("audio", "pyaudio"))
async def check_pyaudio_output(context: Context) -> Result:
    """Opens the speaker as the daemon does and plays a tenth of a second of silence."""
    from appliance.audio.pa_speaker import PyAudioSpeaker

    audio = _config(context).audio
    speaker = PyAudioSpeaker(
        audio.output,
        rate_hz=audio.output_rate_hz,
        period_ms=audio.period_ms,
        prebuffer_ms=audio.prebuffer_ms,
    )
    played: list[int] = []
    try:
        await speaker.open(lambda tag, samples: played.append(samples))
        speaker.play(bytes(pcm.ms_to_bytes(100)), "check")
        await speaker.drain(2.0)
    except ApplianceError as exc:
        return Result.failed(str(exc), fix=_BUSY_FIX)
    finally:
        await speaker.close()
    if sum(played) < pcm.RATE_HZ // 10:
        return Result.failed(
            f"{audio.output!r} opened but played {sum(played)} of 2400 samples in 2 s",
            fix=_BUSY_FIX,
        )
    return Result.passed(f"{audio.output!r} plays (details in the log line above)")


@register("button", backend=("button", "gpio"))
async def check_gpio_button(context: Context) -> Result:
    """Claims the button's pin and reads it: a button that reads as held is a wiring fault."""
    from gpiozero import DigitalInputDevice, GPIOZeroError

    button = _config(context).button
    pull_up = {"up": True, "down": False, "none": None}[button.pull]
    try:
        device: Any = DigitalInputDevice(
            button.pin,
            pull_up=pull_up,
            active_state=None if pull_up is not None else button.active == "high",
        )
    except (GPIOZeroError, OSError) as exc:
        return Result.failed(
            f"cannot use {_pin(button.pin)}: {exc}",
            fix="run on the Pi, as a user in the gpio group, with the service stopped",
        )
    try:
        held = bool(device.is_active)
    finally:
        device.close()
    if held:
        return Result.failed(
            f"{_pin(button.pin)} reads as held (pull {button.pull}, active {button.active})",
            fix="release the button; else check the wiring and button.pull / button.active",
        )
    return Result.passed(f"{_pin(button.pin)}: released, pull {button.pull}")


@register("button", backend=("button", "keyboard"))
async def check_keyboard_button(context: Context) -> Result:
    """The keyboard button needs a terminal on standard input."""
    if os.isatty(sys.stdin.fileno()):
        return Result.passed("Enter on this terminal starts and ends a turn")
    return Result.failed(
        "standard input is not a terminal: no Enter will ever come",
        fix='run `appliance run` in a terminal, or use button.backend = "gpio"',
    )


@register("led")
async def check_led(context: Context) -> Result:
    """Claims the LED's pins and flashes it once."""
    config = context.config
    if config is None:
        return Result.failed("not checked: the configuration has problems", fix="fix it first")
    led = config.led
    if led.kind == "none":
        return Result.passed("none configured")
    from appliance.indicator import LedIndicator

    pins = (led.red_pin, led.green_pin, led.blue_pin) if led.kind == "rgb" else (led.pin,)
    indicator = LedIndicator(led.kind, pins, active_high=led.active_high)
    shown = ", ".join(_pin(pin) for pin in pins)
    try:
        indicator.started()
    except ApplianceError as exc:
        return Result.failed(
            str(exc), fix="run on the Pi, as a user in the gpio group, with the service stopped"
        )
    try:
        indicator.status(Status(Phase.LISTENING))
        runner = asyncio.create_task(indicator.run(Health()))
        await asyncio.sleep(0.3)
        runner.cancel()
        await asyncio.wait([runner])
    finally:
        indicator.stopping()
    return Result.passed(f"{led.kind} LED on {shown}: flashed once")


def device_listing() -> str:
    """The sound devices PortAudio sees, one per line, for ``appliance devices``.

    Raises:
        AudioDeviceError: PortAudio cannot start.
    """
    pa = portaudio.start()
    try:
        found = portaudio.devices(pa)
        lines = [f"{'index':>5}  {'in':>3}  {'out':>3}  {'rate':>6}  {'host':<6}  name"]
        for device in found:
            rate_ok = {
                direction: portaudio.supports(
                    pa, device, direction, rate_hz=pcm.RATE_HZ, channels=1
                )
                for direction in ("input", "output")
                if device.channels(direction)
            }
            native = "" if all(rate_ok.values()) else "  (resampled: no 24 kHz)"
            lines.append(
                f"{device.index:>5}  {device.input_channels:>3}  {device.output_channels:>3}  "
                f"{device.default_rate_hz:>6}  {device.host_api:<6}  {device.name}{native}"
            )
    finally:
        pa.terminate()
    if not found:
        lines.append("(none: no sound card, or the sound server is not running)")
    lines.append(
        'audio.input and audio.output take an index, a name, or a unique part of one; "default"'
    )
    return "\n".join(lines)
