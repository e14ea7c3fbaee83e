"""The relay's configuration: defaults, the TOML file, every problem listed, the key kept secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.relay.config import RelayConfig, load, parse_listen

KEY = "sk-relay-config-test-0123456789"


def key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    os.chmod(path, mode)
    return path


def test_a_file_sets_the_relay_table(tmp_path: Path) -> None:
    config_file = tmp_path / "relay.toml"
    config_file.write_text(
        f"""
[relay]
listen = "[::1]:9000"
upstream_url = "wss://upstream.example/v1/realtime"
model = "gpt-realtime-2"
api_key_file = "{key_file(tmp_path)}"
devices_file = "{tmp_path / "devices.json"}"
instructions = "Be brief."
voice = "cedar"
connects_per_minute = 5
"""
    )
    config = load(config_file, env={})
    assert (config.host, config.port) == ("::1", 9000)
    assert config.api_key.reveal() == KEY
    assert str(config.api_key) == "********" and KEY not in repr(config)
    assert config.instructions == "Be brief." and config.voice == "cedar"
    assert config.connects_per_minute == 5
    assert config.tls_cert_file is None


def test_the_systemd_credential_wins_over_the_key_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "openai-api-key").write_text("sk-from-the-credential\n")
    config = load(
        None,
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
        overrides={"api_key_file": tmp_path / "missing", "listen": "127.0.0.1:0"},
    )
    assert config.api_key.reveal() == "sk-from-the-credential"


def test_every_problem_is_listed_and_none_shows_the_key(tmp_path: Path) -> None:
    config_file = tmp_path / "relay.toml"
    config_file.write_text(
        f"""
[relay]
listen = "0.0.0.0:8766"
upstream_url = "ws://upstream.example/v1/realtime"
api_key_file = "{key_file(tmp_path, 0o644)}"
voice = "robot"
hold_bytes = 0
replace_grace_s = -1
conects_per_minute = 3
api_key = "{KEY}"
tls_key_file = "{tmp_path / "missing.key"}"

[upstream]
url = "x"
"""
    )
    with pytest.raises(ConfigError) as error:
        load(config_file, env={})
    text = str(error.value)
    assert KEY not in text
    for expected in (
        "relay.listen: 0.0.0.0 is not the loopback",
        "relay.upstream_url: ws:// (no TLS) would send the API key in clear",
        "relay.voice: expected one of",
        "relay.hold_bytes: must be 1 or more",
        "relay.replace_grace_s: must be 0 or more",
        "unknown key relay.conects_per_minute; did you mean connects_per_minute?",
        "relay.api_key: the API key never goes in the config",
        "give both tls_cert_file and tls_key_file",
        "relay.tls_key_file: no such file",
        "unknown section [upstream]",
        "readable by group or others",
    ):
        assert expected in text, expected


def test_a_public_address_is_fine_with_tls_or_when_insecure_is_allowed(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    common = {"api_key_file": key_file(tmp_path), "listen": "0.0.0.0:8443"}
    with_tls = load(None, env={}, overrides={**common, "tls_cert_file": cert, "tls_key_file": key})
    assert with_tls.tls_cert_file == cert
    insecure = load(None, env={}, overrides={**common, "allow_insecure": True})
    assert insecure.allow_insecure


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8766") == ("127.0.0.1", 8766)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("relay.lan:443") == ("relay.lan", 443)
    for bad in ("8766", ":8766", "host:", "host:99999", "host:port"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert RelayConfig().listen == "127.0.0.1:8766"


def test_a_missing_file_and_a_bad_type_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", env={}, overrides={"api_key_file": key_file(tmp_path)})
    with pytest.raises(ConfigError, match=r"relay\.connects_per_minute: expected an integer"):
        load(
            None,
            env={},
            overrides={"api_key_file": key_file(tmp_path), "connects_per_minute": "many"},
        )
