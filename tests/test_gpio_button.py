"""The GPIO button on gpiozero's MockFactory: debounce, the thread hand-off, pull and level."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.debounce import Action, Debouncer
from appliance.errors import HardwareError
from appliance.gpio_button import GpioButton

PIN = 17


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory()
    yield made
    made.reset()


def bounce(pin: object, levels: list[bool], *, gap_s: float) -> None:
    """Drive the mock pin through ``levels`` (True: low, the pull-up button held)."""
    for held in levels:
        if held:
            pin.drive_low()  # type: ignore[attr-defined]
        else:
            pin.drive_high()  # type: ignore[attr-defined]
        time.sleep(gap_s)


# The debouncer on its own: sans-I/O, exact times.


def test_chatter_is_one_press_once_the_level_holds() -> None:
    debouncer = Debouncer(0.02)
    for i, level in enumerate([True, False, True, False, True]):
        debouncer.edge(level, 1.0 + i * 0.003)
    assert debouncer.poll(1.012 + 0.019) is None  # not settled yet
    assert debouncer.deadline() == pytest.approx(1.032)
    assert debouncer.poll(1.032) == "press"
    assert debouncer.poll(2.0) is None
    assert debouncer.pressed


def test_a_spike_shorter_than_the_settle_time_is_nothing() -> None:
    debouncer = Debouncer(0.02)
    debouncer.edge(True, 1.0)
    debouncer.edge(False, 1.005)
    assert debouncer.poll(1.1) is None
    assert not debouncer.pressed
    assert debouncer.edges == 2


def test_no_settle_time_reports_at_once() -> None:
    debouncer = Debouncer(0.0, pressed=True)
    debouncer.edge(False, 5.0)
    assert debouncer.poll(5.0) == "release"
    with pytest.raises(ValueError):
        Debouncer(-0.001)


# The adapter on mock pins.


async def collect(button: GpioButton) -> tuple[list[Action], list[int]]:
    actions: list[Action] = []
    threads: list[int] = []

    def sink(action: Action) -> None:
        actions.append(action)
        threads.append(threading.get_ident())

    await button.open(sink)
    return actions, threads


def test_chatter_within_20_ms_is_one_press_and_one_release(factory: MockFactory) -> None:
    async def scenario() -> list[Action]:
        button = GpioButton(PIN, debounce_ms=20, pin_factory=factory)
        actions, _ = await collect(button)
        pin = factory.pin(PIN)
        bounce(pin, [True, False, True, False, True], gap_s=0.003)  # 15 ms of chatter
        await asyncio.sleep(0.1)
        assert actions == ["press"]
        bounce(pin, [False, True, False, True, False], gap_s=0.003)
        await asyncio.sleep(0.1)
        bounce(pin, [True, False], gap_s=0.004)  # a spike: nothing
        await asyncio.sleep(0.1)
        await button.close()
        return actions

    assert asyncio.run(scenario()) == ["press", "release"]


def test_edges_from_another_thread_reach_the_sink_on_the_loop_thread(
    factory: MockFactory,
) -> None:
    """On a Pi gpiozero calls back on its own thread; mock pins call back on the caller's."""

    async def scenario() -> tuple[list[Action], list[int], int]:
        button = GpioButton(PIN, debounce_ms=10, pin_factory=factory)
        actions, threads = await collect(button)
        pin = factory.pin(PIN)
        other = threading.Thread(
            target=bounce,
            args=(
                pin,
                [True, False, True],
            ),
            kwargs={"gap_s": 0.002},
        )
        other.start()
        await asyncio.to_thread(other.join)
        await asyncio.sleep(0.1)
        await button.close()
        return actions, threads, threading.get_ident()

    actions, threads, loop_thread = asyncio.run(scenario())
    assert actions == ["press"]
    assert threads == [loop_thread]


def test_pull_down_active_high(factory: MockFactory) -> None:
    async def scenario() -> list[Action]:
        button = GpioButton(PIN, pull="down", active="high", debounce_ms=5, pin_factory=factory)
        actions, _ = await collect(button)
        factory.pin(PIN).drive_high()
        await asyncio.sleep(0.05)
        factory.pin(PIN).drive_low()
        await asyncio.sleep(0.05)
        await button.close()
        return actions

    assert asyncio.run(scenario()) == ["press", "release"]


def test_an_impossible_pull_and_level_is_refused() -> None:
    with pytest.raises(ValueError, match="pull-up button is active low"):
        GpioButton(PIN, pull="up", active="high")


def test_a_pin_in_use_is_a_hardware_error(factory: MockFactory) -> None:
    async def scenario() -> None:
        first = GpioButton(PIN, pin_factory=factory)
        await first.open(lambda action: None)
        try:
            with pytest.raises(HardwareError, match="GPIO17"):
                await GpioButton(PIN, pin_factory=factory).open(lambda action: None)
        finally:
            await first.close()

    asyncio.run(scenario())


def test_close_releases_the_pin(factory: MockFactory) -> None:
    async def scenario() -> None:
        for _ in range(2):
            button = GpioButton(PIN, pin_factory=factory)
            await button.open(lambda action: None)
            await button.close()
            await button.close()

    asyncio.run(scenario())
