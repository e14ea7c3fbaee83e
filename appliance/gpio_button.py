"""The push-to-talk button on a GPIO pin (gpiozero), debounced by the appliance itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from gpiozero import DigitalInputDevice, GPIOZeroError

from appliance.debounce import Action, Debouncer
from appliance.errors import HardwareError
from appliance.handoff import Handoff

logger = logging.getLogger(__name__)

Pull = Literal["up", "down", "none"]
"""The pin's pull resistor."""

Level = Literal["low", "high"]
"""The level the pin reads while the button is held."""

EDGES_WAITING = 64
"""Raw edges that may wait for the event loop; a flood of chatter drops the oldest."""


class GpioButton:
    """A button between a GPIO pin and ground (or 3.3 V), through gpiozero.

    gpiozero calls back on its own thread on a Pi (at once, on the caller's
    thread, with mock pins); each raw edge is stamped with the time and
    handed to the event loop (``call_soon_threadsafe`` into a bounded
    queue), where a :class:`~appliance.debounce.Debouncer` turns chatter into
    one press or release. gpiozero's own ``bounce_time`` is not used: mock
    pins ignore it, so it could not be tested.

    Args:
        pin: The GPIO (BCM number).
        pull: The pull resistor: ``"up"`` (button to ground), ``"down"``
            (button to 3.3 V) or ``"none"`` (an external resistor).
        active: The level while held; must be ``"low"`` with ``pull="up"``
            and ``"high"`` with ``pull="down"``.
        debounce_ms: How long a new level must hold to count (milliseconds).
        pin_factory: gpiozero's pin factory; ``None``: gpiozero's default
            (``GPIOZERO_PIN_FACTORY``, else the best one available).
    """

    def __init__(
        self,
        pin: int,
        *,
        pull: Pull = "up",
        active: Level = "low",
        debounce_ms: int = 20,
        pin_factory: Any = None,
    ) -> None:
        self.pin = pin
        self._pull_up = {"up": True, "down": False, "none": None}[pull]
        self._active_high = active == "high"
        if self._pull_up is not None and self._pull_up == self._active_high:
            raise ValueError(f"a pull-{pull} button is active {'low' if self._pull_up else 'high'}")
        self._settle_s = debounce_ms / 1000
        self._pin_factory = pin_factory
        self._device: DigitalInputDevice | None = None
        self._task: asyncio.Task[None] | None = None
        self._edges: Handoff[tuple[bool, float]] | None = None
        self.debouncer: Debouncer | None = None
        """The debouncer, once open (for inspection)."""

    @property
    def dropped_edges(self) -> int:
        """Raw edges dropped because too many waited for the event loop."""
        return 0 if self._edges is None else self._edges.dropped

    @property
    def exhausted(self) -> bool:
        """Always False: a real button may always be pressed again."""
        return False

    async def open(self, sink: Callable[[Action], None]) -> None:
        """Claim the pin and start delivering debounced presses and releases to ``sink``.

        Raises:
            HardwareError: the pin cannot be used (no GPIO here, or it is taken).
            RuntimeError: the button is already open.
        """
        if self._task is not None:
            raise RuntimeError("button is already open")
        loop = asyncio.get_running_loop()
        edges: Handoff[tuple[bool, float]] = Handoff(loop, maxlen=EDGES_WAITING)
        try:
            device = DigitalInputDevice(
                self.pin,
                pull_up=self._pull_up,
                active_state=None if self._pull_up is not None else self._active_high,
                bounce_time=None,
                pin_factory=self._pin_factory,
            )
        except (GPIOZeroError, OSError) as exc:
            raise HardwareError(f"cannot use GPIO{self.pin} for the button: {exc}") from exc
        held = bool(device.is_active)
        self.debouncer = Debouncer(self._settle_s, pressed=held)
        if held:
            logger.warning("button on GPIO%d is held at start: waiting for its release", self.pin)
        # gpiozero's thread: stamp the edge and hand it over, nothing else.
        device.when_activated = lambda: edges.put_threadsafe((True, loop.time()))
        device.when_deactivated = lambda: edges.put_threadsafe((False, loop.time()))
        self._device = device
        self._edges = edges
        self._task = asyncio.create_task(self._run(edges, self.debouncer, sink), name="gpio button")
        logger.info(
            "button on GPIO%d (pull %s, %d ms debounce)",
            self.pin,
            {True: "up", False: "down", None: "none"}[self._pull_up],
            round(self._settle_s * 1000),
        )

    async def _run(
        self,
        edges: Handoff[tuple[bool, float]],
        debouncer: Debouncer,
        sink: Callable[[Action], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(debouncer.deadline()):
                    pressed, at = await edges.get()
            except TimeoutError:
                action = debouncer.poll(loop.time())
                if action is not None:
                    logger.debug("button: %s", action)
                    sink(action)
            else:
                debouncer.edge(pressed, at)

    async def close(self) -> None:
        """Stop delivering events and release the pin. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        device, self._device = self._device, None
        if device is not None:
            device.close()
        if self.dropped_edges:
            logger.warning("button: %d raw edges dropped (a flood of chatter)", self.dropped_edges)
