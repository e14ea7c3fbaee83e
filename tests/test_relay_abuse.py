"""Bad device tokens from one address: counted, then blocked once, in bounded memory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from relaying import KEY, PTT_SESSION, device, fleet, make_config, receive_until, send
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus

from appliance.errors import ConfigError
from appliance.logs import event_of
from appliance.relay.limits import FailureLimiter, address_key

BAD_TOKENS = [f"apr_not-a-device-token-{n}" for n in range(20)]

OTHER_ADDRESS = "127.0.0.2"
"""Another loopback address (Linux routes all of 127/8 to lo): another client's."""


def run(scenario: Callable[[], Awaitable[None]], time_limit_s: float = 30) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(time_limit_s):
            await scenario()

    asyncio.run(bounded())


async def status_of(url: str, token: str, **options: Any) -> tuple[int, Headers, Any]:
    """Dials as a device expected to be refused: HTTP status, headers, JSON body."""
    with pytest.raises(InvalidStatus) as refused:
        await device(url, token, **options)
    response = refused.value.response
    return response.status_code, response.headers, json.loads(response.body)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of every ``name`` event logged."""
    found = [event_of(record) for record in caplog.records]
    return [event[1] for event in found if event is not None and event[0] == name]


def secret_free(text: str, *tokens: str) -> bool:
    """Neither the key, nor a bad token, nor any of ``tokens`` in ``text``."""
    return not any(secret in text for secret in (KEY, *BAD_TOKENS, *tokens))


# The limiter, sans-I/O.


def test_a_key_is_blocked_for_a_window_by_its_last_allowed_failure() -> None:
    limiter = FailureLimiter(3, window_s=60)
    assert [limiter.failed("a", t) for t in (0, 1)] == [False, False]
    assert limiter.blocked("a", 1) == 0
    assert limiter.failed("a", 2) is True  # the third within 60 s: blocked, reported once
    assert limiter.blocked("a", 2) == pytest.approx(60)
    assert limiter.blocked("a", 50) == pytest.approx(12)
    assert limiter.failed("a", 50) is False  # not counted while blocked, not reported again
    assert limiter.blocked("b", 50) == 0  # other keys are unaffected
    assert limiter.blocked("a", 62) == 0
    # After the block, the count starts afresh.
    assert [limiter.failed("a", t) for t in (62, 63, 64)] == [False, False, True]


def test_failures_further_apart_than_the_window_never_block() -> None:
    limiter = FailureLimiter(3, window_s=10)
    for t in range(0, 200, 6):  # at most 2 in any 10 s
        assert limiter.failed("a", t) is False
        assert limiter.blocked("a", t) == 0


def test_the_keys_tracked_are_bounded_and_old_ones_are_forgotten() -> None:
    limiter = FailureLimiter(3, window_s=60, max_keys=100)
    for n in range(10_000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}", n / 1000)
        assert len(limiter) <= 100
    assert len(limiter) == 100
    # A window later they have all expired: the next failure leaves only its own key.
    limiter.failed("10.9.9.9", 100)
    assert len(limiter) == 1


def test_when_full_the_key_closest_to_expiring_makes_room_and_blocks_stay() -> None:
    limiter = FailureLimiter(2, window_s=60, max_keys=2)
    limiter.failed("a", 0)
    assert limiter.failed("a", 1) is True  # blocked until 61
    limiter.failed("b", 2)
    limiter.failed("c", 3)
    limiter.failed("d", 4)  # full: "b", whose last failure is oldest, goes
    assert limiter.failed("c", 5) is True  # "c" was kept
    assert limiter.failed("b", 6) is False  # "b" starts afresh: it was forgotten
    # A flood of new keys, each failing once, never lifts a block.
    for n in range(1000):
        limiter.failed(f"flood-{n}", 7 + n / 1000)
    assert limiter.blocked("a", 8) == pytest.approx(53)
    assert limiter.blocked("c", 8) == pytest.approx(57)
    assert len(limiter) == 4  # two counted, two blocked


def test_ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::7")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("127.0.0.1") == "127.0.0.1"


def test_the_limits_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        make_config(
            tmp_path,
            "ws://127.0.0.1:9/v1/realtime",
            bad_tokens_per_address=0,
            bad_tokens_window_s=0,
        )
    text = str(error.value)
    assert "relay.bad_tokens_per_address: must be 1 or more" in text
    assert "relay.bad_tokens_window_s: must be more than 0" in text


# The relay, over real sockets.


def test_bad_tokens_from_one_address_block_it_once_and_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good: list[str] = []

    async def scenario() -> None:
        async with fleet(tmp_path, bad_tokens_per_address=5, bad_tokens_window_s=600) as f:
            good.extend(f.tokens.values())
            for token in BAD_TOKENS[:5]:
                assert (await status_of(f.url, token))[0] == 401
            for token in [*BAD_TOKENS[5:], f.tokens["kitchen"]]:
                status, headers, body = await status_of(f.url, token)
                assert status == 429
                assert body["error"]["code"] == "rate_limit_exceeded"
                assert 1 <= int(headers["Retry-After"]) <= 600
            # Another address is counted on its own, and its good device gets in.
            other = {"local_addr": (OTHER_ADDRESS, 0)}
            assert (await status_of(f.url, BAD_TOKENS[0], **other))[0] == 401
            async with device(f.url, f.tokens["kitchen"], **other) as ws:
                await send(ws, {"type": "session.update", "session": PTT_SESSION})
                await receive_until(ws, "session.updated")
            assert len(f.relay.sessions) == 1
            assert f.relay.sessions[0].peer.startswith(f"{OTHER_ADDRESS}:")

    with caplog.at_level(logging.INFO, logger="appliance.relay"):
        run(scenario)
    assert events(caplog, "relay.blocked") == [
        {"address": "127.0.0.1", "bad_tokens": 5, "block_ms": 600_000}
    ]
    blocked_lines = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(blocked_lines) == 1 and "127.0.0.1" in blocked_lines[0]
    # Only the attempts whose token was checked are logged: 5 from here, 1 from the other.
    assert len(events(caplog, "relay.refused")) == 6
    assert secret_free(caplog.text, *good)


def test_a_good_token_from_a_blocked_address_gets_in_once_the_window_has_passed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good: list[str] = []

    async def scenario() -> None:
        # The window is short for the test, yet long beside a few loopback handshakes.
        async with fleet(tmp_path, bad_tokens_per_address=3, bad_tokens_window_s=2) as f:
            token = f.tokens["kitchen"]
            good.append(token)
            for bad in BAD_TOKENS[:3]:
                assert (await status_of(f.url, bad))[0] == 401
            assert (await status_of(f.url, token))[0] == 429
            while True:  # as a device behind the same NAT would, until let in
                try:
                    ws = await device(f.url, token)
                except InvalidStatus as exc:
                    assert exc.response.status_code == 429
                    await asyncio.sleep(0.1)
                else:
                    break
            async with ws:
                await send(ws, {"type": "session.update", "session": PTT_SESSION})
                await receive_until(ws, "session.updated")
            assert [record.device for record in f.relay.sessions] == ["kitchen"]
            # The block is over and the count starts afresh: a bad token gets 401 again.
            assert (await status_of(f.url, BAD_TOKENS[3]))[0] == 401

    with caplog.at_level(logging.WARNING, logger="appliance.relay"):
        run(scenario)
    assert len(events(caplog, "relay.blocked")) == 1
    assert secret_free(caplog.text, *good)
