"""The import rules of the architecture, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "appliance"

CORE = {
    "appliance.errors",
    "appliance.effects",
    "appliance.turn",
    "appliance.turnrecord",
    "appliance.memory",
    "appliance.sessions",
    "appliance.realtime",
    "appliance.realtime.events",
    "appliance.realtime.session",
    "appliance.audio",
    "appliance.audio.pcm",
}
"""The sans-I/O core: stdlib, errors and each other only."""

ADAPTERS = {
    "appliance.audio.filemic",
    "appliance.audio.filespeaker",
    "appliance.button",
    "appliance.transport",
    "appliance.audio.pa_microphone",
    "appliance.audio.pa_speaker",
    "appliance.gpio_button",
    "appliance.keyboard_button",
    "appliance.indicator",
}
"""Adapters to devices and the network: they never import each other."""

FORBIDDEN_IN_CORE = {"asyncio", "socket", "threading", "time", "websockets", "pyaudio", "gpiozero"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(), filename=str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


ALL = modules()


def test_the_listed_modules_exist() -> None:
    assert set(ALL) >= (CORE | ADAPTERS)


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_imports_only_stdlib_and_core(name: str) -> None:
    for imported in imports(ALL[name]):
        top = imported.split(".")[0]
        if top == "appliance":
            if imported in ALL:
                assert imported in CORE, f"{name} imports {imported}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{name} imports {imported}"
            )
            assert top not in FORBIDDEN_IN_CORE, f"{name} imports {imported}: core does no I/O"


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapters_never_import_each_other(name: str) -> None:
    others = ADAPTERS - {name}
    assert not imports(ALL[name]) & others


@pytest.mark.parametrize("name", sorted(set(ALL) - {"appliance.cli", "appliance.__main__"}))
def test_only_the_cli_configures_logging_reads_argv_or_exits(name: str) -> None:
    source = ast.unparse(ALL[name])
    for forbidden in ("sys.exit", "sys.argv", "logging.basicConfig", "logs.setup("):
        assert forbidden not in source, f"{name} uses {forbidden}"


def test_core_never_reads_the_clock() -> None:
    for name in CORE:
        source = ast.unparse(ALL[name])
        for clock in ("time.time", "time.monotonic", "datetime.now", "loop.time"):
            assert clock not in source, f"{name} reads the clock ({clock})"
