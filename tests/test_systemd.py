"""sd_notify and signals of ``appliance run``: a real NOTIFY_SOCKET, real processes, the emulator.

The daemon runs as a real process (``python -m appliance run``) with
``NOTIFY_SOCKET`` bound by the test, as systemd binds it; the upstream is the
emulator on loopback. Time bounds are generous on purpose: they catch a
watchdog that is never fed or a stop that hangs, not a slow machine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeMicrophone, FakeSpeaker
from notify import NotifyListener, abstract_name

from appliance import config as config_module
from appliance.audio.pcm import PERIOD_MS
from appliance.button import ScriptButton
from appliance.daemon import Daemon
from appliance.demo import bundled_sample
from appliance.emulator import Emulator
from appliance.systemd import SystemdNotifier
from appliance.wiring import build_daemon, upstream_link

KEY = "sk-systemd-test-0123456789abcdef"


class EmulatorThread:
    """The emulator on its own event loop in a thread, for tests that drive real processes."""

    def __init__(self) -> None:
        self.emulator = Emulator(api_key=KEY)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Emulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(10)
        return self.emulator

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with EmulatorThread() as running:
        yield running


def write_key(folder: Path) -> Path:
    path = folder / "openai-api-key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


def write_config(
    folder: Path, url: str, *, voice: str = "marin", script: str = "[]", name: str = "app.toml"
) -> Path:
    path = folder / name
    path.write_text(
        f'[upstream]\nurl = "{url}"\napi_key_file = "{write_key(folder)}"\nvoice = "{voice}"\n'
        f'[audio]\nbackend = "file"\ninput = "{bundled_sample()}"\n'
        f'output = "{folder / "out.wav"}"\n'
        f'[button]\nbackend = "script"\nscript = {script}\n'
    )
    return path


def start_daemon(
    config: Path, listener: NotifyListener, *, watchdog_usec: int
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": listener.env_value,
        "WATCHDOG_USEC": str(watchdog_usec),
    }
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config), "-v"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_daemon(process: subprocess.Popen[str]) -> tuple[float, str]:
    """SIGTERM; returns the seconds it took to exit, and its stderr."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return time.monotonic() - sent, stderr


def subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(item == s for s in remaining) for item in wanted)


@pytest.mark.parametrize("kind", ["filesystem", "abstract"])
def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(
    kind: str, tmp_path: Path, emulator: Emulator
) -> None:
    address = str(tmp_path / "notify") if kind == "filesystem" else abstract_name()
    script = '[[0.3, "press"], [2.6, "release"]]'
    config = write_config(tmp_path, emulator.url, script=script)
    with NotifyListener(address) as listener:
        process = start_daemon(config, listener, watchdog_usec=1_000_000)
        try:
            listener.wait_for("READY=1", timeout_s=30)
            listener.wait_for("STATUS=speaking", timeout_s=30)
            listener.wait_for("STATUS=ready", timeout_s=30, after=len(listener.snapshot()))
            time.sleep(1.0)  # a few more watchdog periods while idle
        finally:
            took_s, stderr = stop_daemon(process)
        time.sleep(0.2)
        messages = listener.snapshot()

    assert process.returncode == 0, stderr
    # Every message came from the daemon's own process (NotifyAccess=main).
    assert {m.pid for m in messages} == {process.pid}
    lines = [line for m in messages for line in m.lines]
    assert lines[0] == "READY=1"
    statuses = [line[len("STATUS=") :] for line in lines if line.startswith("STATUS=")]
    assert subsequence(
        ["connecting", "ready", "listening", "thinking", "speaking", "ready", "stopping"], statuses
    ), statuses
    # STOPPING=1 is the last word, sent on the way out; the stop took well under
    # the 2 s (asserted with margin: < 5 s).
    assert lines[-1] == "STOPPING=1", lines[-3:]
    assert took_s < 5.0, took_s
    # WATCHDOG=1 at the cadence WATCHDOG_USEC asks: every half period (0.5 s
    # here), never a gap that would let systemd's 1 s watchdog fire.
    times = [m.at for m in messages if "WATCHDOG=1" in m.lines]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 6, times
    assert max(gaps) < 1.0, gaps
    assert 0.4 <= statistics.median(gaps) <= 0.65, gaps
    # Devices were closed: the output WAV is complete, its header matching its data.
    with wave.open(str(tmp_path / "out.wav")) as w:
        frames = w.getnframes()
    assert frames > 0
    assert (tmp_path / "out.wav").stat().st_size == 44 + frames * 2
    assert "devices open" in stderr and "stopped" in stderr
    assert KEY not in stderr + "".join(lines)


