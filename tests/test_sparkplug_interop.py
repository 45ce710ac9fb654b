"""Sparkplug B through a real Mosquitto: our edge node publishes, a paho subscriber feeds our host.

The host side here is the thinnest possible MQTT shell around
:class:`SparkplugHost`: a clean session with the STATE death as Will, a
subscription to ``spBv1.0/#``, the STATE birth, and every message handed to
the host with its arrival time; whatever the host wants published (rebirth
requests) is published.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from decoders.sparkplug_host import HostOutput, SparkplugHost
from devservers.localservers import Mosquitto
from simulators.sparkplug_edge import EdgeNodeMessages, SparkplugEdgeNode
from sparkplug import bd_seq_of, decode_payload

pytestmark = pytest.mark.servers

DEVICES = {"area-a": ["S-A-1", "S-A-2"], "area-b": ["S-B-1"]}
INDEX = {"S-A-1": 0, "S-A-2": 1, "S-B-1": 2}
_ids = itertools.count(1)


def now_ms() -> int:
    return int(time.time() * 1000)


class HostClient:
    """A paho client that feeds a :class:`SparkplugHost` and publishes what it asks."""

    def __init__(self, broker: Mosquitto, host: SparkplugHost) -> None:
        self.host = host
        self.output = HostOutput()
        self.received: list[tuple[str, bytes]] = []
        self._inbox: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self._subscribed = queue.Queue[int]()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=f"host-{host.host_id}", clean_session=True)
        connect_ms = now_ms()
        will = host.state_death(connect_ms)
        self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._birth = host.state_birth(connect_ms)
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.connect(broker.host, broker.port, keepalive=30)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((msg.topic, bytes(msg.payload), now_ms()))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: Any, properties: Any) -> None:
        self._subscribed.put(mid)

    def __enter__(self) -> HostClient:
        self._client.loop_start()
        # Subscribe first, then say we are online (Sparkplug 3.0 host session order).
        _, mid = self._client.subscribe([("spBv1.0/#", 1)])
        assert self._subscribed.get(timeout=10) == mid
        self._publish_all([self._birth])
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        death = self.host.state_death(now_ms())
        self._client.publish(death.topic, death.payload, qos=death.qos,
                             retain=death.retain).wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def _publish_all(self, messages: Any) -> None:
        for m in messages:
            self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)

    def pump(self, until: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Feed arriving messages (and ticks) to the host until ``until()`` holds."""
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; received {[t for t, _ in self.received][-10:]}, host rejected "
                    f"{[(r.topic, r.reason) for r in self.output.rejections][-10:]}"
                )
            try:
                topic, payload, arrived = self._inbox.get(timeout=0.05)
            except queue.Empty:
                out = self.host.tick(now_ms())
            else:
                self.received.append((topic, payload))
                out = self.host.handle(topic, payload, arrived)
            self.output.extend(out)
            self._publish_all(out.publish)


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    """A group and host id of this test's own (the broker is shared by the session)."""
    n = next(_ids)
    yield f"site{n}", f"plantwatch{n}"


def values(step: int) -> dict[str, float]:
    return {"S-A-1": 0.5 * step, "S-A-2": 100.0 - step, "S-B-1": -1.25 * step}


def test_host_decodes_what_the_edge_node_sent(mosquitto: Mosquitto,
                                               names: tuple[str, str]) -> None:
    group, host_id = names
    host = SparkplugHost(host_id, INDEX)
    node = EdgeNodeMessages(group, "gw-1", DEVICES, bd_seq=4)
    with HostClient(mosquitto, host) as hc, \
            SparkplugEdgeNode(mosquitto.url, node, initial_values=values(0)) as edge:
        sent: list[tuple[str, int, float]] = [(s, -1, v) for s, v in values(0).items()]
        t0 = now_ms()
        for k in range(1, 301):  # 300 steps × 2 messages: seq wraps twice
            ts = t0 + k
            edge.publish(ts, values(k))
            sent += [(s, ts, v) for s, v in values(k).items()]
        hc.pump(lambda: len(hc.output.readings) >= len(sent))
        hc.pump(lambda: True)
    got = [(r.sensor, r.ts, r.value) for r in hc.output.readings]
    birth_ts = got[0][1]
    expected = [(s, birth_ts if ts < 0 else ts, v) for s, ts, v in sent]
    assert got == expected
    assert not hc.output.rejections and not hc.output.rebirths
    assert host.online_nodes() == [(group, "gw-1")]
    assert edge.rebirths_answered == 0


