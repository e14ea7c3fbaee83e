"""Each emulator fault, proven at the protocol level with a raw WebSocket client.

Every emulator here runs with the schema observer (see ``test_emulator``):
whatever well-formed event a fault makes it send must still match the GA types.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_emulator import KEY, MODEL, Client, emulator, run, speech
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from appliance import cli
from appliance.emulator import Emulator, Faults
from appliance.emulator.faults import SESSION_EXPIRED_MESSAGE, parse_fault

HEADERS = {"Authorization": f"Bearer {KEY}"}


@contextlib.asynccontextmanager
async def raw_client(emu: Emulator, *, close_timeout_s: float = 10) -> AsyncIterator[Client]:
    """A client whose closing handshake gives up after ``close_timeout_s`` (silent servers)."""
    async with connect(
        f"{emu.url}?model={MODEL}",
        additional_headers=HEADERS,
        max_size=None,
        ping_interval=None,
        close_timeout=close_timeout_s,
    ) as ws:
        yield Client(ws)


async def nothing_arrives(client: Client, within_s: float) -> None:
    """Fail if any message arrives within ``within_s`` seconds."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within_s):
            message = await client.ws.recv()
            pytest.fail(f"a message arrived: {str(message)[:200]}")


async def turn(client: Client, ms: int = 300) -> list[dict[str, Any]]:
    """Append ``ms`` of audio, commit, ask for a response; the events up to response.done."""
    await client.append(speech(ms))
    await client.send({"type": "input_audio_buffer.commit", "event_id": "commit-1"})
    await client.send({"type": "response.create", "event_id": "create-1"})
    return await client.until("response.done")


# Drop


def test_drop_after_appends_aborts_without_a_close_frame() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(drop_after_appends=3)) as emu:
            async with raw_client(emu) as c:
                await c.ready()
                await c.append(speech(60))  # three appends of 20 ms
                with pytest.raises(ConnectionClosedError) as caught:
                    await c.until("never")
                assert caught.value.rcvd is None, "a close frame was sent"
            (connection,) = emu.connections
            appends = [m for m in connection.received if m["type"] == "input_audio_buffer.append"]
            assert len(appends) == 3
            await emu.wait_for(lambda: connection.closed)

    run(scenario)


# Stall


def test_stall_after_events_goes_silent_and_keeps_the_socket_open() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(stall_after_events=3)) as emu:
            async with raw_client(emu, close_timeout_s=0.2) as c:
                await c.ready()  # client event 1: session.update
                await c.append(speech(20))  # 2
                await c.send({"type": "input_audio_buffer.clear"})  # 3: never answered
                await nothing_arrives(c, 0.5)
                with pytest.raises(TimeoutError):  # pings go unanswered
                    async with asyncio.timeout(0.5):
                        await (await c.ws.ping())
                (connection,) = emu.connections
                assert not connection.closed and connection.stalled_at is not None
                assert [m["type"] for m in connection.received][-1] == "input_audio_buffer.clear"
                assert connection.sent[-1]["type"] == "session.updated"
            # The client gave up (no closing handshake): the emulator lets go of it.
            await emu.wait_for(lambda: connection.closed)

    run(scenario)


def test_stall_from_the_handshake_sends_not_even_session_created() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(stall_after_events=0)) as emu:
            async with raw_client(emu, close_timeout_s=0.2) as c:
                await nothing_arrives(c, 0.5)
                (connection,) = emu.connections
                assert connection.sent == [] and not connection.closed
            await emu.wait_for(lambda: connection.closed)

    run(scenario)


