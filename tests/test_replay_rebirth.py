"""A Sparkplug B replay answers rebirth requests, as a real edge node must: a host
that lost its broker (or restarted) asks, the replayed node sends its births
again, and the host takes its data from then on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from decoders.sparkplug_host import SparkplugHost
from model.plant import load_plant
from offline.replay import CommandListener
from offline.scenario_io import scenario_feed
from simulators.scenario import load_scenario
from simulators.sparkplug_edge import edge_nodes_for_plant
from sparkplug.codec import decode_payload, rebirth_command

ROOT = Path(__file__).resolve().parents[1]
PLANT = load_plant(ROOT / "config" / "plant.yaml")
SCENARIO = ROOT / "config" / "scenarios" / "h2s-leak-tank-farm.yaml"


def _message_type(topic: str) -> str:
    return topic.split("/")[2]


def test_a_host_that_lost_its_broker_gets_births_again_and_then_the_data() -> None:
    from model.sensor_table import SensorTable

    table = SensorTable.from_config(PLANT)
    host = SparkplugHost("pw-test", table.index, reorder_timeout_ms=0)
    feed = scenario_feed(load_scenario(SCENARIO, PLANT), PLANT, "sparkplug")
    inbox: list[tuple[str, bytes]] = []
    feed.commands = lambda: [inbox.pop(0) for _ in range(len(inbox))]

    reasons: list[str] = []
    births_after_loss = 0
    stored_after_rebirth = 0
    lost_at = 300  # the host loses its broker after this many messages
    for i, (topic, payload, publish_ms, _) in enumerate(feed.paced):
        if i == lost_at:
            host.connection_lost(publish_ms)
        out = host.handle(topic, payload, publish_ms)
        reasons += [r.reason for r in out.rejections]
        # the host's rebirth requests reach the replay through the broker
        inbox += [(m.topic, m.payload) for m in out.rebirths]
        if i > lost_at and _message_type(topic) == "NBIRTH":
            births_after_loss += 1
        if births_after_loss and _message_type(topic) == "DDATA":
            stored_after_rebirth += len(out.readings)
        if i > lost_at + 400:
            break
    assert i > lost_at + 400, "the replay ran out before the test could see it recover"
    # Data arrived before the rebirth (rejected, each with a request); then every
    # edge node was born again exactly once...
    assert set(reasons) == {"data_before_birth"}
    assert births_after_loss == len(edge_nodes_for_plant(PLANT))
    # ... and its data after the rebirth is taken, with no seq gap and nothing stale
    assert stored_after_rebirth > 0
    assert not host.stale_sensors()


@pytest.mark.servers
def test_command_listener_hands_over_node_commands_from_the_broker(mosquitto: Any) -> None:
    with CommandListener(mosquitto.url) as listener:
        pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        pub.publish("spBv1.0/nanhai/NCMD/gw-tf", rebirth_command(int(time.time() * 1000)),
                    qos=1).wait_for_publish(5)
        pub.publish("spBv1.0/nanhai/DDATA/gw-tf/tf-a", b"not a command", qos=1)
        deadline = time.monotonic() + 5
        got: list[tuple[str, bytes]] = []
        while not got and time.monotonic() < deadline:
            got = listener.drain()
            time.sleep(0.02)
        pub.loop_stop()
        pub.disconnect()
    assert [t for t, _ in got] == ["spBv1.0/nanhai/NCMD/gw-tf"]
    assert decode_payload(got[0][1], got[0][0]).metric("Node Control/Rebirth").value is True
    assert listener.drain() == []
