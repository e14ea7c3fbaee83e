"""``appliance relay`` as an administrator runs it: real processes, a real TLS listener."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from relaying import KEY, MODEL, PTT_SESSION, device, fleet, key_file, receive_until, send

from appliance.relay import Relay
from appliance.relay.config import load


def appliance(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def relay_toml(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "relay.toml"
    settings = {
        "listen": "127.0.0.1:0",
        "api_key_file": str(key_file(tmp_path)),
        "devices_file": str(tmp_path / "state" / "devices.json"),
        **extra,
    }
    lines = ["[relay]", *(f"{name} = {json.dumps(value)}" for name, value in settings.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_add_list_and_remove_devices(tmp_path: Path) -> None:
    config = relay_toml(tmp_path)
    added = appliance("relay", "--config", str(config), "add-device", "kitchen")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("apr_") and "\n" not in token
    assert "printed once" in added.stderr and token not in added.stderr
    # --config after the action works too.
    assert appliance("relay", "add-device", "hall", "--config", str(config)).returncode == 0
    listed = appliance("relay", "--config", str(config), "list-devices")
    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["kitchen", "hall"]
    assert token not in listed.stdout
    devices_file = tmp_path / "state" / "devices.json"
    assert token not in devices_file.read_text()
    again = appliance("relay", "--config", str(config), "add-device", "kitchen")
    assert again.returncode == 78 and "exists already" in again.stderr
    removed = appliance("relay", "--config", str(config), "remove-device", "kitchen")
    assert removed.returncode == 0
    missing = appliance("relay", "--config", str(config), "remove-device", "kitchen")
    assert missing.returncode == 78 and "no device named kitchen" in missing.stderr
    listed = appliance("relay", "--config", str(config), "list-devices")
    assert listed.stdout.split("\t")[0] == "hall"


def test_a_bad_config_exits_78_listing_every_problem_without_the_key(tmp_path: Path) -> None:
    config = relay_toml(tmp_path, voice="robot", listen="0.0.0.0:9", upstream_url="http://x")
    result = appliance("relay", "--config", str(config))
    assert result.returncode == 78
    assert "relay.voice" in result.stderr and "relay.listen" in result.stderr
    assert "relay.upstream_url" in result.stderr
    assert KEY not in result.stderr
    gone = appliance("relay", "--config", str(tmp_path / "nope.toml"), "list-devices")
    assert gone.returncode == 78 and "no such config file" in gone.stderr


def test_the_relay_serves_until_sigterm_and_logs_each_device(tmp_path: Path) -> None:
    """A real `appliance relay` process; a device's connect and disconnect reach its log."""

    async def scenario() -> None:
        async with fleet(tmp_path / "in-process") as f:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            config = relay_toml(
                tmp_path,
                listen=f"127.0.0.1:{port}",
                upstream_url=f.emulator.url,
                devices_file=str(f.relay.config.devices_file),
            )
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "appliance", "relay", "--config", str(config)),
                "--log-format",
                "json",
                stderr=subprocess.PIPE,
            )
            assert process.stderr is not None
            lines: list[dict[str, Any]] = []
            while not any("relay listening" in line["msg"] for line in lines):
                lines.append(json.loads(await process.stderr.readline()))
            url = f"ws://127.0.0.1:{port}/v1/realtime?model={MODEL}"
            async with device(url, f.tokens["kitchen"]) as ws:
                await send(ws, {"type": "session.update", "session": PTT_SESSION})
                await receive_until(ws, "session.updated")
                audio = base64.b64encode(bytes(9600)).decode()
                await send(ws, {"type": "input_audio_buffer.append", "audio": audio})
                await send(ws, {"type": "input_audio_buffer.commit"})
                await send(ws, {"type": "response.create"})
                await receive_until(ws, "response.done")
            await f.emulator.wait_for(lambda: all(c.closed for c in f.emulator.connections))
            # A device still connected when the relay stops: it is told, its session closed.
            staying = await device(url, f.tokens["kitchen"])
            await send(staying, {"type": "session.update", "session": PTT_SESSION})
            await receive_until(staying, "session.updated")
            process.send_signal(signal.SIGTERM)
            rest = (await process.stderr.read()).decode()
            assert await process.wait() == 0
            await staying.wait_closed()
            assert staying.close_code == 1001
            await f.emulator.wait_for(lambda: all(c.closed for c in f.emulator.connections))
            lines += [json.loads(line) for line in rest.splitlines()]
            events = {line.get("event"): line for line in lines if line.get("event")}
            assert events["relay.connect"]["device"] == "kitchen"
            assert events["relay.upstream"]["device"] == "kitchen"
            assert events["relay.disconnect"]["device"] == "kitchen"
            turn = events["relay.turn"]
            assert (turn["device"], turn["turn"], turn["status"]) == ("kitchen", 1, "completed")
            assert turn["commit_to_done_ms"] >= turn["commit_to_first_audio_ms"] >= 0
            text = json.dumps(lines)
            assert KEY not in text and f.tokens["kitchen"] not in text

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "relay.crt", tmp_path / "relay.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_devices_connect_over_tls_when_the_relay_has_a_certificate(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, cert_key = certificate

    async def scenario() -> None:
        async with fleet(tmp_path / "plain") as f:
            config = load(
                None,
                env={},
                overrides={
                    "listen": "127.0.0.1:0",
                    "upstream_url": f.emulator.url,
                    "api_key_file": key_file(tmp_path),
                    "devices_file": f.relay.config.devices_file,
                    "tls_cert_file": cert,
                    "tls_key_file": cert_key,
                },
            )
            trusting = ssl.create_default_context(cafile=str(cert))
            async with Relay(config) as relay:
                assert relay.url.startswith("wss://")
                url = f"{relay.url}?model={MODEL}"
                async with device(url, f.tokens["kitchen"], ssl=trusting) as ws:
                    await send(ws, {"type": "session.update", "session": PTT_SESSION})
                    await receive_until(ws, "session.updated")
                with pytest.raises(ssl.SSLCertVerificationError):
                    await device(url, f.tokens["kitchen"], ssl=ssl.create_default_context())

    asyncio.run(asyncio.wait_for(scenario(), 30))
