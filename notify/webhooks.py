"""Alarm notifications by webhook, recorded in the outbox and never lost.

``WebhookNotifier.notify(event)`` is synchronous: it records one delivery per
target that accepts the event in the durable outbox (:mod:`notify.outbox`),
so a slow or dead receiver delays nothing but its own lane, and a crash loses
nothing. :class:`WebhookSender` sends one delivery; the outbox's dispatcher
(:mod:`notify.delivery`) sends each lane strictly in order and retries
every failure with jittered exponential backoff for up to
``notify.outbox.retry_for_s`` (default 24 h), except the answers that refuse
this notification for good (:data:`REFUSED_FOR_GOOD`: 400, 410, 413, 415,
422), which are logged and counted. Fire-control notices have a lane of their
own per target, so they never wait behind a backlog of other events.

Each delivery is one ``POST`` of ``orjson.dumps(event)`` with these headers:

``Content-Type: application/json`` and ``User-Agent: plantwatch``
``X-Plantwatch-Event``
    ``event["type"]``, or ``alarm`` when the event has none.
``X-Plantwatch-Delivery``
    A UUID derived from the target and the body: the same on every retry of
    one event to one target, after a restart, and when a crash made plantwatch
    produce the same event again, so a receiver drops duplicates by it.
``X-Plantwatch-Timestamp``
    Unix time in whole seconds at which *this attempt* was sent.
``X-Plantwatch-Signature`` (only when the target has a secret)
    ``sha256=`` + the lowercase hex HMAC-SHA256, keyed with the UTF-8 secret,
    of ``timestamp + "." + body``: the timestamp header's bytes, a dot, and the
    raw request body exactly as received (do not re-serialize the JSON).

A receiver verifies with ``verify_signature(secret, timestamp, body, header)``
(constant-time), and should also reject timestamps older than a few minutes
(``max_age_s``) so that a captured request cannot be replayed later.

Metrics: those of the outbox (:mod:`notify.delivery`), lane ``webhook:<target>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client import CollectorRegistry

from notify.delivery import DeliveryError, OutboxDispatcher
from notify.outbox import Delivery, Outbox
from store.backoff import Backoff

__all__ = ["REFUSED_FOR_GOOD", "WebhookNotifier", "WebhookSender", "WebhookTarget", "lane_of",
           "verify_signature"]

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


REFUSED_FOR_GOOD = frozenset({400, 410, 413, 415, 422})
"""Answers that say *this* notification will never be taken (malformed, too large,
gone for good). Every other failure is retried: a 401/403 during a secret
rotation, a 404 while the receiver redeploys, 5xx, 408, 429 are all passing."""


def lane_of(target: WebhookTarget, event_type: str = "") -> str:
    """The outbox lane of a webhook target; fire-control notices have their own, so
    they never wait behind the target's other notifications."""
    return f"webhook:{target.name}" + (":fire" if event_type == "fire_control" else "")


def _header_token(value: object) -> str:
    """A header-safe rendering of the event type (no control or non-ASCII chars)."""
    text = str(value)
    return "".join(c if " " <= c <= "~" else "_" for c in text)[:200] or "alarm"


