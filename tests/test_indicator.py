"""The status LED on MockFactory pins: every phase has its own, recognisable pattern."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from appliance.errors import HardwareError
from appliance.indicator import PATTERNS, Kind, LedIndicator, Pattern, value
from appliance.status import Health, Phase, Status

TEMPO = 20.0
SHOWN = [p for p in Phase if p not in (Phase.STARTING, Phase.STOPPING)]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    made = MockFactory(pin_class=MockPWMPin)
    yield made
    made.reset()


def cycle(kind: Kind, pattern: Pattern) -> list[object]:
    """One repetition of ``pattern`` as the values written, runs of one value merged."""
    values = [value(kind, pattern, level) for level, _ in pattern.steps]
    return [v for v, _ in itertools.groupby(values)]


def written(states: list[object]) -> list[object]:
    return [v for v, _ in itertools.groupby(states)]


def show(factory: MockFactory, kind: Kind, pins: tuple[int, ...]) -> dict[Phase, list[object]]:
    """Show each phase for one and a half repetitions; what each pin was set to, per phase."""

    async def scenario() -> dict[Phase, list[object]]:
        indicator = LedIndicator(kind, pins, pin_factory=factory, tempo=TEMPO)
        indicator.started()
        runner = asyncio.create_task(indicator.run(Health()))
        seen: dict[Phase, list[object]] = {}
        for phase in SHOWN:
            marks = [len(factory.pin(p).states) for p in pins]
            indicator.status(Status(phase))
            await asyncio.sleep(min(PATTERNS[phase].period_s, 10) * 1.5 / TEMPO + 0.05)
            # A mock pin records changes only: start from the level it held at the change.
            per_pin = [
                [s.state for s in factory.pin(p).states[mark - 1 :]]
                for p, mark in zip(pins, marks, strict=True)
            ]
            seen[phase] = per_pin[0] if len(pins) == 1 else per_pin  # type: ignore[assignment]
        runner.cancel()
        await asyncio.wait([runner])
        indicator.stopping()
        return seen

    return asyncio.run(scenario())


def test_each_phase_shows_its_pattern_on_a_pwm_led(factory: MockFactory) -> None:
    seen = show(factory, "pwm", (27,))
    for phase in SHOWN:
        expected = cycle("pwm", PATTERNS[phase])
        got = [round(float(v), 3) for v in written(seen[phase])]  # type: ignore[arg-type]
        assert expected in (got[: len(expected)], got[1 : len(expected) + 1]), phase
        if len(expected) > 1:
            assert len(got) > len(expected), f"{phase}: the pattern does not repeat"
    assert factory.pin(27).state == 0, "off once stopped"


def test_each_phase_shows_its_pattern_on_a_plain_led(factory: MockFactory) -> None:
    seen = show(factory, "led", (25,))
    for phase in SHOWN:
        expected = [bool(v) for v in cycle("led", PATTERNS[phase])]
        got = written([bool(v) for v in seen[phase]])
        assert expected in (got[: len(expected)], got[1 : len(expected) + 1]), phase


def test_an_rgb_led_shows_each_phase_in_its_colour(factory: MockFactory) -> None:
    seen = show(factory, "rgb", (5, 6, 13))
    for phase in SHOWN:
        pattern = PATTERNS[phase]
        brightest = max(level for level, _ in pattern.steps)
        colour = tuple(round(c * brightest, 3) for c in pattern.color)
        for channel, levels in zip(colour, seen[phase], strict=True):
            assert channel in {round(float(v), 3) for v in levels}, phase  # type: ignore[union-attr]


def test_every_phase_looks_different_even_on_a_plain_led() -> None:
    looks = {
        phase: tuple(
            (value("led", PATTERNS[phase], level), round(seconds, 3))
            for level, seconds in PATTERNS[phase].steps
        )
        for phase in SHOWN
        if phase is not Phase.STARTING
    }
    looks.pop(Phase.CONNECTING)  # starting and connecting look alike on purpose
    binary = {
        phase: [v for v, _ in itertools.groupby(v for v, _ in steps)]
        for phase, steps in looks.items()
    }
    assert len({tuple(steps) for steps in looks.values()}) == len(looks)
    assert binary[Phase.LISTENING] == [1]
    assert binary[Phase.ERROR] == [1, 0]


def test_every_phase_has_a_pattern() -> None:
    assert set(PATTERNS) == set(Phase)


def test_a_pin_in_use_is_a_hardware_error(factory: MockFactory) -> None:
    first = LedIndicator("led", (27,), pin_factory=factory)
    first.started()
    with pytest.raises(HardwareError, match="GPIO27"):
        LedIndicator("pwm", (27,), pin_factory=factory).started()
    first.stopping()
    with pytest.raises(ValueError):
        LedIndicator("rgb", (27,))
