"""The status LED: one pattern per phase, on a plain LED, a PWM LED or an RGB LED (gpiozero).

The patterns are one table (:data:`PATTERNS`) of brightness steps; a plain
LED is on wherever the brightness is at least one half, so every pattern
stays recognisable on it. The indicator animates them itself, from the
event loop, so what it does can be recorded and tested.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gpiozero import LED, PWMLED, RGBLED, GPIOZeroError

from appliance.errors import HardwareError
from appliance.status import Health, Phase, Status

logger = logging.getLogger(__name__)

Kind = Literal["led", "pwm", "rgb"]
"""A plain on/off LED, a dimmable one, or a red-green-blue one."""

Color = tuple[float, float, float]
"""Red, green and blue, each 0 to 1."""

Step = tuple[float, float]
"""A brightness (0 to 1) and how long it lasts (seconds)."""


@dataclass(frozen=True)
class Pattern:
    """How the LED shows one phase: a colour (RGB LEDs) and brightness steps, repeated."""

    color: Color
    steps: tuple[Step, ...]
    """Repeated forever; a single step is a steady light."""

    @property
    def period_s(self) -> float:
        """The length of one repetition (seconds)."""
        return sum(seconds for _, seconds in self.steps)


def _pulse(period_s: float, *, low: float = 0.05, steps: int = 8) -> tuple[Step, ...]:
    """A smooth breath from ``low`` to full and back, in ``2 * steps`` steps."""
    half = [
        low + (1 - low) * (0.5 - 0.5 * math.cos(math.pi * (i + 0.5) / steps)) for i in range(steps)
    ]
    each = period_s / (2 * steps)
    return tuple((round(level, 3), each) for level in half + half[::-1])


_WHITE: Color = (1.0, 1.0, 1.0)

PATTERNS: Mapping[Phase, Pattern] = {
    # Starting and connecting: a short blink each second, yellow.
    Phase.STARTING: Pattern((1.0, 0.6, 0.0), ((1.0, 0.2), (0.0, 0.8))),
    Phase.CONNECTING: Pattern((1.0, 0.6, 0.0), ((1.0, 0.2), (0.0, 0.8))),
    # Ready: a dim glow with a short flash every 3 s (a plain LED: the flash alone).
    Phase.READY: Pattern(_WHITE, ((0.15, 2.85), (1.0, 0.15))),
    # Listening: full and steady, green.
    Phase.LISTENING: Pattern((0.0, 1.0, 0.0), ((1.0, 3600.0),)),
    # Thinking: a quick breath, blue.
    Phase.THINKING: Pattern((0.0, 0.3, 1.0), _pulse(0.6)),
    # Speaking: a slow breath, cyan.
    Phase.SPEAKING: Pattern((0.0, 1.0, 1.0), _pulse(1.6)),
    # Offline: a double blink every 2 s, orange.
    Phase.OFFLINE: Pattern((1.0, 0.3, 0.0), ((1.0, 0.15), (0.0, 0.15), (1.0, 0.15), (0.0, 1.55))),
    # Error: a fast, urgent blink, red.
    Phase.ERROR: Pattern((1.0, 0.0, 0.0), ((1.0, 0.1), (0.0, 0.1))),
    # Stopping: off.
    Phase.STOPPING: Pattern(_WHITE, ((0.0, 3600.0),)),
}
"""The pattern of every phase."""


def value(kind: Kind, pattern: Pattern, level: float) -> Any:
    """What to set the gpiozero device's ``value`` to for ``level`` of ``pattern``."""
    if kind == "led":
        return 1 if level >= 0.5 else 0
    if kind == "pwm":
        return level
    return tuple(round(c * level, 3) for c in pattern.color)


class LedIndicator:
    """A :class:`~appliance.status.Companion` that shows the phase on an LED.

    The gpiozero device is created in :meth:`started` and closed in
    :meth:`stopping`, so a daemon built for a reload does not claim the pins
    while the running one still holds them.

    Args:
        kind: The LED's kind.
        pins: One GPIO (BCM) for ``led`` and ``pwm``, three (red, green,
            blue) for ``rgb``.
        active_high: True if a high pin lights the LED.
        pin_factory: gpiozero's pin factory; ``None``: gpiozero's default.
        tempo: Plays every pattern this many times faster (tests).
    """

    def __init__(
        self,
        kind: Kind,
        pins: tuple[int, ...],
        *,
        active_high: bool = True,
        pin_factory: Any = None,
        tempo: float = 1.0,
    ) -> None:
        if len(pins) != (3 if kind == "rgb" else 1):
            raise ValueError(f"a {kind} LED takes {3 if kind == 'rgb' else 1} pin(s), got {pins}")
        self.kind: Kind = kind
        self.pins = pins
        self._active_high = active_high
        self._pin_factory = pin_factory
        self._tempo = tempo
        self._device: Any = None
        self._phase = Phase.STARTING
        self._changed = asyncio.Event()

    @property
    def phase(self) -> Phase:
        """The phase shown."""
        return self._phase

    def started(self) -> None:
        """Claim the pins.

        Raises:
            HardwareError: the pins cannot be used.
        """
        factory = self._pin_factory
        try:
            if self.kind == "rgb":
                red, green, blue = self.pins
                self._device = RGBLED(
                    red, green, blue, active_high=self._active_high, pin_factory=factory
                )
            else:
                cls = LED if self.kind == "led" else PWMLED
                self._device = cls(self.pins[0], active_high=self._active_high, pin_factory=factory)
        except (GPIOZeroError, OSError) as exc:
            shown = ", ".join(f"GPIO{pin}" for pin in self.pins)
            raise HardwareError(f"cannot use {shown} for the {self.kind} LED: {exc}") from exc
        logger.info("status LED: %s on %s", self.kind, ", ".join(f"GPIO{p}" for p in self.pins))

    def status(self, status: Status) -> None:
        """Show ``status.phase`` from the next step on."""
        if status.phase is not self._phase:
            self._phase = status.phase
            self._changed.set()

    def stopping(self) -> None:
        """Turn the LED off and release its pins."""
        device, self._device = self._device, None
        if device is not None:
            device.off()
            device.close()

    async def run(self, health: Health) -> None:
        """Play the current phase's pattern until the daemon stops."""
        while True:
            self._changed.clear()
            pattern = PATTERNS[self._phase]
            for level, seconds in pattern.steps:
                if self._changed.is_set():  # changed as a step ended: no stale step
                    break
                if self._device is not None:
                    self._device.value = value(self.kind, pattern, level)
                if len(pattern.steps) == 1:
                    await self._changed.wait()
                    break
                try:
                    async with asyncio.timeout(seconds / self._tempo):
                        await self._changed.wait()
                    break  # the phase changed: start its pattern at once
                except TimeoutError:
                    continue