class WebhookSender:
    """Sends one delivery to one target: a signed ``POST``; returns on 2xx."""

    def __init__(self, target: WebhookTarget, client: httpx.AsyncClient) -> None:
        self.target = target
        self.client = client

    async def send(self, delivery: Delivery) -> None:
        target = self.target
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "plantwatch",
            "X-Plantwatch-Event": _header_token(delivery.kind),
            "X-Plantwatch-Delivery": delivery.id,
            "X-Plantwatch-Timestamp": timestamp,
        }
        if target.secret:
            headers["X-Plantwatch-Signature"] = _signature(target.secret, timestamp,
                                                           delivery.body)
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt,
            # so a receiver trickling bytes cannot hold the lane for longer.
            async with asyncio.timeout(target.timeout_s):
                response = await self.client.post(
                    target.url, content=delivery.body, headers=headers,
                    timeout=target.timeout_s,
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise DeliveryError(f"no answer within {target.timeout_s} s",
                                retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        raise DeliveryError(
            f"HTTP {status} {response.reason_phrase}".rstrip(),
            retryable=status not in REFUSED_FOR_GOOD, status=status,
        )


class WebhookNotifier:
    """Records webhook events in the outbox; an async context manager around its HTTP client.

    In the service the outbox is shared and the pipeline syncs it after each
    commit (:meth:`notify` only stages); :meth:`senders` gives the service's
    dispatcher one sender per target. Used alone (``outbox=None``) it keeps an
    in-memory outbox, syncs on every :meth:`notify`, and :meth:`run` delivers.
    A ``client`` passed in is used as is and left open.
    """

    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        registry: CollectorRegistry | None = None,
        client: httpx.AsyncClient | None = None,
        backoff_factory: Callable[[], Backoff] = Backoff,
        *,
        outbox: Outbox | None = None,
        retry_for_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = tuple(targets)
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"webhook target names must be unique; repeated: {duplicates}")
        self.registry = registry or CollectorRegistry()
        self._own_outbox = outbox is None
        self.outbox = Outbox(None) if outbox is None else outbox
        self.clock = clock
        self._backoff_factory = backoff_factory
        self.retry_for_s = retry_for_s
        self._client = client
        self._owns_client = client is None
        self._dispatcher: OutboxDispatcher | None = None
        self.unserializable = 0

    async def __aenter__(self) -> Self:
        if self._owns_client:
            self._client = httpx.AsyncClient(headers={"User-Agent": "plantwatch"})
        if self._own_outbox:
            self._dispatcher = OutboxDispatcher(
                self.outbox, self.senders(), retry_for_s=self.retry_for_s,
                registry=self.registry, backoff_factory=self._backoff_factory,
                clock=self.clock)
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

    def senders(self) -> dict[str, WebhookSender]:
        """One sender per target, by lane (needs ``async with``)."""
        if self._client is None:
            raise RuntimeError("WebhookNotifier.senders() needs `async with WebhookNotifier(...)`")
        return {lane_of(t, kind): WebhookSender(t, self._client)
                for t in self.targets for kind in ("alarm", "fire_control")}

    # -- the pipeline's side -------------------------------------------------

    def notify(self, event: dict[str, Any]) -> None:
        """Record ``event`` for every target that accepts it; never blocks, never raises.

        The event is serialized now, so changing the dict afterwards changes
        nothing that is sent.
        """
        targets = [t for t in self.targets if self._accepts(t, event)]
        if not targets:
            return
        try:
            body = orjson.dumps(event)
        except TypeError as exc:  # orjson.JSONEncodeError
            self.unserializable += 1
            log.error("webhook event cannot be serialized to JSON (%s); not sent to %s",
                      exc, ", ".join(t.name for t in targets))
            return
        kind = _header_token(event.get("type", "alarm"))
        now_ms = int(self.clock() * 1000)
        for t in targets:
            self.outbox.add(Delivery.make(lane_of(t, kind), kind, body, now_ms))
        if self._own_outbox:
            self.outbox.sync()

    def _accepts(self, target: WebhookTarget, event: dict[str, Any]) -> bool:
        if target.accepts is None:
            return True
        try:
            return bool(target.accepts(event))
        except Exception:
            log.exception("webhook %s: its event filter failed; sending the event anyway",
                          target.name)
            return True

    # -- used alone ------------------------------------------------------------

    async def run(self) -> None:
        """Deliver its own outbox until cancelled (used alone; the service runs one
        dispatcher over the shared outbox instead)."""
        if self._dispatcher is None:
            raise RuntimeError("WebhookNotifier.run() needs `async with WebhookNotifier(...)` "
                               "and no outbox of the service's (the service delivers that one)")
        await self._dispatcher.run()

    async def join(self, timeout_s: float) -> None:
        """Wait until nothing is left to send; TimeoutError names the busy lanes."""
        if self._dispatcher is not None:
            await self._dispatcher.join(timeout_s)
        elif self.outbox.depth():
            busy = {lane: self.outbox.depth(lane) for lane in self.outbox.lanes()}
            raise TimeoutError(f"webhook notifications waiting and nothing delivering them "
                               f"(not entered with `async with`): {busy}")
