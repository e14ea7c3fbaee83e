"""scripts/flash: customizes a Raspberry Pi OS image for the appliance, and writes it to a card.

The boot partition of a copy of the image gets the appliance's bundle (the
package, the installer, the units, the config and the credential) in
``appliance/``, and the image's own first-boot mechanism (cloud-init, or
firstrun.sh on older releases) is told to set the name, login, Wi-Fi and
time zone and to enable appliance-firstboot.service, which installs the
appliance once the network is up. The input image is only ever read.
"""

from __future__ import annotations

import argparse
import errno
import lzma
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import bundle
import flash_card
import flash_image
import flash_roster
import flash_target
from flash_image import CLOUD_INIT, Fat, ImageError, Layout
from flash_settings import Card, CardOptions, check_card

PROG = "scripts/flash"
XZ_MAGIC = b"\xfd7zXZ\x00"
COPY_CHUNK = 4 << 20


class Refused(Exception):
    """A refusal: the message says why, and nothing was written."""


@dataclass(frozen=True)
class Base:
    """The image to customize, read once: a plain image file and what it is."""

    path: Path
    layout: Layout
    wheel: Path


def say(message: str, out: TextIO = sys.stdout) -> None:
    print(f"flash: {message}", file=out, flush=True)


def unpack(image: Path, dest: Path, *, out: TextIO) -> Path:
    """A plain copy of the image at ``dest``: decompressed if it is .xz. Reads ``image`` only.

    Raises:
        ImageError: it cannot be read, or is not a valid .xz file.
    """
    if not image.exists():
        raise ImageError(f"{image}: no such file")
    if not image.is_file():
        raise ImageError(f"{image}: not a file")
    try:
        with image.open("rb") as f:
            magic = f.read(len(XZ_MAGIC))
    except OSError as exc:
        raise ImageError(f"{image}: cannot read it: {exc.strerror}") from None
    compressed = magic == XZ_MAGIC
    if image.name.endswith(".xz") and not compressed:
        raise ImageError(
            f"{image}: not an .xz file (it does not start like one): download it again"
        )
    if image.name.endswith((".zip", ".gz", ".7z")):
        raise ImageError(f"{image}: unpack it first; scripts/flash takes .img and .img.xz")
    total = image.stat().st_size
    progress = flash_target.Progress("unpacking" if compressed else "copying  ", total, out)
    try:
        with ExitStack() as stack:
            raw = stack.enter_context(image.open("rb"))
            source = stack.enter_context(lzma.open(raw)) if compressed else raw
            # Mode 0600 from the start: the image is about to hold the credential.
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            target = stack.enter_context(os.fdopen(fd, "wb"))
            while True:
                before = raw.tell()
                chunk = source.read(COPY_CHUNK)
                if not chunk:
                    break
                target.write(chunk)
                progress.update(raw.tell() - before)
    except (lzma.LZMAError, EOFError) as exc:
        dest.unlink(missing_ok=True)
        reason = "it ends too early" if isinstance(exc, EOFError) else str(exc)
        raise ImageError(f"{image}: a corrupt .xz file ({reason}): download it again") from None
    except OSError as exc:
        dest.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ImageError(
                f"no room to unpack {image.name} in {dest.parent}: it needs about the "
                "unpacked image's size there (for --device, TMPDIR chooses the folder)"
            ) from None
        raise ImageError(f"{image}: cannot read it: {exc.strerror}") from None
    progress.finish()
    return dest


def customize(base: Base, image: Path, card: Card) -> None:
    """Writes the appliance's bundle and the first-boot files into ``image``'s boot partition."""
    layout = base.layout
    fat = Fat(image, layout.boot)
    unit = flash_card.firstboot_unit(layout.boot_mount)
    with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
        files = bundle.assemble(
            Path(scratch) / "bundle",
            wheel=base.wheel,
            config_text=card.config_text,
            credential=card.credential.value.reveal(),
            extra={flash_card.FIRSTBOOT_NAME: unit},
        )
        fat.mkdir(flash_card.BUNDLE_DIR)
        for file in files:
            fat.put(file, f"{flash_card.BUNDLE_DIR}/{file.name}")
    if layout.style == CLOUD_INIT:
        fat.write("user-data", flash_card.user_data(card, layout.boot_mount).encode())
        fat.write("meta-data", flash_card.meta_data(card).encode())
        if card.wifi is not None:
            fat.write("network-config", flash_card.network_config(card.wifi).encode())
    else:
        cmdline = fat.read("cmdline.txt").decode()
        fat.write("firstrun.sh", flash_card.firstrun_sh(card, layout.boot_mount).encode())
        fat.write(
            "cmdline.txt",
            flash_card.firstrun_cmdline(cmdline, layout.boot_mount, card.wifi).encode(),
        )


