"""Load on loopback: 50 simulated devices at once through one relay; the benchmark's smoke run."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from relaying import KEY, MODEL, make_config
from schema import schema_observer

from appliance.emulator import Emulator
from appliance.relay import Relay, add_device
from appliance.relay.loadgen import Stamps, run_devices, transits

REPO = Path(__file__).resolve().parent.parent


def test_fifty_devices_five_turns_each_all_complete(tmp_path: Path) -> None:
    devices, turns = 50, 5
    audio = bytes(range(256)) * 19 * 2  # 9728 bytes: about 0.2 s per turn

    async def scenario() -> None:
        validate, violations = schema_observer()
        upstream_seen: dict[str, float] = {}

        def observer(direction: str, message: dict[str, Any]) -> None:
            if direction == "client":
                upstream_seen[message["event_id"]] = time.perf_counter()
            validate(direction, message)

        async with Emulator(api_key=KEY, observer=observer) as emulator:
            config = make_config(tmp_path, emulator.url, instructions="Be brief.", voice="cedar")
            tokens = {
                f"dev{i:02d}": add_device(config.devices_file, f"dev{i:02d}")
                for i in range(devices)
            }
            stamps = Stamps()
            async with Relay(config) as relay:
                results = await run_devices(
                    f"{relay.url}?model={MODEL}",
                    tokens,
                    turns=turns,
                    audio=audio,
                    chunk_ms=50,
                    speed=10,  # compressed timings
                    stamps=stamps,
                )
                await emulator.wait_for(lambda: all(c.closed for c in emulator.connections))
            assert [r.failure for r in results] == [None] * devices
            assert [r.turns for r in results] == [turns] * devices
            assert len(emulator.connections) == devices
            assert sum(len(c.commits) for c in emulator.connections) == devices * turns
            statuses = {r.status for c in emulator.connections for r in c.responses}
            assert statuses == {"completed"}
            assert sorted(s.turns for s in relay.sessions) == [turns] * devices
            assert {c.session["audio"]["output"]["voice"] for c in emulator.connections} == {
                "cedar"
            }
            # Every device event arrived upstream, each device's in its own order.
            assert upstream_seen.keys() == stamps.sent.keys()
            for name in tokens:
                mine = [
                    e for e in emulator.connections if e.received[0]["event_id"] == f"{name}-cfg"
                ]
                (connection,) = mine
                ids = [m["event_id"] for m in connection.received]
                assert ids == sorted(ids, key=lambda e: stamps.sent[e])
            assert len(transits(stamps.sent, upstream_seen)) == len(stamps.sent)
        assert violations == [], violations[:3]

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_the_benchmark_runs_and_reports_cpu_and_added_latency() -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "bench-relay"), "--devices", "3", "--turns", "2", "--speed", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "all 6 device-turns completed" in out
    cpu = re.search(r"relay CPU per device-turn: ([0-9.]+) ms", out)
    assert cpu is not None and float(cpu.group(1)) > 0, out
    for direction in ("device to upstream", "upstream to device"):
        line = re.search(
            rf"added latency per event, {direction}: p50 (-?[0-9.]+) ms, p95 (-?[0-9.]+) ms", out
        )
        assert line is not None, out
    assert "upstream sessions left open: 0" in out
    assert "relay exited 0" in out
    assert KEY not in out and "apr_" not in out
