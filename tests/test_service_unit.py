"""The shipped unit file: systemd's own analysers judge it, and it keeps the service contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from unit_file import UNIT, settings, substituted

MAX_EXPOSURE = 1.5
"""The issue's bound on ``systemd-analyze security --offline=yes``."""


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_security_exposure_is_at_most_1_5() -> None:
    # The unit exactly as shipped; --threshold=15 makes systemd itself fail above 1.5.
    result = analyze("security", "--offline=yes", "--threshold=15", str(UNIT))
    found = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_prints_nothing_at_all(tmp_path: Path) -> None:
    # verify wants ExecStart= to exist: only that path is substituted, for this venv's.
    executable = Path(sys.prefix) / "bin" / "appliance"
    assert executable.is_file(), executable
    unit = tmp_path / "appliance.service"
    unit.write_text(substituted(executable=str(executable), etc="/etc/appliance/"))
    result = analyze("verify", str(unit))
    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def test_the_unit_keeps_the_service_contract() -> None:
    unit = settings(UNIT.read_text())
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.WatchdogSec"]
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.RestartPreventExitStatus"] == ["78"]
    assert unit["Unit.StartLimitIntervalSec"] == ["0"]  # never gives up for good
    after = " ".join(unit["Unit.After"]).split()
    assert {"network-online.target", "time-sync.target", "sound.target"} <= set(after)
    assert "Unit.Requires" not in unit  # no hard dependency on optional units
    (credential,) = unit["Service.LoadCredential"]
    assert credential.startswith("openai-api-key:")
    assert unit["Service.DynamicUser"] == ["yes"]
    assert set(" ".join(unit["Service.SupplementaryGroups"]).split()) == {"audio", "gpio"}
    assert unit["Service.DevicePolicy"] == ["closed"]
    assert {"char-alsa rw", "char-gpiochip rw"} <= set(unit["Service.DeviceAllow"])
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
