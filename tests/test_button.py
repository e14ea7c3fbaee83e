"""Tests of the script button and of the fake button."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from fakes import FakeButton

from appliance.button import Button, ButtonAction, ScriptButton

EPSILON_S = 1e-6
"""Float rounding between the button's deadline arithmetic and the test's."""


def test_satisfies_protocol() -> None:
    _button: Button = ScriptButton([])


def run_script(
    script: Sequence[tuple[float, ButtonAction]],
) -> tuple[float, list[tuple[float, ButtonAction]], list[bool]]:
    """Run ``script`` to its end; returns the open time, (arrival, action), and ``exhausted``."""
    events: list[tuple[float, ButtonAction]] = []
    exhausted_seen: list[bool] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        button = ScriptButton(script)
        opened = loop.time()

        finished = asyncio.Event()

        def sink(action: ButtonAction) -> None:
            events.append((loop.time(), action))
            exhausted_seen.append(button.exhausted)
            if button.exhausted:
                finished.set()

        await button.open(sink)
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await finished.wait()
        await button.close()
        await button.close()  # idempotent
        return opened

    opened = asyncio.run(scenario())
    return opened, events, exhausted_seen


def test_events_in_order_never_early() -> None:
    script: list[tuple[float, ButtonAction]] = [
        (0.01, "press"),
        (0.05, "release"),
        (0.05, "press"),
        (0.08, "release"),
    ]
    opened, events, exhausted_seen = run_script(script)
    assert [action for _, action in events] == [action for _, action in script]
    for (arrived, _), (t, _) in zip(events, script, strict=True):
        assert arrived >= opened + t - EPSILON_S
    # Exhausted only from the last event on.
    assert exhausted_seen == [False, False, False, True]


def test_empty_script_is_exhausted_at_once() -> None:
    button = ScriptButton([])
    assert button.exhausted

    async def scenario() -> None:
        await button.open(lambda _action: pytest.fail("no events expected"))
        await asyncio.sleep(0.01)
        await button.close()

    asyncio.run(scenario())
    assert button.exhausted


def test_close_stops_delivery() -> None:
    events: list[ButtonAction] = []

    async def scenario() -> ScriptButton:
        button = ScriptButton([(0.0, "press"), (30.0, "release")])
        pressed = asyncio.Event()

        def sink(action: ButtonAction) -> None:
            events.append(action)
            pressed.set()

        await button.open(sink)
        async with asyncio.timeout(10):
            await pressed.wait()
        await button.close()
        with pytest.raises(RuntimeError, match="once"):
            await button.open(events.append)
        return button

    button = asyncio.run(scenario())
    assert events == ["press"]
    assert not button.exhausted


def test_fake_clock_decides_when_events_are_due() -> None:
    # The button sleeps for real, but delivers only once the injected clock says so.
    now = [50.0]
    events: list[ButtonAction] = []

    async def scenario() -> None:
        button = ScriptButton([(0.01, "press"), (0.02, "release")], clock=lambda: now[0])
        arrived = asyncio.Event()

        def sink(action: ButtonAction) -> None:
            events.append(action)
            arrived.set()

        await button.open(sink)
        await asyncio.sleep(0.05)  # several real wake-ups, but the clock stood still
        assert events == []
        now[0] = 50.015
        async with asyncio.timeout(10):  # a safety net, not a timing assertion
            await arrived.wait()
        assert events == ["press"]
        arrived.clear()
        now[0] = 60.0
        async with asyncio.timeout(10):
            await arrived.wait()
        assert button.exhausted
        await button.close()

    asyncio.run(scenario())
    assert events == ["press", "release"]


@pytest.mark.parametrize(
    ("script", "problems"),
    [
        ([(0.0, "release")], ["event 0: expected 'press'"]),
        ([(-1.0, "press")], ["event 0: time -1.0 s is negative"]),
        ([(2.0, "press"), (1.0, "release")], ["event 1: time 1.0 s is before"]),
        ([(0.0, "press"), (1.0, "press")], ["event 1: expected 'release'"]),
        ([(0.0, "push")], ["event 0: action 'push'"]),
        ([(float("nan"), "press")], ["event 0: time nan is not a number"]),
        ([("soon", "press")], ["event 0: time 'soon' is not a number"]),
        ([(1.0,)], ["event 0: expected [seconds, action]"]),
        ([1.0], ["event 0: expected [seconds, action], got 1.0"]),
        (
            [(1.0, "release"), (0.5, "press"), (0.7, "hold")],
            [
                "event 0: expected 'press'",
                "event 1: time 0.5 s is before",
                "event 2: time 0.7 s is before",
                "event 2: action 'hold'",
            ],
        ),
    ],
)
def test_validation(script: list[tuple[float, ButtonAction]], problems: list[str]) -> None:
    with pytest.raises(ValueError, match="invalid button script") as info:
        ScriptButton(script)
    message = str(info.value)
    for problem in problems:
        assert problem in message
    assert message.count("; ") == len(problems) - 1


def test_valid_scripts_accepted() -> None:
    ScriptButton([(0, "press")])  # ends pressed: allowed, the daemon's max_turn_s guard ends it
    ScriptButton([(0.5, "press"), (0.5, "release"), (3, "press"), (4, "release")])


def test_fake_button() -> None:
    events: list[ButtonAction] = []

    async def scenario() -> None:
        button = FakeButton()
        await button.open(events.append)
        button.press()
        button.release()
        button.exhausted = True
        assert button.exhausted
        await button.close()
        with pytest.raises(RuntimeError):
            button.press()

    asyncio.run(scenario())
    assert events == ["press", "release"]
