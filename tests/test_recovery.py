"""Recovery scenarios: the daemon as a black box against a misbehaving upstream (R5-R9)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fakes import RecordingCompanion
from test_daemon import Run, appended, run_daemon

from appliance.audio import pcm
from appliance.effects import Promote, SessionLost, TurnDone
from appliance.emulator import Faults
from appliance.status import Phase


def test_rejected_credentials_are_retried_at_most_once_per_period_and_the_daemon_stays_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    companion = RecordingCompanion()
    with caplog.at_level(logging.INFO, logger="appliance"):
        run = asyncio.run(
            run_daemon(
                tmp_path,
                script=[(0.2, "press"), (1.0, "release")],
                overrides={"audio.hold_s": 3.0, "watchdog.rejected_retry_s": 1.0},
                companion=companion,
                api_key="sk-not-the-emulators-key",
            )
        )
    refused = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert 2 <= len(refused) <= 5, "one attempt per rejected_retry_s over about 3.5 s"
    assert run.emulator.connections == []
    (turn,) = run.turns()
    assert turn.outcome == "failed"
    offline = [s.detail for s in companion.statuses if s.phase is Phase.OFFLINE]
    assert any("credential rejected (HTTP 401)" in detail for detail in offline)
    assert "sk-not-the-emulators-key" not in caplog.text


def test_a_new_session_is_reseeded_with_the_conversation_so_far(tmp_path: Path) -> None:
    """Turn 1 is answered; the link drops during turn 2; the new session hears turn 1 again."""
    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(0.2, "press"), (1.2, "release"), (3.0, "press"), (4.0, "release")],
            faults=Faults(drop_after_appends=60),
            later_faults=Faults(),
        )
    )
    first, second = run.emulator.connections
    assert not any(m["type"] == "conversation.item.create" for m in first.received)
    assert [t.outcome for t in run.turns()] == ["replied", "replied"]
    created = [m for m in second.received if m["type"] == "conversation.item.create"]
    assert [m["item"]["role"] for m in created] == ["assistant"]
    (part,) = created[0]["item"]["content"]
    assert part["type"] == "output_text" and "echo" in part["text"]
    types = [m["type"] for m in second.received]
    assert types.index("conversation.item.create") < types.index("input_audio_buffer.append")
    assert pcm.bytes_to_ms(len(appended(second))) == run.turns()[1].audio_in_ms


def lost_at(run: Run) -> list[tuple[float, str]]:
    return [(now, e.reason) for e, now in run.effects if isinstance(e, SessionLost)]


def test_a_stalled_upstream_is_noticed_within_ping_interval_plus_timeout_plus_a_second(
    tmp_path: Path,
) -> None:
    interval_s, timeout_s = 0.5, 0.5
    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(4.0, "press"), (5.0, "release")],
            faults=Faults(stall_after_s=1.0),
            later_faults=Faults(),
            overrides={
                "watchdog.ping_interval_s": interval_s,
                "watchdog.ping_timeout_s": timeout_s,
            },
        )
    )
    first, second = run.emulator.connections[:2]
    assert first.stalled_at is not None
    (lost, reason), *_ = lost_at(run)
    assert lost - first.stalled_at <= interval_s + timeout_s + 1.0, reason
    assert [t.outcome for t in run.turns()] == ["replied"]
    assert any(m["type"] == "input_audio_buffer.commit" for m in second.received)


def test_an_expired_session_is_a_reconnect_not_an_end(tmp_path: Path) -> None:
    """The session expires in the middle of a turn (no rotation during a turn)."""
    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(0.0, "press"), (2.5, "release")],
            faults=Faults(expire_after_s=1.0),
            later_faults=Faults(),
            overrides={"watchdog.rotate_before_expiry_s": 0.2},
        )
    )
    first, second = run.emulator.connections[:2]
    assert first.close_code == 1001
    ((_, reason),) = lost_at(run)
    assert "1001" in reason
    (turn,) = run.turns()
    assert turn.outcome == "replied"
    assert pcm.bytes_to_ms(len(appended(second))) == turn.audio_in_ms
    assert [m["type"] for m in second.received].count("input_audio_buffer.commit") == 1


def test_rotation_makes_the_next_session_ready_before_the_old_one_closes(tmp_path: Path) -> None:
    """expires_at 20 s ahead, rotate 15 s before: the switch falls due during a turn."""
    run = asyncio.run(
        run_daemon(
            tmp_path,
            script=[(4.0, "press"), (5.5, "release"), (9.0, "press"), (10.0, "release")],
            faults=Faults(expires_in_s=20.0),
            later_faults=Faults(),
            overrides={"watchdog.rotate_before_expiry_s": 15.0},
        )
    )
    first, second = run.emulator.connections
    (promote, promoted_at), *_ = [(e, now) for e, now in run.effects if isinstance(e, Promote)]
    assert promote.old_session_id == first.session_id
    assert first.closed_at is not None and promoted_at <= first.closed_at
    assert not lost_at(run), "the rotation lost a session"
    first_turn_end = next(now for e, now in run.effects if isinstance(e, TurnDone))
    assert promoted_at >= first_turn_end, "switched during a turn"
    assert [t.outcome for t in run.turns()] == ["replied", "replied"]
    assert [m["type"] for m in first.received].count("input_audio_buffer.commit") == 1
    assert [m["type"] for m in second.received].count("input_audio_buffer.commit") == 1
    seeded = [m for m in second.received if m["type"] == "conversation.item.create"]
    assert seeded and seeded[0]["item"]["role"] == "assistant"
