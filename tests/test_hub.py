"""EventHub: fan-out, bounded queues, overflow, close, cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from notify.hub import OVERFLOW_EVENT, EventHub, HubSubscription


async def _drain(subscription: HubSubscription) -> list[tuple[str, dict[str, Any]]]:
    return [item async for item in subscription]


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = EventHub(queue_size=16)
    async with hub.subscribe() as a, hub.subscribe() as b:
        assert hub.subscriber_count == 2
        for i in range(5):
            hub.publish("alarm", {"n": i})
        hub.close()
        got_a, got_b = await _drain(a), await _drain(b)
    expected = [("alarm", {"n": i}) for i in range(5)]
    assert got_a == expected
    assert got_b == expected
    assert hub.published_count == 5
    assert hub.overflow_count == 0


async def test_publish_without_subscribers_is_harmless() -> None:
    hub = EventHub()
    hub.publish("alarm", {"n": 1})
    assert hub.published_count == 1
    assert hub.subscriber_count == 0


async def test_slow_subscriber_gets_one_overflow_the_fast_one_everything() -> None:
    registry = CollectorRegistry()
    hub = EventHub(queue_size=4, registry=registry)
    fast_got: list[tuple[str, dict[str, Any]]] = []

    async with hub.subscribe() as slow, hub.subscribe() as fast:

        async def consume_fast() -> None:
            async for item in fast:
                fast_got.append(item)

        consumer = asyncio.create_task(consume_fast())
        for i in range(10):
            hub.publish("alarm", {"n": i})
            await asyncio.sleep(0)  # the fast consumer keeps up; the slow one never reads

        slow_got = await _drain(slow)
        assert len(slow_got) == 1
        event, data = slow_got[0]
        assert event == OVERFLOW_EVENT
        assert data["queue_size"] == 4
        assert data["dropped"] == 5  # the 4 queued and the one that did not fit
        assert slow.overflowed
        assert hub.subscriber_count == 1  # the slow one was dropped, the fast one stays

        hub.close()
        await asyncio.wait_for(consumer, 5)

    assert [d["n"] for _, d in fast_got] == list(range(10))
    assert hub.overflow_count == 1  # counted once, not once per missed event
    assert registry.get_sample_value("plantwatch_sse_overflows_total") == 1.0
    assert registry.get_sample_value("plantwatch_sse_events_total") == 10.0
    assert registry.get_sample_value("plantwatch_sse_subscribers") == 0.0


async def test_a_stalled_subscriber_costs_publish_nothing() -> None:
    hub = EventHub(queue_size=64)
    stalled = asyncio.Event()

    async def stall() -> None:
        async with hub.subscribe():
            stalled.set()
            await asyncio.Event().wait()  # a browser that never reads again

    task = asyncio.create_task(stall())
    await stalled.wait()
    for i in range(50_000):  # would block here if a stalled reader could hold it up
        hub.publish("alarm", {"n": i})
    assert hub.overflow_count == 1
    assert hub.subscriber_count == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_fast_subscriber_keeps_up_with_a_burst_it_can_hold() -> None:
    hub = EventHub(queue_size=8)
    async with hub.subscribe() as sub:
        for i in range(8):
            hub.publish("alarm", {"n": i})
        hub.close()
        got = await _drain(sub)
    assert [d["n"] for _, d in got] == list(range(8))
    assert not sub.overflowed


async def test_close_ends_waiting_subscribers_after_their_backlog() -> None:
    hub = EventHub()
    got: list[tuple[str, dict[str, Any]]] = []
    entered = asyncio.Event()

    async def consume() -> None:
        async with hub.subscribe() as sub:
            entered.set()
            async for item in sub:
                got.append(item)

    tasks = [asyncio.create_task(consume()) for _ in range(3)]
    await entered.wait()
    await asyncio.sleep(0)
    assert hub.subscriber_count == 3
    hub.publish("alarm", {"n": 1})
    hub.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert got == [("alarm", {"n": 1})] * 3
    assert hub.subscriber_count == 0
    assert hub.closed
    hub.publish("alarm", {"n": 2})  # ignored once closed
    assert hub.published_count == 1


async def test_subscribing_to_a_closed_hub_ends_at_once() -> None:
    hub = EventHub()
    hub.close()
    async with hub.subscribe() as sub:
        assert await asyncio.wait_for(_drain(sub), 5) == []
    assert hub.subscriber_count == 0


async def test_cancelled_subscriber_is_unregistered() -> None:
    hub = EventHub()
    entered = asyncio.Event()

    async def consume() -> None:
        async with hub.subscribe() as sub:
            entered.set()
            async for _ in sub:
                pass

    task = asyncio.create_task(consume())
    await entered.wait()
    assert hub.subscriber_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub.subscriber_count == 0
    hub.publish("alarm", {})  # nobody to deliver to, nothing counted as overflow
    assert hub.overflow_count == 0


async def test_subscription_must_be_entered_once() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    with pytest.raises(RuntimeError, match="async with"):
        await anext(aiter(sub))
    async with sub:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with sub:
            pass


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        EventHub(queue_size=0)


@given(queue_size=st.integers(1, 20), n_events=st.integers(0, 60))
def test_unread_subscriber_gets_everything_or_exactly_one_overflow(
    queue_size: int, n_events: int
) -> None:
    async def scenario() -> None:
        hub = EventHub(queue_size=queue_size)
        async with hub.subscribe() as sub:
            for i in range(n_events):
                hub.publish("alarm", {"n": i})
            hub.close()
            got = await _drain(sub)
        if n_events <= queue_size:
            assert got == [("alarm", {"n": i}) for i in range(n_events)]
            assert hub.overflow_count == 0
        else:
            assert [event for event, _ in got] == [OVERFLOW_EVENT]
            assert got[0][1]["dropped"] == queue_size + 1
            assert hub.overflow_count == 1

    asyncio.run(scenario())
