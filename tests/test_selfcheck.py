"""``appliance check``: one line per check, what to do on failure, exit 0 only if all pass."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.demo import bundled_sample
from appliance.emulator import Emulator
from appliance.selfcheck import FAIL_MARK, PASS_MARK, Context, Registry, Result, run_checks

KEY = "sk-selfcheck-0123456789abcdef"
CHECKS = ("config", "credential", "audio input", "audio output", "button", "upstream")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}


def write_setup(
    folder: Path,
    url: str,
    *,
    key: str = KEY,
    key_mode: int = 0o600,
    audio: str = "file",
    button: str = "script",
    extra: str = "",
) -> Path:
    key_file = folder / "openai-api-key"
    key_file.write_text(key + "\n")
    key_file.chmod(key_mode)
    config = folder / "appliance.toml"
    config.write_text(
        f'[upstream]\nurl = "{url}"\napi_key_file = "{key_file}"\n{extra}'
        f'[audio]\nbackend = "{audio}"\ninput = "{bundled_sample()}"\n'
        f'output = "{folder / "out.wav"}"\n'
        f'[button]\nbackend = "{button}"\n'
    )
    return config


def check(config: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = asyncio.run(run_checks(config, out=out, env=CLEAN_ENV if env is None else env))
    return code, out.getvalue().splitlines()


def line_of(lines: list[str], name: str) -> str:
    (found,) = [line for line in lines if line[7:].startswith(f"{name}: ")]
    return found


def fix_after(lines: list[str], name: str) -> str:
    following = lines[lines.index(line_of(lines, name)) + 1]
    assert following.startswith("       fix: "), following
    return following


def with_emulator(folder: Path, **setup: object) -> tuple[int, list[str]]:
    async def scenario() -> tuple[int, list[str]]:
        async with Emulator(api_key=KEY) as emulator:
            config = write_setup(folder, emulator.url, **setup)  # type: ignore[arg-type]
            out = io.StringIO()
            code = await run_checks(config, out=out, env=CLEAN_ENV)
            return code, out.getvalue().splitlines()

    return asyncio.run(scenario())


def test_everything_passes_against_the_emulator_and_the_cli_exits_0(tmp_path: Path) -> None:
    async def scenario() -> subprocess.CompletedProcess[str]:
        async with Emulator(api_key=KEY) as emulator:
            config = write_setup(tmp_path, emulator.url)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance",
                "check",
                "--config",
                str(config),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=CLEAN_ENV,
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode is not None
            return subprocess.CompletedProcess(
                [], process.returncode, stdout.decode(), stderr.decode()
            )

    result = asyncio.run(scenario())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in CHECKS:
        assert line_of(lines, name).startswith(PASS_MARK)
    assert "16000 Hz" in line_of(lines, "audio input")
    assert "session.updated" in line_of(lines, "upstream") and " ms " in line_of(lines, "upstream")
    assert lines[-1] == "all checks passed"
    assert KEY not in result.stdout + result.stderr


def test_a_rejected_key_fails_the_upstream_check_with_what_to_do(tmp_path: Path) -> None:
    code, lines = with_emulator(tmp_path, key="sk-wrong-key-0123456789")
    assert code == 1
    assert line_of(lines, "upstream").startswith(FAIL_MARK)
    assert "rejected the API key (HTTP 401)" in line_of(lines, "upstream")
    assert "valid key" in fix_after(lines, "upstream")
    assert all(line_of(lines, n).startswith(PASS_MARK) for n in CHECKS[:-1])
    assert "sk-wrong-key-0123456789" not in "\n".join(lines)


def test_an_unreachable_upstream_fails_with_what_to_do(tmp_path: Path) -> None:
    code, lines = check(write_setup(tmp_path, "ws://127.0.0.1:9/v1/realtime"))
    assert code == 1
    assert "cannot connect to 127.0.0.1" in line_of(lines, "upstream")
    assert "network" in fix_after(lines, "upstream")


def test_bad_config_and_a_readable_key_file_fail_their_lines_and_skip_the_rest(
    tmp_path: Path,
) -> None:
    config = write_setup(tmp_path, "http://example.com", key_mode=0o644, extra='voice = "robot"\n')
    code, lines = check(config)
    assert code == 1
    assert line_of(lines, "config").startswith(FAIL_MARK)
    assert "upstream.voice" in line_of(lines, "config") and "upstream.url" in line_of(
        lines, "config"
    )
    assert "appliance config" in fix_after(lines, "config")
    credential = line_of(lines, "credential")
    assert credential.startswith(FAIL_MARK) and "chmod 600" in credential
    for name in ("audio input", "audio output", "button", "upstream"):
        assert line_of(lines, name).startswith(FAIL_MARK)
        assert "not checked" in line_of(lines, name)
    total = len([line for line in lines if line.startswith((PASS_MARK, FAIL_MARK))])
    assert lines[-1] == f"{total} of {total} checks failed"
    assert KEY not in "\n".join(lines)


def test_a_backend_with_no_check_fails_and_says_it_is_not_available(tmp_path: Path) -> None:
    registry = Registry()

    @registry.register("audio input", backend=("audio", "file"))
    async def file_input(context: Context) -> Result:
        return Result.passed("a file")

    out = io.StringIO()
    config = write_setup(tmp_path, "ws://127.0.0.1:9/v1/realtime", audio="pyaudio")
    code = asyncio.run(run_checks(config, out=out, env=CLEAN_ENV, registry=registry))
    lines = out.getvalue().splitlines()
    assert code == 1
    assert line_of(lines, "audio input") == (
        f'{FAIL_MARK} audio input: audio.backend = "pyaudio" is not available in this build yet'
    )
    assert fix_after(lines, "audio input") == '       fix: use audio.backend = "file" for now'


def test_an_unreadable_input_wav_and_an_unwritable_output_fail(tmp_path: Path) -> None:
    config = write_setup(tmp_path, "ws://127.0.0.1:9/v1/realtime")
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    # Both pass the config's own checks (a file; an existing folder) but cannot be used:
    # nobody, root included, creates files in /proc.
    text = config.read_text().replace(str(bundled_sample()), str(bad_wav))
    config.write_text(text.replace(str(tmp_path / "out.wav"), "/proc/appliance-out.wav"))
    code, lines = check(config)
    assert code == 1
    assert line_of(lines, "config").startswith(PASS_MARK)
    assert line_of(lines, "audio input").startswith(f"{FAIL_MARK} audio input: cannot use ")
    assert "bad.wav" in line_of(lines, "audio input")
    assert "readable PCM WAV" in fix_after(lines, "audio input")
    assert line_of(lines, "audio output").startswith(
        f"{FAIL_MARK} audio output: cannot write /proc/appliance-out.wav"
    )


def test_the_credential_comes_from_credentials_directory_first(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "openai-api-key").write_text(KEY)
    config = write_setup(tmp_path, "ws://127.0.0.1:9/v1/realtime")
    (tmp_path / "openai-api-key").unlink()
    code, lines = check(config, env={**CLEAN_ENV, "CREDENTIALS_DIRECTORY": str(credentials)})
    assert "from the systemd credential openai-api-key" in line_of(lines, "credential")
    assert line_of(lines, "config").startswith(PASS_MARK)
    assert code == 1  # the upstream at port 9 is not there


def test_the_registry_takes_new_checks_and_reports_a_broken_one(tmp_path: Path) -> None:
    registry = Registry()

    @registry.register("first")
    async def first(context: Context) -> Result:
        return Result.passed(f"saw {context.path.name}")

    @registry.register("pins", backend=("button", "script"))
    async def pins(context: Context) -> Result:
        raise RuntimeError("boom")

    with pytest.raises(ValueError, match="registered already"):
        registry.register("first")(first)

    out = io.StringIO()
    config = write_setup(tmp_path, "ws://127.0.0.1:9/v1/realtime")
    code = asyncio.run(run_checks(config, out=out, env=CLEAN_ENV, registry=registry))
    lines = out.getvalue().splitlines()
    assert code == 1
    assert lines[0] == f"{PASS_MARK} first: saw appliance.toml"
    assert lines[1] == f"{FAIL_MARK} pins: the check itself failed: RuntimeError: boom"
    assert lines[-1] == "1 of 2 checks failed"
