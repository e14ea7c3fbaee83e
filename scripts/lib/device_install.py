#!/usr/bin/env python3
"""Installs, upgrades and uninstalls the appliance on a device (scripts/install).

Runs as root on the device (a Raspberry Pi with Raspberry Pi OS bookworm or
newer, or any Debian with systemd), with Debian's python3 and nothing else:
the standard library only, and syntax that Python 3.9 still reads, so that an
old system hears why it is too old instead of a SyntaxError. It is the same
file as ``install.py`` in the bundle that scripts/flash puts on a card and
``--ssh`` copies to a device. Every step is idempotent: running it again
changes nothing that is already right, and restarts the service only if
something changed.

    install     Debian packages, the service's groups, a venv (--system-site-packages)
                with the package, config and credential, the unit; then
                ``appliance check`` and enable --now. An upgrade is the same
                run with a new package: config and credential are kept
                unless new ones are given.
    upgrade     install, but only where the appliance is installed already.
    uninstall   stops and removes the service, the venv and the units; keeps
                /etc/appliance (config and credential) unless --purge.
    firstboot   what appliance-firstboot.service runs on a card's first boot:
                install from the bundle beside this file, once.

Exit codes: 0 done; 1 refused or failed (the message says why); 2 installed
and running, but ``appliance check`` found problems (it says which).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent

PREFIX = Path("/opt/appliance")
VENV = PREFIX / "venv"
STATE = PREFIX / "installed.json"
README = PREFIX / "README.md"
ETC = Path("/etc/appliance")
CONFIG = ETC / "appliance.toml"
CREDENTIAL = ETC / "openai-api-key"
UNIT_DIR = Path("/etc/systemd/system")
SERVICE = "appliance.service"
FIRSTBOOT = "appliance-firstboot.service"
SYSUSERS = Path("/etc/sysusers.d/appliance.conf")
COMMAND_LINK = Path("/usr/local/bin/appliance")
MARKER = Path("/var/lib/appliance-install/firstboot.done")

CONFIG_NAME = "appliance.toml"
CREDENTIAL_NAME = "openai-api-key"
DEFAULT_PYTHON = "/usr/bin/python3"
MIN_PYTHON = (3, 11)

DEFAULT_PACKAGES = (
    "python3-venv",
    "python3-pyaudio",
    "python3-systemd",
    "python3-gpiozero",
    "python3-lgpio",
    "python3-numpy",
)
"""Debian packages, so that nothing compiles on the Pi (python3-lgpio: Raspberry Pi OS only)."""
PACKAGES_ENV = "INSTALL_APT_PACKAGES"
"""Overrides :data:`DEFAULT_PACKAGES` (space-separated; empty: none), as --apt-packages does.

Not APPLIANCE_*: that prefix is the appliance's own config (APPLIANCE_<SECTION>_<KEY>).
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CHECK_FAILED = 2

VALIDATE = """
import sys
from pathlib import Path
from appliance import config
from appliance.errors import ConfigError
try:
    config.load(Path(sys.argv[1]), env={"CREDENTIALS_DIRECTORY": sys.argv[2]})
except ConfigError as exc:
    print("\\n".join(exc.problems))
    sys.exit(78)
"""
"""Validates a config with the new package's own loader, before anything is changed."""


class InstallError(Exception):
    """A refusal or a failure; the message says what to do."""


def say(message: str) -> None:
    """One line of progress (under systemd: one journal line)."""
    print(f"install: {message}", flush=True)


