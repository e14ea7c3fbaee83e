"""The chaos soak's upstream side, run as its own process: emulators behind fault proxies.

``python tests/chaos_upstream.py --seed S --count N --key-file F`` starts N
emulators, each behind its own ``FaultProxy``, prints one JSON line with the
proxies' URLs, serves until its standard input closes, then prints one JSON
line of figures and exits. Each emulator draws the faults of each of its
connections from a ``random.Random`` seeded with S and its index; each proxy
draws its plans likewise. Running it in its own process keeps the emulators'
records and CPU time out of the daemons' process, whose memory, descriptors
and tasks the soak measures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faultproxy import Chaos, FaultProxy

from appliance.emulator import Connection, Emulator, Faults

logger = logging.getLogger("chaos_upstream")

CHAOS = Chaos(cut=0.35, stall=0.35, slice=0.3, at_s_max=5.0, at_bytes_max=150_000, life_max_s=12.0)
"""Most connections end in a fault within a few turns."""


def draw_faults(rng: random.Random) -> Faults:
    """The emulator faults of one connection: mostly none, else one or two at random."""
    roll = rng.random()
    if roll < 0.5:
        return Faults()
    kind = rng.choice(
        [
            "drop",
            "drop",
            "malformed",
            "malformed",
            "expire",
            "expire",
            "stall",
            "error",
            "pacing",
            "delays",
            "refuse",
            "reject_update",
        ]
    )
    if kind == "drop":
        return Faults(drop_after_appends=rng.randint(1, 60))
    if kind == "malformed":
        return Faults(
            malformed_after_events=rng.randint(0, 60),
            malformed_kind=rng.choice(["json", "field", "base64"]),
        )
    if kind == "expire":
        return Faults(expire_after_s=rng.uniform(1.5, 8.0))
    if kind == "stall":
        return Faults(stall_after_events=rng.randint(1, 120))
    if kind == "error":
        # Every turn on such a session fails, so it does not last long.
        code = rng.choice(["server_error", "rate_limit_exceeded", "insufficient_quota"])
        return Faults(error_after_commit=code, drop_after_appends=rng.randint(10, 40))
    if kind == "pacing":
        if rng.random() < 0.5:
            return Faults(delta_interval_s=rng.uniform(0.02, 0.2))
        return Faults(burst_deltas=rng.randint(1, 3), burst_pause_s=rng.uniform(0.05, 0.6))
    if kind == "delays":
        return Faults(
            created_delay_s=rng.uniform(0, 1.5),
            updated_delay_s=rng.uniform(0, 1.0),
            expires_in_s=rng.uniform(2, 10),
        )
    if kind == "refuse":
        return Faults(reject_handshake=rng.choice([429, 500, 503]))
    return Faults(reject_update=True)


def changed(faults: Faults) -> dict[str, Any]:
    """The fields of ``faults`` that differ from the defaults."""
    default = Faults()
    return {
        f.name: getattr(faults, f.name)
        for f in dataclasses.fields(faults)
        if getattr(faults, f.name) != getattr(default, f.name)
    }


def connection_figures(connection: Connection) -> dict[str, Any]:
    """What the soak needs to know about one connection, from its record."""
    since_create = 0  # commits since the last response.create
    duplicates = 0
    for message in connection.received:
        kind = message.get("type")
        if kind == "input_audio_buffer.commit":
            since_create += 1
        elif kind == "response.create":
            if since_create == 0:
                duplicates += 1
            since_create = 0
    busy = [
        e
        for e in connection.sent
        if e["type"] == "error" and e["error"]["code"] == "conversation_already_has_active_response"
    ]
    return {
        "session": connection.session_id,
        "faults": changed(connection.faults),
        "commits": sum(m.get("type") == "input_audio_buffer.commit" for m in connection.received),
        "creates": sum(m.get("type") == "response.create" for m in connection.received),
        "responses": [r.status for r in connection.responses],
        "duplicate_creates": duplicates,
        "creates_while_active": len(busy),
        "malformed": len(connection.malformed),
        "stalled": connection.stalled_at is not None,
        "close_code": connection.close_code,
        "opened_at": connection.opened_at,
        "closed_at": connection.closed_at,
        "stalled_at": connection.stalled_at,
        "log": compact_log(connection),
    }


SHORT = {
    "session.update": "UPDATE",
    "input_audio_buffer.commit": "COMMIT",
    "input_audio_buffer.clear": "CLEAR",
    "response.create": "CREATE",
    "response.cancel": "CANCEL",
    "conversation.item.truncate": "TRUNCATE",
    "conversation.item.create": "ITEM",
    "conversation.item.delete": "DELETE",
    "session.created": "created",
    "session.updated": "updated",
    "input_audio_buffer.committed": "committed",
    "response.created": "resp",
    "response.done": "done",
    "error": "error",
}


def compact_log(connection: Connection) -> str:
    """Both directions in order, client events in capitals, appends and deltas counted."""
    words: list[str] = []
    run_kind, run_length = "", 0
    for direction, message in connection.log:
        kind = message.get("type", "?")
        if kind in ("input_audio_buffer.append", "response.output_audio.delta"):
            mark = "a" if direction == "client" else "d"
            if run_kind == mark:
                run_length += 1
                continue
            if run_length:
                words.append(f"{run_length}{run_kind}")
            run_kind, run_length = mark, 1
            continue
        if run_length:
            words.append(f"{run_length}{run_kind}")
            run_kind, run_length = "", 0
        if kind in SHORT:
            word = SHORT[kind]
            if kind == "error":
                word += f"({message['error'].get('code')})"
            elif kind == "response.done":
                word += f"({message['response']['status']})"
            words.append(word)
    if run_length:
        words.append(f"{run_length}{run_kind}")
    if connection.malformed:
        words.append(f"[malformed after {connection.malformed[0][0]} events]")
    return " ".join(words)


async def serve(seed: int, count: int, key: str) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emulators: list[Emulator] = []
    proxies: list[FaultProxy] = []
    refused = [0] * count

    def chooser(index: int) -> Callable[[int], Faults]:
        rng = random.Random(f"{seed}/emulator/{index}")

        rejected_in_a_row = 0

        def faults_for(handshake: int) -> Faults:
            nonlocal rejected_in_a_row
            faults = draw_faults(rng)
            # Three refused session.updates in a row are an upstream that says no:
            # the daemon rightly waits rejected_retry_s (R6), which its own
            # scenario test covers. The soak is about surviving faults, not that.
            while faults.reject_update and rejected_in_a_row >= 2:
                faults = draw_faults(rng)
            rejected_in_a_row = rejected_in_a_row + 1 if faults.reject_update else 0
            refused[index] += faults.reject_handshake is not None
            return faults

        return faults_for

    for index in range(count):
        emulator = Emulator(
            api_key=key, reply="echo", chunk_interval_s=0.005, faults_for=chooser(index)
        )
        await emulator.start()
        proxy = FaultProxy(target_port=emulator.port, seed=f"{seed}/proxy/{index}", chaos=CHAOS)
        await proxy.start()
        emulators.append(emulator)
        proxies.append(proxy)
    urls = [f"ws://127.0.0.1:{proxy.port}/v1/realtime" for proxy in proxies]
    print(json.dumps({"urls": urls}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    figures = []
    for index, (emulator, proxy) in enumerate(zip(emulators, proxies, strict=True)):
        figures.append(
            {
                "refused": refused[index],
                "connections": [connection_figures(c) for c in emulator.connections],
                "proxy": [
                    {"at": e.at, "connection": e.connection, "what": e.what} for e in proxy.log
                ],
            }
        )
    for proxy in proxies:
        await proxy.stop()
    for emulator in emulators:
        await emulator.stop()
    print(json.dumps({"upstreams": figures}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.seed, args.count, args.key_file.read_text().strip()))


if __name__ == "__main__":
    main()
