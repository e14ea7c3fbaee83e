"""The relay's WebSocket server: device handshakes, one live connection per device, revocation."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import ssl
import weakref
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from appliance import __version__
from appliance.configcheck import is_loopback
from appliance.logs import log_event
from appliance.relay.activity import Activity, SessionRecord
from appliance.relay.bridge import Bridge
from appliance.relay.codes import REPLACED, REVOKED
from appliance.relay.config import RelayConfig
from appliance.relay.devices import Device, DeviceRegistry
from appliance.relay.limits import AttemptLimiter, FailureLimiter, address_key
from appliance.relay.policy import Policy
from appliance.upstream_http import http_error

__all__ = ["Relay"]

logger = logging.getLogger(__name__)

UPSTREAM_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""Largest upstream message accepted (bytes): reply deltas carry base64 audio."""

CLOSE_TIMEOUT_S = 2.0
"""How long a closing handshake may take before the connection is dropped (seconds)."""

RECORDS_KEPT = 1000
"""Session records kept in :attr:`Relay.sessions`, newest last."""

ADDRESSES_TRACKED = 10_000
"""IP addresses whose bad tokens are counted at most; the one closest to expiring makes room."""


class Relay:
    """The fleet relay: devices connect with their own token, the upstream gets the real key.

    Args:
        config: The relay's settings, with the API key.
        registry: The devices; default: ``config.devices_file``, loaded at :meth:`start`.
    """

    def __init__(self, config: RelayConfig, *, registry: DeviceRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or DeviceRegistry(config.devices_file)
        self.sessions: collections.deque[SessionRecord] = collections.deque(maxlen=RECORDS_KEPT)
        """The most recent device connections, oldest first."""
        self._policy = Policy(instructions=config.instructions, voice=config.voice)
        self._limiter = AttemptLimiter(config.connects_per_minute)
        self._bad_tokens = FailureLimiter(
            config.bad_tokens_per_address,
            window_s=config.bad_tokens_window_s,
            max_keys=ADDRESSES_TRACKED,
        )
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, Device] = (
            weakref.WeakKeyDictionary()
        )
        self._live: dict[str, tuple[Device, Bridge]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._upstream_uri = f"{config.upstream_url}?{urlencode({'model': config.model})}"
        self._upstream_headers = {"Authorization": f"Bearer {config.api_key.reveal()}"}
        self._upstream_loopback = is_loopback(urlsplit(config.upstream_url).hostname)

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The devices' endpoint: ``ws[s]://HOST:PORT/v1/realtime``."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        scheme = "wss" if self.config.tls_cert_file else "ws"
        return f"{scheme}://{host}:{self.port}/v1/realtime"

    @property
    def live(self) -> dict[str, ServerConnection]:
        """The live connection of each connected device, by name."""
        return {name: bridge.device for name, (_, bridge) in self._live.items()}

    async def start(self) -> None:
        """Load the devices, bind, and start accepting devices.

        Raises:
            ConfigError: the devices file is unusable.
            OSError: the address cannot be bound, or the TLS files cannot be read.
        """
        self.registry.load()
        config = self.config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._check_handshake,
            compression=None,
            max_size=config.max_message_bytes,
            ping_interval=config.ping_interval_s,
            ping_timeout=config.ping_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            ssl=_tls_context(config),
            server_header=f"appliance-relay/{__version__}",
        )
        self._watcher = asyncio.create_task(self._watch_devices())
        logger.info(
            "relay listening on %s, upstream %s, model %s",
            self.url,
            config.upstream_url,
            config.model,
        )

    async def stop(self) -> None:
        """Close every device connection (1001), and with it every upstream session."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for task in self._closing:
            task.cancel()  # the server's close ends every connection anyway
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a device before the upgrade (401, 404, 429), or note who it is."""
        peer = _peer(connection)
        address = _address(connection)
        now = asyncio.get_running_loop().time()
        # A blocked address is refused first: no token is looked at, nothing is logged.
        blocked_s = self._bad_tokens.blocked(address, now)
        if blocked_s > 0:
            return _too_many(
                connection, "Too many bad device tokens from this address; retry later.", blocked_s
            )
        if not urlsplit(request.path).path.rstrip("/").endswith("/realtime"):
            return http_error(connection, HTTPStatus.NOT_FOUND, "Not found.", None)
        self.registry.refresh()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        device = None
        if scheme.lower() == "bearer" and token.strip():
            device = self.registry.identify(token.strip())
        if device is None:
            _refused(None, peer, "unknown or missing device token", HTTPStatus.UNAUTHORIZED)
            if self._bad_tokens.failed(address, now):
                self._blocked(address)
            return http_error(
                connection,
                HTTPStatus.UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_api_key",
            )
        wait_s = self._limiter.attempt(device.name, now)
        if wait_s > 0:
            _refused(
                device.name, peer, "too many connection attempts", HTTPStatus.TOO_MANY_REQUESTS
            )
            return _too_many(
                connection, "Too many connection attempts from this device; retry later.", wait_s
            )
        self._accepted[connection] = device
        return None

    def _blocked(self, address: str) -> None:
        """The journal's one line for a block of ``address``."""
        config = self.config
        log_event(
            logger,
            logging.WARNING,
            "relay.blocked",
            "blocked %s for %g s after %d bad device tokens: its connections get HTTP 429",
            address,
            config.bad_tokens_window_s,
            config.bad_tokens_per_address,
            address=address,
            bad_tokens=config.bad_tokens_per_address,
            block_ms=round(config.bad_tokens_window_s * 1000),
        )

    async def _handle(self, ws: ServerConnection) -> None:
        """Bridge one accepted device connection to its own upstream session."""
        device = self._accepted.pop(ws)
        record = SessionRecord(device.name, _peer(ws), asyncio.get_running_loop().time())
        self.sessions.append(record)
        activity = Activity(record)
        activity.connected()
        bridge = Bridge(
            ws,
            dial=self._dial,
            policy=self._policy,
            hold_bytes=self.config.hold_bytes,
            activity=activity,
        )
        previous = self._live.get(device.name)
        self._live[device.name] = (device, bridge)
        if previous is not None:
            grace_s = self.config.replace_grace_s
            logger.info(
                "%s: a new connection replaces the one before, which is closed in %.1f s "
                "unless the device closes it first",
                device.name,
                grace_s,
            )
            self._end_later(
                previous[1], REPLACED, "replaced by a newer connection of this device", grace_s
            )
        try:
            await bridge.run()
        finally:
            if self._live.get(device.name, (None, None))[1] is bridge:
                del self._live[device.name]

    async def _dial(self) -> ClientConnection:
        config = self.config
        return await connect(
            self._upstream_uri,
            additional_headers=self._upstream_headers,
            user_agent_header=f"appliance-relay/{__version__}",
            compression=None,
            max_size=UPSTREAM_MAX_MESSAGE_BYTES,
            open_timeout=config.upstream_open_timeout_s,
            ping_interval=config.ping_interval_s,
            ping_timeout=config.ping_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            proxy=None if self._upstream_loopback else True,
        )

    async def _watch_devices(self) -> None:
        """Every ``reload_interval_s``, reload a changed devices file and end revoked devices."""
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            self.revoke_removed()

    def revoke_removed(self) -> None:
        """Re-reads the devices file if it changed, and closes removed devices (4003)."""
        if not self.registry.refresh():
            return
        for name, (device, bridge) in list(self._live.items()):
            if not self.registry.holds(device):
                logger.info("%s: device removed: closing its connection", name)
                self._end_later(bridge, REVOKED, "device token revoked", 0.0)
        self._limiter.forget({device.name for device in self.registry.devices})

    def _end_later(self, bridge: Bridge, code: int, reason: str, delay_s: float) -> None:
        """Ends ``bridge`` with ``code`` after ``delay_s`` seconds, in the background."""

        async def end() -> None:
            await asyncio.sleep(delay_s)
            await bridge.end(code, reason)

        task = asyncio.create_task(end())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _refused(device: str | None, peer: str, reason: str, status: HTTPStatus) -> None:
    log_event(
        logger,
        logging.WARNING,
        "relay.refused",
        "refused %s from %s (HTTP %d): %s",
        device or "a connection",
        peer,
        status,
        reason,
        device=device,
        peer=peer,
        status=int(status),
        reason=reason,
    )


def _too_many(connection: ServerConnection, message: str, wait_s: float) -> Response:
    """HTTP 429 with ``Retry-After`` (``wait_s`` rounded up to whole seconds)."""
    response = http_error(connection, HTTPStatus.TOO_MANY_REQUESTS, message, "rate_limit_exceeded")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


def _tls_context(config: RelayConfig) -> ssl.SSLContext | None:
    if config.tls_cert_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return context


def _address(connection: ServerConnection) -> str:
    """Who ``connection`` comes from, for counting bad tokens: see :func:`address_key`."""
    address = connection.remote_address
    if isinstance(address, tuple) and address:
        return address_key(str(address[0]))
    return str(address)


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
