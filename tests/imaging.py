"""Raspberry-Pi-OS-shaped disk images, built here, and ways into them without mounting.

An image has an MBR with a FAT32 boot partition at sector 8192 (cmdline.txt,
config.txt, and for the cloud-init style the seed files) and an ext4 root
made with ``mke2fs -d`` (/etc/fstab naming the boot mount point,
/etc/os-release, an empty /usr/lib/python3.N, and /etc/cloud for
cloud-init), as the real images are laid out. mtools reads the FAT; the
kernel here cannot mount it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from unit_file import REPO

SCRIPTS_LIB = REPO / "scripts" / "lib"
if str(SCRIPTS_LIB) not in sys.path:
    sys.path.insert(0, str(SCRIPTS_LIB))


def script_module(name: str) -> ModuleType:
    """A module of scripts/lib (they import each other by plain name, as scripts)."""
    return importlib.import_module(name)


BOOT_START = 8192
BOOT_SECTORS = 131072  # 64 MiB
ROOT_START = BOOT_START + BOOT_SECTORS
ROOT_BYTES = 24 << 20
IMAGE_BYTES = ROOT_START * 512 + ROOT_BYTES
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)
CONFIG_TXT = (
    "# For more options and information see the Raspberry Pi documentation\ndtparam=audio=on\n"
)
STOCK_USER_DATA = "#cloud-config\n# The image's own, replaced by the customization.\n"
STOCK_NETWORK_CONFIG = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"


def sh(
    *argv: str | Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a command that must succeed; returns its output."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, input=input, env=env, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result


def build_image(
    path: Path,
    *,
    cloud_init: bool,
    boot_mount: str = "/boot/firmware",
    python: str = "3.11",
    release: str = "Debian GNU/Linux 12 (bookworm)",
) -> Path:
    """Builds a Raspberry-Pi-OS-shaped image at ``path``; returns it."""
    tree = path.with_name(path.name + ".root")
    for folder in ("etc", f"usr/lib/python{python}", boot_mount.lstrip("/"), "home"):
        (tree / folder).mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "fstab").write_text(
        "proc /proc proc defaults 0 0\n"
        f"PARTUUID=5e3da3da-01 {boot_mount} vfat defaults 0 2\n"
        "PARTUUID=5e3da3da-02 / ext4 defaults,noatime 0 1\n"
    )
    (tree / "usr" / "lib" / "os-release").write_text(f'PRETTY_NAME="{release}"\nID=debian\n')
    (tree / "etc" / "os-release").symlink_to("../usr/lib/os-release")  # as Debian has it
    (tree / "etc" / "hostname").write_text("raspberrypi\n")
    (tree / f"usr/lib/python{python}" / "os.py").write_text("# stands in for the stdlib\n")
    if cloud_init:
        (tree / "etc" / "cloud").mkdir()
        (tree / "etc" / "cloud" / "cloud.cfg").write_text("datasource_list: [NoCloud]\n")
    with path.open("wb") as f:
        f.truncate(IMAGE_BYTES)
    layout = (
        "label: dos\nunit: sectors\n"
        f"start={BOOT_START}, size={BOOT_SECTORS}, type=c, bootable\n"
        f"start={ROOT_START}, type=83\n"
    )
    sh("sfdisk", "--quiet", path, input=layout)
    sh("mkfs.vfat", "-F", "32", "-s", "1", "-n", "bootfs", "-S", "512", "-h", str(BOOT_START),
       f"--offset={BOOT_START}", path, str(BOOT_SECTORS // 2))  # fmt: skip
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "rootfs", "-d", tree,
       "-E", f"root_owner=0:0,offset={ROOT_START * 512}", path, f"{ROOT_BYTES >> 10}k")  # fmt: skip
    files = {"cmdline.txt": CMDLINE, "config.txt": CONFIG_TXT, "kernel8.img": "kernel\n" * 100}
    if cloud_init:
        files |= {
            "user-data": STOCK_USER_DATA,
            "meta-data": "instance-id: rpios-image\n",
            "network-config": STOCK_NETWORK_CONFIG,
        }
    for name, text in files.items():
        local = tree / name
        local.write_text(text)
        sh("mcopy", "-i", f"{path}@@{BOOT_START * 512}", local, f"::{name}", env=MTOOLS_ENV)
    return path


def partition_offsets(image: Path) -> tuple[int, int, int]:
    """(boot offset, root offset, root size) in bytes, as sfdisk reads the table."""
    table = json.loads(sh("sfdisk", "--json", image).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    boot, root = table["partitions"][:2]
    return boot["start"] * sector, root["start"] * sector, root["size"] * sector


def read_boot(image: Path, name: str) -> bytes:
    """A file of the boot partition, through mtools."""
    boot, _, _ = partition_offsets(image)
    result = subprocess.run(
        ["mtype", "-i", f"{image}@@{boot}", f"::{name}"],
        capture_output=True,
        env=MTOOLS_ENV,
        check=False,
    )
    assert result.returncode == 0, f"{name}: {result.stderr.decode()}"
    return result.stdout


def boot_names(image: Path, folder: str = "") -> set[str]:
    """The names in a folder of the boot partition."""
    boot, _, _ = partition_offsets(image)
    listing = sh("mdir", "-b", "-i", f"{image}@@{boot}", f"::{folder}", env=MTOOLS_ENV).stdout
    return {line.rstrip("/").rsplit("/", 1)[-1] for line in listing.split()}


def boot_exists(image: Path, name: str) -> bool:
    boot, _, _ = partition_offsets(image)
    result = subprocess.run(
        ["mdir", "-b", "-i", f"{image}@@{boot}", f"::{name}"],
        capture_output=True,
        env=MTOOLS_ENV,
        check=False,
    )
    return result.returncode == 0


def sha256(path: Path, *, start: int = 0, length: int | None = None) -> str:
    """The SHA-256 of a file or device, or of ``length`` bytes of it from ``start``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            block = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


@contextlib.contextmanager
def loop_device(backing: Path) -> Iterator[Path]:
    """A loop device over ``backing`` (needs root), detached afterwards."""
    device = Path(sh("losetup", "--find", "--show", backing).stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=False)


def yaml_load(text: str) -> object:
    """Parses YAML with PyYAML (Debian's python3-yaml, cloud-init's own parser)."""
    result = sh(
        "/usr/bin/python3",
        "-c",
        "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        input=text,
    )
    return json.loads(result.stdout)


def build_wheel(dest: Path, *, version: str | None = None) -> Path:
    """The appliance's wheel, built by scripts/flash's own builder; ``version`` patched in."""
    import shutil
    import tempfile

    import bundle

    if version is None:
        return bundle.build_wheel(dest)
    with tempfile.TemporaryDirectory(prefix="appliance-wheel-") as scratch:
        source = Path(scratch)
        for name in bundle.SOURCES:
            item = REPO / name
            if item.is_dir():
                shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(item, source / name)
        init = source / "appliance" / "__init__.py"
        text = init.read_text()
        assert '__version__ = "' in text
        init.write_text(text.split('__version__ = "')[0] + f'__version__ = "{version}"\n')
        return bundle.build_wheel(dest, source=source)
