"""The shipped unit under real systemd, PID 1 in ``systemd-nspawn``, against the emulator.

The container boots this machine's ``/usr`` on a volatile root, with the
checkout, its virtualenv's packages and the Python they need bound read-only.
In it, ``appliance.service`` (the shipped file, only its paths substituted)
runs the daemon with the file microphone and a scripted press; the emulator
is another unit; a oneshot check unit waits for the scripted turn, freezes
the daemon with SIGSTOP, waits for systemd to kill and restart it, copies the
journal out and ends the container with its own exit status.

Needs root and ``systemd-nspawn`` (Debian's systemd-container, installed by
``scripts/test``); it fails, rather than skips, without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from unit_file import REPO, SYSUSERS, substituted

from appliance.demo import bundled_sample

KEY = "sk-nspawn-secret-0123456789abcdefghij"
EMULATOR_PORT = 8765  # the container has a network of its own

SOURCE = "/opt/appliance-src"
SITE = "/opt/appliance-site"
PYTHON = "/opt/appliance-python"

TARGET = """\
[Unit]
Description=appliance under test
Wants=appliance-emulator.service appliance.service appliance-check.service
"""

EMULATOR_UNIT = f"""\
[Unit]
Description=the local upstream
Before=appliance.service

[Service]
ExecStart=/x/bin/appliance emulator --port {EMULATOR_PORT} --api-key-file /x/emulator-key
"""

CHECK_UNIT = """\
[Unit]
Description=checks appliance.service, then ends the container
After=appliance.service
SuccessAction=exit-force
FailureAction=exit-force

[Service]
Type=oneshot
ExecStart=/bin/bash /x/check.sh
StandardOutput=append:/x/out/check.log
StandardError=append:/x/out/check.log
"""

CHECK_SCRIPT = r"""
set -u
out=/x/out
show() { systemctl show appliance.service -p "$1" --value; }
wait_until() {  # seconds command...
    local limit=$1; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    echo "timed out: $*"; return 1
}
replied() { journalctl -u appliance.service APPLIANCE_EVENT=turn.done -o cat | grep -q .; }
restarted() { [ "$(show NRestarts)" -ge 1 ] && [ "$(show ActiveState)" = active ]; }

systemctl show appliance.service -p ActiveState -p SubState -p MainPID -p StatusText \
    -p NRestarts > $out/started.txt
wait_until 60 replied
systemctl show appliance.service -p StatusText > $out/replied.txt
pid=$(show MainPID)
echo "freezing $pid"
kill -STOP "$pid"
wait_until 90 restarted
systemctl show appliance.service -p ActiveState -p SubState -p MainPID -p StatusText \
    -p NRestarts -p Result > $out/restarted.txt
journalctl -u appliance.service -o json > $out/appliance.json
# Two of the README's recipes ("Reading the logs"), as written there.
journalctl -u appliance -b -p err -o cat > $out/errors.txt
journalctl -u appliance APPLIANCE_EVENT=turn.done -o json \
    --output-fields=TURN,OUTCOME,RELEASE_TO_COMMIT_MS,COMMIT_TO_FIRST_AUDIO_MS \
    > $out/latencies.json
journalctl -o export > $out/everything.export
echo done
"""


WAITING_SCRIPT = r"""
set -u
out=/x/out
show() { systemctl show appliance.service -p "$1" --value; }
wait_until() {  # seconds command...
    local limit=$1; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    echo "timed out: $*"; return 1
}
waiting() { show StatusText | grep -q "waiting for the microphone"; }
given_up() { journalctl -u appliance.service -o cat | grep -q "giving up"; }

