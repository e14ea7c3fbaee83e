"""Writing an image to a card: refusals first, then a progress bar, then a read-back.

A target is refused, with nothing written, if it is not a block device, is a
partition rather than a whole disk, holds the running system, is mounted or
otherwise in use, or is smaller than the image.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

CHUNK_BYTES = 4 << 20
BLKFLSBUF = 0x1261
"""ioctl: drop the device's buffer cache, so the read-back reads the card, not memory."""
BLKRRPART = 0x125F
"""ioctl: make the kernel read the new partition table."""
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "/home")
"""Mount points that make a disk the one the running system lives on."""


class TargetError(Exception):
    """The target is refused, or the write failed; the message says why."""


def human(size: int) -> str:
    """``31.9 GB (29.7 GiB)``: as a card's label says it, and as tools count it."""
    if size < 10**9:
        return f"{size / 1e6:.1f} MB ({size / (1 << 20):.1f} MiB)"
    return f"{size / 1e9:.1f} GB ({size / (1 << 30):.1f} GiB)"


@dataclass(frozen=True)
class Target:
    """A whole-disk block device that passed the checks.

    Attributes:
        path: As given (``/dev/sdb``).
        name: Its kernel name (``sdb``).
        size: In bytes.
        model: Vendor and model, or what backs a loop device.
        removable: The kernel's removable flag.
    """

    path: Path
    name: str
    size: int
    model: str
    removable: bool

    def describe(self) -> str:
        kind = ", removable" if self.removable else ""
        return f"{self.path} ({self.name}): {self.model}, {human(self.size)}{kind}"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _devnum(text: str) -> tuple[int, int] | None:
    major, sep, minor = text.partition(":")
    return (int(major), int(minor)) if sep and major.isdigit() and minor.isdigit() else None


