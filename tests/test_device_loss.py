"""Device loss on the real PyAudio path: the input fails mid-turn and comes back."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from fakes import RecordingCompanion
from soundenv import (
    SoundEnv,
    sound_fixture,  # noqa: F401 - registers the fixture "sound"
)

from appliance import config as config_module
from appliance.audio.pa_microphone import PyAudioMicrophone
from appliance.audio.pa_speaker import PyAudioSpeaker
from appliance.button import ScriptButton
from appliance.daemon import Daemon
from appliance.effects import Effect, TurnDone
from appliance.emulator import Emulator
from appliance.status import Phase
from appliance.wiring import upstream_link

KEY = "sk-test-0123456789abcdef"
STALL_S = 0.4


def test_input_lost_mid_turn_is_reopened_while_the_error_shows(
    sound: SoundEnv, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)
    companion = RecordingCompanion()
    effects: list[Effect] = []
    microphone = PyAudioMicrophone("pulse", stall_s=STALL_S)
    killed: list[int] = []

    async def fail_the_input(daemon: Daemon) -> None:
        while daemon.ready_at is None:  # noqa: ASYNC110 - the daemon has no event for it
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # into the first turn
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.8
        while loop.time() < until:  # the device fails, and fails again when retried
            killed.append(await asyncio.to_thread(sound.kill_capture_streams))
            await asyncio.sleep(0.05)

    async def scenario() -> Daemon:
        async with Emulator(api_key=KEY, chunk_interval_s=0.01) as emulator:
            config = config_module.load(
                None,
                env={},
                overrides={
                    "upstream.url": emulator.url,
                    "upstream.api_key_file": key_file,
                    "audio.earcons": False,
                    "audio.stall_s": STALL_S,
                    "audio.lost_exit_s": 30.0,
                    "button.backend": "script",
                    "button.exit_after_script": True,
                },
            )
            daemon = Daemon(
                config,
                microphone=microphone,
                speaker=PyAudioSpeaker("pulse", stall_s=STALL_S),
                button=ScriptButton(
                    [(0.3, "press"), (3.0, "release"), (5.5, "press"), (6.5, "release")]
                ),
                upstream=upstream_link(config),
                observer=lambda effect, now: effects.append(effect),
                companions=[companion],
            )
            failing = asyncio.create_task(fail_the_input(daemon))
            async with asyncio.timeout(30):
                assert await daemon.run() == 0
            await failing
        return daemon

    asyncio.run(scenario())
    assert sum(killed) >= 1, "the capture stream was never killed"
    assert microphone.reopens >= 1
    errors = [s for s in companion.statuses if s.phase is Phase.ERROR]
    assert errors and "no audio from the microphone" in errors[0].detail
    phases = companion.phases()
    first_error = phases.index(Phase.ERROR)
    assert Phase.LISTENING in phases[:first_error], "the error did not come mid-turn"
    first, second = [e.metrics for e in effects if isinstance(e, TurnDone)]
    assert first.outcome == "replied"
    assert second.outcome == "replied"
    # The second turn heard its whole second: the microphone is back for good.
    assert second.audio_in_ms >= 900


def test_output_lost_is_reopened_while_the_error_shows(sound: SoundEnv, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)
    companion = RecordingCompanion()
    effects: list[Effect] = []
    speaker = PyAudioSpeaker("pulse", stall_s=STALL_S)
    killed: list[int] = []

    async def fail_the_output(daemon: Daemon) -> None:
        while daemon.ready_at is None:  # noqa: ASYNC110 - the daemon has no event for it
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # before the first turn's reply
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.8
        while loop.time() < until:  # the device fails, and fails again when retried
            killed.append(await asyncio.to_thread(sound.kill_playback_streams))
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        async with Emulator(api_key=KEY, chunk_interval_s=0.01) as emulator:
            config = config_module.load(
                None,
                env={},
                overrides={
                    "upstream.url": emulator.url,
                    "upstream.api_key_file": key_file,
                    "audio.earcons": False,
                    "audio.stall_s": STALL_S,
                    "button.backend": "script",
                    "button.exit_after_script": True,
                },
            )
            daemon = Daemon(
                config,
                microphone=PyAudioMicrophone("pulse", stall_s=STALL_S),
                speaker=speaker,
                button=ScriptButton([(4.0, "press"), (5.0, "release")]),
                upstream=upstream_link(config),
                observer=lambda effect, now: effects.append(effect),
                companions=[companion],
            )
            failing = asyncio.create_task(fail_the_output(daemon))
            async with asyncio.timeout(30):
                assert await daemon.run() == 0
            await failing

    sound.clear_played()
    asyncio.run(scenario())
    assert sum(killed) >= 1, "the playback stream was never killed"
    assert speaker.reopens >= 1 and speaker.trouble is None
    errors = [s for s in companion.statuses if s.phase is Phase.ERROR]
    assert errors and "the speaker stopped playing" in errors[0].detail
    phases = companion.phases()
    assert Phase.READY in phases[phases.index(Phase.ERROR) :], "the error never cleared"
    (turn,) = [e.metrics for e in effects if isinstance(e, TurnDone)]
    assert turn.outcome == "replied"  # the speaker is back for good: the reply was heard


def test_audio_gone_for_lost_exit_s_ends_appliance_run_non_zero(
    sound: SoundEnv, tmp_path: Path
) -> None:
    """The capture stream dies again and again; after ``lost_exit_s`` the process gives up."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)
    config = tmp_path / "appliance.toml"
    config.write_text(
        f"""
[upstream]
url = "ws://127.0.0.1:9/v1/realtime"
api_key_file = "{key_file}"
[audio]
input = "pulse"
output = "pulse"
stall_s = {STALL_S}
lost_exit_s = 2.0
[button]
backend = "script"
script = []
"""
    )

    async def scenario() -> tuple[int, str, float]:
        loop = asyncio.get_running_loop()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance",
            "run",
            "--config",
            str(config),
            stderr=asyncio.subprocess.PIPE,
        )
        started = loop.time()
        output = asyncio.create_task(process.stderr.read())  # type: ignore[union-attr]
        try:
            async with asyncio.timeout(30):
                while process.returncode is None:
                    await asyncio.to_thread(sound.kill_capture_streams)
                    await asyncio.sleep(0.05)
        finally:
            if process.returncode is None:  # never leave it running
                process.kill()
                await process.wait()
        return process.returncode, (await output).decode(), loop.time() - started

    code, stderr, took = asyncio.run(scenario())
    assert code == 1, stderr
    assert "no audio from the microphone for 2 s" in stderr
    assert took >= 2.0
