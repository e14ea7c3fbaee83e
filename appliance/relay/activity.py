"""What each device does through the relay: the record tests read, the journal lines people read."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from appliance.logs import log_event

__all__ = ["Activity", "SessionRecord", "event_type"]

logger = logging.getLogger(__name__)

_TYPE_FIRST = re.compile(r'\{\s*"type"\s*:\s*"([A-Za-z0-9._]+)"')


def event_type(text: str | bytes) -> str | None:
    """The ``type`` of a Realtime event, cheaply: from its first key, else by parsing it."""
    head = text[:96] if isinstance(text, str) else text[:96].decode(errors="replace")
    match = _TYPE_FIRST.match(head)
    if match:
        return match.group(1)
    try:
        event = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else None


@dataclass(eq=False)
class SessionRecord:
    """One device connection through the relay, for tests and the benchmark to inspect."""

    device: str
    """The device's name."""
    peer: str
    """The device's address, ``host:port``."""
    opened_at: float
    """When the device's handshake completed (seconds, the event loop's clock)."""
    upstream_at: float | None = None
    """When the upstream connection opened, if it did."""
    held: int = 0
    """Device messages that arrived before the upstream was connected (all forwarded)."""
    from_device: int = 0
    """Device messages received."""
    to_device: int = 0
    """Upstream messages passed to the device."""
    turns: int = 0
    """Responses completed (``response.done``)."""
    close_code: int | None = None
    """The close code the relay sent the device, if it closed the connection."""
    reason: str = ""
    """Why the connection ended."""
    closed: bool = False
    """True once both sides are closed."""
    refused: list[str] = field(default_factory=list)
    """Types of device events the policy refused."""
    hold_waits: int = 0
    """Times reading from the device paused because the hold was full."""


class Activity:
    """Keeps a :class:`SessionRecord` and writes the device's journal lines.

    Args:
        record: The connection's record, updated in place.
    """

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self._turn_started: float | None = None
        self._first_audio: float | None = None

    def connected(self) -> None:
        """The device's handshake succeeded."""
        log_event(
            logger,
            logging.INFO,
            "relay.connect",
            "%s connected from %s",
            self.record.device,
            self.record.peer,
            device=self.record.device,
            peer=self.record.peer,
        )

    def upstream_ready(self, now: float, held: int) -> None:
        """The upstream connection opened at ``now``; ``held`` device messages waited for it."""
        record = self.record
        record.upstream_at, record.held = now, held
        log_event(
            logger,
            logging.INFO,
            "relay.upstream",
            "%s: upstream connected in %.0f ms, %d device events held and forwarded",
            record.device,
            (now - record.opened_at) * 1000,
            held,
            device=record.device,
            connect_ms=round((now - record.opened_at) * 1000),
            held=held,
        )

    def from_device(self, kind: str | None, now: float) -> None:
        """A device event of type ``kind`` is on its way upstream."""
        self.record.from_device += 1
        if kind == "input_audio_buffer.commit":
            self._turn_started, self._first_audio = now, None

    def to_device(self, text: str | bytes, now: float) -> None:
        """An upstream event is on its way to the device."""
        self.record.to_device += 1
        kind = event_type(text)
        if kind == "response.output_audio.delta" and self._first_audio is None:
            self._first_audio = now
        elif kind == "response.done":
            self._turn_done(text, now)

    def refused(self, kind: str | None) -> None:
        """The policy refused a device event of type ``kind``."""
        self.record.refused.append(str(kind))
        logger.warning("%s: refused a %s event (policy)", self.record.device, kind)

    def ended(self, reason: str, code: int | None, now: float) -> None:
        """The connection is over, for ``reason``; the device was closed with ``code``."""
        record = self.record
        record.reason, record.close_code, record.closed = reason, code, True
        log_event(
            logger,
            logging.INFO,
            "relay.disconnect",
            "%s disconnected after %.1f s and %d turns: %s",
            record.device,
            now - record.opened_at,
            record.turns,
            reason,
            device=record.device,
            reason=reason,
            code=code,
            duration_ms=round((now - record.opened_at) * 1000),
            turns=record.turns,
        )

    def _turn_done(self, text: str | bytes, now: float) -> None:
        self.record.turns += 1
        status = None
        try:
            event = json.loads(text)
            status = event["response"]["status"]
        except (ValueError, KeyError, TypeError):
            logger.debug("%s: response.done without a status", self.record.device)
        started, first = self._turn_started, self._first_audio
        log_event(
            logger,
            logging.INFO,
            "relay.turn",
            "%s: turn %d %s",
            self.record.device,
            self.record.turns,
            status,
            device=self.record.device,
            turn=self.record.turns,
            status=status,
            commit_to_first_audio_ms=_ms(started, first),
            commit_to_done_ms=_ms(started, now),
        )
        self._turn_started = self._first_audio = None


def _ms(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else round((end - start) * 1000)
