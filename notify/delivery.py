"""Delivering the outbox: one worker per lane, in order, retried with backoff.

A lane is one receiver: a webhook target (``webhook:<name>``) or the plant's
broker (``mqtt``). Its worker sends the oldest pending delivery through the
lane's :class:`Sender`, and only then the next, so a receiver sees events in
the order they happened. A retryable failure (no connection, a timeout, 5xx,
408, 429) waits a jittered exponential backoff and tries again, for up to
``retry_for_s`` after the delivery was recorded; a refusal for good (another
4xx) is logged and settled, and the lane goes on.

Metrics (label ``lane``): ``plantwatch_outbox_depth``,
``plantwatch_outbox_oldest_age_seconds`` (both read at scrape time),
``plantwatch_notifications_total{outcome=delivered|refused|expired|retried}``
and ``plantwatch_notification_attempt_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from notify.outbox import Delivery, Outbox, Settled
from store.backoff import Backoff

__all__ = ["DeliveryError", "MqttSender", "OutboxDispatcher", "PublishAndWait", "Sender"]

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class Sender(Protocol):
    """Sends one delivery to its receiver; returns when the receiver has it."""

    async def send(self, delivery: Delivery) -> None:
        """Raise :class:`DeliveryError` if the receiver did not take it."""


PublishAndWait = Callable[[str, bytes, int, bool], Awaitable[str | None]]
"""``publish_and_wait(topic, payload, qos, retain)``: None once the broker has the
message (PUBACK for QoS 1), else why not (not connected, no answer in time)."""


class MqttSender:
    """The broker lane: publishes and waits for the broker's acknowledgement."""

    def __init__(self, publish_and_wait: PublishAndWait) -> None:
        self.publish_and_wait = publish_and_wait

    async def send(self, delivery: Delivery) -> None:
        if delivery.topic is None:
            raise DeliveryError("an MQTT delivery without a topic", retryable=False)
        refused = await self.publish_and_wait(delivery.topic, delivery.body, delivery.qos,
                                              delivery.retain)
        if refused is not None:
            raise DeliveryError(refused, retryable=refused != "invalid")


class _OutboxCollector(Collector):
    """Depth and age of the oldest pending delivery per lane, read at scrape time."""

    def __init__(self, outbox: Outbox, clock: Callable[[], float]) -> None:
        self.outbox = outbox
        self.clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("plantwatch_outbox_depth",
                                  "Notifications recorded and not yet delivered", labels=["lane"])
        age = GaugeMetricFamily("plantwatch_outbox_oldest_age_seconds",
                                "Age of the oldest notification not yet delivered (0: none)",
                                labels=["lane"])
        now_ms = self.clock() * 1000
        rows: list[tuple[str, int, int | None]] = []
        for _ in range(5):  # /metrics on api.metrics_port reads from another thread
            try:
                rows = [(lane, self.outbox.depth(lane), self.outbox.oldest_ms(lane))
                        for lane in self.outbox.lanes()]
                break
            except RuntimeError:  # the loop changed a lane meanwhile: read again
                continue
        for lane, n, oldest in rows:
            depth.add_metric([lane], n)
            age.add_metric([lane], 0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))
        yield depth
        yield age