def summary(card: Card) -> str:
    parts = [card.credential.kind]
    if card.wifi is not None:
        parts.append(f"Wi-Fi {card.wifi.ssid!r} ({card.wifi.country})")
    if card.ssh_keys:
        parts.append(f"SSH login {card.user}")
    if card.timezone:
        parts.append(card.timezone)
    return ", ".join(parts)


def partial_of(output: Path) -> Path:
    """Where ``output`` is made: it appears under its name only once complete."""
    return output.with_name(output.name + ".partial")


def make_image(base: Base, card: Card, output: Path) -> None:
    """Writes a customized copy of the base to ``output`` (mode 0600: it holds the credential)."""
    partial = partial_of(output)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as target, base.path.open("rb") as source:
            shutil.copyfileobj(source, target, COPY_CHUNK)
        customize(base, partial, card)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def prepare_base(image: Path, plain: Path, work: Path, package: str | None, *, out: TextIO) -> Base:
    """Unpacks the image to ``plain``, inspects it, and gets the package's wheel (in ``work``)."""
    unpack(image, plain, out=sys.stderr)
    layout = flash_image.inspect(plain)
    style = "cloud-init" if layout.style == CLOUD_INIT else "firstrun.sh in cmdline.txt"
    found = f"{layout.release}; first boot by {style}; boot partition at {layout.boot_mount}"
    say(f"{image.name}: {found}", out)
    if package:
        wheel = Path(package)
        bundle.check_wheel(wheel)
    else:
        say("building the appliance package (pip wheel)", out)
        wheel = bundle.build_wheel(work / "wheel")
    say(f"package: {wheel.name}", out)
    return Base(plain, layout, wheel)


def refuse_output(output: Path, image: Path) -> None:
    if output.exists():
        raise Refused(f"--output {output}: exists already; remove it or choose another name")
    if not output.parent.is_dir():
        raise Refused(f"--output {output}: no folder {output.parent}")
    if output.resolve() == image.resolve():
        raise Refused("--output must not be the input image: it is never modified")


def card_or_refuse(options: CardOptions) -> Card:
    card = check_card(options)
    if card is None:
        listed = "\n  ".join(options.problems)
        raise Refused(f"cannot make the card:\n  {listed}")
    return card


def write_device(image: Path, device: Path, what: str, *, yes: bool, out: TextIO) -> Path:
    """Asks (unless ``yes``), checks the target again, writes and verifies; returns it."""
    target = flash_target.inspect_target(device)
    flash_target.check_fits(target, image.stat().st_size)
    if not yes and not flash_target.confirm(target, what, answers=sys.stdin, out=out):
        raise Refused("not written: the answer was not yes")
    # Checked again: a desktop may have mounted the card while we asked.
    target = flash_target.inspect_target(device)
    flash_target.write_and_verify(image, target, out=sys.stderr)
    return target.path


def single(args: argparse.Namespace, options: CardOptions, *, out: TextIO) -> int:
    """One card: to --output, or to --device."""
    card = card_or_refuse(options)
    image = Path(args.image)
    if args.output:
        refuse_output(Path(args.output), image)
    else:
        say(f"target: {flash_target.inspect_target(Path(args.device)).describe()}", out)
    with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
        if args.output:
            # Unpacked straight to where it goes, and customized there: no second copy.
            partial = partial_of(Path(args.output))
            try:
                base = prepare_base(image, partial, Path(scratch), args.package, out=out)
                customize(base, partial, card)
                partial.replace(args.output)
            finally:
                partial.unlink(missing_ok=True)
            say(f"{card.hostname}: wrote {args.output} ({summary(card)})", out)
            return 0
        customized = Path(scratch) / "card.img"
        base = prepare_base(image, customized, Path(scratch), args.package, out=out)
        customize(base, customized, card)
        what = f"{image.name} for {card.hostname} ({summary(card)})"
        device = write_device(customized, Path(args.device), what, yes=args.yes, out=out)
        say(f"{card.hostname}: wrote and verified {device} ({summary(card)})", out)
        say("the card can be removed", out)
    return 0


def as_is(args: argparse.Namespace, options: CardOptions, *, out: TextIO) -> int:
    """An image made already (--output, --roster) written to --device unchanged."""
    given = [name for name, value in vars(options).items() if value and name != "problems"]
    if given or args.package or not args.device:
        raise Refused(
            "--as-is writes IMAGE unchanged to --device: it takes no --output and no "
            f"card options{' (' + ', '.join(given) + ')' if given else ''}"
        )
    image = Path(args.image)
    say(f"target: {flash_target.inspect_target(Path(args.device)).describe()}", out)
    with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
        plain = unpack(image, Path(scratch) / "image.img", out=sys.stderr)
        flash_image.partitions(plain)  # a disk image, at least
        device = write_device(plain, Path(args.device), image.name, yes=args.yes, out=out)
    say(f"wrote and verified {device} ({image.name}, unchanged)", out)
    say("the card can be removed", out)
    return 0


