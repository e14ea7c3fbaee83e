"""What the bench watches a client process with, all from outside it.

A NOTIFY_SOCKET it binds (``READY=1`` and ``STATUS=`` arrival times), the lines
of a pipe as they arrive, a file's growth (inotify), and the process's CPU time
and peak RSS from ``/proc`` and ``wait4``. Times are ``time.monotonic()``
seconds, the clock every process on the machine shares (CLOCK_MONOTONIC), so
they compare directly with the emulator's and the clients' own stamps.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class NotifyListener:
    """An sd_notify socket in the abstract namespace, as systemd binds for ``Type=notify``.

    Args:
        on_message: called on the listener's thread with (arrival time, lines) of each
            datagram, before it is stored; e.g. to read the process's CPU at ``READY=1``.
    """

    def __init__(self, on_message: Callable[[float, list[str]], None] | None = None) -> None:
        self.address = f"@appliance-bench-{os.getpid()}-{time.monotonic_ns()}"
        """The ``NOTIFY_SOCKET`` value."""
        self.messages: list[tuple[float, list[str]]] = []
        """(arrival time in monotonic seconds, lines) of each notification."""
        self._on_message = on_message
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify", daemon=True)

    def __enter__(self) -> NotifyListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            at = time.monotonic()
            lines = data.decode(errors="replace").split("\n")
            if self._on_message is not None:
                self._on_message(at, lines)
            self.messages.append((at, lines))

    def first(self, line: str) -> float | None:
        """When ``line`` first arrived (monotonic seconds), or None."""
        return next((at for at, lines in self.messages if line in lines), None)


class LineReader:
    """Reads a pipe line by line on its own thread, stamping each line as it arrives.

    Args:
        stream: the pipe (binary).
        on_line: called on the reader's thread with (arrival time, line) of each line.
    """

    def __init__(
        self, stream: IO[bytes], on_line: Callable[[float, str], None] | None = None
    ) -> None:
        self.lines: list[tuple[float, str]] = []
        """(arrival time in monotonic seconds, text without the newline)."""
        self._stream = stream
        self._on_line = on_line
        self._thread = threading.Thread(target=self._read, name="lines", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in iter(self._stream.readline, b""):
            at = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            if self._on_line is not None:
                self._on_line(at, line)
            self.lines.append((at, line))

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait until the pipe is closed (the process has exited), at most ``timeout_s``."""
        self._thread.join(timeout_s)


_IN_MODIFY = 0x2
_IN_CLOEXEC = 0o2000000


class GrowthWatcher:
    """Records when a file grows, and to what size, as it is written (inotify; else polling).

    Args:
        path: the file; it must exist when the watcher starts.
        poll_s: the polling period if inotify is not available (seconds).
    """

    def __init__(self, path: Path, *, poll_s: float = 0.002) -> None:
        self.path = path
        self.growth: list[tuple[float, int]] = []
        """(monotonic seconds, new size in bytes) each time the file grew."""
        self._poll_s = poll_s
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="growth", daemon=True)

    def __enter__(self) -> GrowthWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _check(self, size: int) -> int:
        now = os.stat(self.path).st_size
        if now > size:
            self.growth.append((time.monotonic(), now))
        return max(now, size)

    def _watch(self) -> None:
        size = self._check(0)
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_CLOEXEC)
        if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(self.path), _IN_MODIFY) < 0:
            if fd >= 0:
                os.close(fd)
            while not select.select([self._stop_r], [], [], self._poll_s)[0]:
                size = self._check(size)
            return
        try:
            while True:
                ready = select.select([fd, self._stop_r], [], [])[0]
                if fd in ready:
                    os.read(fd, 4096)
                    size = self._check(size)
                if self._stop_r in ready:
                    return
        finally:
            os.close(fd)


class Sampler:
    """Samples a process's CPU time and memory every ``period_s`` on its own thread.

    CPU time is the sum over its threads of ``/proc/PID/task/*/schedstat``'s
    time on a CPU (nanosecond resolution, unlike the 10 ms ticks of ``stat``);
    memory is ``VmRSS`` and ``VmHWM`` of ``/proc/PID/status``. Sampling ends when
    the process is gone.

    Args:
        pid: the process.
        period_s: the sampling period (seconds).
    """

    def __init__(self, pid: int, *, period_s: float = 0.05) -> None:
        self.samples: list[tuple[float, float, int, int]] = []
        """(monotonic seconds, CPU seconds so far, VmRSS bytes, VmHWM bytes)."""
        self._pid = pid
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the process has exited)."""
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                at = time.monotonic()
                used_s = cpu_s(self._pid)
                memory = {}
                for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name in ("VmRSS", "VmHWM"):
                        memory[name] = int(value.split()[0]) * 1024
            except (OSError, ValueError, IndexError):
                return  # gone, or going
            if len(memory) < 2:
                return  # a zombie has no memory left
            self.samples.append((at, used_s, memory["VmRSS"], memory["VmHWM"]))
            self._stop.wait(self._period_s)


def cpu_s(pid: int) -> float:
    """CPU time of process ``pid`` so far, all its threads (seconds).

    From each thread's ``schedstat`` (nanoseconds); on a kernel without it, from
    ``stat``'s user and system time (10 ms ticks).

    Raises:
        OSError: the process is gone.
    """
    if not Path(f"/proc/{pid}/schedstat").exists():
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
        return ticks / os.sysconf("SC_CLK_TCK")
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total_ns += int((task / "schedstat").read_text().split()[0])
    return total_ns / 1e9


@dataclass(frozen=True)
class Exit:
    """How a child process ended, from ``wait4``.

    Attributes:
        at: when it was reaped (monotonic seconds).
        code: its exit code (negative: killed by that signal).
        cpu_s: user plus system CPU time over its whole life (seconds).
        peak_rss_bytes: its peak resident set size (bytes).
    """

    at: float
    code: int
    cpu_s: float
    peak_rss_bytes: int


def reap(process: subprocess.Popen[bytes], timeout_s: float) -> Exit:
    """Wait for ``process`` with ``wait4`` (for its rusage); kill it after ``timeout_s``.

    Raises:
        TimeoutError: it had to be killed.
    """
    deadline = time.monotonic() + timeout_s
    killed = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline and not killed:
            process.kill()
            killed = True
        time.sleep(0.01)
    at = time.monotonic()
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code  # reaped here: Popen must not wait for it again
    if killed:
        raise TimeoutError(f"pid {process.pid} still running after {timeout_s:.0f} s: killed")
    return Exit(at, code, usage.ru_utime + usage.ru_stime, _maxrss_bytes(usage))


def _maxrss_bytes(usage: resource.struct_rusage) -> int:
    return int(usage.ru_maxrss) * 1024  # kibibytes on Linux


_FLOOR = """
import asyncio, resource, sys, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
async def main(seconds):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.2)
    start, used, n = loop.time(), cpu(), 0
    while loop.time() < start + seconds:
        n += 1
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
    print(100 * (cpu() - used) / (loop.time() - start))
asyncio.run(main(float(sys.argv[1])))
"""


def wakeup_floor(seconds: float = 3.0) -> float:
    """CPU (% of one core) of a Python process whose asyncio loop only wakes every 20 ms.

    That is the floor of any design that wakes once per audio period, for scale
    next to the daemon's figure (virtual machines make wake-ups dear); the
    daemon's devices wake about every 200 ms instead.
    """
    result = subprocess.run(
        [sys.executable, "-c", _FLOOR, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    return float(result.stdout)
