"""scripts/install and the first boot of a flashed card, for real, under systemd in systemd-nspawn.

The container boots this machine's /usr on a volatile root, as in
test_nspawn.py (whose helpers are reused), with /usr/local a tmpfs so the
installer can link /usr/local/bin/appliance. Two stand-ins, and only two:

- Debian's python3-pyaudio, python3-numpy and friends: the Pi's list cannot
  be installed here (python3-lgpio is Raspberry Pi OS only, and Debian 12's
  python3-gpiozero is older than the package needs). The installer takes its
  package list from INSTALL_APT_PACKAGES, set to python3-venv (installed
  here; the container reads this machine's dpkg database), and the
  appliance's dependencies are this virtualenv's, linked into
  /usr/local/lib/python3.X/dist-packages, where a venv made with
  --system-site-packages finds them as it finds Debian's on a Pi. pip runs
  offline (PIP_NO_INDEX=1): the container has no network.
- ssh and scp, for ``scripts/install --ssh``: two small scripts that run the
  remote command and copy the files in the container itself.

The daemon runs with the file microphone and a scripted press against
``appliance emulator``, another unit in the container. Needs root and
systemd-nspawn; it fails, rather than skips, without them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import imaging
import pytest
from packaging.requirements import Requirement
from test_nspawn import EMULATOR_PORT, SITE, SOURCE, journal_entries, python_binds, write

from appliance.demo import bundled_sample

KEY = "sk-install-secret-0123456789abcdefghij"
NEW_KEY = "sk-install-second-9876543210zyxwvu"
TOKEN = "dt-firstboot-token-0123456789abcdef"
PASSPHRASE = "install test passphrase"
CONFIG = (
    "# the device's config, exactly as given\n"
    f'[upstream]\nurl = "ws://127.0.0.1:{EMULATOR_PORT}/v1/realtime"\n'
    '[audio]\nbackend = "file"\ninput = "/x/in.wav"\noutput = "/tmp/out.wav"\n'
    '[button]\nbackend = "script"\nscript = [[0.5, "press"], [2.5, "release"]]\n'
)
INSTALL = f"{SOURCE}/scripts/install"
PACKAGES = "python3-venv"

EMULATOR_UNIT = f"""\
[Unit]
Description=the local upstream
Before=appliance.service appliance-firstboot.service appliance-check.service

[Service]
ExecStart=/x/bin/appliance emulator --port {EMULATOR_PORT} --api-key-file /x/emulator-key
"""

CHECK_UNIT = """\
[Unit]
Description=runs the test's script, then ends the container
After=appliance-emulator.service
SuccessAction=exit-force
FailureAction=exit-force

