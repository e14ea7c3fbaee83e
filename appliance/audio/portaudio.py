"""PortAudio through PyAudio: a quiet start, devices by name, substring or index, rates.

Every PortAudio call that may block (start-up, opening, closing) runs on
one worker thread of its own (:func:`call`): PortAudio is not safe to call
from several threads at once, and a stuck sound server must not stall the
event loop. The worker is a daemon thread, so a PortAudio call that never
returns (seen with a sound server that vanished mid-call) cannot keep the
process from exiting for systemd to restart it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import pyaudio

from appliance.audio import pcm
from appliance.errors import AudioDeviceError

logger = logging.getLogger(__name__)

Direction = Literal["input", "output"]
"""Capture or playback."""

_T = TypeVar("_T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_JOBS: queue.SimpleQueue[_Job] = queue.SimpleQueue()


def _work() -> None:
    while True:
        function, loop, future = _JOBS.get()
        try:
            result = function()
        except BaseException as exc:  # handed to the caller, whatever it is
            outcome: Callable[[], None] = functools.partial(_settle, future, None, exc)
        else:
            outcome = functools.partial(_settle, future, result, None)
        try:
            loop.call_soon_threadsafe(outcome)
        except RuntimeError:  # the caller's loop is gone: nobody waits any more
            logger.debug("PortAudio call finished after its event loop closed")
        # Hold nothing while idle: the devices (and their resamplers) must be freeable.
        del function, loop, future, outcome


def _settle(future: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


@functools.cache
def _start_worker() -> None:
    threading.Thread(target=_work, name="portaudio", daemon=True).start()


# ctypes callbacks must stay referenced for as long as the C libraries may call them.
_ALSA_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)(lambda *_: None)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)(lambda _: None)


async def call(function: Callable[..., _T], *args: object) -> _T:
    """Run ``function(*args)`` on the PortAudio worker thread and wait for it."""
    _start_worker()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    _JOBS.put((functools.partial(function, *args), loop, future))
    # Shielded: a cancelled caller stops waiting, the call itself still runs to its end.
    return await asyncio.shield(future)


CLOSE_TIMEOUT_S = 5.0
"""How long closing a device may take (seconds) before the appliance goes on without it."""


async def close(function: Callable[[], object], *, what: str) -> None:
    """Run the closing ``function`` on the worker, waiting at most ``CLOSE_TIMEOUT_S``.

    A close that hangs (a sound server gone mid-call) is logged and left
    behind: the daemon carries on, and can still exit.
    """
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await call(function)
    except TimeoutError:
        logger.error("%s: PortAudio did not close it in %g s; going on", what, CLOSE_TIMEOUT_S)


@functools.cache
def _silence_alsa_and_jack() -> None:
    """Stop ALSA's and JACK's libraries from printing to the console at start-up.

    PortAudio probes every ALSA device and tries JACK; both libraries report
    each miss on stderr, dozens of lines a journal does not need.
    """
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    for name, setter, handler in (
        ("asound", ("snd_lib_error_set_handler",), _ALSA_HANDLER),
        ("jack", ("jack_set_error_function", "jack_set_info_function"), _JACK_HANDLER),
    ):
        found = ctypes.util.find_library(name)
        if found is None:
            continue
        try:
            library = ctypes.CDLL(found)
            for function in setter:
                getattr(library, function)(handler)
        except (OSError, AttributeError) as exc:
            logger.debug("cannot quieten %s: %s", name, exc)


def start() -> pyaudio.PyAudio:
    """Initialise PortAudio quietly (blocking: use :func:`call`).

    Raises:
        AudioDeviceError: PortAudio cannot start.
    """
    _silence_alsa_and_jack()
    try:
        return pyaudio.PyAudio()
    except OSError as exc:
        raise AudioDeviceError(f"PortAudio cannot start: {exc}") from exc


@dataclass(frozen=True)
class Device:
    """One PortAudio device."""

    index: int
    """PortAudio's index, valid until PortAudio restarts."""
    name: str
    """The device's name, e.g. ``USB PnP Sound Device: Audio (hw:1,0)``."""
    host_api: str
    """The host API, e.g. ``ALSA``."""
    input_channels: int
    """Most capture channels (0: cannot capture)."""
    output_channels: int
    """Most playback channels (0: cannot play)."""
    default_rate_hz: int
    """The device's default (native) sample rate (hertz)."""

    def channels(self, direction: Direction) -> int:
        """Most channels in ``direction``."""
        return self.input_channels if direction == "input" else self.output_channels


