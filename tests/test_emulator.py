"""The emulator over real sockets on 127.0.0.1: handshake, session, turns, faults.

Every emulator here runs with the schema observer: whatever it sends must match
the official SDK's GA types, and so must what the tests send, unless a test
sends bad input on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from schema import schema_observer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from appliance.emulator import Emulator, Faults, run_emulator
from appliance.emulator.replies import convert

KEY = "sk-test-emulator"
MODEL = "gpt-realtime-2"
TIMEOUT_S = 5.0
BYTES_PER_MS = 48  # 24 kHz, 16-bit mono

GA_UPDATE: dict[str, Any] = {
    "type": "session.update",
    "event_id": "cfg-1",
    "session": {
        "type": "realtime",
        "model": MODEL,
        "instructions": "Answer briefly.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": None,
                "noise_reduction": {"type": "near_field"},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
        },
    },
}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one async scenario with an overall deadline, so nothing hangs."""

    async def bounded() -> None:
        async with asyncio.timeout(15):
            await scenario()

    asyncio.run(bounded())


def speech(ms: int, *, freq_hz: float = 220.0) -> bytes:
    """``ms`` milliseconds of a tone with a little noise, 24 kHz s16le mono."""
    count = ms * 24
    t = np.arange(count) / 24000
    rng = np.random.default_rng(ms)
    signal = 0.3 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(count)
    return (signal * 32767).astype("<i2").tobytes()


@contextlib.asynccontextmanager
async def emulator(*, strict_client: bool = True, **options: Any) -> AsyncIterator[Emulator]:
    """An emulator whose traffic is checked against the GA types on exit.

    Args:
        strict_client: Also require client events to be valid (False when a test
            sends bad input on purpose).
    """
    observer, violations = schema_observer()
    async with Emulator(api_key=KEY, observer=observer, **options) as emu:
        yield emu
    if not strict_client:
        violations = [v for v in violations if not v.startswith("client")]
    assert violations == []


