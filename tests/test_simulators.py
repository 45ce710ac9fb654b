"""Simulators: normal operation never alarms, leaks alarm and clear, payloads round-trip,
and every reading published to a real Mosquitto arrives and is acknowledged."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import simulators
from model.plant import PlantConfig
from simulators import (
    BrokerUrlError,
    GatewayLayout,
    LeakSpec,
    LeakSpecError,
    PlantSimulator,
    PublishError,
    encode_gateway_message,
    gateway_messages,
    leak_response,
    parse_broker_url,
    parse_leak,
    run_simulation,
)
from simulators.leak import RISE_S

START_MS = 1_764_337_200_000  # 2025-11-28 13:40 UTC
GAS_KINDS = ("combustible_lel", "toxic_ppm")


def _sim(plant: PlantConfig, seed: int = 7, leaks: tuple[LeakSpec, ...] = ()) -> PlantSimulator:
    return PlantSimulator(plant, np.random.default_rng(seed), START_MS, leaks)


def _first_level(plant: PlantConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sensor: high first-level limit (inf if none), low (-inf if none), deadband."""
    high, low, deadband = [], [], []
    for place in plant.places():
        limits = place.sensor.effective_limits()
        high.append(limits.h if limits.h is not None else limits.hh or math.inf)
        low.append(limits.l if limits.l is not None else (limits.ll or -math.inf))
        deadband.append(place.sensor.effective_deadband())
    return np.array(high), np.array(low), np.array(deadband)


# -- the public API -------------------------------------------------------------


def test_exported_members_exist() -> None:
    for name in simulators.__all__:
        assert hasattr(simulators, name), name
    assert sorted(simulators.__all__) == simulators.__all__


# -- normal operation -------------------------------------------------------------


def test_values_shape_dtype_and_order(plant: PlantConfig) -> None:
    sim = _sim(plant)
    values = sim.values_at(START_MS)
    assert values.dtype == np.float64
    assert values.shape == (len(plant.places()),)
    assert sim.sensor_ids == tuple(p.sensor.id for p in plant.places())
    by_id = dict(zip(sim.sensor_ids, values, strict=True))
    assert 0.0 <= by_id["TF-A-LEL-01"] <= 2.0
    assert 0.0 <= by_id["TF-SW-H2S-01"] <= 1.0
    assert abs(by_id["TF-SW-O2-01"] - 20.9) < 0.2
    assert 3500 < by_id["RX-PI-101"] < 4800


def test_same_seed_same_values_and_payloads(plant: PlantConfig) -> None:
    leaks = (LeakSpec("tf-group-a", at_s=30.0),)
    a, b = _sim(plant, 11, leaks), _sim(plant, 11, leaks)
    layout = GatewayLayout(plant)
    for k in range(0, 300, 7):
        ts = START_MS + k * 1000
        va, vb = a.values_at(ts), b.values_at(ts)
        np.testing.assert_array_equal(va, vb)
        assert layout.messages(ts, va) == gateway_messages(plant, ts, vb)
    other = _sim(plant, 12, leaks)
    assert not np.array_equal(a.values_at(START_MS), other.values_at(START_MS))


def test_values_depend_only_on_the_timestamp(plant: PlantConfig) -> None:
    sim = _sim(plant)
    times = [START_MS + k * 1000 for k in range(20)]
    forward = [sim.values_at(t) for t in times]
    backward = [sim.values_at(t) for t in reversed(times)][::-1]
    np.testing.assert_array_equal(np.array(forward), np.array(backward))
    assert not np.array_equal(forward[0], forward[1]), "there is noise"


def test_normal_operation_over_a_day_never_reaches_a_first_level_limit(
    plant: PlantConfig,
) -> None:
    sim = _sim(plant, 3)
    high, low, deadband = _first_level(plant)
    times = range(START_MS, START_MS + 86_400_000, 30_000)  # a day at 30 s steps
    values = np.array([sim.values_at(t) for t in times])
    # a margin of at least the deadband: noise must never chatter an alarm
    assert (values <= high - deadband).all()
    assert (values >= low + deadband).all()
    lo = np.array([p.sensor.range[0] for p in plant.places()])
    hi = np.array([p.sensor.range[1] for p in plant.places()])
    assert ((values >= lo) & (values <= hi)).all()
    # the daily swing is visible on process values
    rx = sim.sensor_ids.index("RX-PI-101")
    assert np.ptp(values[:, rx]) > 0.1 * (4800 - 3500)