[Service]
Type=oneshot
ExecStart=/bin/bash /x/check.sh
StandardOutput=append:/x/out/check.log
StandardError=append:/x/out/check.log
TimeoutStartSec=300
"""

TARGET = """\
[Unit]
Description=scripts/install under test
Wants=appliance-emulator.service appliance-check.service
"""

COMMON = r"""
set -u
out=/x/out
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
show() { systemctl show "$1" -p "$2" --value; }
wait_until() {  # seconds command...
    local limit=$1; shift
    for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
    echo "timed out: $*"; return 1
}
replied() { journalctl -u appliance.service APPLIANCE_EVENT=turn.done -o cat | grep -q .; }
step() {  # name command...: its output in $out/name.log, its exit status in $out/name.rc
    local name=$1; shift
    "$@" >"$out/$name.log" 2>&1
    echo $? >"$out/$name.rc"
}
state() {  # name: the service and the files, as they are now
    systemctl show appliance.service -p ActiveState -p SubState -p MainPID -p UnitFileState \
        -p StatusText >"$out/$1.service"
    stat -c '%a %U:%G %n' /etc/appliance /etc/appliance/* /opt/appliance/venv \
        /etc/systemd/system/appliance.service >"$out/$1.modes" 2>&1
    /opt/appliance/venv/bin/appliance --version >"$out/$1.version" 2>&1
}
"""

LIFECYCLE = r"""
export INSTALL_APT_PACKAGES=python3-venv PIP_NO_INDEX=1
step install $INSTALL install --package /x/wheels/$OLD --config /x/appliance.toml \
    --api-key-file /x/key
state installed
cp /opt/appliance/venv/pyvenv.cfg $out/pyvenv.cfg
readlink /usr/local/bin/appliance >$out/command-link
wait_until 60 replied

step again $INSTALL install --package /x/wheels/$OLD --config /x/appliance.toml \
    --api-key-file /x/key
state again

# The upgrade over (stand-in) ssh: a new package, no config, no key given.
PATH=/x/stubs:$PATH step upgrade $INSTALL upgrade --ssh tester@device \
    --package /x/wheels/$NEW --apt-packages python3-venv
state upgraded
cp /etc/appliance/appliance.toml $out/upgraded.toml
cp /etc/appliance/openai-api-key $out/upgraded.key

# A new key, given to an upgrade on the device itself (one the emulator refuses).
step rekey $INSTALL upgrade --package /x/wheels/$NEW --api-key-file /x/new-key
state rekeyed
cp /etc/appliance/openai-api-key $out/rekeyed.key

step uninstall $INSTALL uninstall
ls -A /etc/appliance >$out/uninstalled.etc
ls -A /opt >$out/uninstalled.opt
systemctl list-unit-files appliance.service --no-legend >$out/uninstalled.units
step uninstall-again $INSTALL uninstall
step purge $INSTALL uninstall --purge
ls -A /etc >$out/purged.etc

journalctl -u appliance.service -o json >$out/appliance.json
journalctl -o export >$out/everything.export
echo finished
"""

FIRSTBOOT = r"""
if [ "$STYLE" = firstrun ]; then
    step hook bash /boot/firmware/firstrun.sh
else
    step hook /usr/bin/python3 /x/runcmd.py /boot/firmware/user-data
fi
# The next boot starts the enabled unit (the cloud-init hook has queued it already).
step firstboot systemctl start appliance-firstboot.service
state firstboot
show appliance-firstboot.service Result >$out/firstboot.result
wait_until 60 replied
cp /etc/appliance/appliance.toml $out/firstboot.toml
cp /etc/appliance/openai-api-key $out/firstboot.key
ls -A /boot/firmware /boot/firmware/appliance >$out/boot-after.txt
cat /var/lib/appliance-install/firstboot.done >$out/marker.txt

# Another boot: the marker keeps it from running again.
step second systemctl start appliance-firstboot.service
show appliance-firstboot.service ConditionResult >$out/second.condition
show appliance.service MainPID >$out/second.pid

# What firstrun.sh or cloud-init set up besides.
cat /etc/hostname >$out/hostname
stat -c '%a %U' /home/tester/.ssh/authorized_keys >$out/authorized.mode 2>&1
cat /home/tester/.ssh/authorized_keys >$out/authorized_keys 2>&1
stat -c '%a' /etc/wpa_supplicant/wpa_supplicant.conf >$out/wpa.mode 2>&1
cat /etc/wpa_supplicant/wpa_supplicant.conf >$out/wpa.conf 2>&1
readlink /etc/localtime >$out/localtime 2>&1

journalctl -u appliance-firstboot.service -o json >$out/firstboot.json
journalctl -u appliance.service -o json >$out/appliance.json
journalctl -o export >$out/everything.export
echo finished
"""

RUNCMD = '''\
"""Runs user-data's runcmd as cloud-init does: a list is a command, a string a shell line."""
import subprocess
import sys

import yaml

with open(sys.argv[1]) as f:
    data = yaml.safe_load(f)
for command in data["runcmd"]:
    argv = command if isinstance(command, list) else ["sh", "-c", command]
    status = subprocess.run(argv, check=False).returncode
    print(f"runcmd: {argv} -> {status}", flush=True)
'''

SSH_STUB = r"""#!/bin/bash
# Stands in for ssh: runs the remote command here, as the remote shell would.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
echo "$1" >>/x/out/ssh-hosts
shift
exec sh -c "$*"
"""

SCP_STUB = r"""#!/bin/bash
# Stands in for scp: copies the files here; the last argument is HOST:FOLDER/.
args=("$@")
dest=${args[-1]}
files=()
for arg in "${args[@]:0:${#args[@]}-1}"; do [[ $arg == -* ]] || files+=("$arg"); done
cp -p "${files[@]}" "${dest#*:}"
"""


def dependencies() -> dict[str, metadata.Distribution]:
    """The distributions the appliance needs at run time, found in this virtualenv."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in metadata.requires("appliance") or []]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = requirement.name.lower()
        if name in found:
            continue
        distribution = metadata.distribution(requirement.name)
        found[name] = distribution
        todo += [Requirement(r) for r in distribution.requires or []]
    return found


def dependency_farm(dest: Path) -> Path:
    """A folder of links to the dependencies, as they will be seen in the container."""
    dest.mkdir()
    site = Path(SITE)
    for distribution in dependencies().values():
        tops = {Path(str(f)).parts[0] for f in distribution.files or []}
        for top in tops - {"..", "__pycache__"}:
            link = dest / top
            if not link.exists() and not link.is_symlink():
                link.symlink_to(site / top)
    return dest


def system_site() -> str:
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"/usr/local/lib/python{version}/dist-packages"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The package as it is (0.1.0 or so) and as a later version, built once."""
    folder = tmp_path_factory.mktemp("wheels")
    folder.chmod(0o755)
    old = imaging.build_wheel(folder)
    new = imaging.build_wheel(folder, version="9.9.9")
    return old, new


def boot_container(
    tmp_path: Path, root: Path, script: str, extra: list[str], *, upstream_key: str = KEY
) -> str:
    """Boots the container with the test's units and ``script``; returns its check log.

    Args:
        upstream_key: The one credential the emulator accepts.
    """
    binds, launcher = python_binds()
    write(root / "bin" / "appliance", launcher, 0o755)
    shutil.copy(bundled_sample(), root / "in.wav")
    (root / "in.wav").chmod(0o644)
    write(root / "emulator-key", upstream_key + "\n", 0o600)
    write(root / "check.sh", script)
    (root / "out").mkdir(exist_ok=True)
    units = tmp_path / "units"
    mounted = {
        "appliance-emulator.service": write(units / "appliance-emulator.service", EMULATOR_UNIT),
        "appliance-check.service": write(units / "appliance-check.service", CHECK_UNIT),
        "appliance-test.target": write(units / "appliance-test.target", TARGET),
    }
    farm = dependency_farm(tmp_path / "dist-packages")
    command = [
        "systemd-nspawn",
        "--directory=/",
        "--volatile=yes",
        f"--machine=appliance-install-{os.getpid()}",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--bind-ro=/etc/alternatives",
        "--bind-ro=/var/lib/dpkg",
        "--bind-ro=/dev/null:/etc/systemd/system/systemd-networkd-wait-online.service",
        "--tmpfs=/usr/local",
        f"--bind-ro={farm}:{system_site()}",
        f"--bind={root}:/x",
        *binds,
        *extra,
        *(f"--bind-ro={path}:/etc/systemd/system/{name}" for name, path in mounted.items()),
        "--boot",
        "systemd.firstboot=off",
        "systemd.unit=appliance-test.target",
    ]
    console = tmp_path / "console.log"
    with console.open("w") as log:
        container = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300
        )
    check_log = root / "out" / "check.log"
    check_text = check_log.read_text() if check_log.exists() else ""
    report = f"console:\n{console.read_text()[-3000:]}\ncheck:\n{check_text}"
    assert container.returncode == 0, report
    assert "timed out" not in check_text and "finished" in check_text, report
    return report


def read(out: Path, name: str) -> str:
    return (out / name).read_text()


def step(out: Path, name: str) -> tuple[int, str]:
    """A step's exit status and output."""
    return int(read(out, f"{name}.rc")), read(out, f"{name}.log")


def service(out: Path, name: str) -> dict[str, str]:
    lines = read(out, f"{name}.service").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def assert_no_secret(out: Path, *secrets: str) -> None:
    """No secret in any file the container wrote but the copies of the key it was asked for."""
    for path in out.rglob("*"):
        if path.is_file() and not path.name.endswith(".key"):
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"a secret in {path.name}"


def test_install_upgrade_uninstall_under_systemd(tmp_path: Path, wheels: tuple[Path, Path]) -> None:
    old, new = wheels
    root = tmp_path / "x"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    write(root / "appliance.toml", CONFIG)
    write(root / "key", KEY + "\n", 0o600)
    write(root / "new-key", NEW_KEY + "\n", 0o600)
    write(root / "stubs" / "ssh", SSH_STUB, 0o755)
    write(root / "stubs" / "scp", SCP_STUB, 0o755)
    script = COMMON + f"INSTALL={INSTALL}\nOLD={old.name}\nNEW={new.name}\n" + LIFECYCLE
    boot_container(tmp_path, root, script, [f"--bind-ro={old.parent}:/x/wheels"])
    out = root / "out"

    # Install: packages, venv, files with their owners and modes, the unit; check; started.
    status, log = step(out, "install")
    assert status == 0, log
    assert f"Debian packages: all there ({PACKAGES})" in log
    assert "[ OK ] upstream" in log and "all checks passed" in log, log
    installed = service(out, "installed")
    assert installed["ActiveState"] == "active" and installed["SubState"] == "running"
    assert installed["UnitFileState"] == "enabled"
    modes = read(out, "installed.modes")
    assert "755 root:root /etc/appliance\n" in modes
    assert "644 root:root /etc/appliance/appliance.toml\n" in modes
    assert "600 root:root /etc/appliance/openai-api-key\n" in modes
    assert "644 root:root /etc/systemd/system/appliance.service\n" in modes
    assert "include-system-site-packages = true" in read(out, "pyvenv.cfg")
    assert read(out, "command-link").strip() == "/opt/appliance/venv/bin/appliance"
    old_version = old.name.split("-")[1]
    assert read(out, "installed.version").strip() == f"appliance {old_version}"
    # Type=notify: systemd had the start done only at the daemon's READY=1.
    messages = [str(e.get("MESSAGE", "")) for e in journal_entries(out / "appliance.json")]
    ready = next(i for i, m in enumerate(messages) if "devices open" in m)
    started = next(i for i, m in enumerate(messages) if m.startswith("Started appliance.service"))
    assert ready < started
    assert any(
        e.get("APPLIANCE_EVENT") == "turn.done" for e in journal_entries(out / "appliance.json")
    )

    # Again, the same: nothing changes, and the running daemon is left alone.
    status, log = step(out, "again")
    assert status == 0, log
    assert "nothing changed" in log, log
    assert service(out, "again")["MainPID"] == installed["MainPID"]

    # Upgrade over ssh: the new package, the config and key kept, the service restarted.
    status, log = step(out, "upgrade")
    assert status == 0, log
    assert read(out, "ssh-hosts").splitlines()[0] == "tester@device"
    assert f"package: appliance {old_version} -> 9.9.9" in log, log
    assert "config: /etc/appliance/appliance.toml kept" in log
    upgraded = service(out, "upgraded")
    assert upgraded["ActiveState"] == "active" and upgraded["MainPID"] != installed["MainPID"]
    assert read(out, "upgraded.version").strip() == "appliance 9.9.9"
    assert read(out, "upgraded.toml") == CONFIG
    assert read(out, "upgraded.key") == KEY + "\n"
    assert "600 root:root /etc/appliance/openai-api-key\n" in read(out, "upgraded.modes")

    # A new key, one the upstream refuses: in place, root's alone, the daemon restarted
    # with it, and the check's failure is the exit status (2), with what to do.
    status, log = step(out, "rekey")
    assert status == 2, log
    assert "[FAIL] upstream: 127.0.0.1 rejected the API key (HTTP 401)" in log, log
    assert "appliance check found problems" in log
    assert read(out, "rekeyed.key") == NEW_KEY + "\n"
    assert "600 root:root /etc/appliance/openai-api-key\n" in read(out, "rekeyed.modes")
    assert service(out, "rekeyed")["MainPID"] != upgraded["MainPID"]

    # Uninstall: service, venv and units gone; config and credential kept. Twice is fine.
    status, log = step(out, "uninstall")
    assert status == 0, log
    assert read(out, "uninstalled.etc").split() == ["appliance.toml", "openai-api-key"]
    assert "appliance" not in read(out, "uninstalled.opt").split()
    assert read(out, "uninstalled.units").strip() == ""
    status, log = step(out, "uninstall-again")
    assert status == 0 and "not installed: nothing to remove" in log, log
    status, log = step(out, "purge")
    assert status == 0 and "removed /etc/appliance" in log, log
    assert "appliance" not in read(out, "purged.etc").split()

    assert_no_secret(out, KEY, NEW_KEY)


@pytest.mark.parametrize("style", ["cloud-init", "firstrun"])
def test_first_boot_installs_once(tmp_path: Path, wheels: tuple[Path, Path], style: str) -> None:
    old, _ = wheels
    cards = tmp_path / "cards"
    cards.mkdir()
    image = imaging.build_image(cards / "raspios.img", cloud_init=style == "cloud-init")
    write(cards / "appliance.toml", CONFIG)
    write(cards / "token", TOKEN + "\n", 0o600)
    write(cards / "psk", PASSPHRASE + "\n", 0o600)
    write(
        cards / "key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirstBootTestKey tester@laptop\n"
    )
    card = cards / "card.img"
    options = {
        "--config": cards / "appliance.toml",
        "--device-token-file": cards / "token",
        "--hostname": "porch",
        "--wifi-ssid": "Porch Net",
        "--wifi-psk-file": cards / "psk",
        "--wifi-country": "GB",
        "--ssh-key": cards / "key.pub",
        "--user": "tester",
        "--timezone": "Europe/London",
        "--package": old,
        "--output": card,
    }
    argv = [str(imaging.REPO / "scripts" / "flash"), str(image)]
    argv += [str(word) for pair in options.items() for word in pair]
    flashed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert flashed.returncode == 0, flashed.stderr

    # The boot partition as the Pi mounts it, taken out of the card with mtools.
    boot = tmp_path / "boot"
    boot.mkdir()
    offset, _, _ = imaging.partition_offsets(card)
    imaging.sh("mcopy", "-s", "-i", f"{card}@@{offset}", "::*", boot, env=imaging.MTOOLS_ENV)

    root = tmp_path / "x"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    write(root / "runcmd.py", RUNCMD)
    dropin = write(
        tmp_path / "firstboot-test.conf",
        f"[Service]\nEnvironment=INSTALL_APT_PACKAGES={PACKAGES} PIP_NO_INDEX=1\n",
    )
    script = COMMON + f"STYLE={style}\n" + FIRSTBOOT
    boot_container(
        tmp_path,
        root,
        script,
        [
            f"--bind={boot}:/boot/firmware",
            f"--bind-ro={dropin}:/etc/systemd/system/appliance-firstboot.service.d/test.conf",
        ],
        upstream_key=TOKEN,  # the emulator stands in for a relay: the token is the key
    )
    out = root / "out"

    status, log = step(out, "hook")
    assert status == 0, log
    status, log = step(out, "firstboot")
    assert status == 0, log
    assert read(out, "firstboot.result").strip() == "success"
    installed = service(out, "firstboot")
    assert installed["ActiveState"] == "active" and installed["UnitFileState"] == "enabled"
    assert read(out, "firstboot.toml") == CONFIG
    assert read(out, "firstboot.key") == TOKEN + "\n"
    assert "600 root:root /etc/appliance/openai-api-key\n" in read(out, "firstboot.modes")
    # The credential is wiped off the boot partition; the rest of the bundle stays.
    after = read(out, "boot-after.txt")
    assert "openai-api-key" not in after and "appliance.toml" in after
    assert not (boot / "appliance" / "openai-api-key").exists()
    assert "installed from /boot/firmware/appliance" in read(out, "marker.txt")

    # In the journal, under its own name; and only once, though started again.
    entries = journal_entries(out / "firstboot.json")
    lines = [
        str(e.get("MESSAGE", ""))
        for e in entries
        if e.get("SYSLOG_IDENTIFIER") == "appliance-firstboot"
    ]
    assert lines.count("install: first boot: installing from /boot/firmware/appliance") == 1, lines
    assert "install: appliance check (with the service stopped: a device has one owner)" in lines
    assert "all checks passed" in lines and "[ OK ] upstream" in "\n".join(lines), lines
    turns = [e for e in journal_entries(out / "appliance.json") if e.get("APPLIANCE_EVENT")]
    assert any(e.get("OUTCOME") == "replied" for e in turns), turns
    assert read(out, "second.condition").strip() == "no"
    assert (
        read(out, "second.pid")
        == read(out, "firstboot.service").split("MainPID=")[1].split("\n")[0] + "\n"
    )

    if style == "firstrun":
        # firstrun.sh named the device, made the login, the Wi-Fi and the zone, and went.
        assert read(out, "hostname") == "porch\n"
        assert read(out, "authorized.mode").split() == ["600", "tester"]
        assert "FirstBootTestKey" in read(out, "authorized_keys")
        assert read(out, "wpa.mode").strip() == "600"
        psk = hashlib.pbkdf2_hmac("sha1", PASSPHRASE.encode(), b"Porch Net", 4096, 32).hex()
        assert f"psk={psk}" in read(out, "wpa.conf")
        assert read(out, "localtime").strip() == "/usr/share/zoneinfo/Europe/London"
        assert not (boot / "firstrun.sh").exists()
        cmdline = (boot / "cmdline.txt").read_text()
        assert "systemd.run" not in cmdline and "cfg80211.ieee80211_regdom=GB" in cmdline
    else:
        # The runcmd lines of the appliance's hook all succeeded (ssh is not here: no matter).
        hook = read(out, "hook.log")
        ran = [line for line in hook.splitlines() if line.startswith("runcmd:")]
        ours = [line for line in ran if "appliance-firstboot" in line or "daemon-reload" in line]
        assert len(ours) == 4 and all(line.endswith("-> 0") for line in ours), hook

    assert_no_secret(out, TOKEN, PASSPHRASE)