class Client:
    """A raw WebSocket client speaking JSON events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT_S):
            event: dict[str, Any] = json.loads(await self.ws.recv())
        self.events.append(event)
        return event

    async def until(self, kind: str) -> list[dict[str, Any]]:
        """Receive events up to and including the first of type ``kind``."""
        got = []
        while True:
            event = await self.recv()
            got.append(event)
            if event["type"] == kind:
                return got

    async def ready(self, update: dict[str, Any] = GA_UPDATE) -> dict[str, Any]:
        """Wait for session.created, send the update, return session.updated."""
        assert (await self.recv())["type"] == "session.created"
        await self.send(update)
        updated = await self.recv()
        assert updated["type"] == "session.updated", updated
        return updated

    async def append(self, audio: bytes, *, chunk_ms: int = 20) -> None:
        step = chunk_ms * BYTES_PER_MS
        for offset in range(0, len(audio), step):
            chunk = base64.b64encode(audio[offset : offset + step]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})


@contextlib.asynccontextmanager
async def client(emu: Emulator, **headers: str) -> AsyncIterator[Client]:
    sent = {"Authorization": f"Bearer {KEY}", **headers}
    async with connect(
        f"{emu.url}?model={MODEL}", additional_headers=sent, max_size=None, open_timeout=TIMEOUT_S
    ) as ws:
        yield Client(ws)


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


def only_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1, events
    error: dict[str, Any] = errors[0]["error"]
    return error


# Handshake


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}])
def test_wrong_or_missing_key_is_refused_with_401(headers: dict[str, str]) -> None:
    async def scenario() -> None:
        async with emulator() as emu:
            with pytest.raises(InvalidStatus) as caught:
                async with connect(f"{emu.url}?model={MODEL}", additional_headers=headers):
                    pass
            assert caught.value.response.status_code == 401
            assert b"invalid_request_error" in caught.value.response.body
            assert emu.connections == []

    run(scenario)


@pytest.mark.parametrize(
    ("target", "status"),
    [("/v1/realtime", 400), ("/v1/other?model=m", 404)],
    ids=["no-model", "other-path"],
)
def test_missing_model_is_400_and_other_paths_404(target: str, status: int) -> None:
    async def scenario() -> None:
        async with emulator() as emu:
            url = f"ws://127.0.0.1:{emu.port}{target}"
            with pytest.raises(InvalidStatus) as caught:
                async with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}):
                    pass
            assert caught.value.response.status_code == status

    run(scenario)


def test_url_and_any_path_ending_in_realtime() -> None:
    async def scenario() -> None:
        async with emulator() as emu:
            assert emu.url == f"ws://127.0.0.1:{emu.port}/v1/realtime"
            url = f"ws://127.0.0.1:{emu.port}/openai/v1/realtime?model={MODEL}"
            headers = {"Authorization": f"Bearer {KEY}"}
            async with connect(url, additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"

    run(scenario)


def test_beta_header_gets_error_then_close_4000() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu, **{"OpenAI-Beta": "realtime=v1"}) as c:
            event = await c.recv()
            assert event["type"] == "error"
            assert event["error"]["code"] == "beta_api_shape_disabled"
            with pytest.raises(ConnectionClosed):
                await c.recv()
            assert c.ws.close_code == 4000

    run(scenario)


# Session


def test_session_created_comes_first_with_id_and_expiry() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            loop_start = asyncio.get_running_loop().time()
            created = await c.recv()
            assert asyncio.get_running_loop().time() >= loop_start
            session = created["session"]
            assert created["type"] == "session.created"
            assert created["event_id"].startswith("event_")
            assert session["id"].startswith("sess_")
            assert session["object"] == "realtime.session"
            assert session["model"] == MODEL
            assert isinstance(session["expires_at"], int)
            assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
            await emu.wait_for(lambda: len(emu.connections) == 1)
            record = emu.connections[0]
            assert record.model == MODEL
            assert record.session_id == session["id"]
            assert record.sent[0] == created

    run(scenario)


def test_valid_update_answers_session_updated_with_full_config() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            updated = await c.ready()
            session = updated["session"]
            assert session["audio"]["input"]["turn_detection"] is None
            assert session["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
            assert session["audio"]["output"]["speed"] == 1.0  # untouched keys stay
            assert session["instructions"] == "Answer briefly."
            assert session["id"] == emu.connections[0].session_id
            assert emu.connections[0].session == session

    run(scenario)


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"modalities": ["audio"]}, "session.modalities"),
        ({"input_audio_format": "pcm16"}, "session.input_audio_format"),
        ({"voice": "marin"}, "session.voice"),
        ({"temperature": 0.8}, "session.temperature"),
        ({"turn_detection": None}, "session.turn_detection"),
        (
            {"audio": {"input": {"input_audio_transcription": None}}},
            "session.audio.input.input_audio_transcription",
        ),
    ],
)
def test_beta_or_unknown_key_drops_the_whole_update(session: dict[str, Any], param: str) -> None:
    async def scenario() -> None:
        async with emulator(strict_client=False) as emu, client(emu) as c:
            await c.recv()
            bad = {
                "type": "session.update",
                "event_id": "bad-1",
                "session": {"type": "realtime", "instructions": "changed", **session},
            }
            await c.send(bad)
            error = only_error([await c.recv()])
            assert error == {
                "type": "invalid_request_error",
                "code": "unknown_parameter",
                "message": f"Unknown parameter: '{param}'.",
                "param": param,
                "event_id": "bad-1",
            }
            await c.send(GA_UPDATE)
            updated = await c.recv()
            assert updated["type"] == "session.updated"
            assert updated["session"]["instructions"] == "Answer briefly."
            kinds = [e["type"] for e in emu.connections[0].sent]
            assert kinds == ["session.created", "error", "session.updated"]

    run(scenario)


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"instructions": "x"}, "missing_required_parameter", "session.type"),
        (
            {"type": "realtime", "output_modalities": ["audio", "text"]},
            "invalid_value",
            "session.output_modalities",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            {"type": "realtime", "audio": {"output": {"format": {"type": "pcm16"}}}},
            "invalid_value",
            "session.audio.output.format.type",
        ),
        (
            {"type": "realtime", "audio": {"output": {"voice": "nova"}}},
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            {"type": "realtime", "audio": {"output": {"speed": 3}}},
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
        ({"type": "realtime", "instructions": 5}, "invalid_type", "session.instructions"),
    ],
)
def test_invalid_update_is_an_error_and_changes_nothing(
    session: dict[str, Any], code: str, param: str
) -> None:
    async def scenario() -> None:
        async with emulator(strict_client=False) as emu, client(emu) as c:
            created = await c.recv()
            await c.send({"type": "session.update", "session": session})
            error = only_error([await c.recv()])
            assert (error["code"], error["param"], error["event_id"]) == (code, param, None)
            assert emu.connections[0].session == created["session"]

    run(scenario)


def test_reject_update_fault_answers_error_and_never_updated() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(reject_update=True)) as emu, client(emu) as c:
            await c.recv()
            await c.send(GA_UPDATE)
            error = only_error([await c.recv()])
            assert error["code"] == "invalid_value"
            assert error["param"] == "session.audio.input.format"
            assert error["event_id"] == "cfg-1"
            # Events are answered in order: a later one's answer proves none is pending.
            await c.send({"type": "input_audio_buffer.clear"})
            assert (await c.recv())["type"] == "input_audio_buffer.cleared"
            assert "session.updated" not in [e["type"] for e in emu.connections[0].sent]

    run(scenario)


def test_faults_apply_per_connection() -> None:
    async def scenario() -> None:
        async with emulator() as emu:
            emu.faults = Faults(reject_update=True)
            async with client(emu) as c:
                await c.recv()
                await c.send(GA_UPDATE)
                assert (await c.recv())["type"] == "error"
            emu.faults = Faults()
            async with client(emu) as c:
                await c.ready()

    run(scenario)


def test_created_delay_holds_back_session_created() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(created_delay_s=0.3)) as emu:
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with client(emu) as c:
                assert (await c.recv())["type"] == "session.created"
                assert loop.time() - started >= 0.3

    run(scenario)


def test_updated_delay_holds_back_session_updated_and_records_early_audio() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(updated_delay_s=0.3)) as emu, client(emu) as c:
            loop = asyncio.get_running_loop()
            await c.recv()
            started = loop.time()
            await c.send(GA_UPDATE)
            await c.append(speech(40))  # too early: the emulator records it as such
            assert (await c.recv())["type"] == "session.updated"
            assert loop.time() - started >= 0.3
            assert emu.connections[0].appends_before_updated == 2

    run(scenario)


def test_voice_cannot_change_after_audio() -> None:
    async def scenario() -> None:
        async with emulator(reply="tone") as emu, client(emu) as c:
            await c.ready()
            await c.send({"type": "response.create"})
            await c.until("response.done")
            voice = {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
            await c.send({"type": "session.update", "session": voice})
            assert only_error([await c.recv()])["code"] == "cannot_update_voice"

    run(scenario)


# Input audio buffer


def test_commit_under_100ms_is_commit_empty() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.append(speech(80))
            await c.send({"type": "input_audio_buffer.commit", "event_id": "c-1"})
            error = only_error([await c.recv()])
            assert error["code"] == "input_audio_buffer_commit_empty"
            assert error["event_id"] == "c-1"
            assert "buffer only has 80.00ms of audio" in error["message"]
            await c.append(speech(20))  # 100 ms in all: now enough
            await c.send({"type": "input_audio_buffer.commit"})
            committed, added, done = [await c.recv() for _ in range(3)]
            assert committed["type"] == "input_audio_buffer.committed"
            assert committed["previous_item_id"] is None
            assert added["type"] == "conversation.item.added"
            assert done["type"] == "conversation.item.done"
            assert added["item"]["id"] == committed["item_id"]
            assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
            assert emu.connections[0].commits == [speech(80) + speech(20)]

    run(scenario)


def test_clear_empties_the_buffer() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.append(speech(200))
            await c.send({"type": "input_audio_buffer.clear"})
            assert (await c.recv())["type"] == "input_audio_buffer.cleared"
            await c.send({"type": "input_audio_buffer.commit"})
            assert only_error([await c.recv()])["code"] == "input_audio_buffer_commit_empty"
            assert emu.connections[0].commits == []

    run(scenario)


def test_bad_input_gets_errors_and_the_connection_stays_open() -> None:
    async def scenario() -> None:
        async with emulator(strict_client=False) as emu, client(emu) as c:
            await c.ready()
            await c.ws.send("{not json")
            assert only_error([await c.recv()])["code"] == "invalid_json"
            await c.ws.send("[1, 2]")
            assert only_error([await c.recv()])["code"] == "invalid_json"
            await c.send({"type": "response.audio.delta", "event_id": "x"})
            error = only_error([await c.recv()])
            assert (error["code"], error["param"], error["event_id"]) == (
                "invalid_value",
                "type",
                "x",
            )
            await c.send({"event_id": "y"})
            assert only_error([await c.recv()])["code"] == "missing_required_parameter"
            await c.send({"type": "input_audio_buffer.append", "audio": "%%%"})
            assert only_error([await c.recv()])["param"] == "audio"
            await c.send({"type": "input_audio_buffer.append"})
            assert only_error([await c.recv()])["param"] == "audio"
            await c.send({"type": "input_audio_buffer.clear"})
            assert (await c.recv())["type"] == "input_audio_buffer.cleared"
            assert not emu.connections[0].closed

    run(scenario)


# Responses


def test_echo_turn_returns_exactly_the_committed_audio() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            spoken = speech(1000)
            await c.append(spoken, chunk_ms=20)
            await c.send({"type": "input_audio_buffer.commit"})
            user = (await c.until("conversation.item.done"))[-1]["item"]
            await c.send({"type": "response.create"})
            events = await c.until("response.done")
            kinds = [e["type"] for e in events]
            assert kinds[:5] == [
                "response.created",
                "rate_limits.updated",
                "response.output_item.added",
                "conversation.item.added",
                "response.content_part.added",
            ]
            assert kinds[-6:] == [
                "response.output_audio.done",
                "response.output_audio_transcript.done",
                "response.content_part.done",
                "response.output_item.done",
                "conversation.item.done",
                "response.done",
            ]
            assert events[0]["response"]["status"] == "in_progress"
            assert events[3]["previous_item_id"] == user["id"]
            assert audio_of(events) == spoken
            deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
            sizes = {len(base64.b64decode(e["delta"])) for e in deltas}
            assert len(sizes) > 1
            assert all(size <= 200 * BYTES_PER_MS for size in sizes)
            transcript = "".join(
                e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
            )
            assert transcript == "(echo of 1.0 s of audio)"
            done = events[-1]["response"]
            assert done["status"] == "completed"
            assert done["usage"]["output_tokens"] > 0
            assert done["output"][0]["content"] == [
                {"type": "output_audio", "transcript": transcript}
            ]
            record = emu.connections[0].responses[0]
            assert record.status == "completed"
            assert record.audio_ms == {done["output"][0]["id"]: 1000.0}
            assert all(e["event_id"].startswith("event_") for e in c.events)
            assert len({e["event_id"] for e in c.events}) == len(c.events)

    run(scenario)


def test_second_create_while_active_is_refused() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.append(speech(3000), chunk_ms=500)
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            await c.until("response.created")
            await c.send({"type": "response.create", "event_id": "again"})
            events = await c.until("response.done")
            error = only_error(events)
            assert error["code"] == "conversation_already_has_active_response"
            assert error["event_id"] == "again"
            assert len(emu.connections[0].responses) == 1
            await c.send({"type": "response.create"})  # after response.done: fine
            assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"

    run(scenario)


def test_cancel_mid_response_then_truncate() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.send({"type": "response.cancel", "event_id": "nothing"})
            assert only_error([await c.recv()])["code"] == "response_cancel_not_active"
            await c.append(speech(10_000), chunk_ms=1000)
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            await c.until("response.output_audio.delta")
            await c.send({"type": "response.cancel"})
            events = await c.until("response.done")
            done = events[-1]["response"]
            assert done["status"] == "cancelled"
            assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
            assert done["output"][0]["status"] == "incomplete"
            item_id = done["output"][0]["id"]
            generated_ms = emu.connections[0].responses[0].audio_ms[item_id]
            assert 0 < generated_ms < 10_000
            assert len(audio_of(c.events)) == generated_ms * BYTES_PER_MS

            truncate = {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
            }
            beyond = math.floor(generated_ms) + 1000
            await c.send({**truncate, "audio_end_ms": beyond, "event_id": "t-1"})
            error = only_error([await c.recv()])
            assert error["code"] is None
            assert error["event_id"] == "t-1"
            assert error["message"] == (
                f"Audio content of {math.floor(generated_ms)}ms is already shorter than {beyond}ms"
            )
            await c.send({**truncate, "item_id": "item_unknown", "audio_end_ms": 10})
            assert only_error([await c.recv()])["code"] == "item_truncate_invalid_item_id"
            await c.send({**truncate, "audio_end_ms": 100})
            truncated = await c.recv()
            assert truncated == {
                "type": "conversation.item.truncated",
                "event_id": truncated["event_id"],
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 100,
            }

    run(scenario)


def test_tone_reply_is_a_chime_of_1_2_s() -> None:
    async def scenario() -> None:
        async with emulator(reply="tone") as emu, client(emu) as c:
            await c.ready()
            await c.append(speech(500))
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            events = await c.until("response.done")
            audio = audio_of(events)
            assert len(audio) == 1200 * BYTES_PER_MS
            samples = np.frombuffer(audio, dtype="<i2")
            assert 1000 < np.abs(samples).max() < 32767
            transcript = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
            assert transcript[0]["transcript"] == "(tone)"
            assert emu.connections[0].responses[0].status == "completed"

    run(scenario)


def test_echo_with_nothing_committed_answers_a_short_tone() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.send({"type": "response.create"})
            events = await c.until("response.done")
            assert len(audio_of(events)) == 400 * BYTES_PER_MS
            assert events[3]["previous_item_id"] is None

    run(scenario)


def test_text_only_response_streams_text() -> None:
    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready()
            await c.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            events = await c.until("response.done")
            assert audio_of(events) == b""
            done = [e for e in events if e["type"] == "response.output_text.done"]
            assert done[0]["text"] == "(tone)"

    run(scenario)


# Conversation items


def test_items_can_be_created_and_deleted() -> None:
    async def scenario() -> None:
        async with emulator(strict_client=False) as emu, client(emu) as c:
            await c.ready()
            user = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What time is it?"}],
            }
            await c.send({"type": "conversation.item.create", "item": user})
            added, done = await c.recv(), await c.recv()
            assert (added["type"], done["type"]) == (
                "conversation.item.added",
                "conversation.item.done",
            )
            assert added["item"]["role"] == "user"
            assert added["item"]["status"] == "completed"
            first = added["item"]["id"]
            assistant = {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Noon."}],
            }
            await c.send({"type": "conversation.item.create", "item": assistant})
            added = (await c.until("conversation.item.done"))[0]
            assert added["previous_item_id"] == first
            beta = {**assistant, "content": [{"type": "text", "text": "Noon."}]}
            await c.send({"type": "conversation.item.create", "item": beta})
            error = only_error([await c.recv()])
            assert (error["code"], error["param"]) == ("invalid_value", "item.content[0].type")
            await c.send({"type": "conversation.item.delete", "item_id": first})
            assert await c.recv() == {
                "type": "conversation.item.deleted",
                "event_id": c.events[-1]["event_id"],
                "item_id": first,
            }
            await c.send({"type": "conversation.item.delete", "item_id": first})
            assert only_error([await c.recv()])["code"] == "item_delete_invalid_item_id"
            assert [item.id for item in emu.connections[0].conversation.items] == [
                added["item"]["id"]
            ]

    run(scenario)


def test_stop_closes_open_connections() -> None:
    async def scenario() -> None:
        async with emulator() as emu:
            async with client(emu) as c:
                await c.ready()
                await emu.stop()
                with pytest.raises(ConnectionClosed):
                    await c.recv()
                assert c.ws.close_code == 1001
            assert emu.connections[0].closed

    run(scenario)


# G.711 formats


def test_g711_codes_match_the_reference() -> None:
    pcm = {"type": "audio/pcm", "rate": 24000}
    ulaw, alaw = {"type": "audio/pcmu"}, {"type": "audio/pcma"}
    # Known codes of the CCITT reference for 0 and full scale (3 samples at 24 kHz -> 1 at 8 kHz).
    for value, ulaw_code, alaw_code in [(0, 0xFF, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)]:
        samples = np.full(3, value, dtype="<i2").tobytes()
        assert convert(samples, source=pcm, target=ulaw) == bytes([ulaw_code])
        assert convert(samples, source=pcm, target=alaw) == bytes([alaw_code])
    tone = speech(100)
    for g711 in (ulaw, alaw):
        back = convert(convert(tone, source=pcm, target=g711), source=g711, target=pcm)
        error = np.abs(np.frombuffer(back, "<i2")[30:-30] - np.frombuffer(tone, "<i2")[30:-30])
        assert error.max() < 0.05 * 32768  # interpolation and quantisation only


def test_pcmu_session_echoes_in_pcmu() -> None:
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                "output": {"format": {"type": "audio/pcmu"}},
            },
        },
    }

    async def scenario() -> None:
        async with emulator() as emu, client(emu) as c:
            await c.ready(update)
            spoken = bytes(range(256)) * 4  # 128 ms at 8 kHz, one byte a sample
            await c.send(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(spoken).decode()}
            )
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            events = await c.until("response.done")
            assert audio_of(events) == spoken
            assert emu.connections[0].responses[0].audio_ms == {
                events[-1]["response"]["output"][0]["id"]: 128.0
            }

    run(scenario)


# The CLI entry point


def test_run_emulator_logs_its_url_and_serves_until_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(
            run_emulator(host="127.0.0.1", port=0, api_key=KEY, reply="tone")
        )
        prefix = "emulator listening on "
        while True:
            lines = [r for r in caplog.records if r.getMessage().startswith(prefix)]
            if lines:
                break
            await asyncio.sleep(0.01)
        line = lines[0]
        assert line.levelname == "INFO"
        assert line.name == "appliance.emulator.server"
        url = line.getMessage().removeprefix(prefix)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with connect(f"{url}?model={MODEL}", additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level("INFO", logger="appliance.emulator"):
        run(scenario)