class OutboxDispatcher:
    """Runs one worker per lane of ``senders`` over ``outbox`` (one dispatcher per outbox).

    Lanes found in the outbox with no sender (a webhook target removed from
    the settings) are settled as refused at start, with a warning naming them:
    nobody is configured to receive them any more.
    """

    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[str, Sender],
        *,
        retry_for_s: float = 86_400.0,
        registry: CollectorRegistry | None = None,
        backoff_factory: Callable[[], Backoff] = Backoff,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not retry_for_s > 0:
            raise ValueError(f"retry_for_s must be > 0, got {retry_for_s}")
        self.outbox = outbox
        self.retry_for_s = retry_for_s
        self.clock = clock
        self._backoff_factory = backoff_factory
        registry = registry or CollectorRegistry()
        self.outcomes = Counter("plantwatch_notifications",
                                "Notification deliveries by outcome", ["lane", "outcome"],
                                registry=registry)
        self.attempt_seconds = Histogram(
            "plantwatch_notification_attempt_seconds", "Duration of one delivery attempt",
            ["lane"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry)
        registry.register(_OutboxCollector(outbox, clock))
        previous = outbox.on_added

        def added(lane: str) -> None:
            if previous is not None:
                previous(lane)
            event = self._wake.get(lane)
            if event is not None:
                event.set()
                self._idle[lane].clear()

        outbox.on_added = added
        self.use(senders)

    def use(self, senders: Mapping[str, Sender]) -> None:
        """Set the lanes' senders (before :meth:`run`; the service knows them only once
        its HTTP client and broker connection exist)."""
        self.senders = dict(senders)
        self._wake = {lane: asyncio.Event() for lane in self.senders}
        self._idle = {lane: asyncio.Event() for lane in self.senders}
        self._nudge = {lane: asyncio.Event() for lane in self.senders}
        for lane in self.senders:
            (self._wake if self.outbox.depth(lane) else self._idle)[lane].set()
            for outcome in ("delivered", "refused", "expired", "retried"):
                self.outcomes.labels(lane, outcome)

    def _settle(self, delivery: Delivery, how: Settled) -> None:
        self.outbox.settle(delivery, how)
        self.outcomes.labels(delivery.lane, how).inc()

    async def run(self) -> None:
        """Deliver until cancelled."""
        for lane in self.outbox.lanes():
            if lane not in self.senders:
                stranded = list(self.outbox.pending(lane))
                log.warning("outbox: %d notification(s) for %s, which is no longer "
                            "configured, will not be sent", len(stranded), lane)
                for d in stranded:
                    self._settle(d, "refused")
        async with asyncio.TaskGroup() as tg:
            for lane, sender in self.senders.items():
                tg.create_task(self._work(lane, sender), name=f"outbox-{lane}")

    async def join(self, timeout_s: float) -> None:
        """Wait until every lane is empty; TimeoutError names the lanes still busy."""
        try:
            async with asyncio.timeout(timeout_s):
                for lane in self.senders:
                    while self.outbox.depth(lane):
                        self._idle[lane].clear()
                        await self._idle[lane].wait()
        except TimeoutError as exc:
            busy = {lane: self.outbox.depth(lane) for lane in self.senders
                    if self.outbox.depth(lane)}
            raise TimeoutError(f"notifications not delivered within {timeout_s} s; "
                               f"waiting: {busy}") from exc

    async def _work(self, lane: str, sender: Sender) -> None:
        backoff = self._backoff_factory()
        wake, idle = self._wake[lane], self._idle[lane]
        while True:
            delivery = self.outbox.head(lane)
            if delivery is None:
                idle.set()
                wake.clear()
                await wake.wait()
                continue
            try:
                done = await self._attempt(lane, sender, delivery)
            except asyncio.CancelledError:
                raise  # still in the outbox: sent first, same id, after a restart
            except Exception:  # a bug in a sender must not stop its lane
                log.exception("outbox %s: unexpected error sending %s", lane, delivery.id)
                done = False
            if done:
                backoff.reset()
            else:
                nudge = self._nudge[lane]
                nudge.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), backoff.next())

    def nudge(self, lane: str) -> None:
        """Try ``lane`` again now instead of at the end of its backoff (the broker
        is back: a fire notice must not wait up to 30 s for the next attempt).
        Call it from the event loop's thread."""
        event = self._nudge.get(lane)
        if event is not None:
            event.set()

    async def _attempt(self, lane: str, sender: Sender, delivery: Delivery) -> bool:
        """One attempt; True if the delivery is settled (the lane may go on)."""
        age_s = self.clock() - delivery.created_ms / 1000
        if age_s > self.retry_for_s:
            log.error("outbox %s: %s notification %s given up after %.0f s undelivered "
                      "(notify.outbox.retry_for_s)", lane, delivery.kind, delivery.id, age_s)
            self._settle(delivery, "expired")
            return True
        started = time.perf_counter()
        try:
            await sender.send(delivery)
        except DeliveryError as exc:
            if exc.retryable:
                self.outcomes.labels(lane, "retried").inc()
                log.debug("outbox %s: %s not delivered (%s); retrying", lane, delivery.id, exc)
                return False
            log.warning("outbox %s: %s notification %s refused for good: %s", lane,
                        delivery.kind, delivery.id, exc)
            self._settle(delivery, "refused")
            return True
        finally:
            self.attempt_seconds.labels(lane).observe(time.perf_counter() - started)
        self._settle(delivery, "delivered")
        return True
