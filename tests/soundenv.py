"""A private sound system for tests: PulseAudio with clocked pipe sinks, ALSA file plugins over it.

Nothing of the host's audio configuration is touched: the server, its
sockets and the ALSA configuration live in one temporary folder, and the
process finds them through environment variables (``PULSE_SERVER``,
``ALSA_CONFIG_PATH``, ``PULSE_CLIENTCONFIG``) that :meth:`SoundEnv.environ`
returns for the caller to set (and restore).

PortAudio then lists these devices:

- ``pulse`` / ``default``: the PulseAudio server. Playback goes to the
  ``speaker`` pipe sink, clocked by the system clock, whose output the test
  reads back (:attr:`SoundEnv.played`). Capture comes from the monitor of the
  ``micsink`` pipe sink, into which a ``pacat`` plays silence forever, so
  capture is clocked too.
- ``filein`` / ``fileout``: ALSA ``file`` plugins over ``pulse``: clocked
  like it, but capture delivers exactly the raw samples of
  :attr:`SoundEnv.infile`, and playback also writes exactly what was played to
  :attr:`SoundEnv.outfile`.

Needs the Debian packages pulseaudio, pulseaudio-utils, libasound2-plugins.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ALSA_CONF = """\
pcm.fileout {{ type file slave.pcm "pulse" file "{root}/out.raw" format "raw" truncate true }}
pcm.filein {{ type file slave.pcm "pulse" file "/dev/null" infile "{root}/in.raw" format "raw" }}
"""


class SoundEnv:
    """A private PulseAudio server and ALSA configuration under ``root``.

    Args:
        root: An empty folder for sockets, fifos and files.
        speaker_rate_hz: The rate of the speaker pipe sink (hertz).
    """

    def __init__(self, root: Path, *, speaker_rate_hz: int = 24_000) -> None:
        self.root = root
        self.speaker_rate_hz = speaker_rate_hz
        self.infile = root / "in.raw"
        self.outfile = root / "out.raw"
        self._played = bytearray()
        self._played_lock = threading.Lock()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def environ(self) -> dict[str, str]:
        """The variables that point PortAudio (ALSA, libpulse) at this sound system."""
        return {
            "PULSE_SERVER": f"unix:{self.root}/native",
            "PULSE_CLIENTCONFIG": str(self.root / "client.conf"),
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.root}/asound.conf",
            "JACK_NO_START_SERVER": "1",
        }

    @property
    def played(self) -> bytes:
        """Everything the speaker sink has played so far (s16le mono at its rate)."""
        with self._played_lock:
            return bytes(self._played)

    def clear_played(self) -> None:
        """Forget what was played so far."""
        with self._played_lock:
            self._played.clear()

    def start(self) -> None:
        """Start the server, the silent feeder and the fifo readers.

        Raises:
            RuntimeError: the server did not come up.
        """
        root = self.root
        (root / "asound.conf").write_text(ALSA_CONF.format(root=root))
        (root / "client.conf").write_text("autospawn = no\n")
        self.infile.write_bytes(b"")
        for fifo in ("spk.fifo", "mic.fifo"):
            os.mkfifo(root / fifo)
        env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root), **self.environ()}
        sink = "module-pipe-sink format=s16le channels=1 use_system_clock_for_timing=yes"
        server = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "-L",
                f"module-native-protocol-unix auth-anonymous=1 socket={root}/native",
                "-L",
                f"module-cli-protocol-unix socket={root}/cli",
                "-L",
                f"{sink} sink_name=speaker file={root}/spk.fifo rate={self.speaker_rate_hz}",
                "-L",
                f"{sink} sink_name=micsink file={root}/mic.fifo rate=48000",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "pulse.log", "wb"),  # noqa: SIM115 - the child keeps it
        )
        self._processes.append(server)
        self._read_fifo(root / "spk.fifo", keep=True)
        self._read_fifo(root / "mic.fifo", keep=False)
        deadline = time.monotonic() + 10
        while not (root / "native").exists() or not (root / "cli").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pulseaudio did not start: {(root / 'pulse.log').read_text()}")
            time.sleep(0.02)
        self.command("set-default-sink speaker")
        self.command("set-default-source micsink.monitor")
        feeder = subprocess.Popen(
            ["pacat", "-p", "-d", "micsink", "--raw", "--format=s16le", "--rate=48000"],
            env=env,
            stdin=open("/dev/zero", "rb"),  # noqa: SIM115 - the child keeps it
        )
        self._processes.append(feeder)

    def _read_fifo(self, path: Path, *, keep: bool) -> None:
        def read() -> None:
            with open(path, "rb", buffering=0) as fifo:
                while chunk := fifo.read(65536):
                    if keep:
                        with self._played_lock:
                            self._played += chunk

        thread = threading.Thread(target=read, name=f"read {path.name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def command(self, line: str) -> str:
        """Send one command to the server's CLI (``list-source-outputs``, ...)."""
        with socket.socket(socket.AF_UNIX) as cli:
            cli.connect(str(self.root / "cli"))
            cli.settimeout(2.0)
            # Not "exit": on this socket that stops the server itself.
            cli.sendall(f"{line}\n".encode())
            cli.shutdown(socket.SHUT_WR)
            answer = bytearray()
            while chunk := cli.recv(65536):
                answer += chunk
        return answer.decode(errors="replace")

    def kill_capture_streams(self) -> int:
        """Kill every capture stream the server has, as a failing device would.

        Returns:
            How many were killed.
        """
        return self._kill("source-output")

    def kill_playback_streams(self) -> int:
        """Kill every playback stream the server has, as a failing device would.

        Returns:
            How many were killed.
        """
        return self._kill("sink-input")

    def _kill(self, kind: str) -> int:
        listing = self.command(f"list-{kind}s")
        indexes = [
            line.split(":", 1)[1].strip()
            for line in listing.splitlines()
            if line.strip().startswith("index:")
        ]
        for index in indexes:
            self.command(f"kill-{kind} {index}")
        return len(indexes)

    def stop(self) -> None:
        """Kill what :meth:`start` started, by pid, and remove nothing else."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        # The server held the fifos open for writing: with it gone the readers see EOF.
        for thread in self._threads:
            thread.join(timeout=5)


def available() -> str | None:
    """Why the sound system cannot run here, or None if it can."""
    missing = [tool for tool in ("pulseaudio", "pacat") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian packages pulseaudio, pulseaudio-utils)"
    if not Path("/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf").exists() and not any(
        Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")
    ):
        return "missing the ALSA pulse plugin (Debian package libasound2-plugins)"
    return None


@pytest.fixture(scope="session", name="sound")
def sound_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoundEnv]:
    """The private sound system, started once per session, its variables set meanwhile.

    Missing packages fail the test rather than skip it: CI installs them
    (scripts/lib/bootstrap.sh), and a skip would hide that they are gone.
    """
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot run the real PyAudio path: {reason}")
    env = SoundEnv(tmp_path_factory.mktemp("sound"))
    saved = {name: os.environ.get(name) for name in env.environ()}
    env.start()
    os.environ.update(env.environ())
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        env.stop()
