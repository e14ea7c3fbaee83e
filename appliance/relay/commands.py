"""The ``appliance relay`` subcommands: serve, and add, remove or list device tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tomllib
from pathlib import Path
from typing import TextIO

from appliance.errors import ConfigError
from appliance.relay.config import DEFAULT_PATH, RelayConfig, load
from appliance.relay.devices import add_device, read_devices, remove_device

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--config`` and the device subcommands to the ``relay`` parser."""
    config_help = f"the relay's TOML file (default {DEFAULT_PATH})"
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_PATH, metavar="PATH", help=config_help
    )
    actions = parser.add_subparsers(
        dest="relay_command",
        metavar="ACTION",
        title="actions",
        description="without an action, the relay serves until stopped",
    )

    def action(name: str, text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text, description=text)
        # Also accepted after the action; SUPPRESS keeps the value given before it.
        sub.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=config_help
        )
        return sub

    add = action("add-device", "add a device; prints its new token, once")
    add.add_argument("name", metavar="NAME")
    remove = action("remove-device", "remove a device; its token stops working at once")
    remove.add_argument("name", metavar="NAME")
    action("list-devices", "list the devices, one a line: name and when it was added")


def run(args: argparse.Namespace, *, out: TextIO) -> int:
    """Runs the ``relay`` command that ``args`` (from :func:`add_arguments`) describe.

    Args:
        args: The parsed command line.
        out: Where tokens and listings are printed.

    Returns:
        The exit code.

    Raises:
        ConfigError: the configuration, the key or the devices file is unusable.
    """
    action = args.relay_command
    if action is None:
        asyncio.run(serve(load(args.config, env=os.environ)))
        return 0
    devices_file = devices_path(args.config, explicit=args.config != DEFAULT_PATH)
    if action == "add-device":
        token = add_device(devices_file, args.name)
        logger.info(
            "added device %s to %s; its token is printed once and stored only as a hash",
            args.name,
            devices_file,
        )
        print(token, file=out)
        return 0
    if action == "remove-device":
        if not remove_device(devices_file, args.name):
            raise ConfigError([f"no device named {args.name} in {devices_file}"])
        logger.info("removed device %s; its connections are closed within seconds", args.name)
        return 0
    if action == "list-devices":
        for device in read_devices(devices_file):
            print(f"{device.name}\t{device.added}", file=out)
        return 0
    raise AssertionError(f"unknown relay action {action}")


def devices_path(config_path: Path, *, explicit: bool) -> Path:
    """The ``devices_file`` of the relay config at ``config_path``, without reading the key.

    Args:
        config_path: The relay's TOML file.
        explicit: It was named on the command line: then it must exist; the
            default file may be missing, meaning the default devices file.

    Raises:
        ConfigError: the file is unreadable, or its ``devices_file`` is not a path.
    """
    try:
        document = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError([f"{config_path}: no such config file"]) from None
        return RelayConfig.devices_file
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{config_path}: cannot read: {exc}"]) from None
    table = document.get("relay", {})
    value = table.get("devices_file", str(RelayConfig.devices_file))
    if not isinstance(value, str) or not value:
        raise ConfigError([f"{config_path}: relay.devices_file: expected a path"])
    return Path(value)


async def serve(config: RelayConfig) -> None:
    """Serves the relay until SIGTERM or SIGINT, then closes every connection cleanly."""
    from appliance.relay.server import Relay  # the server's imports only when serving

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with Relay(config):
            await stopping.wait()
            logger.info("relay stopping: closing every connection")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