def batch(args: argparse.Namespace, defaults: CardOptions, *, out: TextIO) -> int:
    """One image per roster row; a bad row fails alone. Exit 1 if any row failed."""
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir():
        raise Refused(f"--output-dir {output_dir}: no such folder")
    rows = flash_roster.read_roster(Path(args.roster), defaults)
    results = [["line", "hostname", "image", "result"]]
    seen: dict[str, int] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
        work = Path(scratch)
        base = prepare_base(Path(args.image), work / "base.img", work, args.package, out=out)
        for row in rows:
            options = row.options
            name = options.hostname or "-"
            output = output_dir / f"{options.hostname}.img"
            if options.hostname.lower() in seen:
                first = seen[options.hostname.lower()]
                options.problems.append(f"hostname {options.hostname!r} is on line {first} already")
            elif options.hostname:
                seen[options.hostname.lower()] = row.line
            card = check_card(options)
            if card is not None and output.exists():
                options.problems.append(f"{output} exists already; remove it first")
            if card is None or options.problems:
                failed += 1
                results.append([str(row.line), name, "-", "FAILED: " + "; ".join(options.problems)])
                say(f"line {row.line} ({name}): not made: {'; '.join(options.problems)}", out)
                continue
            try:
                make_image(base, card, output)
            except ImageError as exc:
                failed += 1
                results.append([str(row.line), name, "-", f"FAILED: {exc}"])
                continue
            results.append([str(row.line), name, str(output), f"ok: {summary(card)}"])
            say(f"line {row.line} ({name}): wrote {output}", out)
    print(file=out)
    print(flash_roster.table(results), file=out)
    made = len(rows) - failed
    print(f"\n{made} of {len(rows)} images made" + (f", {failed} failed" if failed else ""),
          file=out)  # fmt: skip
    return 1 if failed else 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Customize a Raspberry Pi OS image for the appliance and write it to a "
        "card (--device) or an image file (--output), or one image per roster row.",
    )
    parser.add_argument("image", metavar="IMAGE", help="Raspberry Pi OS .img or .img.xz")
    parser.add_argument("--config", help="the appliance.toml for the device(s)")
    parser.add_argument("--api-key-file", help="file holding the OpenAI API key")
    parser.add_argument("--device-token-file", help="file holding a relay's device token")
    parser.add_argument("--hostname", help="the device's name on the network")
    parser.add_argument("--wifi-ssid", help="Wi-Fi network name")
    parser.add_argument("--wifi-psk-file", help="file holding the Wi-Fi passphrase")
    parser.add_argument("--wifi-country", help="two-letter country code for Wi-Fi, e.g. GB")
    parser.add_argument("--ssh-key", metavar="PUBFILE", help="SSH public key(s) for the login")
    parser.add_argument("--user", help="the login's name (default: pi); needs --ssh-key")
    parser.add_argument("--timezone", help="e.g. Europe/London")
    parser.add_argument("--package", metavar="WHEEL", help="a built appliance wheel "
                        "(default: build one from this checkout)")  # fmt: skip
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", metavar="OUT.img", help="write a customized image file")
    target.add_argument("--device", metavar="/dev/sdX", help="write a card (a whole disk)")
    target.add_argument("--output-dir", metavar="DIR", help="with --roster: one image per row")
    parser.add_argument("--roster", metavar="devices.csv", help="one card per row (see README)")
    parser.add_argument("--yes", action="store_true", help="write --device without asking")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="write IMAGE (made by --output or --roster) to --device unchanged",
    )
    args = parser.parse_args(argv)
    if bool(args.roster) != bool(args.output_dir):
        parser.error("--roster and --output-dir go together")
    if args.as_is and not args.device:
        parser.error("--as-is goes with --device")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    out = sys.stdout
    missing = flash_image.missing_tools()
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        print(
            f"{PROG}: needs {', '.join(missing)} (Debian packages: {packages}); "
            f"install them with:\n  sudo apt-get install -y {packages}",
            file=sys.stderr,
        )
        return 1
    options = CardOptions(
        hostname=args.hostname or "",
        config=args.config or "",
        api_key_file=args.api_key_file or "",
        device_token_file=args.device_token_file or "",
        wifi_ssid=args.wifi_ssid or "",
        wifi_psk_file=args.wifi_psk_file or "",
        wifi_country=args.wifi_country or "",
        ssh_key=args.ssh_key or "",
        user=args.user or "",
        timezone=args.timezone or "",
    )
    try:
        if args.roster:
            return batch(args, options, out=out)
        if args.as_is:
            return as_is(args, options, out=out)
        return single(args, options, out=out)
    except (
        Refused,
        ImageError,
        flash_target.TargetError,
        flash_roster.RosterError,
        bundle.BundleError,
    ) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: an image or card being written is incomplete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
