"""The checks of ``appliance check``: config, credential, file audio, script button, upstream."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import time
import wave
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from appliance.audio.wav import read_wav_pcm24k
from appliance.config import CREDENTIAL_NAME, Config
from appliance.errors import AudioFileError, RemoteProtocolError, SessionFailed
from appliance.realtime.session import Session
from appliance.selfcheck import Context, Result, register

OPEN_TIMEOUT_S = 10.0
"""How long the upstream check waits for the WebSocket handshake (seconds)."""

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""Largest server message accepted by the upstream check (bytes), as the daemon's link."""


@register("config")
async def check_config(context: Context) -> Result:
    """The configuration loads and validates (the key aside: see ``credential``)."""
    if context.config_problems:
        listed = "; ".join(context.config_problems)
        return Result.failed(
            f"{len(context.config_problems)} problem(s): {listed}",
            fix=f"edit {context.path}; `appliance config` lists every problem",
        )
    if context.config is None:  # only the key is wrong: the credential line says so
        return Result.passed(f"{context.path} is valid, but for the API key")
    return Result.passed(f"{context.path} is valid")


@register("credential")
async def check_credential(context: Context) -> Result:
    """The API key is found, readable, private and well-formed (never shown)."""
    if context.key_problems:
        return Result.failed(
            "; ".join(context.key_problems),
            fix=(
                f"give the key as the systemd credential {CREDENTIAL_NAME} "
                "(LoadCredential=) or in upstream.api_key_file, mode 0600"
            ),
        )
    credentials = context.env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return Result.passed(f"from the systemd credential {CREDENTIAL_NAME}")
    if context.config is None:
        return Result.passed("the key file is readable by its owner only")
    return Result.passed(f"from {context.config.upstream.api_key_file}, readable by its owner only")


def _config(context: Context) -> Config:
    # The registry runs backend-specific checks only with a valid configuration.
    assert context.config is not None
    return context.config


@register("audio input", backend=("audio", "file"))
async def check_file_input(context: Context) -> Result:
    """The input WAV file can be read and converted to 24 kHz mono."""
    path = Path(_config(context).audio.input)
    try:
        rate_hz, channels, seconds = await asyncio.to_thread(_read_input, path)
    except (OSError, EOFError, wave.Error, AudioFileError) as exc:
        return Result.failed(
            f"cannot use {path}: {exc}",
            fix="give audio.input a readable PCM WAV file (any rate, any channels)",
        )
    return Result.passed(
        f"{path}: {rate_hz} Hz, {channels} channel(s), {seconds:.1f} s, converts to 24 kHz mono"
    )


@register("audio output", backend=("audio", "file"))
async def check_file_output(context: Context) -> Result:
    """The output WAV file can be written (a scratch file is made and removed beside it)."""
    path = Path(_config(context).audio.output)
    try:
        await asyncio.to_thread(_try_writing, path)
    except OSError as exc:
        return Result.failed(
            f"cannot write {path}: {exc.strerror or exc}",
            fix="give audio.output a WAV path in a folder this user can write",
        )
    return Result.passed(f"{path} is writable (24 kHz mono 16-bit WAV)")


def _read_input(path: Path) -> tuple[int, int, float]:
    """Reads and converts the WAV ``path``; returns its rate (Hz), channels and seconds."""
    with wave.open(str(path), "rb") as w:
        rate_hz, channels = w.getframerate(), w.getnchannels()
        seconds = w.getnframes() / rate_hz if rate_hz else 0.0
    read_wav_pcm24k(path)
    return rate_hz, channels, seconds


def _try_writing(path: Path) -> None:
    """Makes and removes a scratch file beside ``path``, and opens ``path`` if it exists.

    Raises:
        OSError: ``path`` could not be written.
    """
    if path.exists() and not path.is_file():
        raise IsADirectoryError(21, "it is not a file", str(path))
    with tempfile.NamedTemporaryFile(dir=path.absolute().parent, prefix=".appliance-check-"):
        pass
    if path.exists():
        path.open("ab").close()  # open for writing without changing it


