"""One device connection bridged to one upstream connection, device events held until it opens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from appliance.relay.activity import Activity, event_type
from appliance.relay.codes import UPSTREAM_UNAVAILABLE, clip, for_upstream_close
from appliance.relay.hold import Hold
from appliance.relay.policy import Policy, Refused

__all__ = ["Bridge", "Dial"]

logger = logging.getLogger(__name__)

Dial = Callable[[], Awaitable[ClientConnection]]
"""Opens a new upstream connection, with the relay's key; raises if it cannot."""

Side = Literal["device", "upstream"]


class Bridge:
    """Moves events both ways, in order, between a device and its own upstream session.

    The upstream is dialled the moment the device is accepted, and the
    device's events are read from then on: those that arrive before the
    upstream is open wait in a :class:`Hold` and are forwarded first, in order.
    Whichever side ends first ends the other at once: an upstream that drops
    or expires closes the device with a code its recovery acts on, and a
    device that goes away closes its upstream session, so none is left open.

    Args:
        device: The device's accepted connection.
        dial: Opens the upstream connection.
        policy: What is imposed on device events.
        hold_bytes: The bound on held device messages (characters or bytes).
        activity: The record and journal of this connection.
    """

    def __init__(
        self,
        device: ServerConnection,
        *,
        dial: Dial,
        policy: Policy,
        hold_bytes: int,
        activity: Activity,
    ) -> None:
        self._device = device
        self._dial = dial
        self._policy = policy
        self._hold = Hold(hold_bytes)
        self._activity = activity
        self._received = 0
        self._ended_by_relay: tuple[int, str] | None = None
        self._finished = False

    @property
    def device(self) -> ServerConnection:
        """The device's connection."""
        return self._device

    async def end(self, code: int, reason: str) -> None:
        """Close the device's connection (and so its upstream) with ``code`` and ``reason``.

        Does nothing if the connection has ended already.
        """
        if self._finished:
            return
        self._ended_by_relay = (code, reason)
        await self._device.close(code, clip(reason))

    async def run(self) -> None:
        """Bridge until either side ends, then close both; never raises ``ConnectionClosed``."""
        loop = asyncio.get_running_loop()
        activity = self._activity
        reading = asyncio.ensure_future(self._read_device())
        dialing = asyncio.ensure_future(self._dial())
        tasks: list[asyncio.Future[Side]] = [reading]
        upstream: ClientConnection | None = None
        code: int | None = None
        reason = ""  # why the connection ended, for the journal
        said = ""  # the reason the device is told, if it differs
        try:
            await asyncio.wait([reading, dialing], return_when=asyncio.FIRST_COMPLETED)
            if not dialing.done():
                reason = self._why_device_ended() + " before the upstream connected"
                return
            try:
                upstream = dialing.result()
            except (OSError, TimeoutError, WebSocketException) as exc:
                code, reason = UPSTREAM_UNAVAILABLE, f"upstream unavailable: {_describe(exc)}"
                level = logging.ERROR if _rejected_key(exc) else logging.WARNING
                logger.log(level, "%s: %s", activity.record.device, reason)
                return
            activity.upstream_ready(loop.time(), self._received)
            tasks += [
                asyncio.ensure_future(self._write_upstream(upstream)),
                asyncio.ensure_future(self._read_upstream(upstream)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if any(task.result() == "device" for task in done):
                reason = self._why_device_ended()
            else:
                code, said = for_upstream_close(upstream.close_code, upstream.close_reason or "")
                reason = f"upstream ended: {said}"
        finally:
            dialing.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(dialing, *tasks, return_exceptions=True)
            if upstream is None and not dialing.cancelled() and dialing.exception() is None:
                upstream = dialing.result()  # opened just as the device left: close it too
            if upstream is not None:
                await upstream.close()
            if self._ended_by_relay is not None:
                code, reason = self._ended_by_relay
            elif code is not None:
                await self._device.close(code, clip(said or reason))
            else:
                await self._device.close()
            self._finished = True
            activity.record.hold_waits = self._hold.waits
            activity.ended(reason, code, loop.time())

    def _why_device_ended(self) -> str:
        if self._ended_by_relay is not None:
            return self._ended_by_relay[1]
        code, text = self._device.close_code, self._device.close_reason
        if code is None or code == 1006:
            return "device gone without a close frame"
        return f"device closed ({code}{' ' + text if text else ''})"

    async def _read_device(self) -> Side:
        """Take each device event, apply the policy, and queue it for the upstream."""
        loop = asyncio.get_running_loop()
        policy, activity, hold = self._policy, self._activity, self._hold
        with contextlib.suppress(ConnectionClosed):
            async for message in self._device:
                self._received += 1
                if policy.active:
                    result = policy.apply(message)
                    if isinstance(result, Refused):
                        activity.refused(event_type(message))
                        await self._device.send(json.dumps(result.error))
                        continue
                    message = result
                activity.from_device(event_type(message), loop.time())
                await hold.put(message)
        return "device"

    async def _write_upstream(self, upstream: ClientConnection) -> Side:
        """Send the held events, then each new one, in order."""
        try:
            while True:
                await upstream.send(await self._hold.get())
        except ConnectionClosed:
            return "upstream"

    async def _read_upstream(self, upstream: ClientConnection) -> Side:
        """Pass every upstream event to the device, in order."""
        loop = asyncio.get_running_loop()
        activity, device = self._activity, self._device
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                activity.to_device(message, loop.time())
                try:
                    await device.send(message)
                except ConnectionClosed:
                    return "device"
        return "upstream"


def _rejected_key(exc: BaseException) -> bool:
    return isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return f"HTTP {status}: the upstream rejected the relay's API key"
        return f"HTTP {status}"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | TimeoutError) else f"{type(exc).__name__}: {text}"