wait_until 60 waiting
sleep 6  # past TimeoutStartSec=4s: a start that did not push it away would be killed by now
systemctl show appliance.service -p ActiveState -p SubState -p StatusText > $out/waiting.txt
wait_until 60 given_up
sleep 1  # systemd's own lines about the exit
journalctl -u appliance.service -o json > $out/appliance.json
echo done
"""


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def python_binds() -> tuple[list[str], str]:
    """nspawn options and a launcher script for this interpreter, outside /root and /home.

    The unit's ProtectHome= hides /root (where pyenv keeps Pythons), so the
    base installation is bound at a path of its own when it is not under /usr.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    site = sysconfig.get_path("purelib")
    binds = [f"--bind-ro={REPO}:{SOURCE}", f"--bind-ro={site}:{SITE}"]
    if base.parts[1:2] == ("usr",):
        executable, library = f"{base}/bin/{version}", ""
    else:
        binds.append(f"--bind-ro={base}:{PYTHON}")
        executable, library = f"{PYTHON}/bin/{version}", f"export LD_LIBRARY_PATH={PYTHON}/lib\n"
    launcher = (
        "#!/bin/sh\n"
        "# Stands in for the installed /opt/appliance/venv/bin/appliance.\n"
        f"{library}export PYTHONPATH={SOURCE}:{SITE}\n"
        f'exec {executable} -m appliance "$@"\n'
    )
    return binds, launcher


def journal_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def boot(tmp_path: Path, *, config: str, check_script: str, drop_in: str = "") -> tuple[Path, str]:
    """Boot a container that runs the shipped unit with ``config``, and ``check_script``.

    Returns:
        The folder the check script wrote its findings to, and a report of the
        console and the check's log for failed assertions.
    """
    root = tmp_path / "x"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # the service's dynamic user reads the microphone file and the launcher
    (root / "out").mkdir()
    binds, launcher = python_binds()
    write(root / "bin" / "appliance", launcher, 0o755)
    shutil.copy(bundled_sample(), root / "in.wav")
    (root / "in.wav").chmod(0o644)
    write(root / "emulator-key", KEY + "\n", 0o600)
    # Only the credential can supply the key: the configured key file does not exist,
    # and the credential's source is root's alone, unreadable by the service's user.
    write(root / "etc" / "openai-api-key", KEY + "\n", 0o600)
    write(root / "etc" / "appliance.toml", config)
    (root / "etc").chmod(0o755)
    units = tmp_path / "units"
    unit = write(
        units / "appliance.service", substituted(executable="/x/bin/appliance", etc="/x/etc/")
    )
    write(root / "check.sh", check_script)
    mounted = {
        "appliance.service": unit,
        "appliance-emulator.service": write(units / "appliance-emulator.service", EMULATOR_UNIT),
        "appliance-check.service": write(units / "appliance-check.service", CHECK_UNIT),
        "appliance-test.target": write(units / "appliance-test.target", TARGET),
    }
    if drop_in:
        mounted["appliance.service.d/test.conf"] = write(units / "test.conf", drop_in)
    command = [
        "systemd-nspawn",
        "--directory=/",
        "--volatile=yes",
        f"--machine=appliance-test-{os.getpid()}",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--bind-ro=/etc/alternatives",
        # Masked: with no network to wait for, it would hold network-online.target for 2 min.
        "--bind-ro=/dev/null:/etc/systemd/system/systemd-networkd-wait-online.service",
        f"--bind={root}:/x",
        # Raspberry Pi OS has a gpio group; plain Debian gets it from the shipped sysusers file.
        f"--bind-ro={SYSUSERS}:/etc/sysusers.d/appliance.conf",
        *binds,
        *(f"--bind-ro={path}:/etc/systemd/system/{name}" for name, path in mounted.items()),
        "--boot",
        "systemd.firstboot=off",
        "systemd.unit=appliance-test.target",
    ]
    console = tmp_path / "console.log"
    with console.open("w") as log:
        container = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180
        )
    out = root / "out"
    check_log = (out / "check.log").read_text() if (out / "check.log").exists() else ""
    report = f"console:\n{console.read_text()[-3000:]}\ncheck:\n{check_log}"
    assert container.returncode == 0, report
    assert "timed out" not in check_log, report
    return out, report


