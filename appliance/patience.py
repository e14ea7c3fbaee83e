"""Opening an audio device that is not there (yet, or any more): try again, do not exit.

A USB microphone may appear seconds after boot; one that was unplugged may be
plugged in again. Exiting for systemd to restart the service would start the
whole process again every few seconds (imports, devices, a new upstream
session) and fill the journal; waiting here costs nothing and the device is
used the moment it is back. The daemon waits this way at start (up to
``audio.lost_exit_s``), and the sound-card adapters when they reopen a device
that failed (for as long as it takes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from appliance.errors import AudioDeviceError

logger = logging.getLogger(__name__)

RETRY_BASE_S = 0.5
"""First wait before trying a missing device again (seconds); it doubles up to ``RETRY_MAX_S``."""

RETRY_MAX_S = 10.0
"""Longest wait between two tries (seconds)."""


async def open_patiently(
    what: str,
    open_it: Callable[[], Awaitable[None]],
    *,
    give_up_at: float | None,
    waiting: Callable[[str], None],
) -> None:
    """Call ``open_it`` until it succeeds, waiting 0.5 s doubling to 10 s between tries.

    Args:
        what: The device in words, for the log and ``waiting``: "microphone".
        open_it: Opens the device; raises :class:`AudioDeviceError` when it cannot.
        give_up_at: When (the event loop's clock) a device still missing is an
            error; None: never.
        waiting: Told, in plain words, why the device is being waited for
            (before each wait).

    Raises:
        AudioDeviceError: the device was still missing at ``give_up_at``.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay_s = RETRY_BASE_S
    tries = 0
    while True:
        try:
            await open_it()
        except AudioDeviceError as exc:
            tries += 1
            left_s = RETRY_MAX_S if give_up_at is None else give_up_at - loop.time()
            if left_s <= 0:
                logger.critical(
                    "the %s is still missing after %.0f s: giving up", what, loop.time() - started
                )
                raise
            wait_s = min(delay_s, left_s)
            logger.error("%s; trying again in %g s", exc, round(wait_s, 1))
            waiting(f"waiting for the {what}: {exc}")
            await asyncio.sleep(wait_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)
            continue
        if tries:
            logger.info("the %s is back after %d failed tries", what, tries)
        return