def devices(pa: pyaudio.PyAudio) -> list[Device]:
    """Every device PortAudio knows, in index order."""
    found = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        host = pa.get_host_api_info_by_index(int(info["hostApi"]))
        found.append(
            Device(
                index=index,
                name=str(info["name"]),
                host_api=str(host["name"]),
                input_channels=int(info["maxInputChannels"]),
                output_channels=int(info["maxOutputChannels"]),
                default_rate_hz=round(float(info["defaultSampleRate"])),
            )
        )
    return found


def find(pa: pyaudio.PyAudio, spec: str, direction: Direction) -> Device:
    """The device ``spec`` names: an index, an exact name, or a unique substring.

    ``"default"`` is the device named so (ALSA's), or else the host's default.

    Raises:
        AudioDeviceError: no device, or more than one, matches; the message
            lists the candidates.
    """
    usable = [d for d in devices(pa) if d.channels(direction)]
    wanted = spec.strip()
    if wanted.isdigit():
        for device in usable:
            if device.index == int(wanted):
                return device
        raise AudioDeviceError(f"no {direction} device has index {wanted}; {_listing(usable)}")
    exact = [d for d in usable if d.name.lower() == wanted.lower()]
    if exact:
        return exact[0]
    if wanted.lower() == "default":
        try:
            info = (
                pa.get_default_input_device_info()
                if direction == "input"
                else pa.get_default_output_device_info()
            )
        except OSError:
            raise AudioDeviceError(f"no default {direction} device; {_listing(usable)}") from None
        return next(d for d in usable if d.index == int(info["index"]))
    partial = [d for d in usable if wanted.lower() in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(repr(d.name) for d in partial)
        raise AudioDeviceError(f"{spec!r} matches several {direction} devices: {names}")
    raise AudioDeviceError(f"no {direction} device matches {spec!r}; {_listing(usable)}")


def _listing(usable: list[Device]) -> str:
    if not usable:
        return "PortAudio sees none at all"
    return "there are: " + ", ".join(f"{d.index} {d.name!r}" for d in usable)


def supports(
    pa: pyaudio.PyAudio, device: Device, direction: Direction, *, rate_hz: int, channels: int
) -> bool:
    """Whether ``device`` can run s16le at ``rate_hz`` with ``channels``."""
    try:
        if direction == "input":
            return bool(
                pa.is_format_supported(
                    rate_hz,
                    input_device=device.index,
                    input_channels=channels,
                    input_format=pyaudio.paInt16,
                )
            )
        return bool(
            pa.is_format_supported(
                rate_hz,
                output_device=device.index,
                output_channels=channels,
                output_format=pyaudio.paInt16,
            )
        )
    except ValueError:
        return False


def choose_format(
    device: Device,
    *,
    wanted_rate_hz: int,
    supported: Callable[[int, int], bool],
    direction: Direction,
) -> tuple[int, int]:
    """The rate and channel count to open ``device`` with.

    Mono is preferred, then stereo (the first channel is used, or the
    signal copied to both). The rate is ``wanted_rate_hz`` if it is not 0;
    otherwise 24 kHz when the device takes it (no resampling at all), else
    the device's native rate, converted by soxr.

    Args:
        device: The device.
        wanted_rate_hz: The configured rate, or 0 for the choice above.
        supported: Whether the device takes ``(rate_hz, channels)``.
        direction: Capture or playback, for messages.

    Returns:
        ``(rate_hz, channels)``.

    Raises:
        AudioDeviceError: the device takes none of them.
    """
    rates = [wanted_rate_hz] if wanted_rate_hz else [pcm.RATE_HZ, device.default_rate_hz]
    for rate in dict.fromkeys(rates):
        for channels in (1, 2):
            if channels <= device.channels(direction) and supported(rate, channels):
                return rate, channels
    shown = " or ".join(f"{rate} Hz" for rate in dict.fromkeys(rates))
    raise AudioDeviceError(
        f"{direction} device {device.name!r} cannot run 16-bit mono or stereo at {shown}"
    )
