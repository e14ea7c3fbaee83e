"""``appliance check`` on real devices (PyAudio on the private sound system, mock pins)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from soundenv import (
    SoundEnv,
    sound_fixture,  # noqa: F401 - registers the fixture "sound"
)

from appliance import hwchecks
from appliance.cli import main
from appliance.selfcheck import REGISTRY, Context


@pytest.fixture
def mock_pins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    Device.pin_factory = None
    yield
    if Device.pin_factory is not None:
        Device.pin_factory.reset()
    Device.pin_factory = None


def context(tmp_path: Path, toml: str) -> Context:
    key_file = tmp_path / "key"
    key_file.write_text("sk-test-0123456789abcdef\n")
    os.chmod(key_file, 0o600)
    path = tmp_path / "appliance.toml"
    path.write_text(f'[upstream]\napi_key_file = "{key_file}"\n{toml}')
    loaded = Context.load(path, env={})
    assert loaded.config is not None, loaded.config_problems
    return loaded


def test_the_sound_device_checks_open_the_devices(sound: SoundEnv, tmp_path: Path) -> None:
    good = context(tmp_path, '[audio]\ninput = "pulse"\noutput = "pulse"\ninput_rate_hz = 48000\n')
    heard = asyncio.run(hwchecks.check_pyaudio_input(good))
    assert heard.ok, heard
    assert "periods of 20 ms" in heard.detail
    played = asyncio.run(hwchecks.check_pyaudio_output(good))
    assert played.ok, played
    bad = context(tmp_path, '[audio]\ninput = "no such mic"\noutput = "no such speaker"\n')
    for check in (hwchecks.check_pyaudio_input, hwchecks.check_pyaudio_output):
        result = asyncio.run(check(bad))
        assert not result.ok
        assert "matches 'no such" in result.detail and "appliance devices" in result.fix


def test_the_checks_are_registered_for_their_backends() -> None:
    chosen = {(c.name, c.backend) for c in REGISTRY.checks}
    assert ("audio input", ("audio", "pyaudio")) in chosen
    assert ("audio output", ("audio", "pyaudio")) in chosen
    assert ("button", ("button", "gpio")) in chosen
    assert ("button", ("button", "keyboard")) in chosen
    assert ("led", None) in chosen


def test_pin_checks_on_mock_pins(mock_pins: None, tmp_path: Path) -> None:
    config = context(tmp_path, '[hardware]\nprofile = "aiy-voice"\n[led]\nkind = "led"\n')
    button = asyncio.run(hwchecks.check_gpio_button(config))
    assert button.ok and button.detail.startswith("GPIO23 (pin 16): released")
    led = asyncio.run(hwchecks.check_led(config))
    assert led.ok and "GPIO25 (pin 22)" in led.detail


def test_devices_lists_every_device_with_channels_and_rate(
    sound: SoundEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["index", "in", "out", "rate", "host", "name"]
    names = {line.split(maxsplit=5)[-1] for line in lines[1:] if line[:5].strip().isdigit()}
    assert {"filein", "fileout", "pulse"} <= names
