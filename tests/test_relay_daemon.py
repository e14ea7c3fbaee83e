"""The appliance daemon, configured with a device token, completes turns through the relay."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from pathlib import Path

from relaying import KEY, SlowProxy, fleet, relay_via

from appliance import config as config_module
from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.demo import bundled_sample
from appliance.effects import Effect, TurnDone
from appliance.emulator import Connection
from appliance.relay import Relay

LEAD_IN_S = 0.5


def appended(connection: Connection) -> bytes:
    return b"".join(
        base64.b64decode(m["audio"])
        for m in connection.received
        if m["type"] == "input_audio_buffer.append"
    )


async def run_daemon(
    tmp_path: Path,
    relay: Relay,
    token: str,
    *,
    script: Sequence[tuple[float, str]] = ((0.2, "press"), (2.2, "release")),
    overrides: dict[str, object] | None = None,
) -> tuple[list[TurnDone], bytes]:
    """The daemon with file audio and a scripted press (2 s by default), its upstream the relay."""
    microphone = bytes(pcm.ms_to_bytes(LEAD_IN_S * 1000)) + read_wav_pcm24k(bundled_sample())
    microphone += bytes(48_000 * 8)
    mic_path, out_path = tmp_path / "mic.wav", tmp_path / "out.wav"
    write_wav(mic_path, microphone)
    token_file = tmp_path / "device-token"
    token_file.write_text(token + "\n")
    os.chmod(token_file, 0o600)
    config = config_module.load(
        None,
        env={},
        overrides={
            "upstream.url": relay.url,  # the relay, as if it were the upstream
            "upstream.api_key_file": token_file,  # the device token, as if it were the key
            "audio.backend": "file",
            "audio.input": str(mic_path),
            "audio.output": str(out_path),
            "audio.earcons": False,
            "button.backend": "script",
            "button.script": [list(step) for step in script],
            "button.exit_after_script": True,
            "watchdog.reconnect_base_s": 0.05,
            "watchdog.reconnect_max_s": 0.2,
            **(overrides or {}),
        },
    )
    effects: list[Effect] = []
    from appliance.wiring import build_daemon

    daemon = build_daemon(config, observer=lambda effect, now: effects.append(effect))
    assert await daemon.run() == 0
    return [e for e in effects if isinstance(e, TurnDone)], read_wav_pcm24k(out_path)


def test_the_daemon_completes_a_turn_through_the_relay(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with fleet(tmp_path / "relay") as f:
            turns, played = await run_daemon(tmp_path, f.relay, f.tokens["kitchen"])
            (connection,) = f.emulator.connections
        (turn,) = turns
        assert turn.metrics.outcome == "replied"
        turn_audio = appended(connection)
        assert pcm.bytes_to_ms(len(turn_audio)) == turn.metrics.audio_in_ms >= 1900
        assert played == turn_audio, "the echo came back whole, through the relay"
        (record,) = f.relay.sessions
        assert record.device == "kitchen" and record.turns == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_daemon_pressing_before_the_relays_upstream_exists_loses_nothing(
    tmp_path: Path,
) -> None:
    """The relay's upstream dial takes 1.5 s; the press comes at 0.2 s."""

    async def scenario() -> None:
        async with (
            fleet(tmp_path / "relay") as f,
            SlowProxy(f.emulator.port, delay_s=1.5) as proxy,
            relay_via(f, proxy.url, tmp_path / "via") as relay,
        ):
            turns, played = await run_daemon(tmp_path, relay, f.tokens["kitchen"])
            (connection,) = f.emulator.connections
        (turn,) = turns
        assert turn.metrics.outcome == "replied"
        (record,) = relay.sessions
        # The upstream took the proxy's 1.5 s to open: the press at 0.2 s came before it.
        assert record.upstream_at is not None
        assert record.upstream_at - record.opened_at >= 1.5
        assert connection.received[0]["type"] == "session.update"
        assert connection.appends_before_updated == 0
        turn_audio = appended(connection)
        assert pcm.bytes_to_ms(len(turn_audio)) == turn.metrics.audio_in_ms >= 1900
        assert played == turn_audio
        assert KEY not in (tmp_path / "device-token").read_text()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_daemon_rotates_its_session_through_the_relay_without_losing_it(
    tmp_path: Path,
) -> None:
    """R8 opens the next session beside the current one; the relay lets the daemon switch."""

    async def scenario() -> None:
        async with fleet(tmp_path / "relay") as f:
            turns, _ = await run_daemon(
                tmp_path,
                f.relay,
                f.tokens["kitchen"],
                script=[(0.2, "press"), (1.5, "release"), (5.0, "press"), (6.0, "release")],
                # Sessions last 3600 s: rotate 3 s after each one opens.
                overrides={"watchdog.rotate_before_expiry_s": 3597.0},
            )
            await f.emulator.wait_for(lambda: all(c.closed for c in f.emulator.connections))
        assert [t.metrics.outcome for t in turns] == ["replied", "replied"]
        assert len(f.relay.sessions) >= 2, "no rotation happened"
        # Every connection was closed by the daemon itself: none was cut off as replaced.
        assert {(s.close_code, s.reason) for s in f.relay.sessions} == {
            (None, "device closed (1000)")
        }
        commits = [len(c.commits) for c in f.emulator.connections]
        assert sum(commits) == 2

    asyncio.run(asyncio.wait_for(scenario(), 40))
