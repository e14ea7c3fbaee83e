"""The ``appliance`` command: argument parsing, logging set-up, exit codes.

Exit codes: 0 clean, 1 unexpected, 78 (``EX_CONFIG``) for a bad configuration.
With ``DEBUG=1`` in the environment, unexpected errors are re-raised with
their traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from appliance import __version__, config, journal, logs
from appliance.errors import ApplianceError, AudioFileError, ConfigError

EX_CONFIG = 78
"""Exit code for configuration errors (``os.EX_CONFIG``); systemd does not restart on it."""

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance", description="A push-to-talk voice appliance."
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--log-format",
            choices=("text", "json", "journal"),
            help="log line format (default: journal when stderr is the journal, else text)",
        )
        sub.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
        return sub

    run = command("run", "run the appliance daemon")
    run.add_argument("--config", type=Path, default=config.DEFAULT_PATH, metavar="PATH")

    demo = command("demo", "one whole turn, all local, with a timeline")
    demo.add_argument("--input", type=Path, metavar="WAV", help="speech to say (any WAV)")
    demo.add_argument(
        "--output", type=Path, default=Path("reply.wav"), metavar="WAV", help="the reply"
    )
    demo.add_argument("--reply", choices=("echo", "tone"), default="echo")
    demo.add_argument("--earcons", action="store_true", help="play (and write) the cues too")

    emulator = command("emulator", "serve the local upstream emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument(
        "--api-key-file",
        type=Path,
        metavar="F",
        help="the key clients must present (default: a new one, written to a 0600 file)",
    )
    emulator.add_argument("--reply", choices=("echo", "tone"), default="echo")
    emulator.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="NAME=VALUE",
        help="inject a fault (repeatable), e.g. expire_after_s=30 or stall_after_events=100; "
        "the names are the fields of appliance.emulator.Faults",
    )

    check = command("check", "self-test: config, credential, devices, pins and upstream")
    check.add_argument("--config", type=Path, default=config.DEFAULT_PATH, metavar="PATH")

    command("devices", "list the sound devices with their channels and default rates")

    show = command("config", "print the effective configuration, secrets masked")
    show.add_argument("--config", type=Path, default=config.DEFAULT_PATH, metavar="PATH")

    from appliance.relay import commands as relay_commands

    relay_commands.add_arguments(command("relay", "serve the fleet relay, or manage its devices"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if args.command == "demo" and not args.verbose:
        level = logging.WARNING  # the timeline is the demo's output
    log_format: Literal["text", "json", "journal"] = args.log_format or (
        "journal" if journal.stderr_is_journal() else "text"
    )
    logs.setup(log_format=log_format, level=level)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(journal.error_text(f"appliance: error: {exc}"), file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a device that failed inside the daemon's task group
        if isinstance(exc, ApplianceError | OSError):
            print(journal.error_text(f"appliance: error: {exc}"), file=sys.stderr)
        else:
            logger.critical("unexpected error", exc_info=True)
            print(f"appliance: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        print(config.render(config.load(args.config)), end="")
        return 0
    if args.command == "devices":
        from appliance.hwchecks import device_listing

        print(device_listing())
        return 0
    if args.command == "check":
        from appliance.selfcheck import run_checks

        return asyncio.run(run_checks(args.config, out=sys.stdout))
    if args.command == "run":
        from appliance.service import serve

        return asyncio.run(serve(args.config))
    if args.command == "demo":
        from appliance.demo import run_demo

        try:
            return asyncio.run(
                run_demo(
                    input_wav=args.input,
                    output_wav=args.output,
                    reply=args.reply,
                    earcons=args.earcons,
                    out=sys.stdout,
                )
            )
        except AudioFileError as exc:
            print(f"appliance: error: {exc}", file=sys.stderr)
            return 1
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "relay":
        from appliance.relay import commands as relay_commands

        return relay_commands.run(args, out=sys.stdout)
    raise AssertionError(f"unknown command {args.command}")


def _fault(setting: str) -> tuple[str, object]:
    """Parse ``--fault NAME=VALUE``; a bad one is an argparse error (exit code 2)."""
    from appliance.emulator.faults import parse_fault

    try:
        return parse_fault(setting)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emulator(args: argparse.Namespace) -> int:
    from appliance.emulator import Faults, run_emulator

    key_file: Path = args.api_key_file
    if key_file is None:
        key_file = Path(tempfile.mkdtemp(prefix="appliance-emulator-")) / "api-key"
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(24) + "\n")
        logger.info("clients must present the key in %s", key_file)
    try:
        key = key_file.read_text().strip()
    except OSError as exc:
        raise ConfigError([f"--api-key-file: cannot read {key_file}: {exc.strerror}"]) from None
    if not key:
        raise ConfigError([f"--api-key-file: {key_file} is empty"])
    try:
        faults = Faults(**dict(args.fault))
        asyncio.run(
            run_emulator(
                host=args.host, port=args.port, api_key=key, reply=args.reply, faults=faults
            )
        )
    except KeyboardInterrupt:
        logger.info("emulator stopped")
    return 0
