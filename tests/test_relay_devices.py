"""Device tokens: shown once, stored as hashes, checked against every hash, revocable."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.relay.devices import (
    TOKEN_PREFIX,
    DeviceRegistry,
    add_device,
    read_devices,
    remove_device,
    token_digest,
)


def test_a_new_token_is_returned_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "state" / "devices.json"
    token = add_device(path, "kitchen")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    text = path.read_text()
    assert token not in text and token.removeprefix(TOKEN_PREFIX) not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (device,) = read_devices(path)
    assert device.name == "kitchen" and device.digest == token_digest(token)
    assert add_device(path, "hall") != token


def test_names_are_checked_and_unique(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    add_device(path, "kitchen")
    with pytest.raises(ConfigError, match="exists already"):
        add_device(path, "kitchen")
    for bad in ("", "-x", "a b", "x" * 64, "../etc"):
        with pytest.raises(ConfigError, match="device name"):
            add_device(path, bad)
    assert [d.name for d in read_devices(path)] == ["kitchen"]


def test_identify_finds_the_device_of_a_token_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    tokens = {name: add_device(path, name) for name in ("kitchen", "hall", "porch")}
    registry = DeviceRegistry(path)
    registry.load()
    for name, token in tokens.items():
        found = registry.identify(token)
        assert found is not None and found.name == name
    assert registry.identify(tokens["hall"][:-1]) is None
    assert registry.identify("") is None
    assert registry.identify(token_digest(tokens["hall"]).hex()) is None


def test_remove_takes_effect_on_the_next_refresh(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    kitchen, hall = add_device(path, "kitchen"), add_device(path, "hall")
    registry = DeviceRegistry(path)
    registry.load()
    assert registry.refresh() is False  # nothing changed
    device = registry.identify(kitchen)
    assert device is not None
    assert remove_device(path, "kitchen") is True
    assert remove_device(path, "kitchen") is False
    assert registry.refresh() is True
    assert registry.identify(kitchen) is None
    assert not registry.holds(device)
    assert registry.identify(hall) is not None


def test_a_missing_file_means_no_devices_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "devices.json"
    registry = DeviceRegistry(path)
    with caplog.at_level(logging.WARNING, logger="appliance.relay"):
        registry.load()
    assert registry.devices == ()
    assert "add-device" in caplog.text
    token = add_device(path, "kitchen")
    assert registry.refresh() is True
    path.write_text("{ not json")
    with caplog.at_level(logging.ERROR, logger="appliance.relay"):
        assert registry.refresh() is False
    assert "keeping the devices known before" in caplog.text
    assert registry.identify(token) is not None
    with pytest.raises(ConfigError, match="not a devices file"):
        DeviceRegistry(path).load()
    path.write_text(json.dumps({"version": 99, "devices": []}))
    with pytest.raises(ConfigError, match="version"):
        read_devices(path)


def test_a_rewrite_keeps_the_owner_of_the_file(tmp_path: Path) -> None:
    """As root, add-device must leave the file to the relay's (dynamic) user."""
    path = tmp_path / "devices.json"
    add_device(path, "kitchen")
    if os.geteuid() == 0:
        os.chown(path, 4242, 4343)
    before = path.stat()
    add_device(path, "hall")
    after = path.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino, "replaced atomically, not rewritten in place"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".devices")] == []
