"""The daemon with a gpiozero button on MockFactory pins: the stuck-button guard, barge-in."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import RecordingCompanion
from gpiozero.pins.mock import MockFactory, MockPWMPin

from appliance import config as config_module
from appliance.audio import pcm
from appliance.audio.filemic import FileMicrophone
from appliance.audio.filespeaker import FileSpeaker
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.daemon import Daemon
from appliance.demo import bundled_sample
from appliance.effects import Effect, TurnDone
from appliance.emulator import Emulator
from appliance.gpio_button import GpioButton
from appliance.indicator import PATTERNS, LedIndicator
from appliance.status import Phase
from appliance.wiring import upstream_link

KEY = "sk-test-0123456789abcdef"
BUTTON, LED_PIN = 17, 27


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.reset()


async def run(
    tmp_path: Path,
    factory: MockFactory,
    drive: Callable[[Daemon, RecordingCompanion], object],
    *,
    max_turn_s: float = 60.0,
    emulator_interval_s: float = 0.01,
) -> tuple[list[TurnDone], RecordingCompanion, Emulator]:
    """Run the daemon until ``drive`` (a coroutine function) returns, then stop it."""
    speech = read_wav_pcm24k(bundled_sample())
    mic = tmp_path / "mic.wav"
    write_wav(mic, bytes(pcm.ms_to_bytes(300)) + speech + bytes(pcm.ms_to_bytes(3000)))
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)
    companion = RecordingCompanion()
    effects: list[Effect] = []
    async with Emulator(api_key=KEY, chunk_interval_s=emulator_interval_s) as emulator:
        config = config_module.load(
            None,
            env={},
            overrides={
                "upstream.url": emulator.url,
                "upstream.api_key_file": key_file,
                "audio.earcons": False,
                "audio.max_turn_s": max_turn_s,
                "button.backend": "gpio",
            },
        )
        daemon = Daemon(
            config,
            microphone=FileMicrophone(mic),
            speaker=FileSpeaker(tmp_path / "out.wav"),
            button=GpioButton(BUTTON, pin_factory=factory),
            upstream=upstream_link(config),
            observer=lambda effect, now: effects.append(effect),
            companions=[
                companion,
                LedIndicator("pwm", (LED_PIN,), pin_factory=factory, tempo=10.0),
            ],
        )
        running = asyncio.create_task(daemon.run())
        async with asyncio.timeout(30):
            await drive(daemon, companion)  # type: ignore[misc]
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    return [e for e in effects if isinstance(e, TurnDone)], companion, emulator


async def wait_for(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 - polls what the test observes, no event for it
        await asyncio.sleep(0.01)


def test_a_stuck_button_ends_the_turn_at_max_turn_s(tmp_path: Path, factory: MockFactory) -> None:
    turns: list[TurnDone] = []

    async def drive(daemon: Daemon, companion: RecordingCompanion) -> None:
        await wait_for(lambda: Phase.READY in companion.phases())
        factory.pin(BUTTON).drive_low()  # held, and never let go
        await wait_for(lambda: daemon.machine.idle and Phase.SPEAKING in companion.phases())
        await asyncio.sleep(0.2)
        assert daemon.machine.idle, "a stuck button must not start another turn"

    turns, companion, _ = asyncio.run(run(tmp_path, factory, drive, max_turn_s=1.0))
    (turn,) = turns
    assert turn.metrics.outcome == "replied"
    # The turn holds what 1 s of listening captured: the guard cut it there.
    assert 1000 - pcm.PERIOD_MS <= turn.metrics.audio_in_ms <= 1000 + 2 * pcm.PERIOD_MS
    assert companion.phases()[:4] == [
        Phase.CONNECTING,
        Phase.READY,
        Phase.LISTENING,
        Phase.THINKING,
    ]


def test_a_press_during_the_reply_interrupts_it(tmp_path: Path, factory: MockFactory) -> None:
    async def drive(daemon: Daemon, companion: RecordingCompanion) -> None:
        pin = factory.pin(BUTTON)
        await wait_for(lambda: Phase.READY in companion.phases())
        pin.drive_low()
        await asyncio.sleep(1.5)
        pin.drive_high()
        await wait_for(lambda: Phase.SPEAKING in companion.phases())
        await asyncio.sleep(0.4)  # into the reply
        pin.drive_low()  # barge in
        await wait_for(lambda: companion.phases().count(Phase.LISTENING) == 2)
        await asyncio.sleep(0.5)
        pin.drive_high()
        await wait_for(lambda: daemon.machine.idle)

    turns, _, emulator = asyncio.run(run(tmp_path, factory, drive, emulator_interval_s=0.15))
    first, second = (t.metrics for t in turns)
    assert first.outcome == "interrupted"
    assert first.audio_out_ms is not None and 0 < first.audio_out_ms < 1400
    assert second.outcome == "replied"
    (connection,) = emulator.connections
    types = [m["type"] for m in connection.received]
    assert "response.cancel" in types
    (truncate,) = [m for m in connection.received if m["type"] == "conversation.item.truncate"]
    assert truncate["audio_end_ms"] == first.audio_out_ms


def test_the_led_follows_the_daemon(tmp_path: Path, factory: MockFactory) -> None:
    async def drive(daemon: Daemon, companion: RecordingCompanion) -> None:
        pin = factory.pin(BUTTON)
        await wait_for(lambda: Phase.READY in companion.phases())
        pin.drive_low()
        await asyncio.sleep(0.3)
        levels = {state.state for state in factory.pin(LED_PIN).states[-1:]}
        assert levels == {1.0}, "listening is full and steady"
        pin.drive_high()
        await wait_for(lambda: daemon.machine.idle and Phase.SPEAKING in companion.phases())

    asyncio.run(run(tmp_path, factory, drive))
    breath = {level for level, _ in PATTERNS[Phase.SPEAKING].steps}
    shown = {round(state.state, 3) for state in factory.pin(LED_PIN).states}
    assert breath <= shown, "the speaking pattern was never shown"
