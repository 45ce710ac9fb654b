"""kill -9 mid-stream loses nothing the broker accepted, and changes no alarm.

The service runs as a real subprocess (``python -m plantwatch run``) against the
real Mosquitto and InfluxDB; it is SIGKILLed while a publisher is streaming and
restarted while the publisher keeps going (the broker queues for the service's
persistent session).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devservers.localservers import free_port
from model.plant import load_plant
from model.sensor_table import SensorTable
from simulators import LeakSpec, PlantSimulator, run_simulation
from store.influx import InfluxStore
from tests.service_process import ServiceProcess, wait_for
from tests.service_process import stream_plant as live_stream

ROOT = Path(__file__).resolve().parents[1]
PLANT_FILE = ROOT / "config" / "plant.yaml"
PLANT = load_plant(PLANT_FILE)
LEAK_AREA = "tf-group-a"
_ids = itertools.count(1)

pytestmark = pytest.mark.servers


def influx_count(url: str, db: str) -> int:
    """Readings in InfluxDB, counted by the store's own query."""

    async def count() -> int:
        store = InfluxStore(url, db, SensorTable.from_config(PLANT))
        try:
            return await store.count_readings()
        finally:
            await store.close()

    return asyncio.run(count())


def stream_plant(broker_url: str, sim: PlantSimulator, start_ms: int, seconds: float,
                 stop: threading.Event, result: dict[str, int]) -> None:
    """The phase-1 plant carried on (same seed, same leak)."""
    result["published"], result["acked"] = live_stream(
        broker_url, PLANT, sim, start_ms, seconds, client_id="durability-publisher", stop=stop)


def test_sigkill_mid_stream_loses_nothing_and_keeps_alarms(
    mosquitto: Any, influxdb: Any, tmp_path: Path
) -> None:
    n = next(_ids)
    db = f"durability_{n}"
    env = {
        **os.environ,
        "PLANTWATCH_PLANT": str(PLANT_FILE),
        "PLANTWATCH_STORE": "influxdb",
        "PLANTWATCH_STATE_DIR": str(tmp_path / "state"),
        "PLANTWATCH_MQTT__URL": mosquitto.url,
        "PLANTWATCH_MQTT__CLIENT_ID": f"pw-durability-{n}",
        "PLANTWATCH_INFLUXDB__URL": influxdb.url,
        "PLANTWATCH_INFLUXDB__DATABASE": db,
        "PLANTWATCH_API__PORT": str(free_port()),
    }
    service = ServiceProcess(int(env["PLANTWATCH_API__PORT"]), tmp_path / "service.log",
                             env=env)
    service.start()
    try:
        # Phase 1: a leak raises alarms that then stay active (the gas stays high).
        start_ms = int(time.time() * 1000) - 3_600_000
        first = run_simulation(PLANT, mosquitto.url, rate_hz=1.0, duration_s=151, seed=5,
                               leaks=[LeakSpec(LEAK_AREA, at_s=10, duration_s=3600)],
                               start_ms=start_ms, realtime=False)
        assert first.acked_readings == first.readings_published
        wait_for(lambda: influx_count(influxdb.url, db) == first.readings_published, 60,
                 "phase-1 readings in InfluxDB")
        # Let the clock tick past the readings: the leak flooded its post an hour
        # ago in event time, and the flood's end is judged on the next tick.
        time.sleep(2.0)
        before = service.get("/api/v1/alarms", state="all")
        assert before and all(a["area"] == LEAK_AREA for a in before), before
        limit_alarms = [a for a in before if a["category"] == "alarm"]
        assert limit_alarms and all(a["active"] and a["state"] == "unack" for a in limit_alarms)
        assert any(a["limit"] == "hh" for a in limit_alarms)

        # Phase 2: the same plant streams on (the leak holding, nothing new to
        # alarm); SIGKILL the service mid-stream; restart.
        stop = threading.Event()
        result: dict[str, int] = {}
        leak = LeakSpec(LEAK_AREA, at_s=10, duration_s=3600)
        sim = PlantSimulator(PLANT, np.random.default_rng(5), start_ms, leaks=[leak])
        publisher = threading.Thread(
            target=stream_plant,
            args=(mosquitto.url, sim, start_ms + 151_000, 5.0, stop, result),
        )
        publisher.start()
        time.sleep(2.5)
        service.kill9()
        time.sleep(1.5)  # the publisher keeps going; the broker queues for the session
        service.start()
        publisher.join(120)
        assert not publisher.is_alive()
        assert result["acked"] == result["published"] > 5_000

        expected = first.readings_published + result["published"]
        wait_for(lambda: influx_count(influxdb.url, db) >= expected, 120,
                 f"all {expected} acknowledged readings in InfluxDB")
        assert influx_count(influxdb.url, db) == expected  # and nothing invented

        after = service.get("/api/v1/alarms", state="all")
        # Escalation moves on with time (every repeat_min while unacknowledged),
        # kill or no kill: it may only have gone up, never back.
        for b, a in zip(before, after, strict=False):
            eb, ea = b.pop("escalation", None), a.pop("escalation", None)
            assert (eb is None) == (ea is None) and (eb is None or ea["level"] >= eb["level"])
        if after != before:  # name the fields that differ
            diffs = [(b["alarm_id"], k, b[k], a.get(k)) for b, a in zip(before, after, strict=False)
                     for k in b if b[k] != a.get(k)]
            raise AssertionError(f"alarm state changed across the kill: {diffs[:10]} "
                                 f"({len(before)} before, {len(after)} after)")
        journal = [json.loads(line) for line in
                   (tmp_path / "state" / "alarms.jsonl").read_text().splitlines()]
        raises = [e["alarm_id"] for e in journal if e.get("action") == "raise"]
        assert len(raises) == len(set(raises)) == len(before), "an alarm was re-annunciated"
    finally:
        service.stop()
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]
