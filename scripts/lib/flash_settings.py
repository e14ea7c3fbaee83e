"""What one card is customized with, read from files and checked before anything is written.

Secrets (the API key or device token, the Wi-Fi passphrase) come from files;
no message here ever contains them. A problem is a plain sentence naming the
option or file it is about; every problem is collected, not just the first.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
PUBLIC_KEY = re.compile(r"^(?:ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+(?: .*)?$")
HEX_PSK = re.compile(r"^[0-9a-fA-F]{64}$")
ZONEINFO = Path("/usr/share/zoneinfo")
DEFAULT_USER = "pi"


class Secret:
    """A secret value that never shows itself in a repr, a format or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for writing it to its file."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(********)"

    __str__ = __repr__


@dataclass(frozen=True)
class Wifi:
    """A Wi-Fi network: its name, its WPA pre-shared key (64 hex digits) and country."""

    ssid: str
    psk: Secret
    country: str


@dataclass(frozen=True)
class Credential:
    """The API key, or a relay's device token: the appliance uses either as its key."""

    value: Secret
    kind: str
    """``api key`` or ``device token``, for messages."""


@dataclass(frozen=True)
class Card:
    """Everything one card is customized with, checked."""

    hostname: str
    config_text: str
    credential: Credential
    wifi: Wifi | None = None
    user: str = DEFAULT_USER
    ssh_keys: tuple[str, ...] = ()
    timezone: str = ""


@dataclass
class CardOptions:
    """One card's options as given (paths and plain values), before checking."""

    hostname: str = ""
    config: str = ""
    api_key_file: str = ""
    device_token_file: str = ""
    wifi_ssid: str = ""
    wifi_psk_file: str = ""
    wifi_country: str = ""
    ssh_key: str = ""
    user: str = ""
    timezone: str = ""
    problems: list[str] = field(default_factory=list)


def wpa_psk(passphrase: str, ssid: str) -> str:
    """The WPA pre-shared key (64 hex digits) for a passphrase, as wpa_passphrase makes it."""
    raw = hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32)
    return raw.hex()


def _read_text(path_text: str, what: str, problems: list[str]) -> str | None:
    """The UTF-8 text of a file named by an option, or None with a problem added."""
    path = Path(path_text)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{what} {path}: no such file")
        return None
    except IsADirectoryError:
        problems.append(f"{what} {path}: is a directory, not a file")
        return None
    except OSError as exc:
        problems.append(f"{what} {path}: cannot read it: {exc.strerror}")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{what} {path}: not UTF-8 text")
        return None


def _credential(options: CardOptions, problems: list[str]) -> Credential | None:
    if options.api_key_file and options.device_token_file:
        problems.append("give --api-key-file or --device-token-file, not both")
        return None
    if options.api_key_file:
        option, kind, path = "--api-key-file", "api key", options.api_key_file
    elif options.device_token_file:
        option, kind, path = "--device-token-file", "device token", options.device_token_file
    else:
        problems.append(
            "no credential: give --api-key-file FILE (the OpenAI API key) or "
            "--device-token-file FILE (a relay's device token)"
        )
        return None
    text = _read_text(path, option, problems)
    if text is None:
        return None
    value = text.strip()
    if not value:
        problems.append(f"{option} {path}: the file is empty")
        return None
    if any(char.isspace() or not char.isprintable() for char in value):
        problems.append(
            f"{option} {path}: the {kind} has spaces, control characters or several lines"
        )
        return None
    return Credential(Secret(value), kind)


