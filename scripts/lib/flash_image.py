"""A Raspberry Pi OS image, read and edited without mounting anything.

The partition table is read here (MBR, as Raspberry Pi OS images have); the
boot partition (FAT) is read and written with mtools at its offset, and the
root partition (ext4) is only read, with debugfs. The kernel need not know
FAT, and no loop device is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SECTOR_BYTES = 512
FAT_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E})
LINUX_TYPE = 0x83
GPT_PROTECTIVE = 0xEE

CLOUD_INIT = "cloud-init"
"""Current Raspberry Pi OS: cloud-init reads ``user-data`` and friends from the boot partition."""
FIRSTRUN = "firstrun"
"""Older Raspberry Pi OS: ``cmdline.txt`` runs ``firstrun.sh`` once with ``systemd.run=``."""
CLOUD_INIT_SEEDS = ("user-data", "meta-data", "network-config")

MIN_PYTHON = (3, 11)
"""The appliance needs this Python on the device (Raspberry Pi OS bookworm has 3.11)."""

TOOLS = {
    "mcopy": "mtools",
    "mtype": "mtools",
    "mdir": "mtools",
    "mmd": "mtools",
    "debugfs": "e2fsprogs",
}
"""The programs used here, and the Debian packages they come in."""


class ImageError(Exception):
    """The image cannot be used; the message says why, in plain words."""


def missing_tools() -> dict[str, str]:
    """The programs of :data:`TOOLS` not found on PATH (or in /sbin), with their packages."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return {tool: package for tool, package in TOOLS.items() if not shutil.which(tool, path=path)}


def _tool(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path) or name


@dataclass(frozen=True)
class Partition:
    """One primary partition: its number (1-4), MBR type, offset and size in bytes."""

    number: int
    type_id: int
    start: int
    size: int


def partitions(image: Path) -> list[Partition]:
    """The primary partitions of an MBR-partitioned image.

    Raises:
        ImageError: no MBR, or a GPT disk.
    """
    with image.open("rb") as f:
        mbr = f.read(SECTOR_BYTES)
    if len(mbr) < SECTOR_BYTES or mbr[510:512] != b"\x55\xaa":
        raise ImageError(f"{image}: not a disk image (no partition table)")
    found = []
    for number in range(1, 5):
        entry = mbr[446 + 16 * (number - 1) : 446 + 16 * number]
        type_id = entry[4]
        start, sectors = struct.unpack("<II", entry[8:16])
        if type_id == GPT_PROTECTIVE:
            raise ImageError(f"{image}: a GPT disk, and Raspberry Pi OS images are MBR")
        if type_id and sectors:
            found.append(Partition(number, type_id, start * SECTOR_BYTES, sectors * SECTOR_BYTES))
    return found