def test_no_watchdog_without_watchdog_usec_and_nothing_sent_without_a_socket(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, emulator.url)
    with NotifyListener(abstract_name()) as listener:
        process = start_daemon(config, listener, watchdog_usec=0)
        try:
            listener.wait_for("STATUS=ready", timeout_s=30)
            time.sleep(1.0)
        finally:
            stop_daemon(process)
        assert "WATCHDOG=1" not in listener.lines()
    # Without NOTIFY_SOCKET, as in a terminal, the daemon runs all the same.
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    plain = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    _, stderr = stop_daemon(plain)
    assert plain.returncode == 0, stderr
    assert "session" in stderr and "ready" in stderr


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, emulator.url, voice="marin")
    with NotifyListener(abstract_name()) as listener:
        process = start_daemon(config, listener, watchdog_usec=1_000_000)
        try:
            listener.wait_for("STATUS=ready", timeout_s=30)
            # A good new config: the daemon is replaced and connects again.
            write_config(tmp_path, emulator.url, voice="cedar")
            mark = len(listener.snapshot())
            process.send_signal(signal.SIGHUP)
            reloading = listener.wait_for("RELOADING=1", timeout_s=10, after=mark)
            ready = listener.wait_for("READY=1", timeout_s=10, after=reloading)
            listener.wait_for("STATUS=ready", timeout_s=30, after=ready)
            reloaded = listener.lines()
            # A bad new config: refused, logged, the running daemon goes on.
            config.write_text(config.read_text().replace('"cedar"', '"robot"'))
            mark = len(listener.snapshot())
            process.send_signal(signal.SIGHUP)
            time.sleep(2.0)
            after_bad = [line for m in listener.snapshot()[mark:] for line in m.lines]
            assert process.poll() is None
        finally:
            _, stderr = stop_daemon(process)

    assert process.returncode == 0, stderr
    assert "STOPPING=1" not in reloaded  # a reload is not a stop: systemd would wait for the exit
    assert len(emulator.connections) == 2
    voices = [
        m["session"]["audio"]["output"]["voice"]
        for c in emulator.connections
        for m in c.received
        if m["type"] == "session.update"
    ]
    assert voices == ["marin", "cedar"]
    assert "RELOADING=1" not in after_bad and "READY=1" not in after_bad
    assert after_bad.count("WATCHDOG=1") >= 2  # still alive and healthy
    assert "reload refused" in stderr and "upstream.voice" in stderr
    assert KEY not in stderr


# ----------------------------------------------------------------------
# The watchdog's health rule, in-process: the real notifier, a real socket.


def file_config(tmp_path: Path, url: str) -> config_module.Config:
    return config_module.load(
        write_config(tmp_path, url),
        env={k: v for k, v in os.environ.items() if "APPLIANCE_" not in k},
    )


def test_watchdog_stops_while_the_event_loop_is_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = abstract_name()
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = file_config(tmp_path, "ws://127.0.0.1:9/v1/realtime")  # offline: no upstream

    async def scenario() -> tuple[float, float]:
        daemon = build_daemon(config, companions=[SystemdNotifier()])
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(1.0)
        blocked_at = time.monotonic()
        time.sleep(1.5)  # noqa: ASYNC251 - the point: the loop is stuck, nothing on it runs
        unblocked_at = time.monotonic()
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return blocked_at, unblocked_at

    with NotifyListener(address) as listener:
        blocked_at, unblocked_at = asyncio.run(scenario())
        times = listener.watchdog_times()
        statuses = listener.statuses()
    # Offline all along (nothing listens on port 9), and STATUS= says so in plain words.
    offline = [s for s in statuses if s.startswith("offline: reconnecting in ")]
    assert offline and all(" s (cannot connect: " in s for s in offline), statuses
    before = [t for t in times if t < blocked_at]
    during = [t for t in times if blocked_at + 0.05 < t < unblocked_at]
    after = [t for t in times if t > unblocked_at]
    assert len(before) >= 5, times
    assert during == []
    assert len(after) >= 5, times  # fed again once the loop turns


def test_watchdog_stops_when_audio_callbacks_stop_and_resumes_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    address = abstract_name()
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = file_config(tmp_path, "ws://127.0.0.1:9/v1/realtime")
    microphone = FakeMicrophone()

    async def speak(until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            microphone.push_periods(1)
            await asyncio.sleep(PERIOD_MS / 1000)

    async def scenario() -> tuple[float, float]:
        daemon = Daemon(
            config,
            microphone=microphone,
            speaker=FakeSpeaker(),
            button=ScriptButton([]),
            upstream=upstream_link(config),
            companions=[SystemdNotifier()],
        )
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1)
        await speak(loop.time() + 1.0)
        silent_at = time.monotonic()
        await asyncio.sleep(3.5)  # the microphone delivers nothing; the loop is free
        resumed_at = time.monotonic()
        await speak(loop.time() + 1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return silent_at, resumed_at

    caplog.set_level(logging.INFO, logger="appliance")
    with NotifyListener(address) as listener:
        silent_at, resumed_at = asyncio.run(scenario())
        times = listener.watchdog_times()
    # Fed for the 2 s that audio may lag, then not at all until audio is back.
    assert [t for t in times if t < silent_at], times
    starved = [t for t in times if silent_at + 2.3 < t < resumed_at]
    assert starved == [], (silent_at, resumed_at, times)
    assert [t for t in times if silent_at + 1.5 < t < silent_at + 2.3], times
    assert len([t for t in times if t > resumed_at]) >= 5, times
    assert "no audio from the microphone" in caplog.text
    assert "healthy again" in caplog.text
