#!/usr/bin/env python3
"""The upstream of one bench run: the emulator in a process of its own, stamping the wire.

Kept apart from the bench's probes so that neither waits on the other's
interpreter lock. Every event the emulator receives or sends is stamped on the
machine-wide monotonic clock (the observer runs as the event is read, or just
before it is written); the connections of the scenario's drop turns are
aborted by the ``drop_after_appends`` fault, counted from when each connection
opens. Prints ``url <ws://...>`` once listening; a line ``zero <seconds>`` on
stdin says when the client's script clock started; at the end of stdin it
stops and writes its records (JSON) to ``--records``.

Usage: bench_upstream.py --key-file F --turns N --drops D [--no-drops] --records FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench_scenario import Scenario

from appliance.emulator import Emulator, Faults


class Wire:
    """The emulator's observer: stamps each event, and notes when a connection is dropped."""

    def __init__(self, emulator: list[Emulator]) -> None:
        self.events: list[tuple[float, str, str, int]] = []
        """(monotonic seconds, ``client`` or ``server``, type, connection index)."""
        self.drops: list[float] = []
        """When a connection was dropped (the fault's last append; the abort follows at once)."""
        self.drop_counts: dict[int, int] = {}
        """Connection index -> its ``drop_after_appends``."""
        self._emulator = emulator
        self._appends: dict[int, int] = {}

    def __call__(self, direction: str, event: dict[str, Any]) -> None:
        at = time.monotonic()
        connection = len(self._emulator[0].connections) - 1 if self._emulator else 0
        kind = str(event.get("type"))
        self.events.append((at, direction, kind, connection))
        if direction == "client" and kind == "input_audio_buffer.append":
            count = self._appends.get(connection, 0) + 1
            self._appends[connection] = count
            if self.drop_counts.get(connection) == count:
                self.drops.append(at)


async def serve(args: argparse.Namespace, key: str) -> dict[str, Any]:
    """Serve until stdin ends; return the records."""
    scenario = Scenario.build(args.turns, drops=args.drops)
    loop = asyncio.get_running_loop()
    zero: list[float] = []
    emulators: list[Emulator] = []
    wire = Wire(emulators)

    def faults_for(handshake: int) -> Faults:
        if args.no_drops:
            return Faults()
        now = time.monotonic()
        count = scenario.drop_after_appends(now - (zero[-1] if zero else now))
        if count is None:
            return Faults()
        wire.drop_counts[handshake - 1] = count
        return Faults(drop_after_appends=count)

    async with Emulator(api_key=key, reply="tone", observer=wire, faults_for=faults_for) as emu:
        emulators.append(emu)
        print(f"url {emu.url}", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            name, _, value = line.partition(" ")
            if name == "zero":
                zero.append(float(value))
    return {"wire": wire.events, "drops": wire.drops, "drop_counts": wire.drop_counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-file", required=True, type=Path)
    parser.add_argument("--turns", required=True, type=int)
    parser.add_argument("--drops", required=True, type=int)
    parser.add_argument("--no-drops", action="store_true", help="no faults (the baseline's run)")
    parser.add_argument("--records", required=True, type=Path)
    args = parser.parse_args()
    records = asyncio.run(serve(args, args.key_file.read_text().strip()))
    args.records.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