def _rdev(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(info.st_mode):
        return None
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def mounts(mountinfo: str) -> list[tuple[set[tuple[int, int]], str]]:
    """(device numbers, mount point) of every mount in /proc/self/mountinfo's text."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or " - " not in line:
            continue
        devices = set()
        if (number := _devnum(fields[2])) is not None:
            devices.add(number)
        source = line.split(" - ", 1)[1].split()[1]
        if source.startswith("/dev/") and (number := _rdev(source)) is not None:
            devices.add(number)
        point = fields[4].replace("\\040", " ")
        found.append((devices, point))
    return found


def _swaps(swaps: str) -> set[tuple[int, int]]:
    numbers = set()
    for line in swaps.splitlines()[1:]:
        if line.split() and (number := _rdev(line.split()[0])) is not None:
            numbers.add(number)
    return numbers


def inspect_target(
    path: Path,
    *,
    system_mounts: Iterable[str] = SYSTEM_MOUNTS,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    swaps: Path = Path("/proc/swaps"),
) -> Target:
    """Checks that ``path`` is a whole disk, not the system's, and in use by nobody.

    Raises:
        TargetError: refused; the message says why and what to do.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TargetError(f"{path}: no such device") from None
    if not stat.S_ISBLK(info.st_mode):
        kind = "a regular file" if stat.S_ISREG(info.st_mode) else "not a device"
        raise TargetError(
            f"{path} is not a block device ({kind}); to make an image file, use --output FILE"
        )
    number = (os.major(info.st_rdev), os.minor(info.st_rdev))
    sysfs = Path(f"/sys/dev/block/{number[0]}:{number[1]}").resolve()
    if (sysfs / "partition").exists():
        raise TargetError(f"{path} is a partition; give the whole disk (/dev/{sysfs.parent.name})")
    parts = [child for child in sysfs.iterdir() if (child / "partition").exists()]
    devices = {number}
    for part in parts:
        if (part_number := _devnum(_read(part / "dev"))) is not None:
            devices.add(part_number)
    table = mounts(mountinfo.read_text())
    system = set(system_mounts)
    for numbers, point in table:
        if numbers & devices and point in system:
            raise TargetError(
                f"{path} holds {point} of the running system: it is the disk this "
                "computer runs from, not a card"
            )
    for numbers, point in table:
        if numbers & devices:
            raise TargetError(
                f"{path} is mounted (at {point}): unmount it first, e.g. "
                f"sudo umount {point!r}, then run this again"
            )
    if _swaps(_read(swaps)) & devices:
        raise TargetError(f"{path} is in use as swap: swapoff it first")
    for node in (sysfs, *parts):
        holders = sorted(h.name for h in (node / "holders").glob("*"))
        if holders:
            raise TargetError(
                f"{path} is in use by {', '.join(holders)} (LVM, RAID or encryption): free it first"
            )
    size = int(_read(sysfs / "size") or 0) * 512
    backing = _read(sysfs / "loop" / "backing_file")
    if backing:
        model = f"loop device on {backing}"
    else:
        vendor_model = f"{_read(sysfs / 'device' / 'vendor')} {_read(sysfs / 'device' / 'model')}"
        model = vendor_model.strip() or "unknown model"
    return Target(path, sysfs.name, size, model, _read(sysfs / "removable") == "1")


def check_fits(target: Target, image_size: int) -> None:
    """Refuses a target smaller than the image."""
    if image_size > target.size:
        raise TargetError(
            f"{target.path} is too small: {human(target.size)}, and the image needs "
            f"{human(image_size)}; use a bigger card"
        )


def confirm(target: Target, what: str, *, answers: TextIO, out: TextIO) -> bool:
    """Shows the target and asks; True only for an answer of y or yes."""
    print(f"About to write {what} to", file=out)
    print(f"  {target.describe()}", file=out)
    print("Everything on it will be lost.", file=out)
    print('Type "yes" to go on: ', end="", file=out, flush=True)
    answer = answers.readline()
    if not answers.isatty():
        print(answer.strip(), file=out)  # the answer, for the record of a piped run
    return answer.strip().lower() in ("y", "yes")


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A progress bar with the rate and the time left, on one line of a terminal.

    On anything else (a log, a pipe) it prints a line every ``every_s`` seconds
    and the last one.
    """

    def __init__(self, label: str, total: int, out: TextIO, *, every_s: float = 5.0) -> None:
        self.label = label
        self.total = total
        self.out = out
        self.done = 0
        self.tty = out.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.started = time.monotonic()
        self.shown = self.started

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        fraction = self.done / self.total if self.total else 1.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * int(fraction * 30)
        return (
            f"{self.label} [{bar:<30}] {fraction * 100:3.0f}% "
            f"{self.done / (1 << 20):.1f}/{self.total / (1 << 20):.1f} MiB "
            f"{rate / (1 << 20):.1f} MiB/s {_clock(left)} left"
        )

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.shown >= self.every_s:
            self.shown = now
            self._show(self.line(now), final=False)

    def finish(self) -> None:
        self._show(self.line(time.monotonic()), final=True)

    def _show(self, text: str, *, final: bool) -> None:
        if self.tty:
            print(f"\r{text}", end="\n" if final else "", file=self.out, flush=True)
        else:
            print(text, file=self.out, flush=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_and_verify(image: Path, target: Target, *, out: TextIO = sys.stderr) -> None:
    """Writes the image to the start of the target, then reads it back and compares.

    Raises:
        TargetError: too small, busy, a write error, or a read-back that differs.
    """
    size = image.stat().st_size
    check_fits(target, size)
    try:
        # O_EXCL on a block device: refused (EBUSY) while anything has it mounted.
        fd = os.open(target.path, os.O_WRONLY | os.O_EXCL)
    except OSError as exc:
        raise TargetError(f"cannot open {target.path} for writing: {exc.strerror}") from None
    try:
        progress = Progress("writing  ", size, out)
        with image.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                _write_all(fd, chunk)
                progress.update(len(chunk))
        os.fsync(fd)
        progress.finish()
        fcntl.ioctl(fd, BLKFLSBUF)
    except OSError as exc:
        raise TargetError(f"writing {target.path} failed: {exc.strerror}") from None
    finally:
        os.close(fd)
    _verify(image, target, size, out)
    fd = os.open(target.path, os.O_RDONLY)
    # A loop device without partition scanning refuses this: the card is right all the same.
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, BLKRRPART)
    os.close(fd)


def _verify(image: Path, target: Target, size: int, out: TextIO) -> None:
    progress = Progress("verifying", size, out)
    fd = os.open(target.path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with image.open("rb") as source, os.fdopen(os.dup(fd), "rb", buffering=0) as device:
            offset = 0
            while expected := source.read(CHUNK_BYTES):
                found = device.read(len(expected))
                if found != expected:
                    at = offset + next(
                        (
                            i
                            for i, (a, b) in enumerate(zip(expected, found, strict=False))
                            if a != b
                        ),
                        min(len(found), len(expected)),
                    )
                    raise TargetError(
                        f"verification failed: {target.path} differs from the image at byte "
                        f"{at}; the card may be failing: try another"
                    )
                offset += len(expected)
                progress.update(len(expected))
    finally:
        os.close(fd)
    progress.finish()