def test_host_rebirth_request_is_answered_with_new_births(mosquitto: Mosquitto,
                                                          names: tuple[str, str]) -> None:
    group, host_id = names
    node = EdgeNodeMessages(group, "gw-1", DEVICES)
    host = SparkplugHost(host_id, INDEX)
    # The edge node is born before the host listens (a probe sees its last
    # DBIRTH go by first): the host's first message from it is data it cannot
    # attribute, and it asks for a rebirth.
    with _Probe(mosquitto, f"spBv1.0/{group}/DBIRTH/gw-1/area-b") as probe, \
            SparkplugEdgeNode(mosquitto.url, node, initial_values=values(0)) as edge:
        probe.get()
        with HostClient(mosquitto, host) as hc:
            edge.publish(now_ms(), values(1))
            hc.pump(lambda: bool(hc.output.rebirths))
            assert [r.reason for r in hc.output.rejections] == ["data_before_birth"]
            assert hc.output.rebirths[0].topic == f"spBv1.0/{group}/NCMD/gw-1"
            assert edge.wait_births(2, timeout_s=10)
            hc.pump(lambda: _dbirths_after_nbirth(hc.received) == 2)
            assert host.online_nodes() == [(group, "gw-1")]
            before = len(hc.output.readings)
            ts = now_ms()
            edge.publish(ts, values(2))
            hc.pump(lambda: len(hc.output.readings) >= before + 3)
    assert edge.rebirths_answered == 1
    assert {r.reason for r in hc.output.rejections} == {"data_before_birth"}
    assert len(hc.output.rebirths) == 1  # rate-limited: one per node per 5 s
    new = [(r.sensor, r.ts, r.value) for r in hc.output.readings[before:]]
    assert new == [(s, ts, v) for s, v in values(2).items()]
    # The rebirth's NBIRTH started seq again at 0 with the session's bdSeq.
    (nbirth,) = [decode_payload(p) for t, p in hc.received if "/NBIRTH/" in t]
    assert nbirth.seq == 0 and bd_seq_of(nbirth) == node.bd_seq == 0


def test_an_edge_node_that_dies_uncleanly_goes_stale_by_its_will(
        mosquitto: Mosquitto, names: tuple[str, str]) -> None:
    group, host_id = names
    host = SparkplugHost(host_id, INDEX)
    node = EdgeNodeMessages(group, "gw-1", DEVICES, bd_seq=9)
    with HostClient(mosquitto, host) as hc:
        edge = SparkplugEdgeNode(mosquitto.url, node, initial_values=values(0))
        with edge:
            hc.pump(lambda: len(hc.output.readings) >= 3)
            assert host.stale_sensors() == frozenset()
            edge.abort()  # no DISCONNECT: the broker publishes the Will
            hc.pump(lambda: host.stale_sensors() == frozenset(INDEX))
        (ndeath,) = [decode_payload(p) for t, p in hc.received if "/NDEATH/" in t]
        assert bd_seq_of(ndeath) == 9
        assert host.online_nodes() == []
        assert not hc.output.rejections


def test_host_state_is_retained_online_then_offline(mosquitto: Mosquitto,
                                                    names: tuple[str, str]) -> None:
    _, host_id = names
    host = SparkplugHost(host_id, INDEX)
    with HostClient(mosquitto, host):
        online = _retained(mosquitto, host.state_topic)
    offline = _retained(mosquitto, host.state_topic)
    assert json.loads(online)["online"] is True
    assert json.loads(offline)["online"] is False


def _dbirths_after_nbirth(received: list[tuple[str, bytes]]) -> int:
    """DBIRTHs received after the last NBIRTH (-1 before any NBIRTH)."""
    topics = [t for t, _ in received]
    nbirths = [i for i, t in enumerate(topics) if "/NBIRTH/" in t]
    if not nbirths:
        return -1
    return sum("/DBIRTH/" in t for t in topics[nbirths[-1]:])


class _Probe:
    """A plain subscriber to one topic; entering returns once the subscription is in place."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self._got: queue.Queue[bytes] = queue.Queue()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   clean_session=True)
        self._client.on_message = lambda c, u, m: self._got.put(bytes(m.payload))
        self._client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._topic = topic

    def __enter__(self) -> _Probe:
        self._client.loop_start()
        self._client.subscribe(self._topic, qos=1)
        assert self._subscribed.wait(10), f"no SUBACK for {self._topic}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def get(self, timeout_s: float = 10.0) -> bytes:
        return self._got.get(timeout=timeout_s)


def _retained(broker: Mosquitto, topic: str) -> bytes:
    """The retained message of ``topic``, read by a fresh subscriber."""
    with _Probe(broker, topic) as probe:
        return probe.get()
