"""hardware/: every profile documented, diagrams that parse and match the code's pin table."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.hardware import HEADER_PINS, PROFILES

REPO = Path(__file__).resolve().parent.parent
HARDWARE = REPO / "hardware"
WIRED = sorted(
    name for name, profile in PROFILES.items() if profile.settings.get("button.backend") == "gpio"
)
SVG = "{http://www.w3.org/2000/svg}"


def test_the_three_builds_are_the_wired_profiles() -> None:
    assert WIRED == ["aiy-voice", "generic", "respeaker-2mic"]
    index = (HARDWARE / "README.md").read_text()
    for name in PROFILES:
        assert f"`{name}`" in index


@pytest.mark.parametrize("name", WIRED)
def test_each_build_has_its_documents(name: str) -> None:
    folder = HARDWARE / name
    for document in ("README.md", "config.txt", "asound.conf", "wiring.svg"):
        assert (folder / document).is_file(), f"{name}/{document}"
    readme = (folder / "README.md").read_text()
    for heading in ("## Wiring", "## Parts", "## config.txt", "## ALSA"):
        assert heading in readme, f"{name}: {heading}"
    assert f'profile = "{name}"' in readme
    assert any(
        line.startswith("dtparam=") for line in (folder / "config.txt").read_text().splitlines()
    )


@pytest.mark.parametrize("name", WIRED)
def test_the_wiring_table_has_the_profiles_pins(name: str) -> None:
    settings = PROFILES[name].settings
    readme = (HARDWARE / name / "README.md").read_text()
    for key in ("button.pin", "led.pin"):
        gpio = settings[key]
        assert isinstance(gpio, int)
        assert f"| GPIO{gpio} | {HEADER_PINS[gpio]} |" in readme, (name, key)


@pytest.mark.parametrize("name", WIRED)
def test_the_diagram_parses_as_svg_and_shows_the_pins(name: str) -> None:
    root = ET.parse(HARDWARE / name / "wiring.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert float(root.attrib["width"]) > 0 and float(root.attrib["height"]) > 0
    assert len(root.attrib["viewBox"].split()) == 4
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    settings = PROFILES[name].settings
    for key in ("button.pin", "led.pin"):
        gpio = settings[key]
        assert isinstance(gpio, int)
        assert f"pin {HEADER_PINS[gpio]} (GPIO{gpio})" in texts, (name, key)
    assert len(list(root.iter(f"{SVG}path"))) >= 2  # the wires


def test_the_committed_diagrams_are_the_generated_ones(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "hardware-diagrams"), str(tmp_path)], check=True
    )
    for name in WIRED:
        generated = (tmp_path / name / "wiring.svg").read_text()
        assert generated == (HARDWARE / name / "wiring.svg").read_text(), (
            f"hardware/{name}/wiring.svg is stale: run scripts/hardware-diagrams"
        )


def test_the_header_table_is_the_40_pin_header() -> None:
    assert sorted(HEADER_PINS) == list(range(28))
    assert len(set(HEADER_PINS.values())) == 28
    assert HEADER_PINS[17] == 11 and HEADER_PINS[27] == 13 and HEADER_PINS[23] == 16
    assert HEADER_PINS[25] == 22 and HEADER_PINS[12] == 32 and HEADER_PINS[2] == 3
