"""The current upstream session and the spare that replaces it before expiry, sans-I/O.

Sessions expire (R8). While the appliance is idle and before the current
session expires, a spare session is opened and switched to only once it is
ready (make before break); a spare that fails is tried again later. Every
session is re-seeded with the conversation so far the first time it is
ready, before it takes a turn (R9).

Times ``now`` are seconds on the turn machine's clock (any monotonic clock);
the changes the orchestrator must act on are emitted as effects, in order
with the turn machine's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from appliance.effects import DropSession, Effect, OpenSpare, Promote, SessionLost
from appliance.memory import Memory
from appliance.realtime.events import ClientEvent, ServerEvent
from appliance.realtime.session import Session

logger = logging.getLogger(__name__)

SPARE_RETRY_S = 10.0
"""After a spare session failed, the next rotation attempt waits this long (seconds)."""


class Sessions:
    """The current session and, while a rotation is under way, its spare.

    The turn machine decides what a lost current session means for the turn
    in progress; this class keeps the sessions themselves, their clocks and
    the rotation schedule.

    Args:
        memory: the conversation to re-seed every new session with (R9).
        rotate_before_expiry_s: open the spare this long before the current
            session expires (seconds).
        emit: takes each effect (:class:`DropSession`, :class:`SessionLost`,
            :class:`OpenSpare`, :class:`Promote`) as it happens.
    """

    def __init__(
        self,
        memory: Memory,
        *,
        rotate_before_expiry_s: float,
        emit: Callable[[Effect], None],
    ) -> None:
        self._memory = memory
        self._rotate_before_expiry_s = rotate_before_expiry_s
        self._emit = emit
        self._current: Session | None = None
        self._spare: Session | None = None
        self._spare_requested = False
        self._rotate_at: float | None = None
        self._wall_offset_s: dict[str, float] = {}
        self._announced: set[str] = set()
        self._last_event_at = 0.0

    # ------------------------------------------------------------------
    # State

    @property
    def current(self) -> Session | None:
        """The session of the current connection, if there is one."""
        return self._current

    @property
    def spare(self) -> Session | None:
        """The session being prepared to replace the current one, if any."""
        return self._spare

    @property
    def ready(self) -> bool:
        """True when there is a current session and it is ready."""
        return self._current is not None and self._current.ready

    @property
    def last_event_at(self) -> float:
        """When the current session last sent a server event, connected or took over."""
        return self._last_event_at

    @property
    def announced(self) -> frozenset[str]:
        """Names of the sessions that were seeded once ready and are not yet gone."""
        return frozenset(self._announced)

    @property
    def wall_offsets_s(self) -> Mapping[str, float]:
        """Unix time minus the machine's clock, per connected session's name (seconds)."""
        return dict(self._wall_offset_s)

    def holds(self, session: Session) -> bool:
        """True if ``session`` is the current one or the spare."""
        return session is self._current or session is self._spare

    def outgoing(self) -> list[tuple[str, ClientEvent]]:
        """Take the client events to send, each with the name of its session, in order."""
        return [
            (session.name, event)
            for session in (self._current, self._spare)
            if session is not None
            for event in session.outgoing()
        ]

    def rotation_deadline(self) -> float | None:
        """When an idle machine must next call :meth:`rotate`, if ever."""
        if not self.ready:
            return None
        if self._spare is not None and self._spare.ready:
            return self._last_event_at  # now
        if self._rotate_at is not None and not self._spare_requested:
            return self._rotate_at
        return None

    # ------------------------------------------------------------------
    # Connections

    def connected(
        self, session: Session, now: float, *, wall_s: float, spare: bool = False
    ) -> None:
        """A new connection is open; ``session`` will do its handshake on it.

        A spare is kept only while one is wanted and there is a current
        session to replace; any other is dropped. A session that is not a
        spare becomes the current one: the caller has let go of the previous
        one first (:meth:`lose_current`).

        Args:
            session: the new connection's session.
            now: the time (seconds, the machine's clock).
            wall_s: Unix time at ``now``, to place the session's ``expires_at``.
            spare: the connection was opened for a rotation (:class:`OpenSpare`).
        """
        self._wall_offset_s[session.name] = wall_s - now
        if spare:
            if self._spare_requested and self._spare is None and self._current is not None:
                self._spare = session
            else:
                self._emit(DropSession(session.name, "no longer needed"))
            return
        assert self._current is None
        self._current = session
        self._last_event_at = now

    def receive(self, session: Session, data: str | bytes, now: float) -> list[ServerEvent]:
        """One message from the server for ``session``, which this holds.

        Returns:
            The server events it carried.

        Raises:
            RemoteProtocolError: the message could not be parsed.
            SessionFailed: the message ended the session.
        """
        if session is self._current:
            self._last_event_at = now
        return session.receive(data)

    def announce(self, session: Session) -> bool:
        """Seed ``session`` with the conversation (R9) the first time it is ready.

        The current session's rotation is scheduled from its ``expires_at``
        at the same time.

        Returns:
            True only that first time.
        """
        if not session.ready or session.name in self._announced:
            return False
        self._announced.add(session.name)
        for role, text in self._memory.messages():
            session.add_message(role, text)
        if session is self._current:
            self._schedule_rotation(session)
        return True

    def lose_current(self, reason: str) -> None:
        """The current session is gone: abandon the rotation and drop the spare."""
        session = self._current
        assert session is not None
        self._current = None
        self._rotate_at = None
        self._emit(SessionLost(session.session_id, reason))
        if self._spare is not None:
            self._emit(DropSession(self._spare.name, "the current session was lost"))
        self._spare, self._spare_requested = None, False

    def lose_spare(self, reason: str, now: float) -> None:
        """The spare is gone before it took over: try again in :data:`SPARE_RETRY_S`."""
        logger.warning("the next session failed before it took over: %s", reason)
        self._spare = None
        self._spare_requested = False
        if self._rotate_at is not None:
            self._rotate_at = now + SPARE_RETRY_S

    def forget(self, session: Session) -> None:
        """The connection of ``session`` closed: keep nothing more about it."""
        self._wall_offset_s.pop(session.name, None)
        self._announced.discard(session.name)

    # ------------------------------------------------------------------
    # Rotation

    def rotate(self, now: float) -> Session | None:
        """Idle and ready: switch to the spare, or ask for one when it is time.

        Returns:
            The spare that has just taken over, if one did.
        """
        if not self.ready:
            return None
        spare = self._spare
        if spare is not None and spare.ready:
            old = self._current
            self._current, self._spare, self._spare_requested = spare, None, False
            self._last_event_at = now
            old_id = None if old is None else old.session_id
            logger.info("session %s takes over from %s", spare.session_id, old_id)
            self._emit(Promote(spare.name, spare.session_id or "?", old_id))
            self._schedule_rotation(spare)
            return spare
        if self._rotate_at is not None and now >= self._rotate_at and not self._spare_requested:
            self._spare_requested = True
            self._emit(OpenSpare())
        return None

    def _schedule_rotation(self, session: Session) -> None:
        expires_at = session.expires_at
        offset = self._wall_offset_s.get(session.name)
        if expires_at is None or offset is None:
            self._rotate_at = None
            return
        self._rotate_at = expires_at - offset - self._rotate_before_expiry_s
