"""The orchestrator: wires the devices, the upstream link and the turn machine.

Every input (a button action, a captured chunk, a played report, a link
event) becomes a call queued on one inbox; one loop takes them in order, calls
the turn machine with the time, then sends what the machine queued and
performs its effects. Nothing else touches the machine, so there are no
locks and no races. The loop sleeps until the machine's next deadline.

Startup is in dependency order: microphone, speaker (each waited for while
it is missing, up to ``audio.lost_exit_s``), button (its script clock starts
here), ready, then the upstream link. Shutdown is the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import partial

from appliance.audio.earcons import Cue, render
from appliance.audio.ports import Microphone, Speaker
from appliance.button import Button, ButtonAction
from appliance.config import Config
from appliance.effects import (
    DropSession,
    Effect,
    Mark,
    OpenSpare,
    PlayAudio,
    PlayCue,
    Promote,
    SessionLost,
    SessionReady,
    StopPlayback,
    TurnDone,
)
from appliance.lag import watch_loop_lag
from appliance.logs import log_event
from appliance.patience import open_patiently
from appliance.realtime.session import Session
from appliance.status import Companion, Health, Phase, Status
from appliance.transport import Closed, Connected, LinkEvent, Received, Retrying, Upstream
from appliance.turn import TurnMachine, TurnState

logger = logging.getLogger(__name__)

Observer = Callable[[Effect, float], None]
"""Sees every effect of the core with its time (seconds, loop clock)."""

DRAIN_ON_EXIT_S = 10.0
"""How long the speaker may take to play out what is queued at a clean exit."""

ERROR_SHOWN_S = 5.0
"""How long a failed turn shows the error status before the normal one returns."""

_TURN_PHASES = {
    TurnState.LISTENING: Phase.LISTENING,
    TurnState.THINKING: Phase.THINKING,
    TurnState.SPEAKING: Phase.SPEAKING,
}


class Daemon:
    """One appliance: devices, link and turns.

    Args:
        config: the validated configuration.
        microphone: the audio source.
        speaker: the audio sink.
        button: the talk button.
        upstream: the link to the Realtime endpoint.
        observer: optional; sees every effect, e.g. to draw a timeline.
        companions: follow the daemon's life and status (LED, systemd, ...).
    """

    def __init__(
        self,
        config: Config,
        *,
        microphone: Microphone,
        speaker: Speaker,
        button: Button,
        upstream: Upstream,
        observer: Observer | None = None,
        companions: Sequence[Companion] = (),
    ) -> None:
        self._config = config
        self._microphone = microphone
        self._speaker = speaker
        self._button = button
        self._upstream = upstream
        self._observer = observer
        self._companions = tuple(companions)
        self._machine = TurnMachine(
            min_turn_ms=config.audio.min_turn_ms,
            max_turn_s=config.audio.max_turn_s,
            hold_s=config.audio.hold_s,
            response_timeout_s=config.watchdog.response_timeout_s,
            rotate_before_expiry_s=config.watchdog.rotate_before_expiry_s,
            context_turns=config.upstream.context_turns,
            echo_tail_ms=config.audio.echo_tail_ms if config.audio.half_duplex else None,
        )
        self._inbox: asyncio.Queue[Callable[[float], None]] = asyncio.Queue()
        self._clock: Callable[[], float] = time.monotonic  # the loop's clock, set by run()
        self._sessions: dict[int, Session] = {}
        self._dialled_at = 0.0
        self._spare_dialled_at = 0.0
        self.ready_at: float | None = None
        """When the devices were open and the daemon ready (loop clock, seconds)."""
        self.health = Health()
        """Signs of life for watchdogs."""
        self._status = Status(Phase.STARTING)
        self._offline: str | None = None
        self._error: tuple[str, float] | None = None

    @property
    def status(self) -> Status:
        """What the appliance is doing now."""
        return self._status

    @property
    def machine(self) -> TurnMachine:
        """The turn machine (for inspection)."""
        return self._machine

    async def run(self) -> int:
        """Run until cancelled, or until a finished script's last turn ended.

        Returns:
            The exit code: 0.
        """
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        try:
            # A missing device is waited for; both together for at most lost_exit_s.
            give_up_at = loop.time() + self._config.audio.lost_exit_s
            await self._open(
                "microphone", partial(self._microphone.open, self._post_audio), give_up_at
            )
            await self._open("speaker", partial(self._speaker.open, self._post_played), give_up_at)
            await self._button.open(self._post_button)
            self.ready_at = loop.time()
            logger.info("ready: devices open, connecting to the upstream")
            for companion in self._companions:
                companion.started()
            self._show(Status(Phase.CONNECTING))
            async with asyncio.TaskGroup() as group:
                background = [group.create_task(self._upstream.run(self._post_link))]
                background += [group.create_task(c.run(self.health)) for c in self._companions]
                background.append(group.create_task(watch_loop_lag()))
                await self._serve()
                await self._speaker.drain(DRAIN_ON_EXIT_S)
                for task in background:
                    task.cancel()
        finally:
            self._show(Status(Phase.STOPPING))
            for companion in self._companions:
                companion.stopping()
            await self._button.close()
            await self._speaker.close()
            await self._microphone.close()
            logger.info("stopped")
        return 0

    async def _open(
        self, what: str, open_it: Callable[[], Awaitable[None]], give_up_at: float
    ) -> None:
        """Open an audio device; one that is missing is waited for until ``give_up_at``."""
        await open_patiently(
            what,
            open_it,
            give_up_at=give_up_at,
            # Each try is news to systemd, whose start timeout it pushes away.
            waiting=lambda why: self._show(Status(Phase.ERROR, why), again=True),
        )

    # ------------------------------------------------------------------
    # Inputs: each becomes a call on the inbox, run by _serve in order.

    def _post_audio(self, pcm: bytes) -> None:
        if self.ready_at is None:
            return  # the speaker is still being opened: nothing is served yet, nor kept
        self.health.audio_at = self._clock()
        # Whether this is the speaker's echo depends on what it has played: bring that
        # count up to date first (its reports go into the inbox ahead of the audio).
        self._speaker.report_played()
        self._inbox.put_nowait(partial(self._machine.audio, pcm))

    def _post_played(self, tag: Hashable, samples: int) -> None:
        self._inbox.put_nowait(partial(self._machine.played, tag, samples))

    def _post_button(self, action: ButtonAction) -> None:
        machine = self._machine
        # The turn is the audio between press and release: what was captured before
        # the button moved goes into the inbox ahead of it.
        self._microphone.deliver_now()
        if action == "press":
            # A press may interrupt a reply, truncated at what was played: bring that count
            # up to date first (its reports go into the inbox ahead of the press).
            self._speaker.report_played()
        self._inbox.put_nowait(machine.press if action == "press" else machine.release)

    def _post_link(self, event: LinkEvent) -> None:
        self._inbox.put_nowait(partial(self._on_link, event))

    def _on_link(self, event: LinkEvent, now: float) -> None:
        if isinstance(event, Retrying):
            self._offline = f"reconnecting in {event.delay_s:.0f} s ({event.cause})"
            return
        if isinstance(event, Connected):
            upstream = self._config.upstream
            session = Session(
                voice=upstream.voice,
                instructions=upstream.instructions,
                name=f"c{event.link}",
                transcription_model=upstream.transcription_model or None,
            )
            self._sessions[event.link] = session
            if event.spare:
                self._spare_dialled_at = event.attempt_started_at
            else:
                self._dialled_at = event.attempt_started_at
            self._machine.connected(session, now, wall_s=time.time(), spare=event.spare)
            return
        known = self._sessions.get(event.link)
        if known is None:
            return
        if isinstance(event, Received):
            self._machine.receive(known, event.data, now)
        elif isinstance(event, Closed):
            del self._sessions[event.link]
            self._machine.disconnected(known, event.reason, now)

    def _link_of(self, name: str) -> int | None:
        for link, session in self._sessions.items():
            if session.name == name:
                return link
        return None

    # ------------------------------------------------------------------
    # The loop

    def _finished(self) -> bool:
        button = self._config.button
        return button.exit_after_script and self._button.exhausted and self._machine.idle

    async def _serve(self) -> None:
        # One timer, re-armed only when the next deadline moves: audio arrives
        # fifty times a second, and a fresh timeout per item would cost more
        # than the work it guards. A tick that comes late or early is harmless:
        # the machine acts only on deadlines that have come.
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        armed_for: float | None = None
        try:
            while not self._finished():
                deadline = self._next_deadline()
                if deadline != armed_for:
                    if timer is not None:
                        timer.cancel()
                    timer = None
                    if deadline is not None:
                        timer = loop.call_at(deadline, self._post_tick)
                    armed_for = deadline
                call = await self._inbox.get()
                if call == self._tick:
                    armed_for = None  # fired: arm again for whatever comes next
                call(self._clock())
                self.health.loop_at = self._clock()
                self._flush()
                self._show(self._current_status(self._clock()))
        finally:
            if timer is not None:
                timer.cancel()

    def _next_deadline(self) -> float | None:
        deadlines = [self._machine.deadline(), self._error[1] if self._error else None]
        deadlines.append(self._silence_deadline(self._clock()))
        return min((d for d in deadlines if d is not None), default=None)

    def _post_tick(self) -> None:
        # A deadline may end a turn (max_turn_s): what was captured before it goes first.
        self._microphone.deliver_now()
        self._inbox.put_nowait(self._tick)

    def _tick(self, now: float) -> None:
        self._machine.tick(now)

    def _silence_deadline(self, now: float) -> float | None:
        """When the microphone will count as gone if nothing arrives (None: it does now)."""
        last = self.health.audio_at if self.health.audio_at is not None else self.ready_at
        at = None if last is None else last + self._config.audio.stall_s
        return at if at is not None and at > now else None

    def _current_status(self, now: float) -> Status:
        if self.ready_at is not None and self._silence_deadline(now) is None:
            # A dead microphone trumps everything, a turn included: the person must see it.
            stall_s = self._config.audio.stall_s
            return Status(Phase.ERROR, f"no audio from the microphone for {stall_s:g} s")
        trouble = self._speaker.trouble
        if trouble is not None:  # a reply would not be heard: that trumps a turn too
            return Status(Phase.ERROR, trouble)
        phase = _TURN_PHASES.get(self._machine.state)
        if phase is not None:
            return Status(phase)
        if self._error is not None:
            reason, until = self._error
            if now < until:
                return Status(Phase.ERROR, reason)
            self._error = None
        session = self._machine.session
        if session is not None and session.ready:
            return Status(Phase.READY)
        if self._offline is None:
            return Status(Phase.CONNECTING)
        return Status(Phase.OFFLINE, self._offline)

    def _show(self, status: Status, *, again: bool = False) -> None:
        """Tell the companions ``status`` if it changed (or ``again``: if it did not)."""
        if status == self._status and not again:
            return
        self._status = status
        logger.debug("status: %s", status.text())
        for companion in self._companions:
            companion.status(status)

    def _flush(self) -> None:
        machine = self._machine
        for name, event in machine.outgoing():
            link = self._link_of(name)
            if link is not None:
                self._upstream.send(link, event.to_json())
        for effect in machine.effects():
            self._perform(effect)

    def _perform(self, effect: Effect) -> None:
        now = self._clock()
        if self._observer is not None:
            self._observer(effect, now)
        if isinstance(effect, PlayAudio):
            self._speaker.play(effect.pcm, effect.tag)
        elif isinstance(effect, StopPlayback):
            self._speaker.stop()
        elif isinstance(effect, PlayCue):
            audio = self._config.audio
            if audio.earcons and effect.cue not in audio.muted_cues:
                self._speaker.play(render(Cue(effect.cue)), ("cue", effect.cue))
        elif isinstance(effect, Mark):
            logger.debug("turn %d: %s", effect.turn, effect.name)
        elif isinstance(effect, TurnDone):
            session = self._machine.session
            _log_turn(effect, session_id=None if session is None else session.session_id)
            if effect.metrics.outcome == "failed":
                self._error = (effect.reason or "the turn failed", now + ERROR_SHOWN_S)
        elif isinstance(effect, SessionReady):
            self._offline = None
            connect_ms = round((now - self._dialled_at) * 1000)
            log_event(
                logger,
                logging.INFO,
                "session.ready",
                "session %s ready in %d ms",
                effect.session_id,
                connect_ms,
                session_id=effect.session_id,
                connect_ms=connect_ms,
            )
        elif isinstance(effect, SessionLost):
            self._offline = f"session lost ({effect.reason})"
            log_event(
                logger,
                logging.WARNING,
                "session.lost",
                "session %s lost: %s",
                effect.session_id or "(not created)",
                effect.reason,
                session_id=effect.session_id,
                reason=effect.reason,
            )
        elif isinstance(effect, DropSession):
            link = self._link_of(effect.name)
            if link is not None:
                self._upstream.drop(link, effect.reason)
        elif isinstance(effect, OpenSpare):
            self._upstream.rotate()
        elif isinstance(effect, Promote):
            link = self._link_of(effect.name)
            if link is not None:
                self._upstream.promote(link)
            self._dialled_at = self._spare_dialled_at


def _log_turn(done: TurnDone, *, session_id: str | None) -> None:
    m = done.metrics
    figures = ", ".join(
        f"{name} {value} ms"
        for name, value in (
            ("in", m.audio_in_ms),
            ("release to commit", m.release_to_commit_ms),
            ("commit to first audio", m.commit_to_first_audio_ms),
            ("first audio to play", m.first_audio_to_play_ms),
            ("out", m.audio_out_ms),
        )
        if value is not None
    )
    log_event(
        logger,
        logging.WARNING if m.outcome == "failed" else logging.INFO,
        "turn.done",
        "turn %d %s%s (%s)",
        m.turn,
        m.outcome.replace("_", " "),
        f": {done.reason}" if done.reason else "",
        figures,
        turn=m.turn,
        outcome=m.outcome,
        audio_in_ms=m.audio_in_ms,
        release_to_commit_ms=m.release_to_commit_ms,
        commit_to_first_audio_ms=m.commit_to_first_audio_ms,
        first_audio_to_play_ms=m.first_audio_to_play_ms,
        audio_out_ms=m.audio_out_ms,
        session_id=session_id,
    )