# -- leaks ----------------------------------------------------------------------


@pytest.mark.parametrize("area", ["tf-group-a", "tf-sour-water", "cp-seal"])
def test_leak_crosses_h_then_hh_and_clears_for_its_area_only(
    plant: PlantConfig, area: str
) -> None:
    leak = LeakSpec(area, at_s=100.0, duration_s=120.0)
    sim = _sim(plant, 5, (leak,))
    quiet = _sim(plant, 5)
    high, _, deadband = _first_level(plant)
    hh = np.array(
        [p.sensor.effective_limits().hh or math.inf for p in plant.places()], dtype=np.float64
    )
    t_s = np.arange(0, 700, 1.0)
    values = np.array([sim.values_at(START_MS + int(t * 1000)) for t in t_s])
    normal = np.array([quiet.values_at(START_MS + int(t * 1000)) for t in t_s])

    hit = np.array(
        [p.area == area and p.sensor.kind in GAS_KINDS for p in plant.places()], dtype=bool
    )
    assert hit.sum() >= 2
    for i in np.flatnonzero(hit):
        sid = sim.sensor_ids[i]
        over_h = np.flatnonzero(values[:, i] >= high[i])
        over_hh = np.flatnonzero(values[:, i] >= hh[i])
        assert over_h.size and over_hh.size, sid
        t_h, t_hh = t_s[over_h[0]], t_s[over_hh[0]]
        # a ramp, not a step: h first, then hh, both within ~a minute and a bit
        assert leak.at_s < t_h < t_hh <= leak.at_s + RISE_S + 15, sid
        # still alarmed through the hold, then back below h - deadband
        assert (values[(t_s >= t_hh) & (t_s < leak.isolated_at_s), i] >= high[i]).all(), sid
        after = t_s >= leak.isolated_at_s + 180
        assert (values[after, i] < high[i] - deadband[i]).all(), sid
        assert values[:, i].max() <= plant.places()[i].sensor.range[1]
    # nothing else changes at all
    np.testing.assert_array_equal(values[:, ~hit], normal[:, ~hit])
    # once the cloud has gone, readings are exactly the quiet plant's again
    late = t_s >= leak.isolated_at_s + 400
    np.testing.assert_array_equal(values[late], normal[late])


def test_leak_peaks(plant: PlantConfig) -> None:
    sim = _sim(plant, 1, (LeakSpec("tf-sour-water", at_s=0.0, duration_s=300.0),))
    values = sim.values_at(START_MS + 200_000)
    by_id = dict(zip(sim.sensor_ids, values, strict=True))
    assert 0.85 * 70 - 1 <= by_id["TF-SW-LEL-01"] <= 72
    # toxic: about three times the second level (14.1 ppm), within the 0-50 range
    assert 2.5 * 14.1 <= by_id["TF-SW-H2S-01"] <= 50
    assert abs(by_id["TF-SW-O2-01"] - 20.9) < 0.2
    low = _sim(plant, 1, (LeakSpec("tf-loading", at_s=0.0, peak_pct_lel=30.0),))
    peak = low.values_at(START_MS + 150_000)[low.sensor_ids.index("TF-L-LEL-01")]
    assert 25.0 < peak < 50.0


def test_leak_response_shape() -> None:
    t = np.arange(-10.0, 600.0, 0.5)
    r = leak_response(t, duration_s=100.0)
    assert r.shape == t.shape
    assert (r >= 0).all() and (r <= 1).all()
    assert (r[t <= 0] == 0).all()
    rising = r[(t >= 0) & (t <= RISE_S)]
    assert (np.diff(rising) >= 0).all()
    assert r[t == RISE_S][0] > 0.9
    assert r[t == 300.0][0] < 0.01
    assert (r[t > 500] == 0).all()


def test_leak_in_unknown_area_names_it_and_the_known_ones(plant: PlantConfig) -> None:
    with pytest.raises(LeakSpecError) as info:
        _sim(plant, leaks=(LeakSpec("tank-z", at_s=5),))
    message = str(info.value)
    assert "'tank-z'" in message and "tf-group-a" in message and "cp-seal" in message