def test_stall_after_seconds_stops_a_reply_mid_stream() -> None:
    async def scenario() -> None:
        faults = Faults(stall_after_s=0.6, delta_interval_s=0.05)
        async with emulator(faults=faults) as emu, raw_client(emu, close_timeout_s=0.2) as c:
            await c.ready()
            await c.append(speech(3000), chunk_ms=500)
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            await c.until("response.output_audio.delta")
            with pytest.raises(TimeoutError):  # the reply stops, response.done never comes
                async with asyncio.timeout(1.5):
                    await c.until("response.done")
            (connection,) = emu.connections
            assert connection.stalled_at is not None
            assert connection.sent[-1]["type"] != "response.done"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await (await c.ws.ping())

    run(scenario)


def test_a_silent_connection_reads_nothing_and_does_not_hold_up_stop() -> None:
    async def scenario() -> None:
        faults = Faults(stall_after_events=1)
        async with emulator(faults=faults) as emu, raw_client(emu, close_timeout_s=0.2) as c:
            assert (await c.recv())["type"] == "session.created"
            await c.send({"type": "input_audio_buffer.clear"})
            await emu.wait_for(lambda: emu.connections[0].stalled_at is not None)
            # Nothing is read: a client that keeps sending fills the TCP buffers.
            chunk = base64.b64encode(bytes(1 << 20)).decode()
            append = json.dumps({"type": "input_audio_buffer.append", "audio": chunk})
            with pytest.raises(TimeoutError):
                for _ in range(200):
                    async with asyncio.timeout(1):
                        await c.ws.send(append)
            assert len(emu.connections[0].received) == 1
            await emu.stop()  # the silent connection is cut, not waited for
            assert emu.connections[0].closed
            with pytest.raises(ConnectionClosed):
                await c.until("never")

    run(scenario)


# Expiry


def test_expire_after_s_announces_expires_at_sends_session_expired_and_closes_1001() -> None:
    async def scenario() -> None:
        faults = Faults(expire_after_s=0.8, delta_interval_s=0.1)
        async with emulator(faults=faults) as emu, raw_client(emu) as c:
            before = time.time()
            created = await c.recv()
            assert int(before) <= created["session"]["expires_at"] <= int(time.time() + 0.8)
            assert created["session"]["expires_at"] >= int(before + 0.8) - 1
            await c.send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
                }
            )
            assert (await c.recv())["type"] == "session.updated"
            await c.append(speech(3000), chunk_ms=500)
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            with pytest.raises(ConnectionClosed) as caught:
                await c.until("never")
            assert caught.value.rcvd is not None
            assert caught.value.rcvd.code == 1001
            assert caught.value.rcvd.reason == SESSION_EXPIRED_MESSAGE
            last = c.events[-1]
            assert last == {
                "type": "error",
                "event_id": last["event_id"],
                "error": {
                    "type": "invalid_request_error",
                    "code": "session_expired",
                    "message": "Your session hit the maximum duration of 60 minutes.",
                    "param": None,
                    "event_id": None,
                },
            }
            kinds = [e["type"] for e in c.events]
            assert "response.output_audio.delta" in kinds, "expired before the reply began"
            assert "response.done" not in kinds, "the reply went on to the end"

    run(scenario)


def test_expires_in_s_only_announces_expiry() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(expires_in_s=0.3)) as emu, raw_client(emu) as c:
            before = time.time()
            updated = await c.ready()
            assert int(before) <= updated["session"]["expires_at"] <= int(time.time() + 0.3)
            await asyncio.sleep(0.8)
            events = await turn(c)
            assert events[-1]["response"]["status"] == "completed"

    run(scenario)


# Handshake


@pytest.mark.parametrize("status", [401, 403, 429, 503])
def test_reject_handshake_refuses_even_the_right_key(status: int) -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(reject_handshake=status)) as emu:
            with pytest.raises(InvalidStatus) as caught:
                async with raw_client(emu):
                    pass
            response = caught.value.response
            assert response.status_code == status
            body = json.loads(response.body)
            assert body["error"]["message"]
            if status == 401:
                assert body["error"]["code"] == "invalid_api_key"
            assert emu.connections == []

    run(scenario)


