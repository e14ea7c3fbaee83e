"""A missing audio device at start is waited for, in plain words, not exited on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fakes import FakeButton, FakeMicrophone, FakeSpeaker

from appliance import config as config_module
from appliance.audio.pa_microphone import PyAudioMicrophone
from appliance.audio.ports import ChunkSink
from appliance.daemon import Daemon
from appliance.errors import AudioDeviceError
from appliance.systemd import SystemdNotifier
from appliance.wiring import upstream_link

KEY = "sk-test-0123456789abcdef"


class LateMicrophone(FakeMicrophone):
    """A microphone that is missing for its first ``missing`` opens (a USB device at boot)."""

    def __init__(self, missing: int) -> None:
        super().__init__()
        self.missing = missing

    async def open(self, sink: ChunkSink) -> None:
        if self.missing:
            self.missing -= 1
            raise AudioDeviceError("cannot open the microphone 'usb': no such device")
        await super().open(sink)


def offline_config(tmp_path: Path, lost_exit_s: float) -> config_module.Config:
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    return config_module.load(
        None,
        env={},
        overrides={
            "upstream.url": "ws://127.0.0.1:9/v1/realtime",  # offline: nothing listens there
            "upstream.api_key_file": key,
            "audio.stall_s": 0.5,
            "audio.lost_exit_s": lost_exit_s,
        },
    )


def test_a_microphone_missing_at_start_is_waited_for_and_systemd_told_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = offline_config(tmp_path, lost_exit_s=30)
    microphone = LateMicrophone(missing=2)
    sent: list[str] = []

    async def scenario() -> None:
        ready = asyncio.Event()

        def send(message: str) -> bool:
            sent.append(message)
            if message == "READY=1":
                ready.set()
            return True

        notifier = SystemdNotifier(env={}, send=send)
        daemon = Daemon(
            config,
            microphone=microphone,
            speaker=FakeSpeaker(),
            button=FakeButton(),
            upstream=upstream_link(config),
            companions=[notifier],
        )
        task = asyncio.create_task(daemon.run())
        async with asyncio.timeout(10):
            await ready.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    caplog.set_level(logging.INFO, logger="appliance")
    asyncio.run(scenario())
    assert microphone.opens == 1
    # Each try pushes systemd's start timeout away again, even in the same words.
    waiting = [m for m in sent if "waiting for the microphone" in m]
    assert (
        waiting
        == [
            "STATUS=error: waiting for the microphone: cannot open the microphone 'usb': "
            "no such device\nEXTEND_TIMEOUT_USEC=30000000"
        ]
        * 2
    ), sent
    assert sent.index(waiting[0]) < sent.index("READY=1")
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "trying again in" in line] == [
        "cannot open the microphone 'usb': no such device; trying again in 0.5 s",
        "cannot open the microphone 'usb': no such device; trying again in 1 s",
    ]
    assert "the microphone is back after 2 failed tries" in lines


def test_a_device_still_missing_after_lost_exit_s_ends_the_run(tmp_path: Path) -> None:
    """The real PortAudio adapter, a device that does not exist: an error, not a hang."""
    config = offline_config(tmp_path, lost_exit_s=1.0)

    async def scenario() -> float:
        daemon = Daemon(
            config,
            microphone=PyAudioMicrophone("no such microphone anywhere"),
            speaker=FakeSpeaker(),
            button=FakeButton(),
            upstream=upstream_link(config),
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(20):  # a safety net, not a timing assertion
            with pytest.raises(AudioDeviceError, match="no such microphone anywhere"):
                await daemon.run()
        return loop.time() - started

    assert asyncio.run(scenario()) >= 1.0  # tried again and again until lost_exit_s was up
