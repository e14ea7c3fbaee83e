"""Audio gone for good ends the daemon with an error, so systemd restarts it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from fakes import FakeButton, FakeMicrophone, FakeSpeaker, RecordingCompanion

from appliance import config as config_module
from appliance.audioguard import AudioGuard
from appliance.daemon import Daemon
from appliance.errors import AudioDeviceError
from appliance.status import Health, Phase
from appliance.wiring import device_companions, upstream_link


def test_the_guard_waits_while_audio_flows_and_fails_when_it_stops() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        health = Health()
        guard = AudioGuard(lost_exit_s=0.3)
        guard.started()
        task = asyncio.create_task(guard.run(health))
        for _ in range(5):  # audio for half a second: no exit
            health.audio_at = loop.time()
            await asyncio.sleep(0.1)
        assert not task.done()
        stopped_at = loop.time()
        with pytest.raises(AudioDeviceError, match=r"no audio from the microphone for 0\.3 s"):
            await task
        return loop.time() - stopped_at

    assert asyncio.run(scenario()) >= 0.2


def test_a_dead_microphone_shows_the_error_then_ends_the_daemon(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-test-0123456789abcdef\n")
    os.chmod(key_file, 0o600)
    config = config_module.load(
        None,
        env={},
        overrides={
            "upstream.url": "ws://127.0.0.1:9/v1/realtime",
            "upstream.api_key_file": key_file,
            "audio.stall_s": 0.2,
            "audio.lost_exit_s": 0.6,
        },
    )
    companion = RecordingCompanion()
    microphone = FakeMicrophone()  # opens, and never delivers anything
    daemon = Daemon(
        config,
        microphone=microphone,
        speaker=FakeSpeaker(),
        button=FakeButton(),
        upstream=upstream_link(config),
        companions=[companion, *device_companions(config)],
    )

    async def scenario() -> None:
        async with asyncio.timeout(10):
            await daemon.run()

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(scenario())
    assert info.group_contains(AudioDeviceError)
    errors = [s for s in companion.statuses if s.phase is Phase.ERROR]
    assert errors and "no audio from the microphone" in errors[0].detail
    assert companion.calls[-1] == "stopping"
    assert microphone.closes == 1
