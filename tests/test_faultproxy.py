"""The chaos tests' fault-injecting TCP proxy: deterministic plans, forwarding, cuts, stalls."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from faultproxy import Chaos, FaultProxy, Plan, draw_plan


def run(scenario: object) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()  # type: ignore[operator]

    asyncio.run(bounded())


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1; yields its port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def proxied(plan: Plan) -> AsyncIterator[tuple[FaultProxy, int]]:
    async with (
        echo_server() as port,
        FaultProxy(target_port=port, seed=0, plan_for=lambda n: plan) as proxy,
    ):
        yield proxy, proxy.port


async def round_trip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.readexactly(len(data))
    finally:
        writer.close()


def test_plans_are_deterministic_by_seed_and_varied() -> None:
    chaos = Chaos()

    def plans(seed: int) -> list[Plan]:
        return [
            draw_plan(random.Random(f"{seed}/{n}"), chaos, budget_left=True) for n in range(200)
        ]

    assert plans(1) == plans(1)
    assert plans(1) != plans(2)
    kinds = [p.fault for p in plans(1)]
    assert 20 <= kinds.count("cut") <= 60
    assert 10 <= kinds.count("stall") <= 50
    assert all(
        chaos.stall_min_s <= p.stall_s <= chaos.stall_max_s for p in plans(1) if p.fault == "stall"
    )
    assert not any(
        p.fault for p in [draw_plan(random.Random(n), chaos, budget_left=False) for n in range(50)]
    )


def test_budget_bounds_the_faulted_connections() -> None:
    async def scenario() -> None:
        chaos = Chaos(cut=1.0, budget=2)
        async with (
            echo_server() as port,
            FaultProxy(target_port=port, seed=3, chaos=chaos) as proxy,
        ):
            for _ in range(5):
                _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.close()
            await asyncio.sleep(0.1)
            assert [p.fault for p in proxy.plans] == ["cut", "cut", None, None, None]

    run(scenario)


def test_sliced_forwarding_delivers_every_byte_in_order() -> None:
    async def scenario() -> None:
        data = os.urandom(200_000)
        async with proxied(Plan(sliced=True, seed=5)) as (_, port):
            assert await round_trip(port, data) == data

    run(scenario)


def test_cut_after_bytes_resets_the_connection() -> None:
    async def scenario() -> None:
        async with proxied(Plan(fault="cut", at_bytes=1_500)) as (proxy, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bytes(500))
            await writer.drain()
            assert await reader.readexactly(500) == bytes(500)
            writer.write(bytes(1_000))
            with pytest.raises(ConnectionResetError):
                while await reader.read(65_536):
                    pass
            writer.close()
            assert any(e.what.startswith("cut after") for e in proxy.log)

    run(scenario)


def test_timed_cut_needs_no_traffic() -> None:
    async def scenario() -> None:
        async with proxied(Plan(fault="cut", at_s=0.2)) as (_, port):
            loop = asyncio.get_running_loop()
            started = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(ConnectionResetError):
                await reader.read(1)
            assert loop.time() - started >= 0.2
            writer.close()

    run(scenario)


def test_stall_holds_both_directions_then_resumes() -> None:
    async def scenario() -> None:
        async with proxied(Plan(fault="stall", at_bytes=0, stall_s=0.6)) as (proxy, port):
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await round_trip(port, b"hello") == b"hello"
            assert loop.time() - started >= 0.6
            assert [e.what.split()[0] for e in proxy.log][:3] == ["open:", "stall", "resume"]

    run(scenario)