def test_faults_for_chooses_the_faults_of_each_handshake() -> None:
    chosen = {1: Faults(reject_handshake=401), 2: Faults(expires_in_s=5)}

    async def scenario() -> None:
        async with emulator(faults_for=lambda n: chosen.get(n, Faults())) as emu:
            with pytest.raises(InvalidStatus):
                async with raw_client(emu):
                    pass
            for _ in range(2):
                async with raw_client(emu) as c:
                    await c.ready()
            second, third = emu.connections
            assert second.faults == chosen[2]
            assert second.session["expires_at"] < third.session["expires_at"] - 3000

    run(scenario)


# Errors


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("server_error", "server_error"),
        ("rate_limit_exceeded", "tokens"),
        ("insufficient_quota", "insufficient_quota"),
        ("some_other_code", "invalid_request_error"),
    ],
)
def test_error_after_commit_sends_the_error_and_fails_that_response(code: str, kind: str) -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(error_after_commit=code)) as emu, raw_client(emu) as c:
            await c.ready()
            for _ in range(2):  # every turn fails the same way; the session stays up
                c.events.clear()
                events = await turn(c)
                kinds = [e["type"] for e in events]
                at = kinds.index("input_audio_buffer.committed")
                assert kinds[at + 1 : at + 4] == [
                    "conversation.item.added",
                    "conversation.item.done",
                    "error",
                ]
                error = events[at + 3]["error"]
                assert (error["type"], error["code"], error["event_id"]) == (kind, code, None)
                assert kinds[at + 4 :] == ["response.created", "response.done"]
                done = events[-1]["response"]
                assert done["status"] == "failed"
                assert done["output"] == []
                assert done["status_details"] == {
                    "type": "failed",
                    "error": {"type": kind, "code": code, "message": error["message"]},
                }
            (connection,) = emu.connections
            assert [r.status for r in connection.responses] == ["failed", "failed"]
            assert not connection.closed

    run(scenario)


# Pacing


def test_delta_interval_slows_the_reply() -> None:
    async def scenario() -> None:
        async with emulator(faults=Faults(delta_interval_s=0.15)) as emu, raw_client(emu) as c:
            await c.ready()
            await c.append(speech(900))
            await c.send({"type": "input_audio_buffer.commit"})
            await c.send({"type": "response.create"})
            arrivals = []
            while (event := await c.recv())["type"] != "response.done":
                if event["type"] == "response.output_audio.delta":
                    arrivals.append(time.monotonic())
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert len(gaps) >= 4
            assert min(gaps) >= 0.14

    run(scenario)


def test_bursts_send_k_deltas_back_to_back_then_pause() -> None:
    async def scenario() -> None:
        faults = Faults(burst_deltas=3, burst_pause_s=1.0)
        async with emulator(faults=faults, reply="tone") as emu, raw_client(emu) as c:
            await c.ready()
            await c.send({"type": "response.create"})
            arrivals = []
            while (event := await c.recv())["type"] != "response.done":
                if event["type"] == "response.output_audio.delta":
                    arrivals.append(time.monotonic())
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert len(arrivals) >= 7  # a 1.2 s chime: three bursts
            pauses = [i for i, gap in enumerate(gaps) if gap >= 0.9]
            assert pauses == list(range(2, len(gaps), 3)), gaps
            # Within a burst, back to back (generous: far below the pause).
            assert all(gap < 0.5 for i, gap in enumerate(gaps) if i not in pauses), gaps

    run(scenario)


# Malformed


def _check_malformed(kind: str, text: str) -> None:
    if kind == "json":
        with pytest.raises(ValueError):
            json.loads(text)
        return
    event = json.loads(text)
    assert event["type"] == "response.output_audio.delta"
    if kind == "field":
        assert not isinstance(event["delta"], str)
    else:
        with pytest.raises(binascii.Error):
            base64.b64decode(event["delta"], validate=True)


