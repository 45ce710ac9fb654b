"""End to end: simulator → broker → plantwatch → store → alarms → API and SSE.

Runs twice: on the real parts (Mosquitto + InfluxDB, started by fixtures) and on
the demo's embedded defaults (amqtt + SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devservers.demo_broker import EmbeddedBroker
from devservers.localservers import free_port
from model.plant import load_plant
from plantwatch.service import Service
from plantwatch.settings import load_settings
from simulators import LeakSpec, run_simulation

ROOT = Path(__file__).resolve().parents[1]
PLANT_FILE = ROOT / "config" / "plant.yaml"
PLANT = load_plant(PLANT_FILE)
_ids = itertools.count(1)

pytestmark = pytest.mark.servers


@contextlib.asynccontextmanager
async def running_service(settings_kwargs: dict[str, Any]) -> AsyncIterator[Service]:
    settings_kwargs = {**settings_kwargs,
                       "api": {"host": "127.0.0.1", "port": 0, **settings_kwargs.get("api", {})}}
    settings = load_settings(plant=PLANT_FILE, **settings_kwargs)
    service = Service(settings, PLANT)
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise the start-up error
    assert service.ready.is_set(), "service did not become ready"
    try:
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


async def sse_events(url: str, into: list[tuple[str, dict[str, Any]]],
                     connected: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url) as resp:
        assert resp.status_code == 200
        connected.set()
        event = "message"
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                into.append((event, json.loads(line[5:])))
                event = "message"


async def until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture(params=["mosquitto+influxdb", "amqtt+sqlite"])
def parts(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    n = next(_ids)
    if request.param == "mosquitto+influxdb":
        broker = request.getfixturevalue("mosquitto")
        influx = request.getfixturevalue("influxdb")
        yield broker.url, {
            "store": "influxdb",
            "state_dir": tmp_path / "state",
            "mqtt": {"url": broker.url, "client_id": f"pw-e2e-{n}"},
            "influxdb": {"url": influx.url, "database": f"e2e_{n}"},
        }
    else:
        embedded = EmbeddedBroker(free_port()).start()
        try:
            yield embedded.url, {
                "store": "sqlite",
                "state_dir": tmp_path / "state",
                "mqtt": {"url": embedded.url, "client_id": f"pw-e2e-{n}", "protocol": "3.1.1"},
                "sqlite": {"path": tmp_path / "state" / "pw.sqlite3"},
            }
        finally:
            embedded.stop()


async def test_readings_stored_and_leak_alarm_raised_and_cleared(parts: Any) -> None:
    broker_url, settings = parts
    leak_area = "tf-group-a"
    gas_sensors = {p.sensor.id for p in PLANT.places()
                   if p.area == leak_area and p.sensor.kind == "combustible_lel"}
    assert gas_sensors
    async with running_service(settings) as service:
        base = f"http://127.0.0.1:{service.api_port}"
        events: list[tuple[str, dict[str, Any]]] = []
        connected = asyncio.Event()
        sse = asyncio.create_task(sse_events(f"{base}/api/v1/alarms/stream", events, connected))
        await asyncio.wait_for(connected.wait(), 10)

        steps, rate = 300, 1.0
        start_ms = int(time.time() * 1000) - int(steps / rate * 1000) - 60_000
        report = await asyncio.to_thread(
            run_simulation, PLANT, broker_url, rate_hz=rate, duration_s=steps / rate,
            seed=7, leaks=[LeakSpec(leak_area, at_s=30, duration_s=60)], start_ms=start_ms,
            realtime=False,
        )
        n = report.readings_published
        assert n == steps * len(PLANT.places()) and report.acked_readings == n

        await until(lambda: service.store.count_readings(), 60, "readings in the store")
        await until(lambda: _count_is(service, n), 60, f"{n} readings in the store")

        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            # every reading is also visible through the API, sensor by sensor
            total = 0
            for sensor_id in service.table.ids:
                r = await api.get(f"/api/v1/sensors/{sensor_id}/readings",
                                  params={"start": start_ms, "end": start_ms + 10**7,
                                          "limit": 100_000})
                assert r.status_code == 200, r.text
                total += len(r.json()["points"])
            assert total == n

            alarms = (await api.get("/api/v1/alarms", params={"state": "all"})).json()
            leak_alarms = {a["alarm_id"]: a for a in alarms if a["area"] == leak_area}
            for sid in gas_sensors:
                for limit in ("h", "hh"):
                    alarm = leak_alarms[f"{sid}:{limit}"]
                    # raised, then cleared, and nobody acknowledged it; the second
                    # level is latched (config/alarms.yaml) until an operator resets it
                    expected = "latched" if limit == "hh" else "rtn_unack"
                    assert alarm["state"] == expected and not alarm["active"], alarm
                    assert alarm["raised_ts"] >= start_ms + 30_000
                    assert alarm["cleared_ts"] > alarm["raised_ts"]
                    assert alarm["cleared_value"] < alarm["setpoint"]
            assert {a["area"] for a in alarms} == {leak_area}, "no alarm outside the leak"
            standing = (await api.get("/api/v1/alarms")).json()
            assert standing and not any(a["active"] for a in standing)

        await until(lambda: _sse_has(events, gas_sensors), 20, "raise and clear on SSE")
        sse.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sse


async def _count_is(service: Service, n: int) -> bool:
    count = await service.store.count_readings()
    assert count <= n, f"more readings stored ({count}) than published ({n})"
    return count == n


def _sse_has(events: list[tuple[str, dict[str, Any]]], sensors: set[str]) -> bool:
    seen = {(d.get("sensor"), d.get("limit"), d.get("action")) for e, d in events
            if e == "alarm"}
    return all((s, lim, act) in seen for s in sensors for lim in ("h", "hh")
               for act in ("raise", "clear"))


async def test_leak_alarm_is_active_while_gas_is_high(mosquitto: Any, influxdb: Any,
                                                      tmp_path: Path) -> None:
    n = next(_ids)
    settings = {
        "store": "influxdb", "state_dir": tmp_path / "state",
        "mqtt": {"url": mosquitto.url, "client_id": f"pw-e2e-{n}"},
        "influxdb": {"url": influxdb.url, "database": f"e2e_{n}"},
    }
    async with running_service(settings) as service:
        start_ms = int(time.time() * 1000) - 200_000
        await asyncio.to_thread(
            run_simulation, PLANT, mosquitto.url, rate_hz=1.0, duration_s=150, seed=3,
            leaks=[LeakSpec("cp-k201", at_s=10, duration_s=3600)], start_ms=start_ms,
            realtime=False,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.api_port}") as api:
            async def active() -> list[dict[str, Any]]:
                return list((await api.get("/api/v1/alarms")).json())

            await until(lambda: _has_hh(active()), 30, "second-level alarm in cp-k201")
            alarms = await active()
            assert alarms and {a["area"] for a in alarms} == {"cp-k201"}
            assert all(a["kind"] in ("combustible_lel", "toxic_ppm") for a in alarms)
            health = (await api.get("/healthz")).json()
            # Warnings may still be coming in between the two requests.
            assert health["status"] == "ok" and health["standing_alarms"] >= len(alarms)


async def _has_hh(alarms_coro: Any) -> bool:
    alarms = await alarms_coro
    return any(a["limit"] == "hh" for a in alarms)


async def test_bad_input_through_the_real_broker(mosquitto: Any, influxdb: Any,
                                                 tmp_path: Path) -> None:
    """Malformed JSON, unknown sensors, NaN/inf, far-future timestamps, oversized
    payloads and mixed messages: good readings stored, each bad one dead-lettered."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from simulators import MqttPublisher

    n = next(_ids)
    settings = {
        "store": "influxdb", "state_dir": tmp_path / "state",
        "mqtt": {"url": mosquitto.url, "client_id": f"pw-e2e-{n}"},
        "influxdb": {"url": influxdb.url, "database": f"e2e_{n}"},
        "ingest": {"max_payload_bytes": 4096},
    }
    letters: list[dict[str, Any]] = []
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dl-{n}")
    sub.on_connect = lambda c, *a: c.subscribe("plantwatch/deadletter", qos=1)
    sub.on_subscribe = lambda *a: loop.call_soon_threadsafe(subscribed.set)
    sub.on_message = lambda c, u, m: letters.append(json.loads(m.payload))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        async with running_service(settings) as service:
            now = int(time.time() * 1000)
            lel, pt = "TF-A-LEL-01", "RX-PI-101"
            good = [{"sensor": lel, "value": 1.5, "ts": now - 1000},
                    {"sensor": pt, "value": 300.0, "ts": now - 1000},
                    {"sensor": lel, "value": 2.5, "ts": now - 500}]
            mixed = json.dumps({"ts": now, "readings": [
                good[0],
                {"sensor": "NO-SUCH-SENSOR", "value": 1.0},
                {"sensor": lel, "value": float("nan")},
                {"sensor": pt, "value": float("inf")},
                {"sensor": lel, "value": 3.0, "ts": now + 86_400_000},
                good[1],
            ]}).encode()
            messages = [
                b"{this is not json",
                mixed,
                json.dumps({"ts": now, "readings": [{"sensor": lel, "value": 1.0}] * 300}).encode(),
                json.dumps({"readings": [good[2]]}).encode(),
            ]
            with MqttPublisher(mosquitto.url, client_id=f"bad-pub-{n}") as pub:
                for payload in messages:
                    pub.publish("plant/nanhai/gw-test", payload, 0)
                assert pub.wait_all_acked(10)
            await until(lambda: _count_is(service, 3), 30, "the three good readings stored")
            await until(lambda: len(letters) >= 6, 15, "six dead letters")
            reasons = sorted(x["reason"] for x in letters)
            assert reasons == sorted(["malformed_json", "unknown_sensor", "non_finite_value",
                                      "non_finite_value", "timestamp_in_future",
                                      "payload_too_large"])
            assert all(x["topic"] == "plant/nanhai/gw-test" and x["detail"] for x in letters)
            unknown = next(x for x in letters if x["reason"] == "unknown_sensor")
            assert unknown["index"] == 1 and unknown["reading"]["sensor"] == "NO-SUCH-SENSOR"
            base = f"http://127.0.0.1:{service.api_port}"
            async with httpx.AsyncClient(base_url=base) as api:
                metrics = (await api.get("/metrics")).text
                rejected = 'plantwatch_readings_rejected_total{reason="non_finite_value"} 2.0'
                assert rejected in metrics
                assert 'plantwatch_messages_rejected_total{reason="malformed_json"} 1.0' in metrics
                assert (await api.get("/healthz")).json()["status"] == "ok"  # still running
    finally:
        sub.disconnect()
        sub.loop_stop()


