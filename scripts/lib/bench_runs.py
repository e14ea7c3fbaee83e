"""One run of the scenario: a client process against a fresh emulator, watched from outside.

``run_ours`` starts ``appliance run --config ... --log-format json`` with a
NOTIFY_SOCKET the bench binds; ``run_baseline`` starts ``bench_baseline.py``.
Each talks to an emulator process of its own (``bench_upstream.py``,
``reply="tone"``) that stamps every event on the wire; the client's output WAV
is watched as it grows; its CPU time and memory are sampled from ``/proc`` and
its totals come from ``wait4``. What comes back is raw observation (a
:class:`Run`); ``bench_figures`` turns it into figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from bench_probes import Exit, GrowthWatcher, LineReader, NotifyListener, Sampler, cpu_s, reap
from bench_scenario import Scenario

HERE = Path(__file__).resolve().parent
SLACK_S = 60.0
"""A run may take this much longer than its script before it is killed (seconds)."""


@dataclass(frozen=True)
class WireEvent:
    """One event the emulator received (``client``) or sent (``server``).

    Attributes:
        at: when (monotonic seconds).
        direction: ``client`` or ``server``.
        type: the event's ``type``.
        connection: 0-based index of the connection it travelled on.
    """

    at: float
    direction: str
    type: str
    connection: int


@dataclass
class Run:
    """What was observed of one client process; times are monotonic seconds."""

    kind: str
    """``ours`` or ``baseline``."""
    spawned_at: float = 0.0
    """Just before the process was started."""
    clock_zero: float | None = None
    """When it was ready: ``READY=1`` arrived (ours), ``started`` on stdout (baseline)."""
    cpu_at_zero_s: float | None = None
    """Its CPU time (seconds) at ``clock_zero``: the start-up's cost."""
    script_zero: float | None = None
    """When its button script's clock started; scripted press and release times count from it.

    The baseline stamps it itself. For ours it is the script button's log line
    ("script button open", logged as its clock starts): between the line's own
    time stamp (wall clock, whole milliseconds) and its arrival on the pipe.
    """
    exit: Exit | None = None
    wire: list[WireEvent] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)
    """When the emulator dropped a connection (the fault's last append)."""
    growth: list[tuple[float, int]] = field(default_factory=list)
    """(time, size in bytes) each time the output WAV grew."""
    lines: list[tuple[float, str]] = field(default_factory=list)
    """Its stderr (ours: JSON log lines), stamped on arrival."""
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    """Every 50 ms: (time, CPU seconds so far, VmRSS bytes, VmHWM bytes)."""
    stamps: dict[str, Any] = field(default_factory=dict)
    """The baseline's own time stamps (``bench_baseline.py`` results)."""
    error: str | None = None
    """Why the run did not complete, if it did not."""

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        """Ours: the JSON log lines of structured event ``name``, with their arrival times."""
        found = []
        for at, line in self.lines:
            if f'"{name}"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append((at, record))
        return found

    def messages(self, start: str) -> list[tuple[float, str]]:
        """Ours: the log messages starting with ``start``, with their arrival times."""
        found = []
        for at, line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = record.get("msg", "") if isinstance(record, dict) else ""
            if isinstance(message, str) and message.startswith(start):
                found.append((at, message))
        return found


