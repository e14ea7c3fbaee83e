"""The relay's small parts on their own: the hold, the attempt limit, close codes, policy."""

from __future__ import annotations

import asyncio
import json

import pytest

from appliance.relay.activity import event_type
from appliance.relay.codes import UPSTREAM_LOST, clip, for_upstream_close
from appliance.relay.hold import Hold
from appliance.relay.limits import AttemptLimiter
from appliance.relay.policy import Policy, Refused


def test_the_hold_keeps_order_and_makes_the_writer_wait_at_the_bound() -> None:
    async def scenario() -> None:
        hold = Hold(10)
        await hold.put("aaaa")
        await hold.put("bbbb")
        third = asyncio.ensure_future(hold.put("cccc"))  # 12 > 10: waits
        await asyncio.sleep(0.01)
        assert not third.done() and hold.waits == 1 and len(hold) == 2
        assert await hold.get() == "aaaa"
        await asyncio.wait_for(third, 1)
        assert [await hold.get(), await hold.get()] == ["bbbb", "cccc"]
        await hold.put("x" * 50)  # larger than the bound, into an empty hold: admitted
        assert hold.size == 50 and hold.total == 4
        reader = asyncio.ensure_future(hold.get())
        assert await asyncio.wait_for(reader, 1) == "x" * 50

    asyncio.run(scenario())


def test_the_attempt_limit_is_a_sliding_window_per_key() -> None:
    limiter = AttemptLimiter(2, window_s=60)
    assert limiter.attempt("a", 0) == 0
    assert limiter.attempt("a", 10) == 0
    assert limiter.attempt("a", 20) == pytest.approx(40)
    assert limiter.attempt("b", 20) == 0
    assert limiter.attempt("a", 60) == 0  # the attempt at 0 left the window
    assert limiter.attempt("a", 61) == pytest.approx(9)
    limiter.forget({"b"})
    assert limiter.attempt("a", 61) == 0


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1001, "Your session hit the maximum duration of 60 minutes.", 1001),
        (1000, "", 1000),
        (4000, "beta", 4000),
        (1011, "keepalive ping timeout", 1011),
        (None, "", UPSTREAM_LOST),
        (1006, "", UPSTREAM_LOST),
        (1008, "policy", UPSTREAM_LOST),
        (1009, "too big", UPSTREAM_LOST),
    ],
)
def test_upstream_closes_map_to_codes_the_device_recovers_from(
    code: int | None, reason: str, expected: int
) -> None:
    got, said = for_upstream_close(code, reason)
    assert got == expected
    assert said and len(said.encode()) <= 123


def test_clip_fits_a_close_frame() -> None:
    assert clip("short") == "short"
    long = "é" * 100
    assert len(clip(long).encode()) <= 123 and clip(long).endswith("...")


def test_policy_leaves_transcription_sessions_and_non_json_alone() -> None:
    policy = Policy(instructions="Rules.", voice="cedar")
    transcription = json.dumps(
        {"type": "session.update", "session": {"type": "transcription", "audio": {}}}
    )
    assert policy.apply(transcription) is transcription
    assert policy.apply("not json") == "not json"
    assert policy.apply("[1, 2]") == "[1, 2]"
    append = '{"type": "input_audio_buffer.append", "audio": "AAAA"}'
    assert policy.apply(append) is append
    user = {"type": "message", "role": "user", "content": []}
    item = json.dumps({"type": "conversation.item.create", "item": user})
    assert policy.apply(item) is item
    assert not Policy().active and policy.active


def test_a_voice_only_policy_allows_system_messages_and_sets_the_voice() -> None:
    policy = Policy(voice="cedar")
    system = {"type": "message", "role": "system", "content": []}
    item = json.dumps({"type": "conversation.item.create", "item": system})
    assert policy.apply(item) is item
    result = policy.apply(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
    assert not isinstance(result, Refused)
    assert json.loads(result)["session"] == {
        "type": "realtime",
        "audio": {"output": {"voice": "cedar"}},
    }
    untouched = json.dumps({"type": "response.create", "response": {}})
    assert policy.apply(untouched) is untouched


def test_event_type_reads_the_first_key_or_parses() -> None:
    assert event_type('{"type":"response.done","response":{}}') == "response.done"
    assert event_type('{"event_id": "e", "type": "error"}') == "error"
    assert event_type(b'{"type": "session.created"}') == "session.created"
    assert event_type("garbage") is None
    assert event_type('{"type": 3}') is None