def run(
    argv: list[str],
    *,
    check: bool = True,
    quiet: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command (never one with a secret in it); its output goes to ours unless quiet."""
    if not quiet:
        say("$ " + shlex.join(argv))
    result = subprocess.run(
        argv,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        env=env,
        check=False,
    )
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-3:] if quiet else []
        raise InstallError(
            f"{shlex.join(argv)} failed (exit {result.returncode})"
            + (": " + " / ".join(detail) if detail else "")
        )
    return result


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wipe(path: Path) -> None:
    """Overwrites a file with zeros, then removes it (the credential on the boot partition)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        return
    say(f"wiped {path} (the credential is in {CREDENTIAL} now)")


def read_credential(path: Path, option: str) -> str:
    """The API key or device token in ``path``, checked by the appliance's rules (never shown)."""
    try:
        value = path.read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        raise InstallError(f"{option} {path}: no such file") from None
    except UnicodeDecodeError:
        raise InstallError(f"{option} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise InstallError(f"{option} {path}: cannot read it: {exc.strerror}") from None
    if not value:
        raise InstallError(f"{option} {path}: the file is empty")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise InstallError(f"{option} {path}: it has spaces, control characters or several lines")
    return value


def write_if_changed(path: Path, data: bytes, *, mode: int) -> bool:
    """Writes ``data`` to ``path`` (root's, ``mode``) atomically, unless it is there already.

    Returns:
        True if anything changed (content, mode or owner).
    """
    try:
        info = path.stat()
        same = path.read_bytes() == data
    except FileNotFoundError:
        same = False
    if same:
        if (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, 0, 0):
            return False
        os.chown(path, 0, 0)
        os.chmod(path, mode)
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chown(partial, 0, 0)
        os.chmod(partial, mode)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return True


@dataclass
class Sources:
    """Where this install takes things from.

    Attributes:
        package: A wheel, or a source tree with pyproject.toml.
        units: Folder with appliance.service and appliance.sysusers.
        readme: README.md, installed beside the venv.
        config: The config to install, or None to keep the installed one.
        credential: The credential's file, or None to keep the installed one.
        credential_option: The option that named it, for messages.
    """

    package: Path
    units: Path
    readme: Path
    config: Path | None = None
    credential: Path | None = None
    credential_option: str = "--api-key-file"


def default_sources() -> tuple[Path, Path, Path | None]:
    """Units folder, README and default package: the bundle beside this file, or the checkout."""
    if (HERE / SERVICE).is_file():
        wheels = sorted(HERE.glob("appliance-*.whl"))
        return HERE, HERE / "README.md", wheels[-1] if wheels else None
    if (CHECKOUT / "systemd" / SERVICE).is_file():
        return CHECKOUT / "systemd", CHECKOUT / "README.md", CHECKOUT
    raise InstallError(f"no appliance.service beside {HERE} or in a checkout around it")


def python_version(python: str) -> tuple[int, int]:
    result = run(
        [python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"], quiet=True, check=False
    )
    if result.returncode != 0:
        raise InstallError(f"{python} does not run: install Debian's python3")
    major, minor = result.stdout.split()
    return int(major), int(minor)


def missing_packages(packages: list[str]) -> list[str]:
    missing = []
    for package in packages:
        result = run(["dpkg-query", "-W", "-f=${Status}", package], quiet=True, check=False)
        if not result.stdout.endswith(" installed"):
            missing.append(package)
    return missing


def ensure_packages(packages: list[str]) -> bool:
    """Installs the Debian packages that are missing; True if it installed any."""
    if not packages:
        say("Debian packages: none asked for")
        return False
    missing = missing_packages(packages)
    if not missing:
        say(f"Debian packages: all there ({' '.join(packages)})")
        return False
    say(f"Debian packages: installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
    still = missing_packages(missing)
    if still:
        raise InstallError(f"still missing after apt-get install: {' '.join(still)}")
    return True


def venv_usable(python: str) -> bool:
    """True if the venv runs, sees the system's packages, and is of ``python``."""
    try:
        cfg = (VENV / "pyvenv.cfg").read_text()
    except OSError:
        return False
    settings = {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in cfg.splitlines())
    }
    if settings.get("include-system-site-packages") != "true":
        return False
    if settings.get("home") != str(Path(python).parent):
        return False
    venv_python = str(VENV / "bin" / "python")
    probe = run([venv_python, "-m", "pip", "--version"], quiet=True, check=False)
    return probe.returncode == 0 and python_version(venv_python) == python_version(python)


def ensure_venv(python: str) -> bool:
    if venv_usable(python):
        say(f"venv: {VENV} is there")
        return False
    say(f"venv: making {VENV} (--system-site-packages: it uses the Debian packages)")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    run([python, "-m", "venv", "--clear", "--system-site-packages", str(VENV)])
    return True


def build_wheel(source: Path, dest: Path) -> Path:
    """Builds the package's wheel from a copy of the source tree (the checkout stays clean)."""
    tree = dest / "src"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "appliance"):
        item = source / name
        if item.is_dir():
            shutil.copytree(item, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, tree / name)
    out = dest / "wheel"
    run([str(VENV / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--wheel-dir", str(out), str(tree)], env=pip_env())  # fmt: skip
    wheels = sorted(out.glob("appliance-*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"building the package from {source} made no wheel")
    return wheels[0]


def pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name (``appliance-0.1.0-py3-none-any.whl``)."""
    return wheel.name.split("-")[1]


def installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    result = run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('appliance'))"],
        quiet=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def read_state() -> dict[str, str]:
    try:
        state = json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def ensure_package(wheel: Path) -> bool:
    """Installs the wheel into the venv unless that very wheel is installed; True if it did."""
    digest = sha256(wheel)
    version = wheel_version(wheel)
    current = installed_version()
    if current == version and read_state().get("wheel_sha256") == digest:
        say(f"package: appliance {version} is installed already")
        return False
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install"]
    if current == version:
        say(f"package: reinstalling appliance {version} (a different build)")
        run([*pip, "--force-reinstall", "--no-deps", str(wheel)], env=pip_env())
    else:
        say(f"package: appliance {current or '(none)'} -> {version}")
        run([*pip, str(wheel)], env=pip_env())
    return True


def validate_config(config: Path, credential: str, package: Path, python: str) -> None:
    """Refuses a config the package's own loader rejects, before anything is changed."""
    with tempfile.TemporaryDirectory(prefix="appliance-install-") as scratch:
        key = Path(scratch) / CREDENTIAL_NAME
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(credential + "\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(package)}
        result = subprocess.run(
            [python, "-c", VALIDATE, str(config), scratch],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if result.returncode == 78:
        problems = "\n  ".join(result.stdout.strip().splitlines())
        raise InstallError(f"the configuration {config} has problems:\n  {problems}")
    if result.returncode != 0:
        raise InstallError(f"could not check the configuration: {result.stderr.strip()}")


def ensure_command_link() -> None:
    """``appliance`` on root's PATH: /usr/local/bin/appliance -> the venv's."""
    target = VENV / "bin" / "appliance"
    COMMAND_LINK.parent.mkdir(parents=True, exist_ok=True)
    if COMMAND_LINK.is_symlink() and Path(os.readlink(COMMAND_LINK)) == target:
        return
    if COMMAND_LINK.exists() and not COMMAND_LINK.is_symlink():
        say(f"left {COMMAND_LINK} alone: it is not ours; run {target}")
        return
    COMMAND_LINK.unlink(missing_ok=True)
    COMMAND_LINK.symlink_to(target)


def service_active() -> bool:
    return (
        run(["systemctl", "is-active", "--quiet", SERVICE], quiet=True, check=False).returncode == 0
    )


def show_failure() -> None:
    run(["systemctl", "--no-pager", "status", SERVICE], check=False)
    run(["journalctl", "--no-pager", "-u", SERVICE, "-n", "30"], check=False)


def check() -> bool:
    """``appliance check``, with the credential handed over as the service gets it."""
    say("appliance check (with the service stopped: a device has one owner)")
    command = [str(VENV / "bin" / "appliance"), "check", "--config", str(CONFIG)]
    with tempfile.TemporaryDirectory(prefix="appliance-check-") as credentials:
        shutil.copy2(CREDENTIAL, Path(credentials) / CREDENTIAL_NAME)
        # The service's environment, not the installer's: no APPLIANCE_* of this shell.
        env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": credentials}
        return run(command, check=False, env=env).returncode == 0


def install(
    sources: Sources,
    *,
    python: str,
    packages: list[str],
    run_check: bool,
    upgrade_only: bool = False,
    credential_placed: Path | None = None,
) -> int:
    """Installs or upgrades; see the module docstring. Returns an exit code.

    Args:
        credential_placed: A file to wipe as soon as the credential is in
            /etc/appliance (the copy on a card's boot partition).

    Raises:
        InstallError: refused or failed.
    """
    installed = STATE.exists()
    if upgrade_only and not installed:
        raise InstallError("the appliance is not installed here: use install")
    version = python_version(python)
    if version < MIN_PYTHON:
        raise InstallError(
            f"{python} is Python {version[0]}.{version[1]}; the appliance needs 3.11 or newer "
            "(Raspberry Pi OS bookworm or newer)"
        )
    # Everything that can be refused is refused before anything changes.
    if sources.credential is not None:
        credential = read_credential(sources.credential, sources.credential_option)
    elif CREDENTIAL.exists():
        credential = read_credential(CREDENTIAL, "the installed credential")
    else:
        raise InstallError(
            f"no credential: give --api-key-file FILE (or --device-token-file FILE); "
            f"{CREDENTIAL} does not exist yet"
        )
    config = sources.config or CONFIG
    if sources.config is None and not CONFIG.exists():
        raise InstallError(
            f"no configuration: give --config appliance.toml ({CONFIG} does not exist)"
        )
    if not config.is_file():
        raise InstallError(f"--config {config}: no such file")
    for name in (SERVICE, "appliance.sysusers"):
        if not (sources.units / name).is_file():
            raise InstallError(f"{sources.units / name}: missing")
    package = sources.package
    if package.is_file() and package.suffix != ".whl":
        raise InstallError(f"--package {package}: not a wheel (.whl) or a source folder")
    if not package.exists():
        raise InstallError(f"--package {package}: no such file or folder")
    if package.is_file():
        validate_config(config, credential, package, python)
    config_bytes = config.read_bytes()

    say(f"{'upgrading' if installed else 'installing'} the appliance")
    changed = ensure_packages(packages)
    sysusers = (sources.units / "appliance.sysusers").read_bytes()
    if write_if_changed(SYSUSERS, sysusers, mode=0o644):
        changed = True
    run(["systemd-sysusers"], quiet=True)
    say("groups: audio and gpio are there (systemd-sysusers)")
    changed |= ensure_venv(python)
    with tempfile.TemporaryDirectory(prefix="appliance-install-") as scratch:
        wheel = package if package.is_file() else build_wheel(package, Path(scratch))
        if not package.is_file():
            validate_config(config, credential, wheel, python)
        changed |= ensure_package(wheel)
        digest, new_version = sha256(wheel), wheel_version(wheel)
    write_if_changed(README, sources.readme.read_bytes(), mode=0o644)
    ensure_command_link()

    ETC.mkdir(mode=0o755, parents=True, exist_ok=True)
    if sources.config is not None:
        if CONFIG.exists() and CONFIG.read_bytes() != config_bytes:
            shutil.copy2(CONFIG, CONFIG.with_name(CONFIG_NAME + ".bak"))
            say(f"config: the previous one is kept as {CONFIG_NAME}.bak")
        if write_if_changed(CONFIG, config_bytes, mode=0o644):
            changed = True
            say(f"config: {CONFIG} (root, 0644)")
        else:
            say(f"config: {CONFIG} unchanged")
    else:
        say(f"config: {CONFIG} kept")
    if write_if_changed(CREDENTIAL, (credential + "\n").encode(), mode=0o600):
        changed = True
        say(f"credential: {CREDENTIAL} (root, 0600)")
    else:
        say(f"credential: {CREDENTIAL} {'unchanged' if sources.credential else 'kept'}")
    if credential_placed is not None:
        wipe(credential_placed)

    unit = (sources.units / SERVICE).read_bytes()
    if write_if_changed(UNIT_DIR / SERVICE, unit, mode=0o644):
        changed = True
        run(["systemctl", "daemon-reload"])
    record = {"version": new_version, "wheel_sha256": digest, "python": python,
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    if read_state().get("wheel_sha256") != digest:
        write_if_changed(STATE, (json.dumps(record, indent=2) + "\n").encode(), mode=0o644)

    active = service_active()
    run(["systemctl", "enable", "--quiet", SERVICE])
    if active and not changed:
        say(f"nothing changed: appliance {new_version} is running")
        return EXIT_OK
    if active:
        run(["systemctl", "stop", SERVICE])
    passed = check() if run_check else True
    if run(["systemctl", "start", SERVICE], check=False).returncode != 0:
        show_failure()
        raise InstallError(f"{SERVICE} did not start: see its status and log above")
    say(f"appliance {new_version} installed; {SERVICE} is running (journalctl -u appliance)")
    if not passed:
        say("but appliance check found problems: see its lines above, and their fix: lines")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def uninstall(*, purge: bool) -> int:
    """Stops and removes the service, venv and units; /etc/appliance only with ``purge``."""
    found = False
    for name in (SERVICE, FIRSTBOOT):
        unit = UNIT_DIR / name
        if unit.exists():
            found = True
            run(["systemctl", "disable", "--now", "--quiet", name], check=False)
            unit.unlink()
            say(f"removed {unit}")
    if found:
        run(["systemctl", "daemon-reload"])
    if COMMAND_LINK.is_symlink() and Path(os.readlink(COMMAND_LINK)).is_relative_to(VENV):
        COMMAND_LINK.unlink()
    if PREFIX.exists():
        found = True
        shutil.rmtree(PREFIX)
        say(f"removed {PREFIX}")
    if SYSUSERS.exists():
        SYSUSERS.unlink()
        say(f"removed {SYSUSERS} (the gpio group stays)")
    if purge:
        for path in (ETC, MARKER.parent):
            if path.exists():
                shutil.rmtree(path)
                say(f"removed {path}")
    elif ETC.exists():
        say(f"kept {ETC} (config and credential); remove it with uninstall --purge")
    say("uninstalled" if found else "the appliance was not installed: nothing to remove")
    return EXIT_OK


def firstboot(*, python: str, packages: list[str]) -> int:
    """Installs from the bundle beside this file, once; leaves :data:`MARKER` when done."""
    if MARKER.exists():
        say(f"first boot: done already ({MARKER})")
        return EXIT_OK
    units, readme, wheel = default_sources()
    if wheel is None or units != HERE:
        raise InstallError(f"no bundle beside {__file__} (appliance-*.whl, appliance.service)")
    credential = HERE / CREDENTIAL_NAME
    config = HERE / CONFIG_NAME
    sources = Sources(
        package=wheel,
        units=units,
        readme=readme,
        config=config if config.exists() else None,
        credential=credential if credential.exists() else None,
    )
    say(f"first boot: installing from {HERE}")
    code = install(
        sources, python=python, packages=packages, run_check=True, credential_placed=credential
    )
    MARKER.parent.mkdir(parents=True, exist_ok=True)
    MARKER.write_text(f"installed from {HERE} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    say(f"first boot: done; {MARKER} keeps later boots from running it again")
    return EXIT_OK if code == EXIT_CHECK_FAILED else code


def over_ssh(args: argparse.Namespace) -> int:
    """Copies a bundle to ``args.ssh`` and runs this installer there, as root (sudo)."""
    sys.path.insert(0, str(HERE))
    import bundle  # only in a checkout: the host side

    host = args.ssh
    with tempfile.TemporaryDirectory(prefix="appliance-ssh-") as scratch:
        local = Path(scratch) / "bundle"
        remote_args = [args.action]
        files: list[Path]
        if args.action == "uninstall":
            local.mkdir()
            files = [Path(shutil.copy2(bundle.INSTALLER, local / "install.py"))]
            remote_args += ["--purge"] if args.purge else []
        else:
            package = Path(args.package) if args.package else CHECKOUT
            if package.is_file():
                bundle.check_wheel(package)
                wheel = package
            else:
                say(f"building the package from {package}")
                wheel = bundle.build_wheel(Path(scratch) / "wheel", source=package)
            option, path = credential_option(args)
            credential = read_credential(Path(path), option) if path else None
            config_text = Path(args.config).read_text() if args.config else None
            files = bundle.assemble(
                local, wheel=wheel, config_text=config_text, credential=credential
            )
            remote_args += ["--package", f"@/{wheel.name}"]
            remote_args += ["--config", f"@/{CONFIG_NAME}"] if config_text is not None else []
            remote_args += ["--api-key-file", f"@/{CREDENTIAL_NAME}"] if credential else []
            remote_args += ["--no-check"] if args.no_check else []
        if args.apt_packages is not None:
            remote_args += ["--apt-packages", args.apt_packages]
        made = run(["ssh", host, "mktemp -d /tmp/appliance-install.XXXXXX"], quiet=True)
        remote = made.stdout.strip()
        if not remote.startswith("/tmp/appliance-install."):
            raise InstallError(f"ssh {host}: mktemp answered {remote!r}")
        run(["scp", "-q", "-p", *map(str, files), f"{host}:{remote}/"])
    words = [f"{remote}{word[1:]}" if word.startswith("@/") else word for word in remote_args]
    command = (
        'if [ "$(id -u)" -eq 0 ]; then s=; else s=sudo; fi; '
        f"$s python3 {shlex.quote(remote + '/install.py')} {shlex.join(words)}; "
        f"status=$?; rm -rf {shlex.quote(remote)}; exit $status"
    )
    tty = ["-t"] if sys.stdin.isatty() else []
    return run(["ssh", *tty, host, command], check=False).returncode


def credential_option(args: argparse.Namespace) -> tuple[str, str]:
    if args.api_key_file and args.device_token_file:
        raise InstallError("give --api-key-file or --device-token-file, not both")
    if args.device_token_file:
        return "--device-token-file", str(args.device_token_file)
    return "--api-key-file", str(args.api_key_file or "")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/install",
        description="Install, upgrade or uninstall the appliance on this device (as root), "
        "or on another one with --ssh.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        default="install",
        choices=("install", "upgrade", "uninstall", "firstboot"),
        help="what to do (default: install)",
    )
    parser.add_argument("--package", help="a wheel (appliance-*.whl) or a source folder "
                        "(default: the bundle's wheel, or this checkout)")  # fmt: skip
    parser.add_argument("--config", help="the appliance.toml to install (kept if not given)")
    parser.add_argument("--api-key-file", help="file holding the OpenAI API key")
    parser.add_argument("--device-token-file", help="file holding a relay's device token")
    parser.add_argument("--no-check", action="store_true", help="skip `appliance check`")
    parser.add_argument("--purge", action="store_true", help="uninstall: remove /etc/appliance too")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="the venv's Python (Debian's)")
    parser.add_argument(
        "--apt-packages",
        help=f"Debian packages to install, space-separated (default: ${PACKAGES_ENV}, "
        f"or {' '.join(DEFAULT_PACKAGES)})",
    )
    parser.add_argument("--ssh", metavar="[USER@]HOST", help="do it on HOST, over ssh (sudo there)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    listed = args.apt_packages if args.apt_packages is not None else os.environ.get(PACKAGES_ENV)
    packages = list(DEFAULT_PACKAGES) if listed is None else listed.split()
    try:
        if args.ssh:
            return over_ssh(args)
        if os.geteuid() != 0:
            raise InstallError("run it as root: sudo scripts/install ... (or --ssh HOST)")
        if not shutil.which("systemctl"):
            raise InstallError("no systemctl: the appliance runs as a systemd service")
        if args.action == "uninstall":
            return uninstall(purge=args.purge)
        if args.action == "firstboot":
            return firstboot(python=args.python, packages=packages)
        units, readme, default_package = default_sources()
        package = Path(args.package) if args.package else default_package
        if package is None:
            raise InstallError("no package: give --package appliance-*.whl")
        option, credential = credential_option(args)
        sources = Sources(
            package=package.absolute(),
            units=units,
            readme=readme,
            config=Path(args.config) if args.config else None,
            credential=Path(credential) if credential else None,
            credential_option=option,
        )
        return install(
            sources,
            python=args.python,
            packages=packages,
            run_check=not args.no_check,
            upgrade_only=args.action == "upgrade",
        )
    except InstallError as exc:
        print(f"scripts/install: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
