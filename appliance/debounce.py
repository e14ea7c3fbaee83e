"""Contact debouncing, sans-I/O: raw edges in, one clean press or release out."""

from __future__ import annotations

from typing import Literal

Action = Literal["press", "release"]
"""What the button did (the same values as ``appliance.button.ButtonAction``)."""


class Debouncer:
    """Turns the chatter of a mechanical contact into clean presses and releases.

    A new level counts once the contact has held it for ``settle_s`` without
    another edge: chatter shorter than that is one press (or nothing, for a
    spike that returns to the old level). Each edge restarts the wait, so the
    reported action comes ``settle_s`` after the last bounce. Inputs carry
    their own time; the caller calls :meth:`poll` at :meth:`deadline`.

    Args:
        settle_s: How long (seconds) a new level must hold; 0 reports every
            change at once.
        pressed: Whether the button is held when debouncing starts.

    Raises:
        ValueError: ``settle_s`` is negative.
    """

    def __init__(self, settle_s: float, *, pressed: bool = False) -> None:
        if settle_s < 0:
            raise ValueError(f"settle_s must be 0 or more, got {settle_s}")
        self._settle_s = settle_s
        self._stable = pressed
        self._raw = pressed
        self._deadline: float | None = None
        self.edges = 0
        """Raw edges seen, chatter included."""

    @property
    def pressed(self) -> bool:
        """The debounced state: True while the button counts as held."""
        return self._stable

    def deadline(self) -> float | None:
        """When :meth:`poll` may report something (seconds), if anything is pending."""
        return self._deadline

    def edge(self, pressed: bool, now: float) -> None:
        """The contact went to ``pressed`` at ``now`` (seconds)."""
        self.edges += 1
        self._raw = pressed
        self._deadline = now + self._settle_s

    def poll(self, now: float) -> Action | None:
        """The action that has settled by ``now`` (seconds), if any."""
        if self._deadline is None or now < self._deadline:
            return None
        self._deadline = None
        if self._raw == self._stable:
            return None  # a spike that came back: nothing happened
        self._stable = self._raw
        return "press" if self._stable else "release"
