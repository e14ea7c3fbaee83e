"""The appliance's bundle: what a device needs to install it, in one folder.

The folder holds ``install.py`` (scripts/lib/device_install.py), the package
as a wheel, the units, README.md, and for a new device the config
(``appliance.toml``) and the credential (``openai-api-key``, the API key or a
relay's device token). scripts/flash puts it on a card's boot partition;
``scripts/install --ssh`` copies it to a running device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALLER = Path(__file__).resolve().parent / "device_install.py"
SOURCES = ("pyproject.toml", "README.md", "appliance")
"""What of the checkout goes into the wheel's build (nothing else is copied)."""
UNITS = {
    "appliance.service": REPO / "systemd" / "appliance.service",
    "appliance.sysusers": REPO / "systemd" / "appliance.sysusers",
}
CREDENTIAL_NAME = "openai-api-key"
CONFIG_NAME = "appliance.toml"


class BundleError(Exception):
    """The bundle cannot be made; the message says why."""


def _python_with_pip() -> str:
    """An interpreter that has pip: the checkout's .venv (scripts/demo makes it), or this one."""
    for candidate in (str(REPO / ".venv" / "bin" / "python"), sys.executable):
        probe = subprocess.run(
            [candidate, "-m", "pip", "--version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return candidate
    raise BundleError(
        "building the package needs pip: run scripts/demo once (it makes .venv), "
        "or give a built wheel with --package"
    )


def build_wheel(dest: Path, *, source: Path = REPO) -> Path:
    """Builds the package's wheel from a copy of ``source``, into ``dest``.

    The copy keeps the build's leftovers (``build/``, ``*.egg-info``) out of
    the checkout. pip fetches the build backend (setuptools) from the package
    index, or from its cache.

    Raises:
        BundleError: the build failed (pip's last lines are in the message).
    """
    python = _python_with_pip()
    with tempfile.TemporaryDirectory(prefix="appliance-build-") as scratch:
        tree = Path(scratch) / "src"
        tree.mkdir()
        for name in SOURCES:
            item = source / name
            if item.is_dir():
                shutil.copytree(item, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(item, tree / name)
        out = Path(scratch) / "wheel"
        result = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--disable-pip-version-check",
                "--quiet",
                "--wheel-dir",
                str(out),
                str(tree),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = sorted(out.glob("appliance-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise BundleError(f"building the appliance package failed:\n{tail}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def check_wheel(path: Path) -> str:
    """Checks that ``path`` is an appliance wheel; returns its file name.

    Raises:
        BundleError: it is not.
    """
    if not path.is_file() or not path.name.startswith("appliance-") or path.suffix != ".whl":
        raise BundleError(f"--package {path}: not an appliance wheel (appliance-*.whl)")
    return path.name


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to a new file readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def assemble(
    dest: Path,
    *,
    wheel: Path,
    config_text: str | None = None,
    credential: str | None = None,
    extra: dict[str, str] | None = None,
) -> list[Path]:
    """Fills the folder ``dest`` with a bundle; returns its files.

    Args:
        dest: An empty folder.
        wheel: The package.
        config_text: The config to install, if any.
        credential: The API key or device token to install, if any (mode 0600 here).
        extra: More files, by name, with their text (the first-boot unit).
    """
    dest.mkdir(parents=True, exist_ok=True)
    files = [Path(shutil.copy2(INSTALLER, dest / "install.py"))]
    files.append(Path(shutil.copy2(wheel, dest / wheel.name)))
    files.append(Path(shutil.copy2(REPO / "README.md", dest / "README.md")))
    for name, source in UNITS.items():
        files.append(Path(shutil.copy2(source, dest / name)))
    for name, text in (extra or {}).items():
        (dest / name).write_text(text)
        files.append(dest / name)
    if config_text is not None:
        (dest / CONFIG_NAME).write_text(config_text)
        files.append(dest / CONFIG_NAME)
    if credential is not None:
        write_private(dest / CREDENTIAL_NAME, credential + "\n")
        files.append(dest / CREDENTIAL_NAME)
    return files
