"""The ``appliance`` command as a person or a script runs it: real processes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from schema import schema_observer
from websockets.asyncio.client import connect

from appliance import demo
from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k
from appliance.emulator import Emulator

KEY = "sk-cli-test-abcdefghijklmnop"


def appliance(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=90,
        **kwargs,
    )


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "openai-api-key"
    path.write_text(KEY + "\n")
    os.chmod(path, 0o600)
    return path


def run_demo(**kwargs: Any) -> tuple[int, str]:
    observer, violations = schema_observer()
    out = io.StringIO()
    code = asyncio.run(demo.run_demo(out=out, observer=observer, **kwargs))
    assert violations == [], violations
    return code, out.getvalue()


def test_demo_prints_a_timeline_and_writes_the_echoed_speech(tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    code, printed = run_demo(input_wav=None, output_wav=reply)
    assert code == 0, printed
    for label in (
        "daemon ready",
        "session ready",
        "button pressed",
        "button released",
        "turn committed",
        "first reply audio received",
        "first reply audio played",
        "last reply audio played",
    ):
        assert label in printed
    speech = read_wav_pcm24k(demo.bundled_sample())
    lead = bytes(pcm.ms_to_bytes(demo.LEAD_IN_S * 1000))
    microphone = lead + speech + bytes(pcm.ms_to_bytes(demo.TAIL_S * 1000))
    with wave.open(str(reply)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
    played = read_wav_pcm24k(reply)
    # The reply is the turn spoken back: a stretch of the microphone holding all the speech.
    offset = microphone.find(played)
    assert offset != -1
    assert offset <= len(lead) and offset + len(played) >= len(lead) + len(speech)


def test_demo_takes_any_wav_and_a_tone_reply(tmp_path: Path) -> None:
    t = np.arange(int(44_100 * 1.5)) / 44_100
    tone = (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1)
    source = tmp_path / "stereo.wav"
    with wave.open(str(source), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes(stereo.tobytes())
    reply = tmp_path / "tone.wav"
    code, printed = run_demo(input_wav=source, output_wav=reply, reply="tone", earcons=True)
    assert code == 0, printed
    assert pcm.bytes_to_ms(len(read_wav_pcm24k(reply))) > 1200  # the tone plus the cues


def test_demo_with_a_malformed_wav_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = appliance("demo", "--input", str(bad))
    assert result.returncode == 1
    assert "bad.wav" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_lists_every_problem_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text(
        '[upstream]\nurl = "http://example.com"\nvoice = "robot"\n'
        '[audio]\nmin_turn_ms = "short"\n[buton]\npin = 3\n'
    )
    leaky = tmp_path / "key"
    leaky.write_text(KEY)
    os.chmod(leaky, 0o644)
    env = {**os.environ, "APPLIANCE_UPSTREAM_API_KEY_FILE": str(leaky)}
    result = appliance("run", "--config", str(config), env=env)
    assert result.returncode == 78
    for problem in ("upstream.url", "upstream.voice", "audio.min_turn_ms", "buton", "chmod 600"):
        assert problem in result.stderr, problem
    assert KEY not in result.stderr + result.stdout


def test_config_prints_the_effective_config_with_the_key_masked(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text(
        f'[upstream]\napi_key_file = "{key_file(tmp_path)}"\n[audio]\nmin_turn_ms = 200\n'
    )
    result = appliance("config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "min_turn_ms = 200" in result.stdout
    assert 'api_key = "********"' in result.stdout
    assert KEY not in result.stdout


def test_run_with_json_logs_emits_the_contract_events(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, list[dict[str, Any]], list[str]]:
        observer, violations = schema_observer()
        mic = tmp_path / "mic.wav"
        speech = read_wav_pcm24k(demo.bundled_sample())
        with wave.open(str(mic), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24_000)
            w.writeframes(bytes(12_000) + speech + bytes(48_000))
        async with Emulator(api_key=KEY, observer=observer) as emulator:
            config = tmp_path / "appliance.toml"
            config.write_text(
                f'[upstream]\nurl = "{emulator.url}"\napi_key_file = "{key_file(tmp_path)}"\n'
                f'[audio]\nbackend = "file"\ninput = "{mic}"\noutput = "{tmp_path / "out.wav"}"\n'
                '[button]\nbackend = "script"\nscript = [[0.3, "press"], [3.0, "release"], '
                '[6.5, "press"], [6.55, "release"]]\nexit_after_script = true\n'
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance",
                "run",
                "--config",
                str(config),
                "--log-format",
                "json",
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
        lines = [json.loads(line) for line in stderr.decode().splitlines()]
        assert process.returncode is not None
        return process.returncode, lines, violations

    code, lines, violations = asyncio.run(scenario())
    assert code == 0, lines
    assert violations == []
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= set(line)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "event" in line:
            by_event.setdefault(line["event"], []).append(line)
    (ready,) = by_event["session.ready"]
    assert ready["session_id"].startswith("sess_") and isinstance(ready["connect_ms"], int)
    replied, tapped = by_event["turn.done"]
    assert replied["outcome"] == "replied" and tapped["outcome"] == "too_short"
    for field in (
        "turn",
        "audio_in_ms",
        "release_to_commit_ms",
        "commit_to_first_audio_ms",
        "first_audio_to_play_ms",
        "audio_out_ms",
    ):
        assert isinstance(replied[field], int), field
        assert field in tapped
    assert tapped["audio_out_ms"] is None and tapped["release_to_commit_ms"] is None
    assert KEY not in json.dumps(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_emulator_command_serves_the_protocol_and_refuses_a_wrong_key(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "emulator",
            "--port",
            str(port),
            "--api-key-file",
            str(key_file(tmp_path)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime-2"
        for _ in range(200):  # wait until it listens
            try:
                headers = {"Authorization": f"Bearer {KEY}"}
                async with connect(url, additional_headers=headers) as ws:
                    first = json.loads(await ws.recv())
                    assert first["type"] == "session.created"
                    break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the emulator never listened")
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(url, additional_headers={"Authorization": "Bearer wrong"}):
                pass
        assert refused.value.response.status_code == 401

    try:
        asyncio.run(scenario())
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert KEY not in stderr
