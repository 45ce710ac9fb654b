"""Sparkplug B into the running service: stored, alarmed when live, never when historical."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from simulators.sparkplug_edge import EdgeNodeMessages, SparkplugEdgeNode
from tests.test_end_to_end import PLANT, running_service, until

pytestmark = pytest.mark.servers

SENSOR = "TF-A-LEL-01"


async def test_edge_node_to_alarms_and_backfill_never_alarms(mosquitto: Any,
                                                            tmp_path: Path) -> None:
    settings = {
        "store": "sqlite", "state_dir": tmp_path / "state",
        "mqtt": {"url": mosquitto.url, "client_id": "pw-sparkplug-live"},
        "sqlite": {"path": tmp_path / "state" / "pw.sqlite3"},
        "sparkplug": {"host_id": "pw-live-host"},
    }
    place = next(p for p in PLANT.places() if p.sensor.id == SENSOR)
    node = EdgeNodeMessages.from_plant(PLANT, place.site, place.gateway)
    quiet = {s: (1.0 if "LEL" in s else None) for s in node.alias}
    normal = {s: v for s, v in quiet.items() if v is not None}
    async with running_service(settings) as service:
        base = f"http://127.0.0.1:{service.api_port}/api/v1"
        now = int(time.time() * 1000) - 120_000
        with SparkplugEdgeNode(mosquitto.url, node, initial_values=normal,
                               clock_ms=lambda: now) as edge:
            for k in range(1, 31):
                edge.publish(now + k * 1000, {**normal, SENSOR: 1.0 if k < 20 else 30.0})
            # Backfill flagged historical, newer than every live reading (so only
            # the flag keeps it from the detectors): 60 %LEL would raise hh.
            edge.publish(now + 40_000, {SENSOR: 60.0}, historical=True)
            expected = len(normal) * 31 + 1  # births + 30 steps + the backfilled reading
            await until(lambda: _count(service, expected), 30, "Sparkplug readings stored")
            assert service.sparkplug is not None
            assert (place.site, place.gateway) in service.sparkplug.online_nodes()
        # Leaving sends the node's NDEATH: its sensors are stale now.
        await until(lambda: SENSOR in service.sparkplug.stale_sensors(), 10, "stale")
        async with httpx.AsyncClient(timeout=10) as api:
            r = await api.get(f"{base}/alarms/{SENSOR}:h")
            assert r.status_code == 200 and r.json()["active"] is True
            assert r.json()["raised_ts"] == now + 20_000
            # The 60 %LEL backfill is stored but raised nothing.
            assert (await api.get(f"{base}/alarms/{SENSOR}:hh")).status_code == 404
            old = await api.get(f"{base}/sensors/{SENSOR}/readings",
                                params={"start": now + 35_000, "end": now + 45_000})
            assert [p["value"] for p in old.json()["points"]] == [60.0]

    # The host's STATE is retained: offline after a clean stop.
    state = await asyncio.to_thread(_retained, mosquitto.url, "spBv1.0/STATE/pw-live-host")
    assert state is not None and state["online"] is False


async def _count(service: Any, n: int) -> bool:
    count = await service.store.count_readings()
    assert count <= n, f"{count} readings stored, more than the {n} sent"
    return bool(count == n)


def _retained(url: str, topic: str) -> dict[str, Any] | None:
    host, port = url.removeprefix("mqtt://").split(":")
    got: list[dict[str, Any]] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    client.connect(host, int(port))
    client.subscribe(topic, 1)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None
