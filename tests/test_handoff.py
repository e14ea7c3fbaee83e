"""The bounded hand-off from device threads to the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from appliance.handoff import Batches, Handoff


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    async def scenario() -> tuple[list[int], int]:
        queue: Handoff[int] = Handoff(asyncio.get_running_loop(), maxlen=3)
        for item in range(5):
            queue.put(item)
        got = [await queue.get() for _ in range(len(queue))]
        return got, queue.dropped

    assert asyncio.run(scenario()) == ([2, 3, 4], 2)


def test_items_from_another_thread_arrive_in_order() -> None:
    async def scenario() -> list[int]:
        queue: Handoff[int] = Handoff(asyncio.get_running_loop(), maxlen=1000)

        def produce() -> None:
            for item in range(200):
                queue.put_threadsafe(item)

        producer = threading.Thread(target=produce)
        producer.start()
        got = [await queue.get() for _ in range(200)]
        producer.join()
        return got

    assert asyncio.run(scenario()) == list(range(200))


def test_get_waits_for_an_item() -> None:
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        queue: Handoff[str] = Handoff(loop, maxlen=1)
        loop.call_later(0.02, queue.put, "late")
        return await queue.get()

    assert asyncio.run(scenario()) == "late"


def test_a_closed_loop_is_reported_to_the_device_thread() -> None:
    loop = asyncio.new_event_loop()
    queue: Handoff[int] = Handoff(loop, maxlen=1)
    loop.close()
    with pytest.raises(RuntimeError):
        queue.put_threadsafe(1)
    with pytest.raises(ValueError):
        Handoff(asyncio.new_event_loop(), maxlen=0)


def test_batches_wake_the_loop_once_per_batch_and_can_be_taken_early() -> None:
    async def scenario() -> tuple[list[list[int]], list[int], int]:
        loop = asyncio.get_running_loop()
        batches: list[list[int]] = []
        queue: Batches[int] = Batches(
            loop, batch=5, maxlen=8, on_batch=lambda: batches.append(queue.take())
        )

        def produce(items: range) -> None:
            for item in items:
                queue.put_threadsafe(item)

        for items in (range(0, 5), range(5, 10)):  # two whole batches from a device thread
            producer = threading.Thread(target=produce, args=(items,))
            producer.start()
            producer.join()
            await asyncio.sleep(0.01)
        produce(range(10, 13))  # not a batch yet: nobody is woken
        await asyncio.sleep(0.01)
        early = queue.take()
        return batches, early, queue.dropped

    batches, early, dropped = asyncio.run(scenario())
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert early == [10, 11, 12]
    assert dropped == 0


def test_batches_drop_the_oldest_for_a_late_loop_and_count_them() -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        loop = asyncio.get_running_loop()
        batches: list[list[int]] = []
        queue: Batches[int] = Batches(
            loop, batch=2, maxlen=3, on_batch=lambda: batches.append(queue.take())
        )
        for item in range(7):  # the loop does not run meanwhile
            queue.put_threadsafe(item)
        await asyncio.sleep(0.01)
        return batches, queue.dropped

    assert asyncio.run(scenario()) == ([[4, 5, 6]], 4)
    with pytest.raises(ValueError):
        Batches(asyncio.new_event_loop(), batch=4, maxlen=3, on_batch=lambda: None)
