"""Daemon misbehaviour the chaos soak found, each reduced to a small deterministic scenario."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from faultproxy import FaultProxy, Plan

from appliance import config as config_module
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.demo import bundled_sample
from appliance.effects import Effect, TurnDone
from appliance.emulator import Emulator
from appliance.wiring import build_daemon

KEY = "sk-test-chaos-repro"


def test_three_network_drops_in_a_row_do_not_silence_the_daemon_for_a_minute(
    tmp_path: Path,
) -> None:
    """Seed 1 of the soak, reduced: three working sessions in a row, each cut 1.5 s in.

    Each session is ready and serves turns; the network then resets it (no
    close frame). The daemon should reconnect within its backoff (at most
    0.5 s here) each time. Found: after the third such loss it counts three
    "quick closes", treats them like a rejected credential and makes no
    attempt for 60 s, so every turn of that minute fails with "no upstream
    session".
    """
    cuts = 3

    def plan_for(number: int) -> Plan:
        return Plan(fault="cut", at_s=1.5) if number <= cuts else Plan()

    microphone = tmp_path / "mic.wav"
    write_wav(microphone, read_wav_pcm24k(bundled_sample()) * 4)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)
    done: list[tuple[float, TurnDone]] = []

    async def scenario() -> None:
        async with (
            Emulator(api_key=KEY) as emulator,
            FaultProxy(target_port=emulator.port, seed=0, plan_for=plan_for) as proxy,
        ):
            # A 0.4 s turn every second, for 9 seconds.
            script = [step for k in range(9) for step in ([0.3 + k, "press"], [0.7 + k, "release"])]
            config = config_module.load(
                None,
                env={},
                overrides={
                    "upstream.url": f"ws://127.0.0.1:{proxy.port}/v1/realtime",
                    "upstream.api_key_file": key_file,
                    "audio.backend": "file",
                    "audio.input": str(microphone),
                    "audio.output": str(tmp_path / "out.wav"),
                    "audio.earcons": False,
                    "audio.hold_s": 3,
                    "button.backend": "script",
                    "button.script": script,
                    "button.exit_after_script": True,
                    "watchdog.ping_interval_s": 0.5,
                    "watchdog.ping_timeout_s": 0.5,
                    "watchdog.reconnect_base_s": 0.05,
                    "watchdog.reconnect_max_s": 0.5,
                },
            )

            def observe(effect: Effect, now: float) -> None:
                if isinstance(effect, TurnDone):
                    done.append((now, effect))

            daemon = build_daemon(config, observer=observe)
            async with asyncio.timeout(60):
                assert await daemon.run() == 0
            cut_at = [e.at for e in proxy.log if e.what.startswith("cut")]
            assert len(cut_at) == cuts
            # Every turn pressed after the last cut has a session to go to.
            ready = daemon.ready_at
            assert ready is not None
            later = [d for at, d in done if ready + d.metrics.turn - 0.7 > cut_at[-1] + 0.6]
            assert later, "the script ended too early to tell"
            assert [d.metrics.outcome for d in later] == ["replied"] * len(later), [
                (d.metrics.turn, d.metrics.outcome, d.reason) for d in later
            ]
            assert len(emulator.connections) > cuts

    asyncio.run(scenario())
