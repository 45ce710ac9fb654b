"""The alarm lifecycle through the live pipeline, seen on MQTT, SSE and a webhook receiver.

A leak in tank group A raises first- and second-level alarms; an operator
acknowledges through the API; the gas falls and the alarms return to normal
(the second level is latched by config/alarms.yaml, so it waits for a reset).
Every state change must reach the retained MQTT alarm topics, the SSE stream
and a webhook receiver (signed), and the second-level alarm must reach the
fire-control topic. Real Mosquitto, SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from notify.webhooks import verify_signature
from simulators import LeakSpec, run_simulation
from tests.test_end_to_end import PLANT, PLANT_FILE, running_service, sse_events, until
from tests.test_webhooks import Receiver

pytestmark = pytest.mark.servers

AREA = "tf-group-a"
SENSOR = "TF-A-LEL-01"
SECRET = "s3cret"


class MqttWatcher:
    """Collects every message on the alarm and fire-control topics."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pw-watcher")
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe([("plantwatch/alarms/#", 1), ("plantwatch/fire-control/#", 1)])
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def states(self, topic: str, *, retained: bool = False) -> list[str]:
        """States published while we listened; ``retained``: the ones the broker kept
        (the session broker keeps those of earlier tests too)."""
        with self._lock:
            return [m["state"] for t, m, r in self.messages if t == topic and r == retained]

    def on(self, topic_prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for t, m, _ in self.messages if t.startswith(topic_prefix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_leak_lifecycle_on_mqtt_sse_and_webhook(mosquitto: Any, tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    watcher = MqttWatcher(mosquitto.url)
    settings = {
        "store": "sqlite",
        "state_dir": tmp_path / "state",
        "mqtt": {"url": mosquitto.url, "client_id": "pw-live-alarms"},
        "sqlite": {"path": tmp_path / "state" / "pw.sqlite3"},
        "notify": {"webhooks": [{"name": "pager", "url": receiver.url, "secret": SECRET,
                                 "events": ["alarm"], "fire_control": True}]},
    }
    try:
        async with running_service(settings) as service:
            assert service.settings.alarms_file() == PLANT_FILE.parent / "alarms.yaml"
            now_ms = int(time.time() * 1000)
            token = service.tokens.create("wang", "operator", now_ms).get_secret_value()
            viewer = service.tokens.create("guest", "viewer", now_ms).get_secret_value()
            base = f"http://127.0.0.1:{service.api_port}"
            events: list[tuple[str, dict[str, Any]]] = []
            connected = asyncio.Event()
            sse = asyncio.create_task(
                sse_events(f"{base}/api/v1/alarms/stream", events, connected))
            await asyncio.wait_for(connected.wait(), 10)

            # The leak: gas climbs past both levels and stays there.
            start_ms = int(time.time() * 1000) - 600_000
            first = await asyncio.to_thread(
                run_simulation, PLANT, mosquitto.url, duration_s=120, seed=3,
                leaks=[LeakSpec(AREA, at_s=10, duration_s=3600)], start_ms=start_ms,
                realtime=False)
            assert first.acked_readings == first.readings_published
            h, hh = f"{SENSOR}:h", f"{SENSOR}:hh"
            async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                async def state_of(alarm_id: str) -> str:
                    r = await api.get(f"/api/v1/alarms/{alarm_id}")
                    return str(r.json()["state"]) if r.status_code == 200 else "absent"

                await until(lambda: _is(state_of(hh), "unack"), 30, "hh raised")
                assert await state_of(h) == "unack"

                # Without a token, or as a viewer: refused, nothing changes.
                r = await api.post(f"/api/v1/alarms/{h}/ack")
                assert r.status_code == 401
                r = await api.post(f"/api/v1/alarms/{h}/ack",
                                   headers={"Authorization": f"Bearer {viewer}"})
                assert r.status_code == 403
                assert await state_of(h) == "unack"

                auth = {"Authorization": f"Bearer {token}"}
                for alarm_id in (h, hh):
                    r = await api.post(f"/api/v1/alarms/{alarm_id}/ack", headers=auth,
                                       json={"reason": "field operator sent"})
                    assert r.status_code == 200, r.text
                    assert r.json()["state"] == "ack"
                r = await api.post(f"/api/v1/alarms/{h}/ack", headers=auth)
                assert r.status_code == 409  # nothing left to acknowledge

                # The leak is isolated: the gas falls back to background.
                second = await asyncio.to_thread(
                    run_simulation, PLANT, mosquitto.url, duration_s=60, seed=4,
                    start_ms=start_ms + 120_000, realtime=False)
                assert second.acked_readings == second.readings_published
                await until(lambda: _is(state_of(h), "normal"), 30, "h back to normal")
                assert await state_of(hh) == "latched"  # config: latched, needs a reset
                r = await api.post(f"/api/v1/alarms/{hh}/reset", headers=auth, json={})
                assert r.status_code == 200, r.text
                assert r.json()["state"] == "normal"

                audit = (await api.get("/api/v1/audit", params={"alarm_id": h})).json()
                assert [(a["action"], a["by"], a["reason"]) for a in audit
                        if a["action"] != "escalate"] == [("ack", "wang", "field operator sent")]
                # raised ten minutes ago in alarm time: unacknowledged past its 300 s
                assert all(a["by"] == "system" for a in audit if a["action"] == "escalate")

            # MQTT: retained current state per point, in lifecycle order.
            topic = f"plantwatch/alarms/nanhai/{AREA}/{SENSOR}/h"
            hh_topic = topic.removesuffix("h") + "hh"
            await until(lambda: watcher.states(topic)[-1:] == ["normal"], 10, "MQTT normal")
            # the outbox's broker lane delivers in order, each confirmed by the broker
            await until(lambda: watcher.states(hh_topic)[-1:] == ["normal"], 10, "hh normal")
            assert _dedup(watcher.states(topic)) == ["unack", "ack", "normal"]
            assert _dedup(watcher.states(hh_topic)) == [
                "unack", "ack", "latched", "normal"]
            fire = watcher.on("plantwatch/fire-control/nanhai")
            assert {(m["alarm_id"], m["change"]) for m in fire} >= {(hh, "raised")}
            assert all(m["limit"] == "hh" and m["kind"] == "combustible_lel" for m in fire)

            # A display connecting later gets the retained state from the broker.
            late = MqttWatcher(mosquitto.url)
            try:
                await until(lambda: bool(late.states(topic, retained=True)), 10,
                            "retained state")
                assert late.states(topic, retained=True) == ["normal"]
            finally:
                late.close()

            # SSE: the same changes, in order.
            changes = [d["change"] for e, d in events if e == "alarm" and d["alarm_id"] == h]
            # raised ten minutes ago in alarm time, it may escalate before the ack
            # (whether it does depends on when the tick falls); never after it
            assert [c for c in changes if c != "escalated"] == ["raised", "acked", "cleared"]
            assert "escalated" not in changes[changes.index("acked"):]
            assert any(e == "risk" and d["area"] == AREA and d["colour"] == "red"
                       for e, d in events), "a second-level gas alarm makes the area red"
            sse.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sse

            # Webhook: signed, in order, and the fire-control copy.
            await until(lambda: any(json.loads(r.body).get("change") == "reset"
                                    for r in receiver.requests), 10, "webhooks delivered")
            bodies = []
            for req in receiver.requests:
                assert verify_signature(SECRET, req.headers["x-plantwatch-timestamp"], req.body,
                                        req.headers["x-plantwatch-signature"])
                bodies.append(json.loads(req.body))
            on_h = [b["change"] for b in bodies if b.get("alarm_id") == h
                    and b["type"] == "alarm"]
            assert [c for c in on_h if c != "escalated"] == ["raised", "acked", "cleared"]
            assert "escalated" not in on_h[on_h.index("acked"):]
            assert any(b["type"] == "fire_control" and b["alarm_id"] == hh for b in bodies)
            assert not any(b["type"] == "risk" for b in bodies)  # filtered to alarm events
    finally:
        watcher.close()
        await receiver.close()


async def _is(state: Any, expected: str) -> bool:
    return bool(await state == expected)


def _dedup(states: list[str]) -> list[str]:
    out: list[str] = []
    for s in states:
        if not out or out[-1] != s:
            out.append(s)
    return out
