"""The relay's systemd unit: systemd's own analysers judge it, and it keeps its contract."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from appliance.relay.config import DEFAULT_PATH, RelayConfig

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "appliance-relay.service"
SHIPPED_EXECUTABLE = "/opt/appliance/venv/bin/appliance"
MAX_EXPOSURE = 1.5


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def test_security_exposure_is_at_most_1_5() -> None:
    result = analyze("security", "--offline=yes", "--threshold=15", str(UNIT))
    found = re.search(
        r"Overall exposure level for appliance-relay\.service: (\d+\.\d+)", result.stdout
    )
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_prints_nothing_at_all(tmp_path: Path) -> None:
    # verify wants ExecStart= to exist: only that path is changed, to this checkout's.
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXECUTABLE) == 1
    unit = tmp_path / "appliance-relay.service"
    unit.write_text(text.replace(SHIPPED_EXECUTABLE, str(REPO / ".venv" / "bin" / "appliance")))
    result = analyze("verify", str(unit))
    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def test_the_unit_runs_the_relay_hardened_with_the_key_as_a_credential() -> None:
    unit = settings()
    (exec_start,) = unit["Service.ExecStart"]
    assert exec_start.split()[1:3] == ["relay", "--config"]
    assert unit["Service.Type"] == ["exec"]  # the relay does not speak sd_notify
    (credential,) = unit["Service.LoadCredential"]
    assert credential.startswith("openai-api-key:")
    assert unit["Service.DynamicUser"] == ["yes"]
    assert unit["Service.StateDirectory"] == ["appliance-relay"]
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.CapabilityBoundingSet"] == [""]
    assert "@system-service" in unit["Service.SystemCallFilter"]
    assert unit["Service.RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["Service.RestartPreventExitStatus"] == ["78"]
    # The defaults agree with the unit: config file, and devices file in the state directory.
    assert exec_start.split()[-1] == str(DEFAULT_PATH)
    assert RelayConfig.devices_file.parent == Path("/var/lib") / unit["Service.StateDirectory"][0]
