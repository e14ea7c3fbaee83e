"""Notices when the event loop was blocked, and says for how long (R7)."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

PERIOD_S = 0.25
"""How often the loop is checked (seconds)."""

THRESHOLD_S = 0.2
"""A wake-up this much later than asked for is reported (seconds)."""


async def watch_loop_lag(*, period_s: float = PERIOD_S, threshold_s: float = THRESHOLD_S) -> None:
    """Sleep ``period_s`` at a time and log each wake-up later than ``threshold_s``.

    A blocked loop delays audio, keepalive pongs and the systemd watchdog
    alike; the journal line names the delay so the cause can be found.
    Runs until cancelled.
    """
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period_s
        await asyncio.sleep(period_s)
        late_s = loop.time() - due
        if late_s > threshold_s:
            logger.warning("the event loop was blocked for %d ms", late_s * 1000)
