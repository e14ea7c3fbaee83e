"""The relay's configuration: the ``[relay]`` table of a TOML file, validated once."""

from __future__ import annotations

import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config import CREDENTIAL_NAME, MASK, VOICES, Secret, coerce, read_key
from appliance.config import show as _show
from appliance.configcheck import is_loopback
from appliance.configtext import did_you_mean
from appliance.errors import ConfigError

DEFAULT_PATH = Path("/etc/appliance/relay.toml")
"""The config file ``appliance relay`` reads when given no ``--config``."""

__all__ = ["CREDENTIAL_NAME", "DEFAULT_PATH", "RelayConfig", "load", "parse_listen"]


@dataclass(frozen=True)
class RelayConfig:
    """The relay's settings, validated, with the upstream API key read."""

    listen: str = "127.0.0.1:8766"
    """Where devices connect: ``host:port`` (``[::1]:8766`` for IPv6)."""
    upstream_url: str = "wss://api.openai.com/v1/realtime"
    """The upstream WebSocket endpoint; the model goes in ``?model=``."""
    model: str = "gpt-realtime-2"
    """The model of every upstream session, whatever ``?model=`` a device asks for."""
    api_key_file: Path = Path("/etc/appliance/openai-api-key")
    """The file holding the real API key (mode 0600); the systemd credential wins over it."""
    devices_file: Path = Path("/var/lib/appliance-relay/devices.json")
    """The device names and token hashes, written by ``appliance relay add-device``."""
    instructions: str = ""
    """Instructions forced onto every session and response; empty: the device's own."""
    voice: str = ""
    """The voice forced onto every session and response; empty: the device's own."""
    tls_cert_file: Path | None = None
    """The certificate chain (PEM) to serve ``wss://`` with; none: plain ``ws://``."""
    tls_key_file: Path | None = None
    """The private key (PEM) of ``tls_cert_file``."""
    allow_insecure: bool = False
    """Serve plain ``ws://`` on an address that is not the loopback (device tokens in clear)."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest message a device may send (bytes); bigger closes its connection with 1009."""
    hold_bytes: int = 8 * 1024 * 1024
    """Device messages held while the upstream connects (bytes); past it, reading waits."""
    connects_per_minute: int = 20
    """Connection attempts a device may make in any 60 seconds; more get HTTP 429."""
    bad_tokens_per_address: int = 10
    """Connections with an unknown, revoked or missing token one IP address may make in any
    ``bad_tokens_window_s``: the last of them blocks the address, whose every attempt then
    gets HTTP 429, good tokens included, without a token check."""
    bad_tokens_window_s: float = 60.0
    """The window of ``bad_tokens_per_address``, and how long a block lasts (seconds)."""
    replace_grace_s: float = 10.0
    """A device's new connection closes its old one (4001) this long after (seconds), unless
    the device closes it first: the appliance rotates sessions by opening the next one
    beside the current one (R8). 0 closes the old one at once."""
    upstream_open_timeout_s: float = 10.0
    """The upstream handshake's time limit (seconds)."""
    ping_interval_s: float = 20.0
    """Seconds between keepalive pings, to devices and to the upstream."""
    ping_timeout_s: float = 20.0
    """Seconds without a pong after which a device or the upstream counts as gone."""
    reload_interval_s: float = 5.0
    """How often the devices file is checked for changes, to end revoked devices' connections."""
    api_key: Secret = field(default_factory=lambda: Secret(""), repr=False)
    """The real API key, from the systemd credential or ``api_key_file``. Never logged."""

    @property
    def host(self) -> str:
        """The host part of ``listen``."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return parse_listen(self.listen)[1]


_KEYS = [f.name for f in fields(RelayConfig) if f.name != "api_key"]


def parse_listen(listen: str) -> tuple[str, int]:
    """Splits ``host:port`` (``[v6]:port`` too) into its parts.

    Raises:
        ValueError: not ``host:port`` with a port from 0 to 65535.
    """
    host, colon, port = listen.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def load(
    path: Path | None,
    *,
    env: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
) -> RelayConfig:
    """Loads and validates the ``[relay]`` table, then reads the API key.

    Args:
        path: The TOML file; ``None`` reads none (defaults only).
        env: The environment, for ``CREDENTIALS_DIRECTORY``.
        overrides: Already-typed values by key (``"listen"``), applied last.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: listing every problem found, none of them showing the key.
    """
    problems: list[str] = []
    values: dict[str, object] = {}
    where = str(path) if path is not None else "relay"
    if path is not None:
        values.update(_read_table(path, problems))
    values.update(overrides or {})
    settings: dict[str, object] = {}
    hints = typing.get_type_hints(RelayConfig)
    for key, value in values.items():
        if key == "api_key":
            problems.append(
                f"{where}: relay.api_key: the API key never goes in the config: put it "
                "in a file (chmod 600) and set relay.api_key_file"
            )
        elif key not in _KEYS:
            hint = did_you_mean(key, _KEYS)
            problems.append(f"{where}: unknown key relay.{key}{hint}")
        else:
            try:
                settings[key] = _coerce(value, hints[key])
            except ValueError as exc:
                problems.append(f"{where}: relay.{key}: {exc}")
    config = RelayConfig(**settings)  # type: ignore[arg-type]  # coerced to the hints above
    problems += [f"{where}: {problem}" for problem in _check(config)]
    api_key, detail = read_key(config.api_key_file, env)
    if detail:
        problems.append(f"{where}: relay.api_key_file: {detail}")
    if problems:
        if api_key and len(api_key) >= 8:  # belt and braces: no message may carry the key
            problems = [problem.replace(api_key, MASK) for problem in problems]
        raise ConfigError(problems)
    assert api_key is not None
    return RelayConfig(**settings, api_key=Secret(api_key))  # type: ignore[arg-type]


def _read_table(path: Path, problems: list[str]) -> dict[str, object]:
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: no such config file")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return {}
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: TOML syntax error: {exc}")
        return {}
    for section in document:
        if section != "relay":
            problems.append(f"{path}: unknown section [{section}]: the relay reads [relay] only")
    table = document.get("relay", {})
    if not isinstance(table, dict):
        problems.append(f"{path}: relay: expected a [relay] table")
        return {}
    return dict(table)


def _coerce(value: object, hint: object) -> object:
    """Returns ``value`` as the type ``hint``: the appliance's rules, plus optional paths.

    Raises:
        ValueError: the value is not of that type.
    """
    if hint in (Path, Path | None):
        if isinstance(value, str | Path) and str(value):
            return Path(value)
        if hint is not Path and value in ("", None):
            return None
        raise ValueError(f"expected a path, got {_show(value)}")
    return coerce(value, hint)


def _check(config: RelayConfig) -> list[str]:
    problems: list[str] = []
    try:
        host, _ = parse_listen(config.listen)
    except ValueError:
        problems.append(f"relay.listen: expected host:port, got {_show(config.listen)}")
    else:
        tls = config.tls_cert_file is not None
        if not tls and not config.allow_insecure and not is_loopback(host):
            problems.append(
                f"relay.listen: {host} is not the loopback, and without TLS device tokens "
                "would cross the network in clear: set relay.tls_cert_file and "
                "relay.tls_key_file (or relay.allow_insecure = true)"
            )
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        problems.append("relay.tls_key_file: give both tls_cert_file and tls_key_file, or neither")
    for key in ("tls_cert_file", "tls_key_file"):
        tls_path = getattr(config, key)
        if tls_path is not None and not tls_path.is_file():
            problems.append(f"relay.{key}: no such file: {tls_path}")
    parts = urlsplit(config.upstream_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        problems.append(
            f"relay.upstream_url: expected a ws:// or wss:// URL, got {_show(config.upstream_url)}"
        )
    elif parts.scheme == "ws" and not is_loopback(parts.hostname):
        problems.append(
            "relay.upstream_url: ws:// (no TLS) would send the API key in clear; use wss://"
        )
    if not config.model.strip():
        problems.append("relay.model: must not be empty")
    if config.voice and config.voice not in VOICES:
        problems.append(
            f"relay.voice: expected one of {', '.join(VOICES)} (or empty), "
            f"got {_show(config.voice)}"
        )
    counts = ("max_message_bytes", "hold_bytes", "connects_per_minute", "bad_tokens_per_address")
    for key in counts:
        if getattr(config, key) < 1:
            problems.append(f"relay.{key}: must be 1 or more, got {getattr(config, key)}")
    timings = (
        "upstream_open_timeout_s",
        "ping_interval_s",
        "ping_timeout_s",
        "reload_interval_s",
        "bad_tokens_window_s",
    )
    for key in timings:
        if getattr(config, key) <= 0:
            problems.append(f"relay.{key}: must be more than 0, got {getattr(config, key):g}")
    if config.replace_grace_s < 0:
        problems.append(f"relay.replace_grace_s: must be 0 or more, got {config.replace_grace_s:g}")
    return problems
