"""The push-to-talk button as the Enter key, for a laptop or desktop: Enter starts, Enter ends."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from appliance.debounce import Action

logger = logging.getLogger(__name__)


class KeyboardButton:
    """Enter on a terminal: the first Enter presses the button, the next releases it.

    Reads the file descriptor with the event loop's reader (no thread). When
    input ends (Ctrl-D, or no terminal at all, as under systemd) a held
    button is released and the button is :attr:`exhausted`.

    Args:
        fd: The file descriptor to read; by default standard input.
    """

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._sink: Callable[[Action], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held = False
        self._ended = False

    @property
    def exhausted(self) -> bool:
        """True once input has ended: no press will ever come."""
        return self._ended

    async def open(self, sink: Callable[[Action], None]) -> None:
        """Start watching for Enter.

        Raises:
            RuntimeError: the button is already open.
        """
        if self._sink is not None:
            raise RuntimeError("button is already open")
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_reader(self._fd, self._readable)
        except (OSError, ValueError) as exc:  # /dev/null, a regular file: not a keyboard
            logger.warning("keyboard button: cannot read fd %d (%s): no button", self._fd, exc)
            self._ended = True
            return
        logger.info("keyboard button: press Enter to start talking, Enter again to stop")

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.warning("keyboard button: reading failed (%s): no button", exc)
            data = b""
        if not data:
            self._end()
            return
        for _ in range(data.count(b"\n")):
            self._toggle()

    def _toggle(self) -> None:
        assert self._sink is not None
        self._held = not self._held
        self._sink("press" if self._held else "release")

    def _end(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        if self._held:
            self._toggle()
        self._ended = True
        logger.info("keyboard button: input ended")

    async def close(self) -> None:
        """Stop watching. Idempotent; the file descriptor stays open."""
        if self._loop is not None and not self._ended:
            self._loop.remove_reader(self._fd)
        self._loop = None