@pytest.mark.parametrize("kind", ["json", "field", "base64"])
def test_malformed_after_events_sends_one_bad_message_then_carries_on(kind: str) -> None:
    async def scenario() -> None:
        faults = Faults(malformed_after_events=4, malformed_kind=kind)  # type: ignore[arg-type]
        async with emulator(faults=faults) as emu, raw_client(emu) as c:
            await c.ready()  # server events 1 and 2
            await c.append(speech(300))
            await c.send({"type": "input_audio_buffer.commit"})
            raw = []
            for _ in range(4):  # committed, item.added, then the bad one, then item.done
                raw.append(await c.ws.recv())
            assert isinstance(raw[2], str)
            _check_malformed(kind, raw[2])
            assert [json.loads(m)["type"] for m in (raw[0], raw[1], raw[3])] == [
                "input_audio_buffer.committed",
                "conversation.item.added",
                "conversation.item.done",
            ]
            await c.send({"type": "response.create"})
            events = await c.until("response.done")
            assert events[-1]["response"]["status"] == "completed"
            (connection,) = emu.connections
            assert connection.malformed == [(4, raw[2])]

    run(scenario)


def test_malformed_before_anything_else() -> None:
    async def scenario() -> None:
        faults = Faults(malformed_after_events=0, malformed_kind="base64")
        async with emulator(faults=faults) as emu, raw_client(emu) as c:
            first = await c.ws.recv()
            assert isinstance(first, str)
            _check_malformed("base64", first)
            await c.ready()

    run(scenario)


# Settings and the command line


def test_fault_settings_parse_into_faults() -> None:
    settings = [
        "expire_after_s=30",
        "stall_after_events=100",
        "reject_update=true",
        "reject_handshake=403",
        "error_after_commit=server_error",
        "malformed_kind=field",
        "expires_in_s=none",
    ]
    assert Faults(**dict(parse_fault(s) for s in settings)) == Faults(
        expire_after_s=30.0,
        stall_after_events=100,
        reject_update=True,
        reject_handshake=403,
        error_after_commit="server_error",
        malformed_kind="field",
    )


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("bogus=1", "unknown fault 'bogus'"),
        ("expire_after_s", "unknown fault"),
        ("expire_after_s=soon", "expire_after_s takes a number of seconds"),
        ("expire_after_s=-1", "expire_after_s must be a finite number of seconds"),
        ("stall_after_events=1.5", "stall_after_events takes a whole number"),
        ("drop_after_appends=0", "drop_after_appends must be at least 1"),
        ("reject_handshake=200", "reject_handshake must be an HTTP status from 400 to 599"),
        ("reject_update=maybe", "reject_update takes true or false"),
        ("malformed_kind=xml", "malformed_kind takes one of json, field, base64"),
    ],
)
def test_bad_fault_settings_exit_2_with_a_clear_message(
    setting: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["emulator", "--fault", setting])
    assert caught.value.code == 2
    assert complaint in capsys.readouterr().err


def test_the_emulator_command_passes_its_faults_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def fake_run_emulator(**options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr("appliance.emulator.run_emulator", fake_run_emulator)
    argv = ["emulator", "--fault", "expire_after_s=30", "--fault", "stall_after_events=100"]
    assert cli.main(argv) == 0
    assert seen["faults"] == Faults(expire_after_s=30.0, stall_after_events=100)


def test_the_emulator_command_refuses_handshakes_under_the_fault(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "appliance", "emulator", "--port", "0"),
            *("--api-key-file", str(key_file), "--fault", "reject_handshake=403"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:
            if "emulator listening on " in line:
                url = line.split("emulator listening on ")[1].split()[0]
                break
        assert url, "the emulator never said where it listens"

        async def scenario() -> None:
            with pytest.raises(InvalidStatus) as caught:
                async with connect(f"{url}?model={MODEL}", additional_headers=HEADERS):
                    pass
            assert caught.value.response.status_code == 403

        asyncio.run(scenario())
    finally:
        process.terminate()
        process.communicate(timeout=10)