def _wifi(options: CardOptions, problems: list[str]) -> Wifi | None:
    # A country alone is no network: a batch may give it for every row, and the SSID per row.
    if not options.wifi_ssid and not options.wifi_psk_file:
        return None
    if not (options.wifi_ssid and options.wifi_psk_file and options.wifi_country):
        problems.append("Wi-Fi needs all of --wifi-ssid, --wifi-psk-file and --wifi-country")
        return None
    ssid = options.wifi_ssid
    if not 1 <= len(ssid.encode()) <= 32 or any(not c.isprintable() for c in ssid):
        problems.append(f"--wifi-ssid {ssid!r}: 1 to 32 bytes of printable text")
        return None
    if not COUNTRY.match(options.wifi_country):
        problems.append(
            f"--wifi-country {options.wifi_country!r}: a two-letter country code, e.g. GB or DE"
        )
        return None
    text = _read_text(options.wifi_psk_file, "--wifi-psk-file", problems)
    if text is None:
        return None
    passphrase = text.rstrip("\r\n")
    if HEX_PSK.match(passphrase):
        psk = passphrase.lower()
    elif 8 <= len(passphrase) <= 63 and all(" " <= c <= "~" for c in passphrase):
        psk = wpa_psk(passphrase, ssid)
    else:
        problems.append(
            f"--wifi-psk-file {options.wifi_psk_file}: the passphrase must be 8 to 63 "
            "printable ASCII characters (or 64 hex digits), on one line"
        )
        return None
    return Wifi(ssid, Secret(psk), options.wifi_country)


def _ssh_keys(path_text: str, problems: list[str]) -> tuple[str, ...]:
    text = _read_text(path_text, "--ssh-key", problems)
    if text is None:
        return ()
    if "PRIVATE KEY" in text:
        problems.append(f"--ssh-key {path_text}: this is a private key; give the .pub file")
        return ()
    keys = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not keys or not all(PUBLIC_KEY.match(key) for key in keys):
        problems.append(
            f"--ssh-key {path_text}: not an OpenSSH public key file "
            "(lines like 'ssh-ed25519 AAAA...')"
        )
        return ()
    return keys


def check_config(path: Path, credential: Credential) -> list[str]:
    """Problems of the appliance config at ``path``, found by the appliance's own loader.

    The credential is handed over as the systemd credential would be, so the
    key's own rules are checked too, and ``upstream.api_key_file`` need not
    exist here. The caller's ``APPLIANCE_*`` variables do not apply.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from appliance import config  # stdlib only: plain python3 will do
    from appliance.errors import ConfigError

    with tempfile.TemporaryDirectory(prefix="appliance-flash-") as scratch:
        key = Path(scratch) / config.CREDENTIAL_NAME
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(credential.value.reveal() + "\n")
        try:
            config.load(path, env={"CREDENTIALS_DIRECTORY": scratch})
        except ConfigError as exc:
            # The file backend's WAV paths are the device's, not this machine's:
            # the installer checks them on the device.
            return [
                f"--config: {problem}"
                for problem in exc.problems
                if not any(f": audio.{key}: with backend" in problem for key in ("input", "output"))
            ]
    return []


def check_card(options: CardOptions) -> Card | None:
    """Checks one card's options; returns the card, or None with ``options.problems`` filled."""
    problems = options.problems
    if not options.hostname:
        problems.append("no --hostname: every card needs its own")
    elif not HOSTNAME.match(options.hostname):
        problems.append(
            f"--hostname {options.hostname!r}: letters, digits and hyphens only, 1 to 63, "
            "not starting or ending with a hyphen"
        )
    user = options.user or DEFAULT_USER
    if not USER.match(user) or user == "root":
        problems.append(f"--user {user!r}: a lower-case login name, not root")
    if options.user and not options.ssh_key:
        problems.append("--user needs --ssh-key: the card sets no password, so a key is the way in")
    ssh_keys = _ssh_keys(options.ssh_key, problems) if options.ssh_key else ()
    if options.timezone and (
        not TIMEZONE.match(options.timezone)
        or (ZONEINFO.is_dir() and not (ZONEINFO / options.timezone).is_file())
    ):
        problems.append(f"--timezone {options.timezone!r}: not a time zone, e.g. Europe/London")
    wifi = _wifi(options, problems)
    credential = _credential(options, problems)
    config_text = None
    if not options.config:
        problems.append("no --config: give the appliance.toml for the device")
    else:
        config_text = _read_text(options.config, "--config", problems)
    if config_text is not None and credential is not None:
        problems.extend(check_config(Path(options.config), credential))
    if problems or config_text is None or credential is None:
        return None
    return Card(
        hostname=options.hostname,
        config_text=config_text,
        credential=credential,
        wifi=wifi,
        user=user,
        ssh_keys=ssh_keys,
        timezone=options.timezone,
    )