def test_parse_leak() -> None:
    assert parse_leak("tf-group-a@120") == LeakSpec("tf-group-a", 120.0)
    assert parse_leak(" cp-seal @ 2.5 ") == LeakSpec("cp-seal", 2.5)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tf-group-a", "expected AREA@SECONDS"),
        ("@120", "area id"),
        ("tf-group-a@soon", "'soon'"),
        ("tf-group-a@-5", "'-5'"),
        ("tf-group-a@nan", "'nan'"),
        ("tf-group-a@", "not a number"),
    ],
)
def test_parse_leak_errors_name_the_text(text: str, needle: str) -> None:
    with pytest.raises(LeakSpecError) as info:
        parse_leak(text)
    assert repr(text) in str(info.value)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_leak_spec_validates() -> None:
    with pytest.raises(LeakSpecError, match="peak_pct_lel"):
        LeakSpec("a", 0.0, peak_pct_lel=150.0)
    with pytest.raises(LeakSpecError, match="duration_s"):
        LeakSpec("a", 0.0, duration_s=-1.0)


# -- payloads -----------------------------------------------------------------


def test_encode_gateway_message_round_trip() -> None:
    payload = encode_gateway_message("gw-tank-a", START_MS, [("TF-A-LEL-01", 3.1), ("X", 0.0)])
    assert orjson.loads(payload) == {
        "gateway": "gw-tank-a",
        "ts": START_MS,
        "readings": [{"sensor": "TF-A-LEL-01", "value": 3.1}, {"sensor": "X", "value": 0.0}],
    }
    with pytest.raises(ValueError, match="TF-A-LEL-01"):
        encode_gateway_message("gw", START_MS, [("TF-A-LEL-01", math.nan)])


@pytest.mark.parametrize("max_readings", [1, 3, 100])
def test_gateway_messages_round_trip(plant: PlantConfig, max_readings: int) -> None:
    values = _sim(plant).values_at(START_MS)
    messages = gateway_messages(plant, START_MS, values, max_readings)
    gateway_of = {p.sensor.id: p.gateway for p in plant.places()}
    seen: dict[str, float] = {}
    for topic, payload, n in messages:
        doc = orjson.loads(payload)
        assert topic == f"plant/nanhai/{doc['gateway']}"
        assert doc["ts"] == START_MS and isinstance(doc["ts"], int)
        assert len(doc["readings"]) == n <= max_readings
        for reading in doc["readings"]:
            assert set(reading) == {"sensor", "value"}
            assert gateway_of[reading["sensor"]] == doc["gateway"]
            assert reading["sensor"] not in seen
            seen[reading["sensor"]] = reading["value"]
    assert list(seen) == [p.sensor.id for p in plant.places()]
    np.testing.assert_array_equal(np.array(list(seen.values())), values)  # bit-exact
    n_gateways = len({p.gateway for p in plant.places()})
    assert len(messages) >= n_gateways
    if max_readings == 100:
        assert len(messages) == n_gateways


def test_gateway_messages_check_their_input(plant: PlantConfig) -> None:
    with pytest.raises(ValueError, match="shape"):
        gateway_messages(plant, START_MS, np.zeros(3))
    with pytest.raises(ValueError, match="at least 1"):
        gateway_messages(plant, START_MS, np.zeros(len(plant.places())), 0)


# -- broker URL ---------------------------------------------------------------------


def test_parse_broker_url() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_broker_url("mqtt://broker.local:18830") == ("broker.local", 18830)
    assert parse_broker_url("mqtt://[::1]:1883") == ("::1", 1883)


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://host:8883",
        "tcp://host:1883",
        "host:1883",
        "mqtt://host",
        "mqtt://:1883",
        "mqtt://host:notaport",
        "mqtt://host:70000",
        "mqtt://user:pw@host:1883",
        "mqtt://host:1883/plant",
        "",
    ],
)
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(BrokerUrlError) as info:
        parse_broker_url(url)
    assert repr(url) in str(info.value) and "mqtt://HOST:PORT" in str(info.value)


def test_run_simulation_validates_before_connecting(plant: PlantConfig) -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        run_simulation(plant, "mqtt://127.0.0.1:1", rate_hz=5000)
    with pytest.raises(BrokerUrlError):
        run_simulation(plant, "http://127.0.0.1:1")
    with pytest.raises(LeakSpecError):
        run_simulation(plant, "mqtt://127.0.0.1:1", leaks=[LeakSpec("nowhere", 1)])


