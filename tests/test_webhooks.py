"""Webhook notifications against a real HTTP receiver on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from notify.webhooks import WebhookNotifier, WebhookTarget, verify_signature
from store.backoff import Backoff

HANG = None  # a scripted "status" that never answers


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes


class Receiver:
    """A minimal HTTP/1.1 server (keep-alive, Content-Length bodies).

    ``script`` gives the status of each request in turn (``HANG``: never
    answer); after it runs out every request gets ``then``.
    """

    def __init__(self, script: Iterable[int | None] = (), then: int | None = 200) -> None:
        self.script = list(script)
        self.then = then
        self.requests: list[Request] = []
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._release.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def wait_for(self, n: int, timeout_s: float = 2.0) -> list[Request]:
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if line:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                async with self._arrived:
                    self.requests.append(Request(method, path, headers, body))
                    self._arrived.notify_all()
                status = self.script.pop(0) if self.script else self.then
                if status is HANG:
                    await self._release.wait()
                    return
                writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receivers() -> AsyncIterator[ReceiverFactory]:
    started: list[Receiver] = []

    async def start(script: Iterable[int | None] = (), then: int | None = 200) -> Receiver:
        receiver = Receiver(script, then)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.001, max_s=0.01)


@contextlib.asynccontextmanager
async def running(notifier: WebhookNotifier) -> AsyncIterator[WebhookNotifier]:
    """The notifier, entered and with run() as a task; cancelled on the way out."""
    async with notifier:
        task = asyncio.create_task(notifier.run(), name="webhooks")
        try:
            yield notifier
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def count(registry: CollectorRegistry, target: str, outcome: str) -> float:
    value = registry.get_sample_value(
        "plantwatch_notifications_total", {"lane": f"webhook:{target}", "outcome": outcome}
    )
    assert value is not None
    return value


def depth(registry: CollectorRegistry, target: str) -> float:
    """Recorded and not yet delivered (the one in flight included)."""
    value = registry.get_sample_value("plantwatch_outbox_depth", {"lane": f"webhook:{target}"})
    return 0.0 if value is None else value


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll ``condition`` (a metric, which has no event to wait on) until it holds."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


# -- signatures ---------------------------------------------------------------


def test_verify_signature_rejects_wrong_secret_body_prefix_and_age() -> None:
    ts, body = "1700000000", b'{"sensor":"GD-101"}'
    good = "sha256=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify_signature("k", ts, body, good)
    assert verify_signature("k", 1700000000, body, good)
    assert not verify_signature("other", ts, body, good)
    assert not verify_signature("k", ts, body + b" ", good)
    assert not verify_signature("k", "1700000001", body, good)
    assert not verify_signature("k", ts, body, good.removeprefix("sha256="))
    assert not verify_signature("k", ts, body, good.upper())
    assert not verify_signature("", ts, body, good)
    assert not verify_signature("k", ts, body, "sha256=é")
    assert verify_signature("k", ts, body, good, max_age_s=300, now=1700000100)
    assert not verify_signature("k", ts, body, good, max_age_s=300, now=1700000400)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timeout_s": 0.0}, "'pager': timeout_s must be > 0"),
        ({"url": "ftp://example.com/x"}, "'pager': url 'ftp://example.com/x' is not"),
    ],
)
def test_target_validation_names_the_target(changes: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"name": "pager", "url": "http://127.0.0.1:1/x", **changes}
    with pytest.raises(ValueError, match=message):
        WebhookTarget(**kwargs)  # type: ignore[arg-type]


def test_duplicate_target_names_are_refused() -> None:
    t = WebhookTarget("pager", "http://127.0.0.1:1/x")
    with pytest.raises(ValueError, match="repeated: \\['pager'\\]"):
        WebhookNotifier([t, t], registry=CollectorRegistry())


def test_secret_is_not_in_repr() -> None:
    assert "hunter2" not in repr(WebhookTarget("pager", "http://127.0.0.1:1/x", "hunter2"))


# -- delivery -----------------------------------------------------------------


async def test_delivers_signed_event_with_headers(receivers: ReceiverFactory) -> None:
    signed, unsigned = await receivers(), await receivers()
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [WebhookTarget("signed", signed.url, "s3cret"), WebhookTarget("plain", unsigned.url)],
        registry=registry,
    )
    event = {"type": "alarm.raised", "sensor": "GD-101", "value_pct_lel": 42.5, "ok": 0.0}
    async with running(notifier):
        notifier.notify(event)
        event["sensor"] = "changed after notify"
        await notifier.join(2.0)

    [request] = signed.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert orjson.loads(request.body) == {**event, "sensor": "GD-101"}
    h = request.headers
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == "plantwatch"
    assert h["x-plantwatch-event"] == "alarm.raised"
    assert uuid.UUID(h["x-plantwatch-delivery"]).version == 5  # derived: stable
    assert abs(int(h["x-plantwatch-timestamp"]) - time.time()) < 60
    ts, sig = h["x-plantwatch-timestamp"], h["x-plantwatch-signature"]
    assert verify_signature("s3cret", ts, request.body, sig, max_age_s=60)
    assert not verify_signature("wrong", ts, request.body, sig)

    [plain] = unsigned.requests
    assert "x-plantwatch-signature" not in plain.headers
    assert plain.headers["x-plantwatch-delivery"] != h["x-plantwatch-delivery"]
    assert plain.body == request.body
    for name in ("signed", "plain"):
        assert count(registry, name, "delivered") == 1
        assert count(registry, name, "refused") == 0
        assert depth(registry, name) == 0


async def test_event_type_defaults_to_alarm_and_filter_selects(
    receivers: ReceiverFactory,
) -> None:
    all_events, gas_only = await receivers(), await receivers()
    notifier = WebhookNotifier(
        [
            WebhookTarget("all", all_events.url),
            WebhookTarget("gas", gas_only.url, accepts=lambda e: e["sensor"].startswith("GD")),
        ],
        registry=CollectorRegistry(),
    )
    async with running(notifier):
        notifier.notify({"sensor": "GD-101"})
        notifier.notify({"sensor": "TT-7", "type": "alarm.cleared"})
        await notifier.join(2.0)
    assert [r.headers["x-plantwatch-event"] for r in all_events.requests] == [
        "alarm", "alarm.cleared"
    ]
    assert [orjson.loads(r.body)["sensor"] for r in gas_only.requests] == ["GD-101"]


async def test_order_is_preserved_across_a_retry(receivers: ReceiverFactory) -> None:
    receiver = await receivers(script=[200] * 10 + [503])
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [WebhookTarget("ops", receiver.url)], registry=registry, backoff_factory=fast_backoff
    )
    async with running(notifier):
        for seq in range(40):
            notifier.notify({"seq": seq})
        await notifier.join(5.0)
    seqs = [orjson.loads(r.body)["seq"] for r in receiver.requests]
    assert seqs == [*range(11), *range(10, 40)]  # event 10 answered 503 once, then again
    assert count(registry, "ops", "delivered") == 40


@pytest.mark.parametrize("first_two", [(500, 500), (429, 503)])
async def test_retried_until_delivered_with_the_same_delivery_id(
    receivers: ReceiverFactory, first_two: tuple[int, int]
) -> None:
    receiver = await receivers(script=first_two)
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [WebhookTarget("ops", receiver.url, "k")], registry=registry,
        backoff_factory=fast_backoff,
    )
    async with running(notifier):
        notifier.notify({"type": "alarm.raised"})
        await notifier.join(2.0)
    assert len(receiver.requests) == 3
    assert len({r.headers["x-plantwatch-delivery"] for r in receiver.requests}) == 1
    for r in receiver.requests:
        assert verify_signature("k", r.headers["x-plantwatch-timestamp"], r.body,
                                r.headers["x-plantwatch-signature"])
    assert count(registry, "ops", "delivered") == 1
    assert count(registry, "ops", "refused") == 0
    assert count(registry, "ops", "retried") == 2
    attempts = registry.get_sample_value("plantwatch_notification_attempt_seconds_count",
                                         {"lane": "webhook:ops"})
    assert attempts == 3


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_receiver_wide_refusal_is_retried_not_dropped(
    receivers: ReceiverFactory, status: int
) -> None:
    """401/403 during a secret rotation, 404 while the receiver redeploys: passing."""
    receiver = await receivers(script=[status, status])
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [WebhookTarget("ops", receiver.url)], registry=registry, backoff_factory=fast_backoff
    )
    async with running(notifier):
        notifier.notify({"seq": 1})
        await notifier.join(2.0)
    assert [orjson.loads(r.body)["seq"] for r in receiver.requests] == [1, 1, 1]
    assert count(registry, "ops", "delivered") == 1
    assert count(registry, "ops", "refused") == 0


async def test_fire_control_notices_do_not_wait_behind_a_stuck_notification(
    receivers: ReceiverFactory,
) -> None:
    receiver = await receivers(script=[HANG])  # the first alarm event hangs
    notifier = WebhookNotifier([WebhookTarget("ops", receiver.url, timeout_s=5.0)],
                               registry=CollectorRegistry())
    async with running(notifier):
        notifier.notify({"type": "alarm", "seq": 1})
        await receiver.wait_for(1)
        notifier.notify({"type": "fire_control", "seq": 2})
        got = await receiver.wait_for(2, timeout_s=2.0)  # well before the 5 s timeout
    assert [orjson.loads(r.body)["type"] for r in got] == ["alarm", "fire_control"]


@pytest.mark.parametrize("status", [400, 410, 422])
async def test_client_error_fails_at_once_and_the_queue_goes_on(
    receivers: ReceiverFactory, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await receivers(script=[status])
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [WebhookTarget("ops", receiver.url)], registry=registry, backoff_factory=fast_backoff
    )
    async with running(notifier):
        notifier.notify({"seq": 1})
        notifier.notify({"seq": 2})
        await notifier.join(2.0)
    assert [orjson.loads(r.body)["seq"] for r in receiver.requests] == [1, 2]
    assert count(registry, "ops", "refused") == 1
    assert count(registry, "ops", "delivered") == 1
    assert f"HTTP {status}" in caplog.text


async def test_dead_port_is_retried_until_retry_for_s_then_given_up(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[httpx.Request] = []

    async def on_request(request: httpx.Request) -> None:
        attempts.append(request)

    registry = CollectorRegistry()
    async with httpx.AsyncClient(event_hooks={"request": [on_request]}) as client:
        notifier = WebhookNotifier(
            [WebhookTarget("pager", dead_url)], registry=registry, client=client,
            backoff_factory=fast_backoff, retry_for_s=0.3,
        )
        with caplog.at_level(logging.WARNING, logger="notify.delivery"):
            async with running(notifier):
                notifier.notify({"type": "alarm.raised"})
                await notifier.join(5.0)
        assert not client.is_closed  # a client passed in stays the caller's
    assert len(attempts) >= 3  # retried for 0.3 s, not a fixed number of attempts
    assert len({a.headers["x-plantwatch-delivery"] for a in attempts}) == 1
    assert count(registry, "pager", "expired") == 1
    assert count(registry, "pager", "delivered") == 0
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    message = record.getMessage()
    assert "webhook:pager" in message
    assert "given up after" in message
    assert "retry_for_s" in message


async def test_hanging_receiver_blocks_neither_notify_nor_other_targets(
    receivers: ReceiverFactory,
) -> None:
    hanging, healthy = await receivers(then=HANG), await receivers()
    registry = CollectorRegistry()
    notifier = WebhookNotifier(
        [
            WebhookTarget("slow", hanging.url, timeout_s=5.0),
            WebhookTarget("fast", healthy.url, accepts=lambda e: e["seq"] % 100 == 0),
        ],
        registry=registry,
    )
    async with running(notifier):
        notifier.notify({"seq": -100})
        await hanging.wait_for(1)  # the slow target's first request is now stuck

        started = time.perf_counter()
        for seq in range(1000):
            notifier.notify({"seq": seq})
        elapsed = time.perf_counter() - started

        got = await healthy.wait_for(11, timeout_s=2.0)  # far less than the 5 s timeout
        assert [orjson.loads(r.body)["seq"] for r in got] == [-100, *range(0, 1000, 100)]
        assert len(hanging.requests) == 1
        assert depth(registry, "slow") == 1001  # nothing dropped, the one in flight kept
        await until(lambda: count(registry, "fast", "delivered") == 11)
    assert elapsed < 0.25, f"1000 notify() calls took {elapsed:.3f} s"


async def test_nothing_is_dropped_while_nothing_delivers(receivers: ReceiverFactory) -> None:
    receiver = await receivers()
    registry = CollectorRegistry()
    notifier = WebhookNotifier([WebhookTarget("ops", receiver.url)], registry=registry)
    async with notifier:
        for seq in range(2000):  # nothing delivers yet: run() is not started
            notifier.notify({"seq": seq})
        assert depth(registry, "ops") == 2000
        task = asyncio.create_task(notifier.run())
        await notifier.join(10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [orjson.loads(r.body)["seq"] for r in receiver.requests] == list(range(2000))
    assert count(registry, "ops", "delivered") == 2000
    assert depth(registry, "ops") == 0


async def test_cancel_propagates_and_keeps_the_event_in_flight(
    receivers: ReceiverFactory,
) -> None:
    receiver = await receivers(script=[HANG])
    registry = CollectorRegistry()
    notifier = WebhookNotifier([WebhookTarget("ops", receiver.url)], registry=registry)
    async with notifier:
        task = asyncio.create_task(notifier.run())
        notifier.notify({"type": "alarm.raised"})
        await receiver.wait_for(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1.0)
        assert task.cancelled()
        assert depth(registry, "ops") == 1  # the event never left the outbox

        task = asyncio.create_task(notifier.run())
        await notifier.join(2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    first, second = receiver.requests
    assert first.headers["x-plantwatch-delivery"] == second.headers["x-plantwatch-delivery"]
    assert count(registry, "ops", "delivered") == 1


async def test_unserializable_event_and_failing_filter_never_raise(
    receivers: ReceiverFactory, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await receivers()
    registry = CollectorRegistry()

    def broken_filter(event: dict[str, object]) -> bool:
        raise KeyError("zone")

    notifier = WebhookNotifier(
        [WebhookTarget("ops", receiver.url, accepts=broken_filter)], registry=registry
    )
    async with running(notifier):
        notifier.notify({"value": {1, 2}})  # a set is not JSON
        notifier.notify({"type": "alarm\r\nX-Injected: 1"})
        await notifier.join(2.0)
    assert notifier.unserializable == 1
    [request] = receiver.requests
    assert request.headers["x-plantwatch-event"] == "alarm__X-Injected: 1"
    assert "x-injected" not in request.headers
    assert "event filter failed" in caplog.text


async def test_join_times_out_naming_the_busy_target(dead_url: str) -> None:
    notifier = WebhookNotifier([WebhookTarget("pager", dead_url)], registry=CollectorRegistry())
    async with notifier:
        notifier.notify({"type": "alarm.raised"})  # never delivered: run() is not started
        with pytest.raises(TimeoutError, match="'webhook:pager': 1"):
            await notifier.join(0.05)
