"""The keyboard button: Enter presses, Enter releases; the end of input releases."""

from __future__ import annotations

import asyncio
import os

from appliance.debounce import Action
from appliance.keyboard_button import KeyboardButton


def test_enter_starts_a_turn_and_enter_ends_it() -> None:
    async def scenario() -> tuple[list[Action], bool]:
        read_end, write_end = os.pipe()
        actions: list[Action] = []
        button = KeyboardButton(read_end)
        await button.open(actions.append)
        os.write(write_end, b"\n")
        await asyncio.sleep(0.05)
        assert actions == ["press"]
        os.write(write_end, b"hello\n\n")  # typed text is ignored; each Enter counts
        await asyncio.sleep(0.05)
        assert actions == ["press", "release", "press"]
        os.close(write_end)  # Ctrl-D: a held button is let go
        await asyncio.sleep(0.05)
        exhausted = button.exhausted
        await button.close()
        os.close(read_end)
        return actions, exhausted

    actions, exhausted = asyncio.run(scenario())
    assert actions == ["press", "release", "press", "release"]
    assert exhausted


def test_no_terminal_means_no_button() -> None:
    async def scenario(fd: int) -> bool:
        button = KeyboardButton(fd)
        await button.open(lambda action: None)
        await button.close()
        return button.exhausted

    with open(os.devnull, "rb") as devnull:
        assert asyncio.run(scenario(devnull.fileno()))
