"""The MQTT source against a real Mosquitto: flow control and acks after durability."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt_source import MqttSource
from simulators import MqttPublisher

pytestmark = pytest.mark.servers
_ids = itertools.count(1)


async def test_receive_maximum_paces_the_broker_and_nothing_is_lost(mosquitto: Any) -> None:
    """With MQTT 5 the broker sends at most max_pending unacknowledged messages,
    so a consumer that is not keeping up never makes the inbox overflow (paho's
    thread never has to wait); acking lets the rest through."""
    n = next(_ids)
    topic = f"plant/flow{n}/gw"
    async with MqttSource(mosquitto.url, f"flow-{n}", [f"plant/flow{n}/#"],
                          max_pending=100, protocol="5") as source:
        with MqttPublisher(mosquitto.url, client_id=f"flow-pub-{n}") as pub:
            for i in range(1000):
                pub.publish(topic, str(i).encode(), 1)
            assert pub.wait_all_acked(20)
        await asyncio.sleep(1.0)  # give the broker every chance to overfill us
        assert source.pending == 100  # held back by the broker, not dropped
        assert source.network_waits == 0  # paho's thread never had to stop reading
        got: list[int] = []
        while len(got) < 1000:
            batch = await source.receive(timeout_s=5)
            assert batch, f"stalled after {len(got)} messages"
            assert source.pending <= 100
            got += [int(m.payload) for m in batch]
            source.ack(batch)
        assert sorted(got) == list(range(1000))


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_unacked_messages_come_back_to_a_new_connection(mosquitto: Any,
                                                              protocol: str) -> None:
    """Messages received but not acknowledged (readings not yet durable) are
    delivered again when the service reconnects with the same session."""
    n = next(_ids)
    topic = f"plant/redeliver{n}/gw"
    client_id = f"redeliver-{n}"
    async with MqttSource(mosquitto.url, client_id, [f"plant/redeliver{n}/#"],
                          protocol=protocol) as source:
        with MqttPublisher(mosquitto.url, client_id=f"re-pub-{n}") as pub:
            for i in range(20):
                pub.publish(topic, str(i).encode(), 1)
            assert pub.wait_all_acked(10)
        first = await source.receive(timeout_s=5)
        while len(first) < 20:
            first += await source.receive(timeout_s=5)
        source.ack(first[:5])  # only five became durable before the "crash"
        await asyncio.sleep(0.3)
    async with MqttSource(mosquitto.url, client_id, [f"plant/redeliver{n}/#"],
                          protocol=protocol) as source:
        again: list[int] = []
        while len(again) < 15:
            batch = await source.receive(timeout_s=5)
            assert batch, f"only {len(again)} redelivered"
            again += [int(m.payload) for m in batch]
            source.ack(batch)
        assert sorted(again) == list(range(5, 20))


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_client_taking_our_session_is_reported_not_silent(mosquitto: Any,
                                                                  protocol: str) -> None:
    """Another client with the service's client id takes the session (and its queue)
    each time it connects; the two knock each other off. The source must say so:
    ``session_problem`` (shown on /healthz) and ``takeovers`` (on /metrics)."""
    n = next(_ids)
    client_id = f"victim-{n}"
    async with MqttSource(mosquitto.url, client_id, [f"plant/victim{n}/#"],
                          protocol=protocol) as source:
        await asyncio.sleep(0.5)
        assert source.session_problem is None and source.takeovers == 0
        impostor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                               clean_session=False)
        impostor.reconnect_delay_set(1, 1)
        impostor.connect(mosquitto.host, mosquitto.port)
        impostor.loop_start()
        try:
            for _ in range(150):  # at most 15 s; flaps come about once a second
                if source.session_problem is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            impostor.loop_stop()
            impostor.disconnect()
        assert source.session_problem is not None
        assert client_id in source.session_problem
        assert source.takeovers >= 1


async def test_every_publish_is_sent_or_refused_with_a_reason_never_lost(mosquitto: Any) -> None:
    """paho refuses a QoS 1 publish whose 16-bit message id is still outstanding, and the
    source ignored that: of 200,000 quick dead letters a subscriber got 68,203. Now each is
    either taken (and arrives) or refused with a reason the caller counts; dead letters
    stop at MAX_DROPPABLE_BACKLOG outstanding, leaving ids for alarm notifications."""
    n = next(_ids)
    topic = f"plantwatch/dl{n}"
    got: list[bytes] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dl-sub-{n}")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        await asyncio.sleep(0.3)
        async with MqttSource(mosquitto.url, f"dl-{n}", [f"plant/dl{n}/#"]) as source:
            refused: dict[str, int] = {}
            taken = 0
            for i in range(60_000):
                why = source.publish(topic, str(i).encode(), 1, droppable=True)
                if why is None:
                    taken += 1
                else:
                    refused[why] = refused.get(why, 0) + 1
            assert source.publish(topic, b"alarm", 1) is None  # ids are left for alarms
            for _ in range(300):
                if len(got) >= taken + 1:
                    break
                await asyncio.sleep(0.1)
        assert taken + sum(refused.values()) == 60_000
        assert set(refused) == {"backlog"}  # 60,000 in one go outrun any broker's acks
        assert len(got) == taken + 1 and b"alarm" in got
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_qos0_message_paho_drops_while_disconnected_is_not_left_in_the_backlog() -> None:
    """paho drops a QoS 0 publish made while disconnected and never confirms it; counted
    as outstanding it would stay so for good, and after 20,000 (rebirth commands during
    outages) every dead letter would be refused as backlog."""
    source = MqttSource("mqtt://127.0.0.1:1", "never-connected", ["plant/#"])
    for _ in range(3):
        assert source.publish("spBv1.0/s/NCMD/gw", b"x", 0) == "not_connected"
    assert source._published - source._completed == 0
    assert source.publish("plantwatch/deadletter", b"x", 1, droppable=True) is None  # queued
