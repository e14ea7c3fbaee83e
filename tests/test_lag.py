"""The event-loop lag monitor."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from appliance.lag import watch_loop_lag


def test_a_blocked_loop_is_reported_with_its_delay(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        watcher = asyncio.create_task(watch_loop_lag(period_s=0.05, threshold_s=0.1))
        await asyncio.sleep(0.2)
        time.sleep(0.4)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.2)
        watcher.cancel()

    with caplog.at_level(logging.WARNING, logger="appliance.lag"):
        asyncio.run(scenario())
    reported = [
        int(r.getMessage().split()[-2]) for r in caplog.records if r.name == "appliance.lag"
    ]
    assert max(reported) >= 250


def test_a_free_loop_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        watcher = asyncio.create_task(watch_loop_lag(period_s=0.02, threshold_s=5.0))
        await asyncio.sleep(0.3)
        watcher.cancel()

    with caplog.at_level(logging.WARNING, logger="appliance.lag"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.name == "appliance.lag"]
