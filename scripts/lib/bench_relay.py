"""The relay benchmark behind scripts/bench-relay: CPU per device-turn, added latency per event.

Phase 1 runs the simulated devices straight against the emulator; phase 2
runs the same load through `appliance relay`, a separate process whose CPU
time is read from /proc. An event's transit is the time from one end
stamping it to the other end stamping it (client events: device send to
emulator receipt; server events: emulator send to device receipt), all in
this process's clock. The latency the relay adds is the difference between
the two phases' percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.emulator import Emulator
from appliance.relay import add_device
from appliance.relay.loadgen import Stamps, percentile, run_devices, transits

MODEL = "gpt-realtime-2"


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench-relay", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help="simulated devices at once")
    parser.add_argument("--turns", type=int, default=5, help="turns per device")
    parser.add_argument("--turn-ms", type=int, default=1000, help="audio per turn (ms)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="appends sent this many times real time"
    )
    args = parser.parse_args()
    return asyncio.run(bench(args.devices, args.turns, args.turn_ms, args.speed))


async def bench(devices: int, turns: int, turn_ms: int, speed: float) -> int:
    key = "sk-bench-" + secrets.token_urlsafe(24)
    audio = (bytes(range(256)) * (turn_ms * 48 // 256 + 1))[: turn_ms * 48]
    upstream_in: dict[str, float] = {}  # client event id -> emulator receipt
    upstream_out: dict[str, float] = {}  # server event id -> emulator send

    def observer(direction: str, message: dict[str, Any]) -> None:
        event_id = message.get("event_id")
        if isinstance(event_id, str):
            (upstream_in if direction == "client" else upstream_out)[event_id] = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-relay-") as folder:
        work = Path(folder)
        key_file = work / "openai-api-key"
        key_file.write_text(key + "\n")
        os.chmod(key_file, 0o600)
        devices_file = work / "devices.json"
        names = [f"bench{i:03d}" for i in range(devices)]
        tokens = {name: add_device(devices_file, name) for name in names}
        async with Emulator(api_key=key, observer=observer) as emulator:
            direct = Stamps()
            started = time.perf_counter()
            results = await run_devices(
                f"{emulator.url}?model={MODEL}",
                dict.fromkeys(names, key),
                turns=turns,
                audio=audio,
                speed=speed,
                stamps=direct,
            )
            direct_s = time.perf_counter() - started
            if failed := [r for r in results if r.failure]:
                print(f"direct run: {len(failed)} devices failed: {failed[0].failure}")
                return 1
            direct_up = transits(direct.sent, upstream_in)
            direct_down = transits(upstream_out, direct.arrived)
            upstream_in.clear()
            upstream_out.clear()
            await emulator.wait_for(lambda: all(c.closed for c in emulator.connections))
            before_relay = len(emulator.connections)

            port = _free_port()
            config = work / "relay.toml"
            config.write_text(
                "[relay]\n"
                f'listen = "127.0.0.1:{port}"\n'
                f'upstream_url = "{emulator.url}"\n'
                f'model = "{MODEL}"\n'
                f'api_key_file = "{key_file}"\n'
                f'devices_file = "{devices_file}"\n'
                'instructions = "You are a benchmark. Answer briefly."\n'
                'voice = "cedar"\n'
                f"connects_per_minute = {max(20, 2 * devices)}\n"
            )
            relay = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "appliance", "relay", "--config", str(config)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                await _wait_listening(port, relay)
                cpu_before = _cpu_s(relay.pid)
                relayed = Stamps()
                started = time.perf_counter()
                results = await run_devices(
                    f"ws://127.0.0.1:{port}/v1/realtime?model={MODEL}",
                    tokens,
                    turns=turns,
                    audio=audio,
                    speed=speed,
                    stamps=relayed,
                )
                relayed_s = time.perf_counter() - started
                cpu_s = _cpu_s(relay.pid) - cpu_before
                sessions = emulator.connections[before_relay:]
                with contextlib.suppress(TimeoutError):  # reported below as sessions left open
                    await emulator.wait_for(lambda: all(c.closed for c in sessions), timeout_s=10)
                left_open = sum(not c.closed for c in sessions)
            finally:
                relay.send_signal(signal.SIGTERM)
                try:
                    _, stderr = await asyncio.wait_for(relay.communicate(), 20)
                except TimeoutError:
                    relay.kill()
                    _, stderr = await relay.communicate()
        if relay.returncode != 0:
            print(f"relay exited {relay.returncode}:\n{stderr.decode()}", file=sys.stderr)
        completed = sum(r.turns for r in results)
        device_turns = devices * turns
        failed = [r for r in results if r.failure]
        relay_up = transits(relayed.sent, upstream_in)
        relay_down = transits(upstream_out, relayed.arrived)
    print(f"relay benchmark: {devices} devices x {turns} turns of {turn_ms} ms, speed x{speed:g}")
    if failed:
        print(f"{len(failed)} devices failed, the first: {failed[0].failure}")
    else:
        print(f"all {device_turns} device-turns completed")
    print(f"direct: {direct_s:.1f} s; through the relay: {relayed_s:.1f} s")
    print(
        f"relay CPU per device-turn: {cpu_s / max(1, completed) * 1000:.2f} ms "
        f"({cpu_s:.2f} s for {completed} device-turns, sessions set up included)"
    )
    for label, plain, relayed_transits in (
        ("device to upstream", direct_up, relay_up),
        ("upstream to device", direct_down, relay_down),
    ):
        p50 = percentile(relayed_transits, 0.5) - percentile(plain, 0.5)
        p95 = percentile(relayed_transits, 0.95) - percentile(plain, 0.95)
        print(
            f"added latency per event, {label}: p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms "
            f"(direct p50 {percentile(plain, 0.5) * 1000:.2f} / p95 "
            f"{percentile(plain, 0.95) * 1000:.2f} ms, through the relay p50 "
            f"{percentile(relayed_transits, 0.5) * 1000:.2f} / p95 "
            f"{percentile(relayed_transits, 0.95) * 1000:.2f} ms; "
            f"{len(relayed_transits)} events)"
        )
    print(f"upstream sessions left open: {left_open}")
    print(f"relay exited {relay.returncode}")
    return 0 if not failed and left_open == 0 and relay.returncode == 0 else 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_listening(port: int, relay: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if relay.returncode is not None:
            raise RuntimeError(f"the relay exited {relay.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError("the relay did not start listening within 30 s")


def _cpu_s(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (seconds), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
