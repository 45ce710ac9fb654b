"""Alarm notifications by webhook, which never block the alarm pipeline.

``WebhookNotifier.notify(event)`` is synchronous and only appends to one bounded
queue per target, so a slow or dead receiver delays nothing but its own queue.
When a queue is full the *oldest* event is dropped and counted (for alarms the
newest state matters most). One worker per target delivers its queue strictly
in order; connection errors, timeouts, 5xx and 429 are retried with jittered
exponential backoff (``store.backoff.Backoff``) up to ``max_attempts``; any
other status outside 2xx fails at once. Failures are counted and logged, never
raised into the pipeline.

Each delivery is one ``POST`` of ``orjson.dumps(event)`` with these headers:

``Content-Type: application/json`` and ``User-Agent: plantwatch``
``X-Plantwatch-Event``
    ``event["type"]``, or ``alarm`` when the event has none.
``X-Plantwatch-Delivery``
    A UUID4, the same on every retry of one event to one target, so a receiver
    can drop duplicates.
``X-Plantwatch-Timestamp``
    Unix time in whole seconds at which *this attempt* was sent.
``X-Plantwatch-Signature`` (only when the target has a secret)
    ``sha256=`` + the lowercase hex HMAC-SHA256, keyed with the UTF-8 secret,
    of ``timestamp + "." + body``: the timestamp header's bytes, a dot, and the
    raw request body exactly as received (do not re-serialize the JSON).

A receiver verifies with ``verify_signature(secret, timestamp, body, header)``
(constant-time), and should also reject timestamps older than a few minutes
(``max_age_s``) so that a captured request cannot be replayed later.

Metrics (label ``target``): ``webhook_deliveries_total{outcome=delivered|failed|
dropped}``, ``webhook_queue_depth`` (events waiting, not counting the one in
flight) and ``webhook_delivery_seconds`` (duration of each HTTP attempt).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from store.backoff import Backoff

__all__ = ["WebhookNotifier", "WebhookTarget", "verify_signature"]

log = logging.getLogger(__name__)

EventFilter = Callable[[dict[str, Any]], bool]

_SIGNATURE_PREFIX = "sha256="


def _signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return _SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str,
    *,
    max_age_s: float | None = None,
    now: float | None = None,
) -> bool:
    """True if ``header`` (``X-Plantwatch-Signature``) signs ``timestamp`` and ``body``.

    ``timestamp`` is the ``X-Plantwatch-Timestamp`` header, ``body`` the raw
    request body. With ``max_age_s``, a timestamp further than that from
    ``now`` (default: the wall clock) is rejected too. An empty secret never
    verifies: it means the sender does not sign.
    """
    if not secret or not header.startswith(_SIGNATURE_PREFIX):
        return False
    stamp = str(timestamp)
    if max_age_s is not None:
        try:
            sent = int(stamp)
        except ValueError:
            return False
        current = time.time() if now is None else now
        if abs(current - sent) > max_age_s:
            return False
    expected = _signature(secret, stamp, body)
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One receiver of alarm notifications.

    ``secret`` empty means unsigned. ``accepts(event)`` picks the events this
    target wants (default: all); if it raises, the event is sent anyway (a
    notification too many beats a missed alarm) and the error is logged.
    """

    name: str
    url: str
    secret: str = field(default="", repr=False)
    timeout_s: float = 5.0
    max_attempts: int = 6
    queue_size: int = 1000
    accepts: EventFilter | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"webhook target {self.name!r}"
        if not self.name:
            raise ValueError(f"webhook target for {self.url!r}: name must not be empty")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{where}: url {self.url!r} is not an http(s) URL with a host")
        if not self.timeout_s > 0:
            raise ValueError(f"{where}: timeout_s must be > 0, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise ValueError(f"{where}: max_attempts must be >= 1, got {self.max_attempts}")
        if self.queue_size < 1:
            raise ValueError(f"{where}: queue_size must be >= 1, got {self.queue_size}")


@dataclass(slots=True)
class _Delivery:
    delivery_id: str
    event_type: str
    body: bytes


class _DeliveryError(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class _Lane:
    """The queue and worker state of one target."""

    def __init__(self, target: WebhookTarget, backoff: Backoff) -> None:
        self.target = target
        self.backoff = backoff
        self.pending: collections.deque[_Delivery] = collections.deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.overflowing = False


def _header_token(value: object) -> str:
    """A header-safe rendering of the event type (no control or non-ASCII chars)."""
    text = str(value)
    return "".join(c if " " <= c <= "~" else "_" for c in text)[:200] or "alarm"


class WebhookNotifier:
    """Sends events to webhook targets; an async context manager around its HTTP client.

    Use as ``async with WebhookNotifier(targets) as notifier:`` and run
    ``notifier.run()`` as a task; call ``notify(event)`` from the event loop's
    thread. A ``client`` passed in is used as is and left open.
    """

    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        registry: CollectorRegistry | None = None,
        client: httpx.AsyncClient | None = None,
        backoff_factory: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.targets = tuple(targets)
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhook target names must be unique; repeated: {duplicates}")
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "webhook_deliveries", "Webhook events by outcome (delivered, failed, dropped)",
            ["target", "outcome"], registry=r,
        )
        self.queue_depth = Gauge(
            "webhook_queue_depth", "Webhook events waiting to be sent", ["target"], registry=r
        )
        self.delivery_seconds = Histogram(
            "webhook_delivery_seconds", "Duration of one webhook HTTP attempt", ["target"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self._lanes = {t.name: _Lane(t, backoff_factory()) for t in self.targets}
        for name in self._lanes:
            for outcome in ("delivered", "failed", "dropped"):
                self.deliveries.labels(name, outcome)
            self.queue_depth.labels(name).set(0)
            self.delivery_seconds.labels(name)
        self._client = client
        self._owns_client = client is None
        self._running = False

    async def __aenter__(self) -> Self:
        if self._owns_client:
            self._client = httpx.AsyncClient(headers={"User-Agent": "plantwatch"})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the pipeline's side -------------------------------------------------

    def notify(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for every target that accepts it; never blocks, never raises.

        The event is serialized now, so changing the dict afterwards changes
        nothing that is sent.
        """
        lanes = [lane for lane in self._lanes.values() if self._accepts(lane.target, event)]
        if not lanes:
            return
        try:
            body = orjson.dumps(event)
        except TypeError as exc:  # orjson.JSONEncodeError
            log.error("webhook event cannot be serialized to JSON (%s); not sent to %s",
                      exc, ", ".join(lane.target.name for lane in lanes))
            for lane in lanes:
                self.deliveries.labels(lane.target.name, "failed").inc()
            return
        event_type = _header_token(event.get("type", "alarm"))
        for lane in lanes:
            self._enqueue(lane, _Delivery(str(uuid.uuid4()), event_type, body))

    def _accepts(self, target: WebhookTarget, event: dict[str, Any]) -> bool:
        if target.accepts is None:
            return True
        try:
            return bool(target.accepts(event))
        except Exception:
            log.exception("webhook %s: its event filter failed; sending the event anyway",
                          target.name)
            return True

    def _enqueue(self, lane: _Lane, delivery: _Delivery) -> None:
        name = lane.target.name
        while len(lane.pending) >= lane.target.queue_size:
            lane.pending.popleft()
            self.deliveries.labels(name, "dropped").inc()
            if not lane.overflowing:
                lane.overflowing = True
                log.warning("webhook %s: queue full (%d events); dropping the oldest until "
                            "it drains", name, lane.target.queue_size)
        lane.pending.append(delivery)
        lane.idle.clear()
        lane.wake.set()
        self.queue_depth.labels(name).set(len(lane.pending))

    async def join(self, timeout_s: float) -> None:
        """Wait until every queue is empty and nothing is in flight.

        Raises TimeoutError naming the targets still busy after ``timeout_s``.
        """
        lanes = list(self._lanes.values())
        try:
            async with asyncio.timeout(timeout_s):
                while not all(lane.idle.is_set() for lane in lanes):
                    for lane in lanes:
                        await lane.idle.wait()
        except TimeoutError as exc:
            busy = {lane.target.name: len(lane.pending) for lane in lanes
                    if not lane.idle.is_set()}
            raise TimeoutError(
                f"webhook queues not drained within {timeout_s} s; waiting events: {busy}"
            ) from exc

    # -- the workers ---------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled: one named worker task per target."""
        if self._client is None:
            raise RuntimeError("WebhookNotifier.run() needs `async with WebhookNotifier(...)`")
        if self._running:
            raise RuntimeError("WebhookNotifier.run() is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                for name, lane in self._lanes.items():
                    tg.create_task(self._work(lane), name=f"webhook-{name}")
        finally:
            self._running = False

    async def _work(self, lane: _Lane) -> None:
        name = lane.target.name
        while True:
            if not lane.pending:
                lane.overflowing = False
                lane.idle.set()
                lane.wake.clear()
                await lane.wake.wait()
                continue
            delivery = lane.pending.popleft()
            self.queue_depth.labels(name).set(len(lane.pending))
            try:
                await self._deliver(lane, delivery)
            except asyncio.CancelledError:
                # Not lost: a later run() sends it first, with the same delivery id.
                lane.pending.appendleft(delivery)
                self.queue_depth.labels(name).set(len(lane.pending))
                raise
            except Exception:  # a bug here must not stop this target's worker
                log.exception("webhook %s: unexpected error delivering %s", name,
                              delivery.delivery_id)
                self.deliveries.labels(name, "failed").inc()

    async def _deliver(self, lane: _Lane, delivery: _Delivery) -> None:
        target = lane.target
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._attempt(target, delivery)
            except _DeliveryError as exc:
                if exc.retryable and attempt < target.max_attempts:
                    wait_s = lane.backoff.next()
                    log.debug("webhook %s: attempt %d of %s failed (%s); retrying in %.2f s",
                              target.name, attempt, delivery.delivery_id, exc, wait_s)
                    await asyncio.sleep(wait_s)
                    continue
                self.deliveries.labels(target.name, "failed").inc()
                log.warning(
                    "webhook %s: delivery %s to %s failed after %d attempt(s): %s",
                    target.name, delivery.delivery_id, target.url, attempt, exc,
                )
                return
            lane.backoff.reset()
            self.deliveries.labels(target.name, "delivered").inc()
            return

    async def _attempt(self, target: WebhookTarget, delivery: _Delivery) -> None:
        """One POST; returns on 2xx, else raises _DeliveryError."""
        assert self._client is not None  # run() checked
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "plantwatch",
            "X-Plantwatch-Event": delivery.event_type,
            "X-Plantwatch-Delivery": delivery.delivery_id,
            "X-Plantwatch-Timestamp": timestamp,
        }
        if target.secret:
            headers["X-Plantwatch-Signature"] = _signature(target.secret, timestamp,
                                                           delivery.body)
        started = time.perf_counter()
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt,
            # so a receiver trickling bytes cannot hold the queue for longer.
            async with asyncio.timeout(target.timeout_s):
                response = await self._client.post(
                    target.url, content=delivery.body, headers=headers,
                    timeout=target.timeout_s,
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _DeliveryError(f"no answer within {target.timeout_s} s",
                                 retryable=True) from exc
        except httpx.TransportError as exc:
            raise _DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        finally:
            self.delivery_seconds.labels(target.name).observe(time.perf_counter() - started)
        status = response.status_code
        if 200 <= status < 300:
            return
        raise _DeliveryError(
            f"HTTP {status} {response.reason_phrase}".rstrip(),
            retryable=status >= 500 or status == 429, status=status,
        )