class Fat:
    """The FAT boot partition inside an image file (or on a device), through mtools."""

    def __init__(self, image: Path, partition: Partition) -> None:
        self.image = image
        self.partition = partition
        self._drive = f"{image}@@{partition.start}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # MTOOLS_SKIP_CHECK: images made by other tools need not match mtools' taste in geometry.
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        result = subprocess.run(
            [_tool(args[0]), "-i", self._drive, *args[1:]],
            capture_output=True,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            raise ImageError(
                f"{self.image}: boot partition: {args[0]} failed: {detail[-1] if detail else ''}"
            )
        return result

    def exists(self, name: str) -> bool:
        """True if ``name`` (a path from the partition's root) is there."""
        return self._run("mdir", "-b", f"::{name}", check=False).returncode == 0

    def read(self, name: str) -> bytes:
        """The content of the file ``name``."""
        result = self._run("mtype", f"::{name}", check=False)
        if result.returncode != 0:
            raise ImageError(f"{self.image}: boot partition has no {name}")
        return result.stdout

    def write(self, name: str, data: bytes) -> None:
        """Writes the file ``name``, replacing it if it is there."""
        with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
            local = Path(scratch) / "file"
            local.write_bytes(data)
            self.put(local, name)

    def put(self, local: Path, name: str) -> None:
        """Copies the local file ``local`` to ``name``, replacing it if it is there."""
        self._run("mcopy", "-o", "-D", "o", str(local), f"::{name}")

    def mkdir(self, name: str) -> None:
        """Makes the folder ``name``."""
        self._run("mmd", f"::{name}")


class Root:
    """The ext4 root partition inside an image file, read-only, through debugfs."""

    def __init__(self, image: Path, partition: Partition) -> None:
        self.image = image
        self.partition = partition

    def _debugfs(self, request: str) -> tuple[bytes, str]:
        result = subprocess.run(
            [_tool("debugfs"), "-R", request, f"{self.image}?offset={self.partition.start}"],
            capture_output=True,
            check=False,
        )
        errors = result.stderr.decode(errors="replace")
        lines = [line for line in errors.splitlines() if not line.startswith("debugfs ")]
        if result.returncode != 0 or any("Bad magic" in line for line in lines):
            raise ImageError(f"{self.image}: cannot read the root partition (ext4): {errors}")
        return result.stdout, "\n".join(lines)

    def read(self, path: str) -> str | None:
        """The text of the file at ``path``, or None if there is none."""
        data, errors = self._debugfs(f"cat {path}")
        return None if "not found" in errors else data.decode(errors="replace")

    def exists(self, path: str) -> bool:
        """True if something is at ``path``."""
        _, errors = self._debugfs(f"stat {path}")
        return "not found" not in errors

    def listdir(self, path: str) -> list[str]:
        """The names in the folder ``path`` (empty if there is no such folder)."""
        data, errors = self._debugfs(f"ls -p {path}")
        if "not found" in errors:
            return []
        # -p: one "/inode/mode/uid/gid/name/size/" line per entry
        return [line.split("/")[5] for line in data.decode().splitlines() if line.count("/") >= 6]


@dataclass(frozen=True)
class Layout:
    """What an image is, as far as customizing it goes.

    Attributes:
        boot: The FAT boot partition.
        root: The ext4 root partition.
        style: :data:`CLOUD_INIT` or :data:`FIRSTRUN`.
        boot_mount: Where the system mounts the boot partition (``/boot/firmware``).
        release: The system's name, from ``/etc/os-release``.
    """

    boot: Partition
    root: Partition
    style: str
    boot_mount: str
    release: str


def _os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _python_version(root: Root) -> tuple[int, int] | None:
    versions = [
        (3, int(match.group(1)))
        for name in root.listdir("/usr/lib")
        if (match := re.fullmatch(r"python3\.(\d+)", name))
    ]
    return max(versions) if versions else None


def _boot_mount(root: Root) -> str:
    fstab = root.read("/etc/fstab") or ""
    for line in fstab.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "vfat":
            return fields[1]
    return "/boot/firmware" if root.exists("/boot/firmware") else "/boot"


def inspect(image: Path) -> Layout:
    """Finds the partitions, the first-boot style and the boot mount point of an image.

    Raises:
        ImageError: it is not a Raspberry Pi OS image, or one too old, or it
            was customized already.
    """
    parts = partitions(image)
    boot = next((p for p in parts if p.type_id in FAT_TYPES), None)
    root = next((p for p in parts if p.type_id == LINUX_TYPE), None)
    if boot is None or root is None:
        raise ImageError(
            f"{image}: not a Raspberry Pi OS image (it needs a FAT boot partition and "
            "a Linux root partition)"
        )
    fat = Fat(image, boot)
    for name in ("cmdline.txt", "config.txt"):
        if not fat.exists(name):
            raise ImageError(
                f"{image}: not a Raspberry Pi OS image (no {name} on its boot partition)"
            )
    if fat.exists("appliance"):
        raise ImageError(
            f"{image}: its boot partition holds an appliance folder already: "
            "start from the original Raspberry Pi OS image"
        )
    cmdline = fat.read("cmdline.txt").decode(errors="replace")
    if "systemd.run=" in cmdline:
        raise ImageError(
            f"{image}: cmdline.txt runs a first-boot script already (systemd.run=): "
            "start from the original Raspberry Pi OS image"
        )
    fs = Root(image, root)
    # /etc/os-release is a symlink to it, and debugfs does not follow a last symlink.
    os_release = fs.read("/usr/lib/os-release") or fs.read("/etc/os-release") or ""
    release = _os_release(os_release).get("PRETTY_NAME", "unknown system")
    python = _python_version(fs)
    if python is None or python < MIN_PYTHON:
        found = "no Python 3" if python is None else f"Python {python[0]}.{python[1]}"
        raise ImageError(
            f"{image}: {release} has {found}; the appliance needs Python 3.11 or newer "
            "(Raspberry Pi OS bookworm or newer)"
        )
    cloud = any(fat.exists(name) for name in CLOUD_INIT_SEEDS) or fs.exists("/etc/cloud/cloud.cfg")
    return Layout(boot, root, CLOUD_INIT if cloud else FIRSTRUN, _boot_mount(fs), release)