def test_the_shipped_unit_under_real_systemd(tmp_path: Path) -> None:
    out, _ = boot(
        tmp_path,
        config=f'[upstream]\nurl = "ws://127.0.0.1:{EMULATOR_PORT}/v1/realtime"\n'
        'api_key_file = "/nonexistent/openai-api-key"\n'
        '[audio]\nbackend = "file"\ninput = "/x/in.wav"\noutput = "/run/appliance/out.wav"\n'
        '[button]\nbackend = "script"\nscript = [[0.5, "press"], [2.5, "release"]]\n',
        check_script=CHECK_SCRIPT,
    )

    # Type=notify: systemd reported the service started only after the daemon's READY=1.
    started = (out / "started.txt").read_text()
    assert "ActiveState=active" in started and "SubState=running" in started, started
    entries = journal_entries(out / "appliance.json")
    messages = [str(e.get("MESSAGE", "")) for e in entries]
    ready = next(i for i, m in enumerate(messages) if "devices open" in m)
    active = next(i for i, m in enumerate(messages) if m.startswith("Started appliance.service"))
    assert ready < active, messages[: active + 1]

    # The scripted turn, as structured journal fields from the daemon's own process.
    (turn,) = [e for e in entries if e.get("APPLIANCE_EVENT") == "turn.done"][:1]
    assert turn["SYSLOG_IDENTIFIER"] == "appliance"
    assert turn["TURN"] == "1" and turn["OUTCOME"] == "replied"
    assert turn["PRIORITY"] == "6"
    for field in ("AUDIO_IN_MS", "RELEASE_TO_COMMIT_MS", "COMMIT_TO_FIRST_AUDIO_MS"):
        assert int(turn[field]) >= 0, field
    assert int(turn["AUDIO_OUT_MS"]) > 0
    session = next(e for e in entries if e.get("APPLIANCE_EVENT") == "session.ready")
    assert session["SESSION_ID"].startswith("sess_") and int(session["CONNECT_MS"]) >= 0
    # The key came from $CREDENTIALS_DIRECTORY: nothing else could have supplied it.
    assert "/nonexistent/openai-api-key" not in " ".join(messages)

    # Frozen with SIGSTOP, the daemon fed no watchdog; systemd killed and restarted it.
    restarted = (out / "restarted.txt").read_text()
    assert "NRestarts=1" in restarted and "ActiveState=active" in restarted, restarted
    assert any("Watchdog timeout" in m for m in messages), messages
    assert any("Failed with result 'watchdog'" in m for m in messages), messages
    pids = {e["_PID"] for e in entries if e.get("SYSLOG_IDENTIFIER") == "appliance"}
    assert len(pids) == 2, pids  # the first daemon and its replacement

    # The README's recipes find the watchdog kill among the errors, and the turn's figures.
    errors = (out / "errors.txt").read_text()
    assert "Watchdog timeout" in errors and "devices open" not in errors, errors
    (latency,) = journal_entries(out / "latencies.json")[:1]
    assert latency["TURN"] == "1" and int(latency["RELEASE_TO_COMMIT_MS"]) >= 0
    assert "AUDIO_OUT_MS" not in latency  # only the fields asked for

    # No secret anywhere: not in any journal entry of the boot, nor in a STATUS= text.
    assert KEY.encode() not in (out / "everything.export").read_bytes()
    for name in ("started.txt", "replied.txt", "restarted.txt"):
        assert KEY not in (out / name).read_text()
    assert "StatusText=ready" in (out / "replied.txt").read_text()


def test_a_microphone_missing_at_start_is_waited_for_past_the_start_timeout(
    tmp_path: Path,
) -> None:
    """Real systemd: the start timeout is pushed away while the device is waited for."""
    out, report = boot(
        tmp_path,
        config=f'[upstream]\nurl = "ws://127.0.0.1:{EMULATOR_PORT}/v1/realtime"\n'
        'api_key_file = "/nonexistent/openai-api-key"\n'
        '[audio]\nbackend = "pyaudio"\ninput = "no such microphone"\n'
        'output = "no such speaker"\nlost_exit_s = 12\n'
        '[button]\nbackend = "script"\nscript = []\n',
        check_script=WAITING_SCRIPT,
        drop_in="[Service]\nTimeoutStartSec=4s\n",
    )
    waiting = (out / "waiting.txt").read_text()
    assert "ActiveState=activating" in waiting and "SubState=start" in waiting, waiting
    assert "StatusText=error: waiting for the microphone: " in waiting, waiting
    messages = [str(e.get("MESSAGE", "")) for e in journal_entries(out / "appliance.json")]
    tries = [m for m in messages if "no such microphone" in m and "trying again in" in m]
    assert len(tries) >= 4, report  # 0.5, 1, 2, 4 s apart, and so on
    assert any("the microphone is still missing after 12 s: giving up" in m for m in messages)
    assert not any("timed out" in m.lower() for m in messages), messages
    assert any("status=1/FAILURE" in m for m in messages), messages
