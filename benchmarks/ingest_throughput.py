"""Ingest throughput: plantwatch end to end beside the ceilings of its parts.

Measured in one run, on servers this script starts on loopback ports:

(a) the raw ceiling of a bare paho subscriber on the same Mosquitto
    (QoS 1, persistent session, automatic acks, no processing);
(b) the InfluxDB write ceiling with prebuilt line protocol (the plant's
    series, grouped by series in ~50k-line requests; 1 and 4 connections);
(c) plantwatch end to end — ``python -m plantwatch run`` as its own process:
    MQTT → decode/validate → detect → journal/checkpoint → InfluxDB → PUBACK —
    with 100-reading gateway messages and with 1-reading messages, zero loss
    checked by an InfluxQL count.

Method for (a) and (c): the messages are queued in Mosquitto for the
subscriber's persistent session *before* it connects, so the figure is the
subscriber's own drain rate, not the publisher's speed. The rate is taken
between the first received and the last stored reading, read from the
service's counters on the metrics port it serves from a thread of its own
(``api.metrics_port``): the API's ``/metrics`` shares the event loop with
the flushes, and in a backlog drain first answered after 400,000–600,000
readings had been taken (60,000–80,000 with ``--sensors 0``), so a clock
started on it ran late. CPU is the
service process's user+system time over the drain; RSS its peak (VmHWM).

The plant: every reading passes through the whole detector suite, whose
cost is per *round* (one reading of each sensor, vectorized across sensors).
A plant streaming 250,000 readings/s has thousands of sensors, so the default
is a generated plant of 10,000 sensors (every kind, with limits); ``--sensors
0`` uses ``config/plant.yaml`` (61 sensors, i.e. each sensor at ~4 kHz, which
makes every flush ~1,600 sequential rounds).

Usage: ``python benchmarks/ingest_throughput.py [--batched N] [--single N] [--sensors M]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devservers.localservers import InfluxD, Mosquitto, free_port  # noqa: E402
from model.batch import ReadingBatch  # noqa: E402
from model.plant import load_plant  # noqa: E402
from model.sensor_table import SensorTable  # noqa: E402
from simulators import MqttPublisher, PlantSimulator  # noqa: E402
from store.influx import InfluxStore, series_chunks  # noqa: E402
from store.line_protocol import encode_readings, series_prefixes  # noqa: E402

PLANT_FILE = ROOT / "config" / "plant.yaml"
PLANT = load_plant(PLANT_FILE)
IDS = [p.sensor.id for p in PLANT.places()]


def use_generated_plant(m: int, workdir: Path) -> None:
    """Switch the benchmark to a generated plant of ``m`` sensors (written as YAML)."""
    global PLANT_FILE, PLANT, IDS
    from benchmarks.detector_throughput import KINDS as SENSOR_KINDS

    per_area = 500
    areas = [{"id": f"a{a}", "post": "p", "sensors": [
        {"id": f"S{i}", **SENSOR_KINDS[i % len(SENSOR_KINDS)]}
        for i in range(a * per_area, min(m, (a + 1) * per_area))]}
        for a in range((m + per_area - 1) // per_area)]
    data = {"enterprise": {"id": "bench"}, "sites": [{"id": "bench", "workshops": [{
        "id": "w", "teams": [{"id": "t", "posts": [{"id": "p"}]}], "areas": areas}]}]}
    PLANT_FILE = workdir / "plant.yaml"
    PLANT_FILE.write_text(yaml.safe_dump(data))
    PLANT = load_plant(PLANT_FILE)
    IDS = [p.sensor.id for p in PLANT.places()]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_messages(n_readings: int, per_message: int, base_ms: int) -> list[tuple[str, bytes]]:
    """Gateway messages with unique (sensor, ts) pairs and in-limit values."""
    safe = PlantSimulator(PLANT, np.random.default_rng(0), base_ms).normal_values_at(base_ms)
    m = len(IDS)
    out = []
    for start in range(0, n_readings, per_message):
        g = range(start, min(start + per_message, n_readings))
        # one reading of every sensor per second of event time, as a plant sends
        readings = [{"sensor": IDS[i % m], "value": float(safe[i % m]),
                     "ts": base_ms + (i // m) * 1000} for i in g]
        out.append((f"plant/{PLANT.sites[0].id}/bench", orjson.dumps({"readings": readings})))
    return out


def publish_all(url: str, messages: list[tuple[str, bytes]], per_message: int) -> float:
    t0 = time.perf_counter()
    with MqttPublisher(url, client_id=f"bench-pub-{time.time_ns()}") as pub:
        for topic, payload in messages:
            pub.publish(topic, payload, per_message)
        assert pub.wait_all_acked(600), "broker did not ack every benchmark message"
    return time.perf_counter() - t0


def create_session(url: str, client_id: str, topic: str) -> None:
    """Connect once with clean_session=False and subscribe, so the broker queues."""
    host, port = url.removeprefix("mqtt://").split(":")
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda client, *a: client.subscribe(topic, qos=1)
    c.connect(host, int(port))
    c.loop_start()
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


def bare_subscriber(url: str, n_messages: int, client_id: str) -> float:
    """(a) drain rate of a bare paho subscriber, messages/s."""
    host, port = url.removeprefix("mqtt://").split(":")
    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count, first, last
        if count == 0:
            first = time.perf_counter()
        count += 1
        last = time.perf_counter()
        if count >= n_messages:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_message = on_message
    c.connect(host, int(port))
    c.loop_start()
    assert done.wait(600), f"bare subscriber got {count}/{n_messages}"
    c.disconnect()
    c.loop_stop()
    return (n_messages - 1) / (last - first)


def influx_ceiling(url: str, n_points: int, connections: int) -> float:
    """(b) points/s of prebuilt line protocol, laid out the way plantwatch writes.

    The plant's series (one per sensor), one point of each per second; every
    400,000 points grouped by series and cut at series boundaries into
    ~50,000-line requests (``store.influx.series_chunks``, as a plantwatch
    writer does with four merged 100k flushes), so (c)/(b) compares like with
    like: what plantwatch adds on top of the cheapest writes it could make.
    """
    db = f"ceiling{connections}"
    httpx.post(f"{url}/query", params={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
    table = SensorTable.from_config(PLANT)
    prefixes = series_prefixes(table)
    m = len(table)
    base = int(time.time() * 1000) - 86_400_000
    bodies = []
    for start in range(0, n_points, 400_000):
        i = np.arange(start, min(start + 400_000, n_points))
        batch = ReadingBatch.from_columns(i % m, base + (i // m) * 1000, 1.0 + (i % 97) * 0.01)
        bodies += [encode_readings(chunk, prefixes) for chunk in series_chunks(batch, 50_000)]
    work = list(enumerate(bodies))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                with lock:
                    if not work:
                        return
                    _, body = work.pop()
                r = client.post(f"{url}/write", params={"db": db, "precision": "ms"},
                                content=body)
                r.raise_for_status()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n_points / (time.perf_counter() - t0)


def influx_count(url: str, db: str) -> int:
    """Readings in InfluxDB, counted by the store's own query."""

    async def count() -> int:
        store = InfluxStore(url, db, SensorTable.from_config(PLANT))
        try:
            return await store.count_readings()
        finally:
            await store.close()

    return asyncio.run(count())


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def plantwatch_end_to_end(mosq: Mosquitto, influx: InfluxD, workdir: Path, label: str,
                          n_readings: int, per_message: int) -> dict[str, float]:
    """(c) plantwatch's drain rate, readings/s, with zero-loss check."""
    db = f"bench_{label}"
    client_id = f"pw-bench-{label}"
    env = {
        **os.environ,
        "PLANTWATCH_PLANT": str(PLANT_FILE),
        "PLANTWATCH_STORE": "influxdb",
        "PLANTWATCH_STATE_DIR": str(workdir / label),
        "PLANTWATCH_MQTT__URL": mosq.url,
        "PLANTWATCH_MQTT__CLIENT_ID": client_id,
        "PLANTWATCH_INFLUXDB__URL": influx.url,
        "PLANTWATCH_INFLUXDB__DATABASE": db,
        "PLANTWATCH_API__PORT": str(free_port()),
        "PLANTWATCH_API__METRICS_PORT": str(free_port()),
    }
    create_session(mosq.url, client_id, "plant/#")
    base = int(time.time() * 1000) - 86_400_000
    messages = make_messages(n_readings, per_message, base)
    pub_s = publish_all(mosq.url, messages, per_message)
    log = open(workdir / f"{label}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "plantwatch", "run"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    metrics_url = f"http://127.0.0.1:{env['PLANTWATCH_API__METRICS_PORT']}/metrics"
    poll = httpx.Client(timeout=10)
    try:
        # Timing from the service's own counters (an InfluxQL count over
        # millions of points would load the server being measured): the clock
        # starts when the first reading is received, so readings decoded and
        # buffered before the first write count against the rate, and stops
        # when the last is stored. Loss is checked with InfluxQL at the end.
        # Polled at 10 Hz over one kept-alive connection: at 50 Hz with a
        # connection per poll, this script and the /metrics handler took ~40 %
        # of a core from the processes being measured.
        deadline = time.monotonic() + 120
        answered = False  # the clock may start only once a poll saw nothing received
        while (received := _counter(poll, metrics_url, "plantwatch_readings_received_total",
                                    missing=-1)) <= 0:
            answered = answered or received == 0
            assert proc.poll() is None, "service exited; see " + log.name
            assert time.monotonic() < deadline, "nothing received in 120 s"
            time.sleep(0.01)
        assert answered, (f"{received:,} readings were received before the metrics port "
                          "first answered: the clock would start late")
        others = {"influxd": influx.pid, "mosquitto": mosq.pid}
        others0 = {k: proc_cpu_s(pid) for k, pid in others.items()}
        t0, cpu0 = time.perf_counter(), proc_cpu_s(proc.pid)
        stored = 0
        deadline = time.monotonic() + 900
        while stored < n_readings and time.monotonic() < deadline:
            time.sleep(0.1)
            stored = _counter(poll, metrics_url, "plantwatch_readings_stored_total")
        t1, cpu1 = time.perf_counter(), proc_cpu_s(proc.pid)
        others1 = {k: proc_cpu_s(pid) for k, pid in others.items()}
        hwm = proc_hwm_mib(proc.pid)
        in_influx = influx_count(influx.url, db)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        poll.close()
    rate = stored / (t1 - t0)
    return {"rate": rate, "loss": n_readings - in_influx,
            "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            "rss_mib": hwm, "publish_rate": n_readings / pub_s, "stored": in_influx,
            **{f"{k}_cpu_pct": 100 * (others1[k] - others0[k]) / (t1 - t0) for k in others}}


def _counter(client: httpx.Client, metrics_url: str, name: str, missing: int = 0) -> int:
    """The counter's value; ``missing`` while the metrics port does not answer."""
    try:
        text = client.get(metrics_url).text
    except httpx.HTTPError:
        return missing
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batched", type=int, default=3_000_000,
                    help="readings, 100 per message (0: skip)")
    ap.add_argument("--single", type=int, default=200_000, help="readings, 1 per message (0: skip)")
    ap.add_argument("--sensors", type=int, default=10_000,
                    help="generated plant size; 0: config/plant.yaml")
    args = ap.parse_args()
    if (args.batched < 0 or args.single < 0 or args.batched + args.single == 0
            or 0 < args.batched < 100):
        ap.error(f"--batched {args.batched} --single {args.single}: counts are 0 (skip) or "
                 "positive, --batched at least one message of 100, and one must be > 0")
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        work = Path(tmp)
        if args.sensors:
            use_generated_plant(args.sensors, work)
        print(f"plant: {len(IDS):,} sensors ({PLANT_FILE.name})")
        with Mosquitto.start(work / "mosquitto", persistence=False) as mosq, \
                InfluxD.start(work / "influxdb") as influx:
            print(f"mosquitto {mosq.url}  influxdb {influx.url}  cores {os.cpu_count()}")
            rows = []
            for label, n, per in (("batched", args.batched, 100), ("single", args.single, 1)):
                if n == 0:  # skipped: nothing would ever arrive to stop the clock
                    continue
                n_msgs = n // per
                sub_id = f"bare-{label}"
                create_session(mosq.url, sub_id, "plant/#")
                publish_all(mosq.url, make_messages(n, per, int(time.time() * 1000)), per)
                bare_msgs = bare_subscriber(mosq.url, n_msgs, sub_id)
                # drop the bare session so it stops queueing the next runs' messages
                c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sub_id,
                                clean_session=True)
                c.connect(mosq.host, mosq.port)
                c.disconnect()
                e2e = plantwatch_end_to_end(mosq, influx, work, label, n, per)
                rows.append((label, per, n, bare_msgs * per, e2e))
            ceiling1 = influx_ceiling(influx.url, 2_000_000, 1)
            ceiling4 = influx_ceiling(influx.url, 2_000_000, 4)

    print()
    print(f"(b) InfluxDB ceiling, prebuilt line protocol grouped by series: "
          f"{ceiling1:,.0f} points/s (1 connection), {ceiling4:,.0f} points/s (4 connections)")
    print()
    hdr = (f"{'messages':<9} {'readings':>10} {'(a) bare sub':>14} {'(c) plantwatch':>15} "
           f"{'loss':>5} {'CPU %':>6} {'RSS MiB':>8} {'c/a':>6} {'c/b':>6} "
           f"{'influxd %':>9} {'mosq. %':>8}")
    print(hdr)
    print("-" * len(hdr))
    best_b = max(ceiling1, ceiling4)
    for _label, per, n, bare, e2e in rows:
        print(f"{per:>3}/msg   {n:>10,} {bare:>14,.0f} {e2e['rate']:>15,.0f} "
              f"{e2e['loss']:>5,.0f} {e2e['cpu_pct']:>6.0f} {e2e['rss_mib']:>8.0f} "
              f"{e2e['rate'] / bare:>6.2f} {e2e['rate'] / best_b:>6.2f} "
              f"{e2e['influxd_cpu_pct']:>9.0f} {e2e['mosquitto_cpu_pct']:>8.0f}")
    print("\nreadings/s; (a) and (c) drain the same queued messages from Mosquitto; "
          "targets: ≥250,000/s batched, ≥10,000/s single, zero loss.")


if __name__ == "__main__":
    main()
