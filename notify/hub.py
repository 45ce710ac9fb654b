"""In-process fan-out of events to server-sent-event subscribers.

The alarm pipeline calls :meth:`EventHub.publish` on the asyncio loop thread;
it never waits for a subscriber. Each subscriber has a bounded queue. When a
subscriber falls so far behind that its queue is full, its backlog is thrown
away, it is handed a single ``overflow`` event and dropped from the hub, and
the overflow is counted: a slow browser costs itself a resync (it reconnects
and gets a fresh snapshot), never the pipeline a stall.

Usage::

    async with hub.subscribe() as subscription:
        async for event, data in subscription:
            ...

The iteration ends after an ``overflow`` event or when the hub is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["OVERFLOW_EVENT", "EventHub", "HubSubscription"]

OVERFLOW_EVENT: Final = "overflow"


class _End:
    """Queued to wake a subscriber whose hub was closed."""


_END: Final = _End()
_Item = tuple[str, dict[str, Any]] | _End


class HubSubscription:
    """One subscriber's bounded queue; an async context manager and async iterator.

    Register with ``async with``; leaving the block unregisters, whatever
    ended it (client disconnect, cancellation, overflow, hub close).
    """

    def __init__(self, hub: EventHub, queue_size: int) -> None:
        self._hub = hub
        self._queue_size = queue_size
        # One slot beyond queue_size stays free for the terminal item (the
        # overflow event or the end marker), so it always fits.
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size + 1)
        self._entered = False
        self._terminated = False  # no more items will be queued
        self._finished = False  # the terminal item was consumed
        self.overflowed = False

    async def __aenter__(self) -> HubSubscription:
        if self._entered:
            raise RuntimeError("a HubSubscription can be entered only once")
        self._entered = True
        self._hub._register(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hub._unregister(self)
        self._terminated = True

    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        if not self._entered:
            raise RuntimeError("use 'async with hub.subscribe() as subscription' first")
        if self._finished:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            raise StopAsyncIteration
        if self.overflowed and self._queue.empty():
            self._finished = True  # the overflow event is the last one
        return item

    @property
    def pending(self) -> int:
        """Events queued and not yet taken."""
        return self._queue.qsize()

    def _offer(self, event: str, data: dict[str, Any]) -> bool:
        """Queue an event without waiting; True if this offer overflowed the queue."""
        if self._terminated:
            return False
        if self._queue.qsize() < self._queue_size:
            self._queue.put_nowait((event, data))
            return False
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            dropped += 1
        self.overflowed = True
        self._terminated = True
        self._queue.put_nowait(
            (
                OVERFLOW_EVENT,
                {"dropped": dropped + 1, "queue_size": self._queue_size, "reason": "too slow"},
            )
        )
        return True

    def _end(self) -> None:
        if not self._terminated:
            self._terminated = True
            self._queue.put_nowait(_END)


class EventHub:
    """Fan out ``(event, data)`` pairs to every current subscriber.

    Not thread-safe: call :meth:`publish` and :meth:`close` from the event
    loop's thread (use ``loop.call_soon_threadsafe`` from anywhere else).

    Parameters
    ----------
    queue_size:
        Events a subscriber may have pending before it is dropped.
    registry:
        If given, the hub registers ``plantwatch_sse_subscribers``,
        ``plantwatch_sse_events_total`` and ``plantwatch_sse_overflows_total``
        in it.
    """

    def __init__(self, queue_size: int = 256, registry: CollectorRegistry | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._queue_size = queue_size
        self._subscribers: set[HubSubscription] = set()
        self._closed = False
        self.published_count = 0
        self.overflow_count = 0
        self._gauge: Gauge | None = None
        self._events: Counter | None = None
        self._overflows: Counter | None = None
        if registry is not None:
            self._gauge = Gauge(
                "plantwatch_sse_subscribers",
                "Subscribers currently attached to the event hub (SSE streams).",
                registry=registry,
            )
            self._events = Counter(
                "plantwatch_sse_events",
                "Events published on the event hub.",
                registry=registry,
            )
            self._overflows = Counter(
                "plantwatch_sse_overflows",
                "Subscribers dropped because their queue was full (too slow).",
                registry=registry,
            )

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self) -> HubSubscription:
        """A new subscription; it starts receiving when its ``async with`` is entered."""
        return HubSubscription(self, self._queue_size)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Offer an event to every subscriber; never waits. Ignored once closed."""
        if self._closed:
            return
        self.published_count += 1
        if self._events is not None:
            self._events.inc()
        for subscription in list(self._subscribers):
            if subscription._offer(event, data):
                self._subscribers.discard(subscription)
                self.overflow_count += 1
                if self._overflows is not None:
                    self._overflows.inc()
        self._update_gauge()

    def close(self) -> None:
        """End every subscription (their iteration stops); later subscriptions end at once."""
        self._closed = True
        for subscription in self._subscribers:
            subscription._end()
        self._subscribers.clear()
        self._update_gauge()

    def _register(self, subscription: HubSubscription) -> None:
        if self._closed:
            subscription._end()
            return
        self._subscribers.add(subscription)
        self._update_gauge()

    def _unregister(self, subscription: HubSubscription) -> None:
        self._subscribers.discard(subscription)
        self._update_gauge()

    def _update_gauge(self) -> None:
        if self._gauge is not None:
            self._gauge.set(len(self._subscribers))
