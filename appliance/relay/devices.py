"""Device tokens: made once, stored only as SHA-256 hashes, checked in constant time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import ConfigError

__all__ = [
    "TOKEN_PREFIX",
    "Device",
    "DeviceRegistry",
    "add_device",
    "read_devices",
    "remove_device",
    "token_digest",
]

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "apr_"
"""Every device token starts with this, so one pasted in the wrong place is recognisable."""

FILE_VERSION = 1
"""The version of the devices file's format."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""A device name: a letter or digit, then up to 62 letters, digits, dots, dashes, underscores."""


@dataclass(frozen=True)
class Device:
    """One device allowed to use the relay.

    Attributes:
        name: The device's name, shown in every journal line about it.
        digest: SHA-256 of its token, 32 bytes; the token itself is stored nowhere.
        added: When it was added, ISO 8601 UTC.
    """

    name: str
    digest: bytes
    added: str


def new_token() -> str:
    """A new device token: the prefix and 256 random bits, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """The SHA-256 digest under which ``token`` is stored (32 bytes).

    A token carries 256 random bits, so a plain hash is as hard to invert as
    the token is to guess; a slow password hash would only slow down handshakes.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class DeviceRegistry:
    """The devices file as the running relay sees it, reloaded when it changes.

    Args:
        path: The devices file (JSON), written by :func:`add_device`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._devices: tuple[Device, ...] = ()
        self._stamp: tuple[int, int, int] | None = None

    @property
    def devices(self) -> tuple[Device, ...]:
        """The devices known now."""
        return self._devices

    def load(self) -> None:
        """Reads the file for the first time; a missing file means no devices yet.

        Raises:
            ConfigError: the file exists but cannot be read or parsed.
        """
        stamp = _stamp(self.path)
        self._devices = read_devices(self.path) if stamp is not None else ()
        self._stamp = stamp
        if stamp is None:
            logger.warning(
                "no devices file %s yet: no device can connect until one is added "
                "with: appliance relay add-device NAME",
                self.path,
            )
        logger.info("%d devices allowed", len(self._devices))

    def refresh(self) -> bool:
        """Reloads the file if it changed since the last look (a ``stat`` otherwise).

        A file that became unreadable or malformed keeps the devices known
        before, and says so in the journal.

        Returns:
            True if the set of devices was reloaded.
        """
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        try:
            devices = read_devices(self.path) if stamp is not None else ()
        except ConfigError as exc:
            logger.error("keeping the devices known before: %s", exc)
            self._stamp = stamp
            return False
        self._devices, self._stamp = devices, stamp
        logger.info("devices file changed: %d devices allowed", len(devices))
        return True

    def identify(self, token: str) -> Device | None:
        """The device whose token this is, or ``None``.

        Every stored digest is compared, with ``hmac.compare_digest``, whether
        or not one matched already: the time taken tells nothing about which
        device, if any, the token belongs to.
        """
        digest = token_digest(token)
        found: Device | None = None
        for device in self._devices:
            if hmac.compare_digest(digest, device.digest):
                found = device
        return found

    def holds(self, device: Device) -> bool:
        """True while ``device`` (same name, same token) is still allowed."""
        return device in self._devices


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def read_devices(path: Path) -> tuple[Device, ...]:
    """The devices in ``path``; none if it does not exist.

    Raises:
        ConfigError: the file cannot be read or is not a devices file.
    """
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{path}: not a devices file (invalid JSON: {exc})"]) from None
    try:
        if document["version"] != FILE_VERSION:
            raise ConfigError([f"{path}: unknown devices file version {document['version']!r}"])
        return tuple(
            Device(str(entry["name"]), bytes.fromhex(entry["sha256"]), str(entry["added"]))
            for entry in document["devices"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError([f"{path}: not a devices file ({type(exc).__name__}: {exc})"]) from None


def add_device(path: Path, name: str) -> str:
    """Adds device ``name`` with a new token, and returns the token (shown once, stored never).

    Raises:
        ConfigError: the name is not valid or already taken, or the file is unusable.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            [
                f"device name {name!r}: use 1 to 63 letters, digits, '.', '-' or '_', "
                "starting with a letter or digit"
            ]
        )
    with _locked(path):
        devices = list(read_devices(path))
        if any(device.name == name for device in devices):
            raise ConfigError(
                [
                    f"a device named {name} exists already; remove it first "
                    f"(appliance relay remove-device {name})"
                ]
            )
        token = new_token()
        added = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        devices.append(Device(name, token_digest(token), added))
        _write(path, devices)
    return token


def remove_device(path: Path, name: str) -> bool:
    """Removes device ``name``; its token stops working at once (live connections too).

    Returns:
        False if there was no such device.

    Raises:
        ConfigError: the file is unusable.
    """
    with _locked(path):
        devices = list(read_devices(path))
        kept = [device for device in devices if device.name != name]
        if len(kept) == len(devices):
            return False
        _write(path, kept)
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path``'s lock file: one writer at a time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot lock: {exc.strerror}"]) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _write(path: Path, devices: list[Device]) -> None:
    """Replaces ``path`` atomically (mode 0600), keeping the owner of the file or its folder.

    The relay may run as a systemd ``DynamicUser`` that owns its state
    directory, while root runs ``add-device``: the new file must stay
    readable by the relay.
    """
    document = {
        "version": FILE_VERSION,
        "devices": [{"name": d.name, "sha256": d.digest.hex(), "added": d.added} for d in devices],
    }
    owner = path if path.exists() else path.parent
    status = owner.stat()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        if os.geteuid() == 0:
            os.chown(temporary, status.st_uid, status.st_gid)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
