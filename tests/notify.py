"""A real NOTIFY_SOCKET for tests: an AF_UNIX datagram socket recording what arrives, from whom."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Message:
    """One notification: when it arrived (monotonic seconds), the sender's pid, its lines."""

    at: float
    pid: int
    lines: tuple[str, ...]


class NotifyListener:
    """Binds ``address`` (a path, or ``@name`` for the abstract namespace) like systemd does.

    Use as a context manager; :attr:`env_value` is what ``NOTIFY_SOCKET`` must be.
    """

    def __init__(self, address: str | Path) -> None:
        self.env_value = str(address)
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        bound = "\0" + self.env_value[1:] if self.env_value.startswith("@") else self.env_value
        self._sock.bind(bound)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify listener", daemon=True)

    def __enter__(self) -> NotifyListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        if not self.env_value.startswith("@"):
            Path(self.env_value).unlink(missing_ok=True)

    def _receive(self) -> None:
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, creds_size)
            except TimeoutError:
                continue
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            message = Message(time.monotonic(), pid, tuple(data.decode().split("\n")))
            with self._lock:
                self.messages.append(message)

    def snapshot(self) -> list[Message]:
        """The messages so far, in order of arrival."""
        with self._lock:
            return list(self.messages)

    def lines(self) -> list[str]:
        """Every line received so far, in order."""
        return [line for message in self.snapshot() for line in message.lines]

    def statuses(self) -> list[str]:
        """The ``STATUS=`` texts so far, in order."""
        return [line[len("STATUS=") :] for line in self.lines() if line.startswith("STATUS=")]

    def watchdog_times(self) -> list[float]:
        """When each ``WATCHDOG=1`` arrived (monotonic seconds)."""
        return [m.at for m in self.snapshot() if "WATCHDOG=1" in m.lines]

    def wait_for(self, line: str, *, timeout_s: float, after: int = 0) -> int:
        """Waits until ``line`` arrives as message number ``after`` or later; returns its index.

        Raises:
            TimeoutError: it did not arrive within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index, message in enumerate(self.snapshot()[after:], after):
                if line in message.lines:
                    return index
            time.sleep(0.02)
        raise TimeoutError(f"no {line!r} within {timeout_s} s; got {self.lines()}")


def abstract_name() -> str:
    """A fresh abstract socket name for this process."""
    return f"@appliance-test-{os.getpid()}-{time.monotonic_ns()}"