class Upstream:
    """The emulator process of one run (``bench_upstream.py``), as a context manager.

    Args:
        folder: where its records go.
        key_file: the key clients must present.
        scenario: the run's scenario (its drop turns are rebuilt from it).
        drops: whether to drop connections on the scenario's drop turns.
    """

    def __init__(self, folder: Path, *, key_file: Path, scenario: Scenario, drops: bool) -> None:
        self.url = ""
        """The WebSocket endpoint, ``ws://127.0.0.1:PORT/v1/realtime``."""
        self.records: dict[str, Any] = {}
        """What it observed: ``wire``, ``drops``, ``drop_counts`` (after the ``with``)."""
        self._records = folder / "upstream.json"
        self._command = [
            sys.executable,
            str(HERE / "bench_upstream.py"),
            *("--key-file", str(key_file)),
            *("--turns", str(len(scenario.turns))),
            *("--drops", str(len(scenario.drops))),
            *("--records", str(self._records)),
            *(() if drops else ("--no-drops",)),
        ]
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Upstream:
        listening = threading.Event()

        def on_line(_at: float, line: str) -> None:
            if line.startswith("url "):
                self.url = line.removeprefix("url ")
                listening.set()

        self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env()
        )
        assert self._process.stdout is not None
        self._reader = LineReader(self._process.stdout, on_line)
        if not listening.wait(30):
            self._process.kill()
            raise RuntimeError("the emulator did not start listening within 30 s")
        return self

    def zero(self, at: float) -> None:
        """Tell it when the client's script clock started (monotonic seconds)."""
        with self._lock:
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.write(f"zero {at!r}\n".encode())
                self._process.stdin.flush()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        with self._lock:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reader.join()
        process.stdout.close()
        if process.returncode == 0:
            self.records = json.loads(self._records.read_text())

    def fill(self, run: Run) -> None:
        """Give ``run`` the wire events and drops it observed."""
        run.wire = [WireEvent(*event) for event in self.records.get("wire", [])]
        run.drops = list(self.records.get("drops", []))
        if not self.records and run.error is None:
            run.error = "the emulator process failed"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a process: no APPLIANCE_* overrides, no systemd variables of ours."""
    drop = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_") and k not in drop}
    env.pop("JOURNAL_STREAM", None)
    env.update(extra)
    return env


def write_key(folder: Path, key: str) -> Path:
    """The API key in a 0600 file, as ``appliance run`` insists."""
    path = folder / "api-key"
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return path


def _wall_offset_s() -> float:
    """``time.time()`` minus ``time.monotonic()`` now (seconds), read as closely as can be."""
    readings = []
    for _ in range(5):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        readings.append((after - before, wall - (before + after) / 2))
    return min(readings)[1]


def _logged_at(line: str, arrived: float, wall_offset_s: float) -> float:
    """When a JSON log line was made (monotonic seconds), as closely as can be told.

    Its ``ts`` is wall-clock time cut to the millisecond, so it was made in
    ``[ts, ts + 1 ms)``, and before it arrived: the middle of what is left.
    The arrival alone can be late by milliseconds on a busy machine.
    """
    try:
        stamp = json.loads(line)["ts"]
        made = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - wall_offset_s
    except (ValueError, KeyError, TypeError):
        return arrived
    latest = min(made + 0.001, arrived)
    return (made + max(made, latest)) / 2


def _toml_string(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _config(upstream: Upstream, scenario: Scenario, key_file: Path, mic: Path, out: Path) -> str:
    """The daemon's configuration: file audio, the scenario's script, no earcons."""
    return (
        "[upstream]\n"
        f"url = {_toml_string(upstream.url)}\n"
        f"api_key_file = {_toml_string(key_file)}\n"
        "[audio]\n"
        'backend = "file"\n'
        f"input = {_toml_string(mic)}\n"
        f"output = {_toml_string(out)}\n"
        "earcons = false\n"
        "[button]\n"
        'backend = "script"\n'
        f"script = {json.dumps([list(step) for step in scenario.script])}\n"
        "exit_after_script = true\n"
    )


def _tail(run: Run, debug: bool) -> None:
    if run.error and debug:
        print("\n".join(line for _, line in run.lines[-30:]), file=sys.stderr)


def run_ours(
    scenario: Scenario, *, folder: Path, microphone: Path, key: str, debug: bool = False
) -> Run:
    """Run the daemon as ``appliance run`` through the scenario, with drops; observe it."""
    run = Run("ours")
    output = folder / "ours.wav"
    output.touch()
    key_file = write_key(folder, key)
    with Upstream(folder, key_file=key_file, scenario=scenario, drops=True) as upstream:
        config = folder / "appliance.toml"
        config.write_text(_config(upstream, scenario, key_file, microphone, output))
        command = [sys.executable, "-m", "appliance", "run", "--config", str(config)]
        command += ["--log-format", "json"]
        started = threading.Event()

        def on_notify(at: float, lines: list[str]) -> None:
            if "READY=1" in lines and run.clock_zero is None:
                started.wait(5)
                run.clock_zero = at
                run.cpu_at_zero_s = cpu_s(process.pid)

        def on_line(at: float, line: str) -> None:
            # Logged right after the button's clock reads its start: the nearest
            # outside sign of the script's zero (READY=1 comes a little later).
            if run.script_zero is None and '"script button open' in line:
                run.script_zero = _logged_at(line, at, wall_offset_s)
                upstream.zero(run.script_zero)

        wall_offset_s = _wall_offset_s()
        with NotifyListener(on_notify) as notify, GrowthWatcher(output) as watcher:
            run.spawned_at = time.monotonic()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=clean_env(NOTIFY_SOCKET=notify.address),
            )
            started.set()
            assert process.stderr is not None
            reader = LineReader(process.stderr, on_line)
            sampler = Sampler(process.pid)
            try:
                run.exit = reap(process, scenario.end_s + SLACK_S)
            except TimeoutError as exc:
                run.error = str(exc)
            sampler.stop()
            reader.join()
            process.stderr.close()
        run.samples = sampler.samples
        run.growth = watcher.growth
        run.lines = reader.lines
    if run.exit is not None and run.exit.code != 0:
        run.error = f"appliance run exited {run.exit.code}"
    upstream.fill(run)
    _tail(run, debug)
    return run


def run_baseline(
    scenario: Scenario, *, folder: Path, microphone: Path, key: str, debug: bool = False
) -> Run:
    """Run the openai SDK baseline through the scenario (no drops: it cannot reconnect)."""
    run = Run("baseline")
    output = folder / "baseline.wav"
    output.touch()
    results = folder / "baseline.json"
    key_file = write_key(folder, key)
    with Upstream(folder, key_file=key_file, scenario=scenario, drops=False) as upstream:
        command = [
            sys.executable,
            str(HERE / "bench_baseline.py"),
            *("--url", upstream.url.removesuffix("/realtime")),
            *("--key-file", str(key_file)),
            *("--input", str(microphone)),
            *("--output", str(output)),
            *("--script", json.dumps(scenario.script)),
            *("--results", str(results)),
        ]
        started = threading.Event()

        def on_stdout(at: float, line: str) -> None:
            if line == "started" and run.cpu_at_zero_s is None:
                started.wait(5)
                run.cpu_at_zero_s = cpu_s(process.pid)

        with GrowthWatcher(output) as watcher:
            run.spawned_at = time.monotonic()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=clean_env(),
            )
            started.set()
            assert process.stdout is not None and process.stderr is not None
            out_reader = LineReader(process.stdout, on_stdout)
            err_reader = LineReader(process.stderr)
            sampler = Sampler(process.pid)
            try:
                run.exit = reap(process, scenario.end_s + SLACK_S)
            except TimeoutError as exc:
                run.error = str(exc)
            sampler.stop()
            out_reader.join()
            err_reader.join()
            process.stdout.close()
            process.stderr.close()
        run.samples = sampler.samples
        run.growth = watcher.growth
        run.lines = err_reader.lines
    if run.exit is not None and run.exit.code != 0:
        run.error = f"the baseline exited {run.exit.code}"
    if run.error is None:
        run.stamps = json.loads(results.read_text())
        run.clock_zero = run.script_zero = float(run.stamps["started_at"])
    upstream.fill(run)
    _tail(run, debug)
    return run