def test_unreachable_broker_is_a_publish_error(plant: PlantConfig) -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(PublishError, match=f"127.0.0.1:{port}"):
        run_simulation(plant, f"mqtt://127.0.0.1:{port}", realtime=False, duration_s=1)


# -- against a real Mosquitto -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        pytest.fail(
            "the mosquitto broker is needed for the integration tests and was not found; "
            "install it with `apt-get install mosquitto`"
        )
    return found


@pytest.fixture()
def mosquitto(tmp_path: Path) -> Iterator[str]:
    """A private Mosquitto on a free loopback port; yields its mqtt:// URL."""
    binary = _mosquitto_binary()
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"  # 0 = no limit: the test counts every reading
        "max_inflight_messages 0\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n",
        encoding="utf-8",
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(
                    f"mosquitto exited with {proc.returncode}: "
                    + (tmp_path / "mosquitto.log").read_text(errors="replace")
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on 127.0.0.1:{port} within 10 s")
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


class _Subscriber:
    """A QoS 1 subscriber to ``plant/#`` that records every reading it receives."""

    def __init__(self, url: str) -> None:
        host, port = parse_broker_url(url)
        self.readings: list[tuple[str, str, int, float]] = []  # topic, sensor, ts, value
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="plantwatch-test-sub"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from mosquitto"

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        client.subscribe("plant/#", qos=1)

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        doc = orjson.loads(message.payload)
        with self._lock:
            for r in doc["readings"]:
                self.readings.append((message.topic, r["sensor"], r.get("ts", doc["ts"]),
                                      r["value"]))

    def wait_for(self, n: int, timeout_s: float = 20.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.readings) >= n:
                    break
            time.sleep(0.02)
        with self._lock:
            return len(self.readings)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.servers
def test_every_published_reading_arrives_and_is_acked(
    plant: PlantConfig, mosquitto: str
) -> None:
    sub = _Subscriber(mosquitto)
    try:
        progress: list[tuple[int, int]] = []
        report = run_simulation(
            plant,
            mosquitto,
            rate_hz=10.0,
            duration_s=2.0,
            seed=42,
            leaks=[LeakSpec("cp-seal", at_s=0.0)],
            start_ms=START_MS,
            realtime=False,
            max_readings_per_message=4,  # force splitting of the bigger gateways
            on_progress=lambda done, total: progress.append((done, total)),
        )
        n_sensors = len(plant.places())
        assert report.steps == 20
        assert progress == [(k, 20) for k in range(1, 21)]
        assert report.readings_published == 20 * n_sensors
        assert report.acked_readings == report.readings_published
        assert report.acked_messages == report.messages_published
        assert report.all_acked
        assert report.start_ms == START_MS and report.end_ms == START_MS + 1900

        assert sub.wait_for(report.readings_published) == report.readings_published
        keys = [(sensor, ts) for _, sensor, ts, _ in sub.readings]
        assert len(set(keys)) == len(keys), "every (sensor, ts) pair is unique"
        times = [START_MS + 100 * k for k in range(20)]
        assert set(keys) == {(p.sensor.id, t) for p in plant.places() for t in times}
        # what arrived is what the simulator computes for that seed and time
        sim = PlantSimulator(plant, np.random.default_rng(42), START_MS,
                             [LeakSpec("cp-seal", at_s=0.0)])
        expected = {
            (sid, t): v for t in times for sid, v in zip(sim.sensor_ids, sim.values_at(t),
                                                         strict=True)
        }
        gateway_of = {p.sensor.id: p.gateway for p in plant.places()}
        for topic, sensor, ts, value in sub.readings:
            assert value == expected[(sensor, ts)]
            assert topic == f"plant/nanhai/{gateway_of[sensor]}"
    finally:
        sub.close()


@pytest.mark.servers
def test_realtime_pacing_and_stop_event(plant: PlantConfig, mosquitto: str) -> None:
    stop = threading.Event()

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            stop.set()

    began = time.monotonic()
    report = run_simulation(
        plant, mosquitto, rate_hz=20.0, duration_s=5.0, seed=1, realtime=True,
        on_progress=stop_after_three, stop_event=stop,
    )
    elapsed = time.monotonic() - began
    assert report.steps == 3
    assert report.acked_readings == report.readings_published == 3 * len(plant.places())
    assert elapsed >= 0.1 - 0.01, "steps 0, 1, 2 are 50 ms apart in wall time"
    assert elapsed < 3.0
    assert report.end_ms - report.start_ms == 100
