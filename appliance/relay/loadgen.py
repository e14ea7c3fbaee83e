"""Simulated devices for load tests and the benchmark: push-to-talk turns, every event timed."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["DeviceResult", "Stamps", "percentile", "run_devices", "simulate_device", "transits"]

SESSION: dict[str, Any] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
    },
}
"""The push-to-talk session every simulated device asks for."""

BYTES_PER_MS = 48
"""24 kHz mono 16-bit PCM: bytes per millisecond."""


@dataclass
class Stamps:
    """When events passed a point, by ``event_id`` (seconds, ``time.perf_counter``)."""

    sent: dict[str, float] = field(default_factory=dict)
    """Client events, when a device sent them."""
    arrived: dict[str, float] = field(default_factory=dict)
    """Server events, when a device received them."""


@dataclass
class DeviceResult:
    """What one simulated device achieved."""

    name: str
    """The device's name."""
    turns: int = 0
    """Turns whose response completed."""
    failure: str | None = None
    """Why it stopped early, if it did."""


async def simulate_device(
    url: str,
    *,
    name: str,
    token: str,
    turns: int,
    audio: bytes,
    chunk_ms: int = 20,
    speed: float = 1.0,
    stamps: Stamps,
) -> DeviceResult:
    """One device: a session, then ``turns`` push-to-talk turns, each awaited to ``response.done``.

    Args:
        url: The endpoint with its ``?model=`` query (a relay or the emulator).
        name: Prefix of every event id this device sends.
        token: The bearer credential.
        turns: How many turns.
        audio: The PCM (24 kHz mono s16le) spoken in each turn.
        chunk_ms: Milliseconds of audio per ``input_audio_buffer.append``.
        speed: How much faster than real time appends are sent (``math.inf``: at once).
        stamps: Where send and arrival times go.

    Returns:
        The turns completed, and why it stopped if it stopped early.
    """
    result = DeviceResult(name)
    step = chunk_ms * BYTES_PER_MS
    pause_s = chunk_ms / 1000 / speed
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        ) as ws:
            await _send(ws, stamps, f"{name}-cfg", {"type": "session.update", "session": SESSION})
            await _until(ws, stamps, "session.updated")
            for turn in range(turns):
                for index, offset in enumerate(range(0, len(audio), step)):
                    chunk = base64.b64encode(audio[offset : offset + step]).decode()
                    event = {"type": "input_audio_buffer.append", "audio": chunk}
                    await _send(ws, stamps, f"{name}-{turn}-{index}", event)
                    if math.isfinite(pause_s):
                        await asyncio.sleep(pause_s)
                await _send(ws, stamps, f"{name}-{turn}-c", {"type": "input_audio_buffer.commit"})
                await _send(ws, stamps, f"{name}-{turn}-r", {"type": "response.create"})
                done = await _until(ws, stamps, "response.done")
                status = done["response"]["status"]
                if status != "completed":
                    result.failure = f"turn {turn}: response {status}"
                    return result
                result.turns += 1
    except Exception as exc:  # refused, dropped, an error event: a failed device, reported
        result.failure = f"{type(exc).__name__}: {exc}"
    return result


async def run_devices(
    url: str,
    tokens: Mapping[str, str],
    *,
    turns: int,
    audio: bytes,
    chunk_ms: int = 20,
    speed: float = 1.0,
    stamps: Stamps,
) -> list[DeviceResult]:
    """Runs one simulated device per entry of ``tokens`` (name to token), all at once."""
    return list(
        await asyncio.gather(
            *(
                simulate_device(
                    url,
                    name=name,
                    token=token,
                    turns=turns,
                    audio=audio,
                    chunk_ms=chunk_ms,
                    speed=speed,
                    stamps=stamps,
                )
                for name, token in tokens.items()
            )
        )
    )


async def _send(ws: ClientConnection, stamps: Stamps, event_id: str, event: dict[str, Any]) -> None:
    stamps.sent[event_id] = time.perf_counter()
    await ws.send(json.dumps({"event_id": event_id, **event}))


async def _until(ws: ClientConnection, stamps: Stamps, kind: str) -> dict[str, Any]:
    """Reads server events until one of type ``kind``, stamping each; an ``error`` raises."""
    while True:
        message = await ws.recv()
        now = time.perf_counter()
        event = json.loads(message)
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            stamps.arrived[event_id] = now
        if event["type"] == "error":
            raise RuntimeError(f"error event: {event['error'].get('message')}")
        if event["type"] == kind:
            return dict(event)


def transits(start: Mapping[str, float], end: Mapping[str, float]) -> list[float]:
    """Seconds from ``start`` to ``end`` of every event id present in both."""
    return [end[key] - start[key] for key in start.keys() & end.keys()]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0 to 1) quantile of ``values``, nearest rank; NaN if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]