async def test_metrics_port_answers_while_the_event_loop_is_busy(tmp_path: Path) -> None:
    """``api.metrics_port`` serves /metrics from a thread: it answers while the
    event loop is held (as a flush of a large backlog holds it), where the
    API's own /metrics, served on the loop, cannot."""
    embedded = EmbeddedBroker(free_port()).start()
    metrics_port = free_port()
    try:
        async with running_service({
            "store": "sqlite", "state_dir": tmp_path / "state",
            "mqtt": {"url": embedded.url, "client_id": "pw-metrics-port", "protocol": "3.1.1"},
            "sqlite": {"path": tmp_path / "state" / "pw.sqlite3"},
            "api": {"metrics_port": metrics_port},
        }) as service:
            # Synchronous requests from the loop's own thread: the loop is held
            # until they return.
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            text = httpx.get(url, timeout=5).text  # noqa: ASYNC210 - holding the loop is the point
            assert "plantwatch_readings_received_total" in text
            with pytest.raises(httpx.TimeoutException):
                httpx.get(f"http://127.0.0.1:{service.api_port}/metrics",  # noqa: ASYNC210
                          timeout=1)
    finally:
        embedded.stop()
    with pytest.raises(httpx.ConnectError):  # stopped with the service
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)  # noqa: ASYNC210
