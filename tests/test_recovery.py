"""Recovery scenarios: the daemon as a black box against a misbehaving upstream (R5-R9)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fakes import RecordingCompanion
from test_daemon import appended, run_daemon

from appliance.audio import pcm
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
