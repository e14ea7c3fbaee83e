"""Helpers of the relay tests: a relay in front of the real emulator, devices, a slow proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schema import schema_observer
from websockets.asyncio.client import ClientConnection, connect

from appliance.emulator import Emulator, Faults
from appliance.relay import Relay, add_device
from appliance.relay import config as relay_config

KEY = "sk-relay-upstream-0123456789abcdef"
"""The real API key: only the relay and the emulator ever see it."""

MODEL = "gpt-realtime-2"

PTT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
    },
}
"""A push-to-talk ``session`` object: manual turns, PCM both ways."""


def key_file(folder: Path) -> Path:
    """Writes the real key to a 0600 file in ``folder``."""
    path = folder / "openai-api-key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o600)
    return path


def make_config(folder: Path, upstream_url: str, **overrides: object) -> relay_config.RelayConfig:
    """A relay config on a free loopback port, with the key and devices files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "upstream_url": upstream_url,
        "model": MODEL,
        "api_key_file": key_file(folder),
        "devices_file": folder / "devices.json",
        "reload_interval_s": 0.1,
        **overrides,
    }
    return relay_config.load(None, env={}, overrides=settings)


@dataclass
class Fleet:
    """A relay in front of the emulator, and the tokens of its devices."""

    relay: Relay
    emulator: Emulator
    tokens: dict[str, str]
    violations: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The relay's endpoint, with the model query, as a device dials it."""
        return f"{self.relay.url}?model={MODEL}"

    @property
    def base_url(self) -> str:
        """The relay's ``websocket_base_url`` for the openai SDK."""
        return self.relay.url.removesuffix("/realtime")


@contextlib.asynccontextmanager
async def fleet(
    folder: Path,
    *,
    devices: tuple[str, ...] = ("kitchen",),
    faults: Faults | None = None,
    upstream_url: str | None = None,
    chunk_interval_s: float = 0.005,
    **overrides: object,
) -> AsyncIterator[Fleet]:
    """Runs the emulator (schema-checked) and a relay in front of it.

    Args:
        folder: Where the key and devices files go.
        devices: Names of the devices to add; their tokens are in ``Fleet.tokens``.
        faults: The emulator's faults.
        upstream_url: Where the relay dials instead of the emulator (a proxy to it).
        chunk_interval_s: The emulator's pause between reply deltas (seconds).
        **overrides: Relay settings.
    """
    observer, violations = schema_observer()
    async with Emulator(
        api_key=KEY, faults=faults or Faults(), observer=observer, chunk_interval_s=chunk_interval_s
    ) as emulator:
        config = make_config(folder, upstream_url or emulator.url, **overrides)
        tokens = {name: add_device(config.devices_file, name) for name in devices}
        async with Relay(config) as relay:
            yield Fleet(relay, emulator, tokens, violations)
    assert violations == [], violations


def relay_via(f: Fleet, upstream_url: str, folder: Path, **overrides: object) -> Relay:
    """Another relay with the devices of ``f.relay``, dialling ``upstream_url`` (not started)."""
    config = make_config(
        folder, upstream_url, devices_file=f.relay.config.devices_file, **overrides
    )
    return Relay(config)


def device(url: str, token: str, **options: Any) -> Any:
    """Dials ``url`` as a device with ``token`` (a ``websockets`` connect, to await or enter)."""
    options.setdefault("additional_headers", {"Authorization": f"Bearer {token}"})
    return connect(
        url,
        compression=None,
        max_size=None,
        open_timeout=10,
        **options,
    )


async def send(ws: ClientConnection, event: Mapping[str, Any]) -> None:
    """Sends one client event as JSON."""
    await ws.send(json.dumps(event))


async def receive_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Reads server events up to and including the first of type ``kind``."""
    events: list[dict[str, Any]] = []
    while True:
        event = json.loads(await ws.recv())
        events.append(event)
        if event["type"] == kind:
            return events


class SlowProxy:
    """A TCP proxy that waits ``delay_s`` after each accept before connecting onward.

    Put between the relay and the emulator, it keeps the relay's upstream
    handshake from completing for ``delay_s``, so device events reach the relay
    before its upstream exists.

    Args:
        target_port: The emulator's port on 127.0.0.1.
        delay_s: The wait before connecting onward (seconds).
    """

    def __init__(self, target_port: int, *, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.accepted_at: list[float] = []
        self.connected_at: list[float] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime`` through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def __aenter__(self) -> SlowProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self.accepted_at.append(loop.time())
        await asyncio.sleep(self.delay_s)
        onward_reader, onward_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.connected_at.append(loop.time())
        pipes = [
            asyncio.ensure_future(_pipe(reader, onward_writer)),
            asyncio.ensure_future(_pipe(onward_reader, writer)),
        ]
        for pipe in pipes:
            self._tasks.add(pipe)
            pipe.add_done_callback(self._tasks.discard)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        writer.close()
        onward_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