@register("button", backend=("button", "script"))
async def check_script_button(context: Context) -> Result:
    """The scripted button has a script (validated with the config)."""
    script = _config(context).button.script
    if not script:
        return Result.passed("script: empty, no presses (runs until stopped)")
    return Result.passed(
        f"script: {len(script)} step(s), the first {script[0][0]:g} s after the daemon is ready"
    )


@register("upstream")
async def check_upstream(context: Context) -> Result:
    """Opens a session, sends the daemon's session.update, awaits a checked session.updated."""
    config = context.config
    if config is None:
        return Result.failed(
            "not checked: the configuration or the key has problems",
            fix="fix the config and credential lines first",
        )
    upstream = config.upstream
    host = urlsplit(upstream.url).hostname or upstream.url
    response_timeout_s = config.watchdog.response_timeout_s
    started = time.monotonic()
    try:
        session_id, connect_ms, ready_ms = await _handshake(
            config, response_timeout_s=response_timeout_s
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            return Result.failed(
                f"{host} rejected the API key (HTTP {status})",
                fix="put a valid key in the credential or key file, then run the check again",
            )
        return Result.failed(
            f"{host} answered HTTP {status} to the WebSocket handshake",
            fix="check upstream.url (the full Realtime endpoint) and upstream.model",
        )
    except ssl.SSLError as exc:
        return Result.failed(
            f"TLS with {host} failed: {exc.reason or exc}",
            fix="check the clock (timedatectl: a Pi has no RTC and needs time sync) and any proxy",
        )
    except TimeoutError:
        waited = time.monotonic() - started
        return Result.failed(
            f"no session from {host} after {waited:.1f} s",
            fix="check the network; if it is slow, raise watchdog.response_timeout_s",
        )
    except (OSError, InvalidHandshake) as exc:
        return Result.failed(
            f"cannot connect to {host}: {exc.strerror if isinstance(exc, OSError) else exc}",
            fix="check the network, DNS and upstream.url",
        )
    except (SessionFailed, RemoteProtocolError, ConnectionClosed) as exc:
        return Result.failed(
            f"{host} did not give a usable session: {exc}",
            fix="check that upstream.url is a Realtime endpoint, upstream.model a realtime model",
        )
    return Result.passed(
        f"session.updated {ready_ms} ms after dialling (connected in {connect_ms} ms, "
        f"session {session_id})"
    )


async def _handshake(config: Config, *, response_timeout_s: float) -> tuple[str, int, int]:
    """Runs one session up to a checked ``session.updated``, the way the daemon does.

    Returns:
        The session id, and the milliseconds from dialling to connected and to ready.

    Raises:
        TimeoutError: no ``session.updated`` within ``response_timeout_s`` of connecting.
        SessionFailed: the upstream refused the configuration.
    """
    upstream = config.upstream
    uri = f"{upstream.url}?{urlencode({'model': upstream.model})}"
    loopback = urlsplit(upstream.url).hostname in ("localhost", "127.0.0.1", "::1")
    started = time.monotonic()
    async with connect(
        uri,
        additional_headers={"Authorization": f"Bearer {config.api_key.reveal()}"},
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        open_timeout=OPEN_TIMEOUT_S,
        proxy=None if loopback else True,
    ) as ws:
        connected = time.monotonic()
        session = Session(voice=upstream.voice, instructions=upstream.instructions, name="check")
        async with asyncio.timeout(response_timeout_s):
            while not session.ready:
                session.receive(await ws.recv())
                for event in session.outgoing():
                    await ws.send(event.to_json())
    ready = time.monotonic()
    return (
        session.session_id or "(no id)",
        round((connected - started) * 1000),
        round((ready - started) * 1000),
    )
