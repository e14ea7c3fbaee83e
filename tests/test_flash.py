"""scripts/flash against Raspberry-Pi-OS-shaped images built here, both first-boot styles.

Each card is checked from the outside, through mtools and debugfs, never
through the script's own reading: the first-boot hook and its wiring, the
config and credential byte for byte, the package, the input image's
checksum. Cards go to --output files, to --roster batches and to a loop
device over a file (losetup works here: root in a VM). Every refusal is a
clear message, a non-zero exit, and nothing written. Needs root, losetup,
mtools, dosfstools, fdisk, e2fsprogs and Debian's python3-yaml (the parser
cloud-init itself uses); it fails, rather than skips, without them.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import imaging
import pytest
from imaging import REPO, boot_exists, boot_names, read_boot, sha256

FLASH = REPO / "scripts" / "flash"
KEY = "sk-flash-secret-0123456789abcdefghij"
TOKEN = "dt-flash-token-abcdefghij0123456789"
PASSPHRASE = "flash test passphrase"
SSID = "Home Net"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlashTestKeyFlashTestKeyFlash installer@laptop"
CONFIG = '# kitchen\n[upstream]\nvoice = "marin"\n[button]\npin = 17\n'
SECRETS = (KEY, TOKEN, PASSPHRASE)
flash_target = imaging.script_module("flash_target")


def wpa_psk(passphrase: str, ssid: str) -> str:
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The input images: cloud-init, firstrun (plain and .xz), /boot-mounted, too old."""
    folder = tmp_path_factory.mktemp("images")
    cloud = imaging.build_image(folder / "cloud.img", cloud_init=True)
    firstrun = imaging.build_image(folder / "firstrun.img", cloud_init=False)
    compressed = folder / "firstrun.img.xz"
    with firstrun.open("rb") as source, lzma.open(compressed, "wb", preset=0) as out:
        shutil.copyfileobj(source, out)
    return {
        "cloud": cloud,
        "firstrun": firstrun,
        "firstrun.xz": compressed,
        "boot": imaging.build_image(folder / "boot.img", cloud_init=False, boot_mount="/boot"),
        "old": imaging.build_image(
            folder / "old.img",
            cloud_init=False,
            python="3.9",
            release="Raspbian GNU/Linux 11 (bullseye)",
        ),
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return imaging.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The installer's files: config, key, token, Wi-Fi passphrase, SSH public key."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "appliance.toml").write_text(CONFIG)
    (folder / "key").write_text(KEY + "\n")
    (folder / "token").write_text(TOKEN + "\n")
    (folder / "psk").write_text(PASSPHRASE + "\n")
    (folder / "id.pub").write_text(PUBLIC_KEY + "\n")
    return folder


def flash(
    *args: str | Path, answer: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs scripts/flash; no secret may show in what it prints, whatever happens."""
    result = subprocess.run(
        [str(FLASH), *map(str, args)],
        capture_output=True,
        text=True,
        input=answer,
        env=env,
        timeout=120,
        check=False,
    )
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def card_args(inputs: Path, wheel: Path, **extra: str | Path) -> list[str | Path]:
    options: dict[str, str | Path] = {
        "--config": inputs / "appliance.toml",
        "--api-key-file": inputs / "key",
        "--hostname": "kitchen",
        "--package": wheel,
        **{f"--{name.replace('_', '-')}": value for name, value in extra.items()},
    }
    return [word for pair in options.items() for word in pair]


def assert_bundle(card: Path, *, credential: str, boot_mount: str = "/boot/firmware") -> None:
    """The appliance's folder on the card: every file, the config and credential exactly."""
    names = boot_names(card, "appliance")
    wheels = [name for name in names if name.startswith("appliance-") and name.endswith(".whl")]
    assert len(wheels) == 1, names
    assert names == {
        wheels[0],
        "install.py",
        "appliance.service",
        "appliance.sysusers",
        "appliance-firstboot.service",
        "README.md",
        "appliance.toml",
        "openai-api-key",
    }
    assert read_boot(card, "appliance/appliance.toml").decode() == CONFIG
    assert read_boot(card, "appliance/openai-api-key").decode() == credential + "\n"
    installer = REPO / "scripts" / "lib" / "device_install.py"
    assert read_boot(card, "appliance/install.py") == installer.read_bytes()
    unit = (REPO / "systemd" / "appliance.service").read_bytes()
    assert read_boot(card, "appliance/appliance.service") == unit
    firstboot = read_boot(card, "appliance/appliance-firstboot.service").decode()
    assert f"ExecStart=/usr/bin/python3 {boot_mount}/appliance/install.py firstboot\n" in firstboot
    assert "ConditionPathExists=!/var/lib/appliance-install/firstboot.done\n" in firstboot
    # The package: a wheel of this checkout, its console script and its sources.
    local = card.with_name("card.whl")
    local.write_bytes(read_boot(card, f"appliance/{wheels[0]}"))
    with zipfile.ZipFile(local) as package:
        assert (
            package.read("appliance/config.py") == (REPO / "appliance" / "config.py").read_bytes()
        )
        entry_points = next(n for n in package.namelist() if n.endswith("entry_points.txt"))
        assert "appliance = appliance.cli:main" in package.read(entry_points).decode()


def assert_root_untouched(card: Path, original: Path) -> None:
    _, root, size = imaging.partition_offsets(original)
    assert sha256(card, start=root, length=size) == sha256(original, start=root, length=size)


def test_cloud_init_image_to_output(tmp_path: Path, images: dict[str, Path], inputs: Path) -> None:
    """The current style, with the package built from this checkout (no --package)."""
    source = images["cloud"]
    before = sha256(source)
    card = tmp_path / "kitchen.img"
    args = card_args(inputs, Path("unused"), wifi_ssid=SSID, wifi_psk_file=inputs / "psk",
                     wifi_country="GB", ssh_key=inputs / "id.pub", user="anna",
                     timezone="Europe/London", output=card)  # fmt: skip
    args = args[:6] + args[8:]  # no --package: scripts/flash builds it
    result = flash(source, *args)
    assert result.returncode == 0, result.stderr
    assert "first boot by cloud-init" in result.stdout
    assert sha256(source) == before
    assert card.stat().st_mode & 0o777 == 0o600  # it holds the key
    assert_bundle(card, credential=KEY)

    user_data = read_boot(card, "user-data").decode()
    assert user_data.startswith("#cloud-config\n")
    data = imaging.yaml_load(user_data)
    assert isinstance(data, dict)
    assert data["hostname"] == "kitchen" and data["timezone"] == "Europe/London"
    (user,) = data["users"]
    assert user["name"] == "anna" and user["ssh_authorized_keys"] == [PUBLIC_KEY]
    assert user["lock_passwd"] is True and data["ssh_pwauth"] is False
    # The hook: installs the unit that is on the card, enables it and starts it.
    unit = "/boot/firmware/appliance/appliance-firstboot.service"
    assert [
        "install",
        "-m",
        "0644",
        unit,
        "/etc/systemd/system/appliance-firstboot.service",
    ] in data["runcmd"]
    assert ["systemctl", "enable", "appliance-firstboot.service"] in data["runcmd"]
    assert ["systemctl", "start", "--no-block", "appliance-firstboot.service"] in data["runcmd"]
    assert boot_exists(card, unit.removeprefix("/boot/firmware/"))

    network = imaging.yaml_load(read_boot(card, "network-config").decode())
    assert isinstance(network, dict)
    wlan = network["network"]["wifis"]["wlan0"]
    assert wlan["regulatory-domain"] == "GB"
    assert wlan["access-points"] == {SSID: {"password": wpa_psk(PASSPHRASE, SSID)}}
    meta = imaging.yaml_load(read_boot(card, "meta-data").decode())
    assert isinstance(meta, dict) and meta["instance-id"].startswith("appliance-kitchen-")

    # Left as they were: cmdline.txt, config.txt, the root partition.
    assert read_boot(card, "cmdline.txt").decode() == imaging.CMDLINE
    assert read_boot(card, "config.txt").decode() == imaging.CONFIG_TXT
    assert_root_untouched(card, source)
    # The passphrase itself is nowhere on the card: only the key derived from it.
    assert PASSPHRASE.encode() not in card.read_bytes()


@pytest.mark.parametrize("boot_mount", ["/boot/firmware", "/boot"])
def test_firstrun_image_to_output(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path, boot_mount: str
) -> None:
    """The older style, from .img.xz (and from a /boot-mounted image), with a device token."""
    source = images["firstrun.xz"] if boot_mount == "/boot/firmware" else images["boot"]
    before = sha256(source)
    card = tmp_path / "hall.img"
    args = card_args(inputs, wheel, wifi_ssid=SSID, wifi_psk_file=inputs / "psk",
                     wifi_country="DE", ssh_key=inputs / "id.pub", output=card)  # fmt: skip
    args[2:4] = ["--device-token-file", inputs / "token"]
    result = flash(source, *args)
    assert result.returncode == 0, result.stderr
    assert "first boot by firstrun.sh" in result.stdout
    assert sha256(source) == before
    assert_bundle(card, credential=TOKEN, boot_mount=boot_mount)
    assert not boot_exists(card, "user-data")

    # cmdline.txt runs firstrun.sh once (then reboots); the Wi-Fi country stays after it.
    cmdline = read_boot(card, "cmdline.txt").decode()
    assert cmdline == (
        imaging.CMDLINE.strip() + " cfg80211.ieee80211_regdom=DE"
        f" systemd.run={boot_mount}/firstrun.sh systemd.run_success_action=reboot"
        " systemd.unit=kernel-command-line.target\n"
    )
    script = tmp_path / "firstrun.sh"
    script.write_bytes(read_boot(card, "firstrun.sh"))
    text = script.read_text()
    # The hook: installs the unit that is on the card and enables it; then the script goes.
    unit = f"{boot_mount}/appliance/appliance-firstboot.service"
    assert f"install -m 0644 {unit} /etc/systemd/system/appliance-firstboot.service\n" in text
    assert "systemctl enable appliance-firstboot.service\n" in text
    assert f"BOOT={boot_mount}\n" in text and 'rm -f "$BOOT/firstrun.sh"' in text
    assert f"psk={wpa_psk(PASSPHRASE, SSID)}" in text and PUBLIC_KEY in text
    assert PASSPHRASE not in text
    checked = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    assert_root_untouched(card, images["firstrun"] if boot_mount == "/boot/firmware" else source)


def test_device_write_verified(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    """A loop device over a file: asked first (model and size), written, read back."""
    source = images["cloud"]
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(128 << 20)
    with imaging.loop_device(backing) as device:
        result = flash(source, *card_args(inputs, wheel, device=device), answer="yes\n")
        assert result.returncode == 0, result.stderr
        assert (
            f"loop device on {backing}" in result.stdout and "134.2 MB (128.0 MiB)" in result.stdout
        )
        assert 'Type "yes" to go on' in result.stdout
        assert "wrote and verified" in result.stdout
        writing = [line for line in result.stderr.splitlines() if line.startswith("writing")]
        assert (
            writing and "MiB/s" in writing[-1] and "left" in writing[-1] and "100%" in writing[-1]
        )
        assert any(
            line.startswith("verifying") and "100%" in line for line in result.stderr.splitlines()
        )
        # Read from the device itself.
        assert_bundle(device, credential=KEY)
        assert read_boot(device, "user-data").startswith(b"#cloud-config\n")
        assert_root_untouched(device, source)
        size = source.stat().st_size
        zeros = hashlib.sha256(bytes((128 << 20) - size)).hexdigest()
        assert sha256(device, start=size) == zeros  # nothing written past the image


def test_made_image_written_as_is(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    """An image made with --output (or by a roster) goes to a card unchanged, verified."""
    made = tmp_path / "kitchen.img"
    assert flash(images["firstrun"], *card_args(inputs, wheel, output=made)).returncode == 0
    before = sha256(made)
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(128 << 20)
    with imaging.loop_device(backing) as device:
        refused = flash(made, "--as-is", "--device", device, "--hostname", "kitchen", "--yes")
        assert refused.returncode == 1 and "no --output and no card options" in refused.stderr
        result = flash(made, "--as-is", "--device", device, "--yes")
        assert result.returncode == 0, result.stderr
        assert "wrote and verified" in result.stdout
        assert sha256(device, length=made.stat().st_size) == before
    assert sha256(made) == before


def test_device_not_written_without_yes(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(128 << 20)
    before = sha256(backing)
    with imaging.loop_device(backing) as device:
        result = flash(images["cloud"], *card_args(inputs, wheel, device=device), answer="no\n")
        assert result.returncode == 1
        assert f"loop device on {backing}" in result.stdout and "128.0 MiB" in result.stdout
        assert "not written: the answer was not yes" in result.stderr
    assert sha256(backing) == before


def test_refuses_a_target_that_is_not_a_block_device(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    target = tmp_path / "card.bin"
    target.write_bytes(b"\0" * 4096)
    result = flash(images["cloud"], *card_args(inputs, wheel, device=target), "--yes")
    assert result.returncode == 1
    assert f"{target} is not a block device (a regular file)" in result.stderr
    assert "use --output FILE" in result.stderr
    assert target.read_bytes() == b"\0" * 4096


def test_refuses_a_mounted_target(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "photo.jpg").write_bytes(b"precious")
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(128 << 20)
    imaging.sh("mkfs.ext4", "-q", "-F", "-d", photos, backing)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with imaging.loop_device(backing) as device:
        # Read-only: the kernel writes nothing, so any change would be the script's.
        imaging.sh("mount", "-o", "ro", device, mountpoint)
        try:
            before = sha256(device)
            result = flash(images["cloud"], *card_args(inputs, wheel, device=device), "--yes")
            after = sha256(device)
        finally:
            imaging.sh("umount", mountpoint)
    assert result.returncode == 1
    assert f"{device} is mounted (at {mountpoint}): unmount it first" in result.stderr
    assert after == before


def test_refuses_a_target_too_small(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    backing = tmp_path / "card.bin"
    with backing.open("wb") as f:
        f.truncate(16 << 20)
    before = sha256(backing)
    with imaging.loop_device(backing) as device:
        # No --yes and no answer: refused before any question.
        result = flash(images["cloud"], *card_args(inputs, wheel, device=device))
    assert result.returncode == 1
    assert (
        f"{device} is too small: 16.8 MB (16.0 MiB), and the image needs 96.5 MB" in result.stderr
    )
    assert "Type" not in result.stdout
    assert sha256(backing) == before


def test_refuses_the_disk_the_system_runs_from(tmp_path: Path) -> None:
    """A disk holding a system mount point (here a loop device mounted as one) is refused."""
    backing = tmp_path / "disk.bin"
    with backing.open("wb") as f:
        f.truncate(16 << 20)
    imaging.sh("mkfs.ext4", "-q", "-F", backing)
    mountpoint = tmp_path / "usr"
    mountpoint.mkdir()
    with imaging.loop_device(backing) as device:
        imaging.sh("mount", device, mountpoint)
        try:
            with pytest.raises(flash_target.TargetError) as refused:
                flash_target.inspect_target(device, system_mounts=(str(mountpoint),))
            # With the real list of system mount points, it is only a mounted disk.
            with pytest.raises(flash_target.TargetError) as busy:
                flash_target.inspect_target(device)
        finally:
            imaging.sh("umount", mountpoint)
        target = flash_target.inspect_target(device)
    assert f"holds {mountpoint} of the running system" in str(refused.value)
    assert "is mounted" in str(busy.value)
    assert target.size == 16 << 20


def test_refuses_a_missing_credential(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    card = tmp_path / "card.img"
    args = card_args(inputs, wheel, output=card)
    args[3] = inputs / "no-such-key"
    result = flash(images["cloud"], *args)
    assert result.returncode == 1
    assert f"--api-key-file {inputs / 'no-such-key'}: no such file" in result.stderr
    del args[2:4]
    result = flash(images["cloud"], *args)
    assert result.returncode == 1
    assert "no credential: give --api-key-file FILE" in result.stderr
    assert not card.exists() and list(tmp_path.glob("card.img*")) == []


def test_refuses_bad_options_all_at_once(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    (inputs / "bad.toml").write_text('[audio]\nmin_turn_ms = "short"\napi_key = "sk-nope"\n')
    (inputs / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    card = tmp_path / "card.img"
    args = card_args(inputs, wheel, config=inputs / "bad.toml", hostname="bad_name",
                     wifi_ssid=SSID, ssh_key=inputs / "id", output=card)  # fmt: skip
    result = flash(images["cloud"], *args)
    assert result.returncode == 1
    for problem in (
        "--hostname 'bad_name': letters, digits and hyphens only",
        "Wi-Fi needs all of --wifi-ssid, --wifi-psk-file and --wifi-country",
        "this is a private key; give the .pub file",
        "audio.min_turn_ms",
        "api_key",
    ):
        assert problem in result.stderr, result.stderr
    assert not card.exists()


@pytest.mark.parametrize(
    "kind", ["missing", "folder", "truncated", "not-xz", "not-a-disk", "too-old"]
)
def test_refuses_a_bad_image(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path, kind: str
) -> None:
    compressed = images["firstrun.xz"].read_bytes()
    image = tmp_path / "raspios.img.xz"
    expected = {
        "missing": f"{image}: no such file",
        "folder": f"{image}: not a file",
        "truncated": f"{image}: a corrupt .xz file (it ends too early): download it again",
        "not-xz": f"{image}: not an .xz file",
        "not-a-disk": "not a disk image (no partition table)",
        "too-old": "Raspbian GNU/Linux 11 (bullseye) has Python 3.9; the appliance needs",
    }[kind]
    if kind == "folder":
        image.mkdir()
    elif kind == "truncated":
        image.write_bytes(compressed[: len(compressed) // 2])
    elif kind == "not-xz":
        image.write_bytes(b"PK\x03\x04 a zip file, say")
    elif kind == "not-a-disk":
        image = tmp_path / "random.img"
        image.write_bytes(os.urandom(1 << 20))
    elif kind == "too-old":
        image = images["old"]
    before = sha256(image) if image.is_file() else None
    card = tmp_path / "card.img"
    result = flash(image, *card_args(inputs, wheel, output=card))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
    assert list(tmp_path.glob("card.img*")) == []
    assert (sha256(image) if image.is_file() else None) == before


def test_refuses_an_image_customized_already(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    first = tmp_path / "first.img"
    assert flash(images["firstrun"], *card_args(inputs, wheel, output=first)).returncode == 0
    result = flash(first, *card_args(inputs, wheel, output=tmp_path / "second.img"))
    assert result.returncode == 1
    assert "holds an appliance folder already: start from the original" in result.stderr


def test_roster_makes_one_image_per_row(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "hall.key").write_text("sk-hall-0123456789abcdef\n")
    (keys / "porch.token").write_text("dt-porch-0123456789abcdef\n")
    roster = keys / "devices.csv"
    roster.write_text(
        "hostname,wifi_ssid,wifi_psk_file,api_key_file,device_token_file\n"
        f"kitchen,{SSID},{inputs / 'psk'},,\n"  # the command line's key
        "hall,,,hall.key,\n"  # relative to the roster
        "porch,,,,porch.token\n"
        "garage,,,missing.key,\n"  # bad: no such key file
        "bad_name,,,,\n"  # bad: not a hostname
        "Hall,,,,\n"  # bad: the same name again
    )
    out = tmp_path / "cards"
    out.mkdir()
    before = sha256(images["cloud"])
    args = [
        *("--config", inputs / "appliance.toml", "--api-key-file", inputs / "key"),
        *("--wifi-country", "GB", "--package", wheel, "--roster", roster, "--output-dir", out),
    ]
    result = flash(images["cloud"], *args)
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hall.img", "kitchen.img", "porch.img"]
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    assert sha256(images["cloud"]) == before
    table = result.stdout[result.stdout.index("line  hostname") :].split("\n\n")[0]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert len(rows) == 6, table
    assert (
        "ok: api key, Wi-Fi 'Home Net' (GB)" in rows["2"] and str(out / "kitchen.img") in rows["2"]
    )
    assert "ok: api key" in rows["3"] and "ok: device token" in rows["4"]
    assert "FAILED: --api-key-file" in rows["5"] and "missing.key: no such file" in rows["5"]
    assert "FAILED: --hostname 'bad_name'" in rows["6"]
    assert "FAILED: hostname 'Hall' is on line 3 already" in rows["7"]
    assert "3 of 6 images made, 3 failed" in result.stdout
    # Each card its own name, credential and network.
    assert_bundle(out / "kitchen.img", credential=KEY)
    assert_bundle(out / "hall.img", credential="sk-hall-0123456789abcdef")
    assert_bundle(out / "porch.img", credential="dt-porch-0123456789abcdef")
    for name in ("kitchen", "hall", "porch"):
        data = imaging.yaml_load(read_boot(out / f"{name}.img", "user-data").decode())
        assert isinstance(data, dict) and data["hostname"] == name
    assert boot_exists(out / "kitchen.img", "network-config")
    network = read_boot(out / "hall.img", "network-config").decode()
    assert network == imaging.STOCK_NETWORK_CONFIG  # no Wi-Fi for the hall: left as it was


def test_says_which_tools_are_missing(
    tmp_path: Path, images: dict[str, Path], inputs: Path, wheel: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3"):
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    card = tmp_path / "card.img"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = flash(images["cloud"], *card_args(inputs, wheel, output=card), env=env)
    assert result.returncode == 1
    assert "needs mcopy, mtype, mdir, mmd (Debian packages: mtools)" in result.stderr
    assert "sudo apt-get install -y mtools" in result.stderr
    assert not card.exists()


def test_readme_section_names_real_options() -> None:
    """Every option the README's "Installing devices" names is one the scripts take."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Installing devices\n", 1)[1].split("\n## ", 1)[0]
    helps = ""
    for script in ("flash", "install"):
        shown = subprocess.run(
            [str(REPO / "scripts" / script), "--help"], capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        helps += shown.stdout
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", section))
    assert named, section
    unknown = sorted(option for option in named - {"--system-site-packages"} if option not in helps)
    assert unknown == []
    columns = re.search(r"The columns are .*?: (.*?)\. An empty", section, re.S)
    assert columns is not None
    listed = re.findall(r"`(\w+)`", columns.group(1))
    assert tuple(listed) == imaging.script_module("flash_roster").COLUMNS


def test_the_installers_own_code_is_checked() -> None:
    """The scripts: shellcheck-clean shell, and Python that mypy --strict accepts."""
    shell = [REPO / "scripts" / "flash", REPO / "scripts" / "install"]
    checked = subprocess.run(["shellcheck", *map(str, shell)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    modules = [
        "bundle.py",
        "device_install.py",
        "flash.py",
        "flash_card.py",
        "flash_image.py",
        "flash_roster.py",
        "flash_settings.py",
        "flash_target.py",
    ]
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *modules],
        cwd=imaging.SCRIPTS_LIB,
        env={**os.environ, "MYPYPATH": str(REPO), "MYPY_CACHE_DIR": str(REPO / ".mypy_cache")},
        capture_output=True,
        text=True,
    )
    assert typed.returncode == 0, typed.stdout
