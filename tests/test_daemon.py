"""The whole daemon against the emulator over real loopback sockets.

Real file microphone and speaker, real script button, real WebSocket link,
real emulator; every message both ways is checked against the official SDK's
GA types.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeButton, FakeMicrophone, FakeSpeaker, RecordingCompanion
from schema import schema_observer

from appliance import config as config_module
from appliance.audio import pcm
from appliance.audio.wav import read_wav_pcm24k, write_wav
from appliance.daemon import Daemon
from appliance.demo import bundled_sample
from appliance.effects import Effect, TurnDone, TurnMetrics
from appliance.emulator import Connection, Emulator, Faults
from appliance.status import Phase
from appliance.wiring import build_daemon, upstream_link

KEY = "sk-test-0123456789abcdef"
LEAD_IN_S = 0.5


def speech() -> bytes:
    return read_wav_pcm24k(bundled_sample())


@dataclass
class Run:
    daemon: Daemon
    emulator: Emulator
    microphone: bytes
    output: Path
    effects: list[tuple[Effect, float]] = field(default_factory=list)

    def turns(self) -> list[TurnMetrics]:
        return [e.metrics for e, _ in self.effects if isinstance(e, TurnDone)]

    def received(self, type_: str) -> list[dict[str, Any]]:
        return [m for c in self.emulator.connections for m in c.received if m["type"] == type_]

    def played(self) -> bytes:
        return read_wav_pcm24k(self.output)


def appended(connection: Connection) -> bytes:
    return b"".join(
        base64.b64decode(m["audio"])
        for m in connection.received
        if m["type"] == "input_audio_buffer.append"
    )


async def run_daemon(
    tmp_path: Path,
    *,
    script: Sequence[tuple[float, str]],
    faults: Faults | None = None,
    later_faults: Faults | None = None,
    companion: RecordingCompanion | None = None,
    api_key: str = KEY,
    chunk_interval_s: float = 0.005,
    overrides: dict[str, object] | None = None,
    time_limit_s: float = 30.0,
) -> Run:
    observer, violations = schema_observer()
    microphone = bytes(pcm.ms_to_bytes(LEAD_IN_S * 1000)) + speech() + bytes(48_000)
    mic_path, out_path = tmp_path / "mic.wav", tmp_path / "out.wav"
    write_wav(mic_path, microphone)
    key_file = tmp_path / "key"
    key_file.write_text(api_key + "\n")
    os.chmod(key_file, 0o600)
    async with Emulator(
        api_key=KEY, faults=faults or Faults(), observer=observer, chunk_interval_s=chunk_interval_s
    ) as emulator:
        config = config_module.load(
            None,
            env={},
            overrides={
                "upstream.url": emulator.url,
                "upstream.api_key_file": key_file,
                "audio.backend": "file",
                "audio.input": str(mic_path),
                "audio.output": str(out_path),
                "audio.earcons": False,
                "button.backend": "script",
                "button.script": [list(step) for step in script],
                "button.exit_after_script": True,
                "watchdog.reconnect_base_s": 0.05,
                "watchdog.reconnect_max_s": 0.2,
                **(overrides or {}),
            },
        )
        effects: list[tuple[Effect, float]] = []
        daemon = build_daemon(
            config,
            observer=lambda effect, now: effects.append((effect, now)),
            companions=[companion] if companion else [],
        )
        run = Run(daemon, emulator, microphone, out_path, effects)

        async def relent() -> None:
            await emulator.wait_for(lambda: bool(emulator.connections), timeout_s=time_limit_s)
            emulator.faults = later_faults or Faults()

        relenting = asyncio.create_task(relent()) if later_faults is not None else None
        async with asyncio.timeout(time_limit_s):
            assert await run.daemon.run() == 0
        if relenting is not None:
            relenting.cancel()
    assert violations == [], violations
    return run


def test_press_before_the_session_is_ready_loses_nothing(tmp_path: Path) -> None:
    """The emulator delays session.created by 1.5 s; the press comes at 0.2 s."""
    run = asyncio.run(
        run_daemon(
            tmp_path, script=[(0.2, "press"), (2.6, "release")], faults=Faults(created_delay_s=1.5)
        )
    )
    (connection,) = run.emulator.connections
    log = connection.log
    updated_at = next(i for i, (d, m) in enumerate(log) if m["type"] == "session.updated")
    first_append = next(
        i for i, (d, m) in enumerate(log) if m["type"] == "input_audio_buffer.append"
    )
    assert first_append > updated_at, "audio was sent before session.updated"
    assert connection.received[0]["type"] == "session.update"
    assert len(run.received("input_audio_buffer.commit")) == 1
    turn_audio = appended(connection)
    (turn,) = run.turns()
    assert turn.outcome == "replied"
    assert pcm.bytes_to_ms(len(turn_audio)) == turn.audio_in_ms >= 2300
    # The whole turn, in order: one contiguous stretch of what the microphone heard.
    assert run.microphone.find(turn_audio) != -1
    # The echo came back and was played whole.
    assert run.played() == turn_audio


def test_barge_in_stops_playback_cancels_and_truncates_at_the_played_ms(tmp_path: Path) -> None:
    run = asyncio.run(
        run_daemon(
            tmp_path,
            # A 2 s turn, then a press 0.6 s into its 2 s reply, then a short tap.
            script=[(0.2, "press"), (2.2, "release"), (2.8, "press"), (2.85, "release")],
            chunk_interval_s=0.15,  # replies stream at about real time: still active
        )
    )
    first, second = run.turns()
    assert first.outcome == "interrupted"
    assert second.outcome == "too_short"
    cancels = run.received("response.cancel")
    (truncate,) = run.received("conversation.item.truncate")
    assert len(cancels) == 1
    (connection,) = run.emulator.connections
    types = [m["type"] for m in connection.received]
    assert types.index("response.cancel") < types.index("conversation.item.truncate")
    played_ms = pcm.bytes_to_ms(len(run.played()))
    assert first.audio_out_ms is not None and first.audio_out_ms > 0
    # Truncated at what was actually played, within one audio period.
    assert abs(truncate["audio_end_ms"] - played_ms) <= pcm.PERIOD_MS
    assert played_ms < 1900, "playback did not stop"
    truncated = [m for m in connection.sent if m["type"] == "conversation.item.truncated"]
    assert truncated and truncated[0]["audio_end_ms"] == truncate["audio_end_ms"]
    assert len(run.received("response.create")) == 1


def test_short_tap_is_never_committed(tmp_path: Path) -> None:
    run = asyncio.run(run_daemon(tmp_path, script=[(0.6, "press"), (0.68, "release")]))
    (turn,) = run.turns()
    assert turn.outcome == "too_short"
    assert turn.audio_out_ms is None
    assert run.received("input_audio_buffer.commit") == []
    assert run.received("response.create") == []


def test_rejected_session_update_means_the_session_is_never_used(tmp_path: Path) -> None:
    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(0.2, "press"), (1.2, "release")],
            faults=Faults(reject_update=True),
            overrides={"audio.hold_s": 2.0},
        )
    )
    assert len(run.emulator.connections) >= 2, "the daemon should have tried again"
    for connection in run.emulator.connections:
        types = {m["type"] for m in connection.received}
        assert types <= {"session.update"}, types
    (turn,) = run.turns()
    assert turn.outcome == "failed"


def test_a_connection_lost_mid_turn_costs_nothing_the_person_said(tmp_path: Path) -> None:
    """The link dies without a close frame 0.6 s into the turn; the next session gets it all."""

    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(0.2, "press"), (2.2, "release")],
            faults=Faults(drop_after_appends=30),
            later_faults=Faults(),
        )
    )
    first, second = run.emulator.connections
    assert first.close_code != 1000
    assert run.received("input_audio_buffer.commit") == [
        m for m in second.received if m["type"] == "input_audio_buffer.commit"
    ]
    assert len(run.received("input_audio_buffer.commit")) == 1
    (turn,) = run.turns()
    assert turn.outcome == "replied"
    resent = appended(second)
    assert pcm.bytes_to_ms(len(resent)) == turn.audio_in_ms >= 1900
    assert run.microphone.find(resent) != -1, "the turn is not one contiguous stretch"
    assert run.played() == resent


def test_status_follows_the_turn_and_the_link(tmp_path: Path) -> None:
    companion = RecordingCompanion()
    asyncio.run(
        run_daemon(tmp_path, script=[(0.6, "press"), (1.6, "release")], companion=companion)
    )
    assert companion.calls[0] == "started"
    assert companion.calls[-1] == "stopping"
    assert companion.phases() == [
        Phase.CONNECTING,
        Phase.READY,
        Phase.LISTENING,
        Phase.THINKING,
        Phase.SPEAKING,
        Phase.READY,
        Phase.STOPPING,
    ]
    assert companion.health is not None and companion.health.audio_at is not None


def test_status_shows_offline_with_the_reason_and_then_the_error(tmp_path: Path) -> None:
    companion = RecordingCompanion()
    asyncio.run(
        run_daemon(
            tmp_path,
            script=[(0.2, "press"), (1.2, "release")],
            faults=Faults(reject_update=True),
            overrides={"audio.hold_s": 2.0},
            companion=companion,
        )
    )
    offline = [s for s in companion.statuses if s.phase is Phase.OFFLINE]
    assert offline and "session.update rejected" in offline[0].detail
    assert any("reconnecting in" in s.detail for s in offline)
    errors = [s for s in companion.statuses if s.phase is Phase.ERROR]
    assert errors and "no upstream session" in errors[0].detail


@pytest.mark.parametrize("ended_by", ["release", "max_turn_s"])
def test_audio_a_microphone_still_holds_when_the_turn_ends_is_in_the_turn(
    tmp_path: Path, ended_by: str
) -> None:
    """A device microphone delivers in batches; the turn's end must not cut the last one off."""
    microphone, button = FakeMicrophone(batching=True), FakeButton()
    observer, violations = schema_observer()
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    os.chmod(key_file, 0o600)

    async def scenario() -> bytes:
        async with Emulator(api_key=KEY, observer=observer) as emulator:
            config = config_module.load(
                None,
                env={},
                overrides={
                    "upstream.url": emulator.url,
                    "upstream.api_key_file": key_file,
                    "audio.max_turn_s": 0.5,
                },
            )
            daemon = Daemon(
                config,
                microphone=microphone,
                speaker=FakeSpeaker(),
                button=button,
                upstream=upstream_link(config),
            )
            task = asyncio.create_task(daemon.run())
            async with asyncio.timeout(10):
                await emulator.wait_for(lambda: daemon.status.phase is Phase.READY, timeout_s=5)
                button.press()
                microphone.push_periods(10, value=7)  # held: no batch was due yet
                if ended_by == "release":
                    button.release()  # else the stuck-button guard ends it, 0.5 s in
                await emulator.wait_for(
                    lambda: any(
                        m["type"] == "input_audio_buffer.commit"
                        for c in emulator.connections
                        for m in c.received
                    ),
                    timeout_s=5,
                )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            (connection,) = emulator.connections
            return appended(connection)

    assert asyncio.run(scenario()) == (7).to_bytes(2, "little") * pcm.PERIOD_SAMPLES * 10
    assert violations == [], violations
