"""Scenarios: files load, readings and payloads are deterministic, ground truth is
computed from the true signal, faults do what they say, bad files name the place."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pytest
import yaml

from decoders.json_gateway import decode_gateway_json
from decoders.lp_gateway import decode_line_protocol
from model.plant import ConfigError, PlantConfig
from simulators import (
    PlantSimulator,
    Scenario,
    ScenarioError,
    ScenarioMessage,
    ScenarioPlant,
    leak_response,
    load_scenario,
    parse_scenario,
    scenario_messages,
)
from simulators import process as proc
from simulators.scenario_effects import first_level

Format = Literal["json", "lp"]
FORMATS: tuple[Format, ...] = ("json", "lp")
ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "config" / "scenarios"
SCENARIO_FILES = sorted(SCENARIO_DIR.glob("*.yaml"))
REQUIRED = {
    "h2s-leak-tank-farm", "compressor-seal-leak", "reactor-runaway",
    "overpressure-stuck-relief", "cooling-water-loss", "drifting-sensor-slow-leak",
    "gateway-dropout", "power-dip-flood", "steady-day",
}
# The one incident each file is about: kind, and whether a first-level limit is crossed.
EXPECTED_INCIDENT = {
    "h2s-leak-tank-farm": ("leak", True),
    "compressor-seal-leak": ("seal_leak", True),
    "reactor-runaway": ("runaway", True),
    "overpressure-stuck-relief": ("overpressure", True),
    "cooling-water-loss": ("cooling_loss", True),
    "drifting-sensor-slow-leak": ("leak", True),
    "gateway-dropout": ("gateway_dropout", False),
    "power-dip-flood": ("power_dip", True),
}


@pytest.fixture(scope="module")
def scenarios(plant: PlantConfig) -> dict[str, Scenario]:
    return {p.stem: load_scenario(p, plant) for p in SCENARIO_FILES}


@pytest.fixture(scope="module")
def plants(plant: PlantConfig, scenarios: dict[str, Scenario]) -> dict[str, ScenarioPlant]:
    return {name: ScenarioPlant(s, plant) for name, s in scenarios.items()}


def _scenario(plant: PlantConfig, events: list[dict[str, Any]], **top: Any) -> Scenario:
    data: dict[str, Any] = {"name": "t", "duration_s": 120, "seed": 3, "events": events}
    data.update(top)
    return parse_scenario(data, plant, "t.yaml")


def _row(sp: ScenarioPlant, sensor: str) -> int:
    return sp.sensor_ids.index(sensor)


def _json(m: ScenarioMessage) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(m.payload)
    return out


# -- the files ----------------------------------------------------------------------


def test_the_required_scenarios_exist() -> None:
    assert {p.stem for p in SCENARIO_FILES} >= REQUIRED


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_every_scenario_file_loads(path: Path, plant: PlantConfig) -> None:
    scenario = load_scenario(path, plant)
    assert scenario.name == path.stem
    assert scenario.description
    if path.stem == "steady-day":
        assert scenario.duration_s == 86_400 and not scenario.events
        assert scenario.n_steps <= 10_000, "the steady day must stay quick to backtest"
    else:
        assert 600 <= scenario.duration_s <= 1800, "incident scenarios are 10–30 min"
        assert any(e.incident is not None for e in scenario.events)


def test_each_incident_is_labelled_as_expected_and_crosses_or_not(
    plants: dict[str, ScenarioPlant],
) -> None:
    for name, (kind, crosses) in EXPECTED_INCIDENT.items():
        truths = plants[name].ground_truth()
        assert [t.kind for t in truths] == [kind], name
        truth = truths[0]
        assert truth.sensors, name
        if crosses:
            assert truth.limit_crossing_s is not None, name
            assert truth.start_s < truth.limit_crossing_s <= truth.end_s, name
        else:
            assert truth.limit_crossing_s is None, name


def test_ramp_incidents_take_minutes_to_reach_their_limit(
    plants: dict[str, ScenarioPlant],
) -> None:
    for name, (kind, _) in EXPECTED_INCIDENT.items():
        truth = plants[name].ground_truth()[0]
        assert truth.ramp == (kind in {"leak", "seal_leak", "runaway", "overpressure",
                                       "cooling_loss"}), name
        if truth.ramp:
            assert truth.limit_crossing_s is not None
            # a trend detector needs time to see the ramp: at least two minutes
            assert truth.limit_crossing_s - truth.start_s >= 120, name


def test_affected_sensors_cross_only_because_of_the_incident(
    plants: dict[str, ScenarioPlant],
) -> None:
    for name in EXPECTED_INCIDENT:
        sp = plants[name]
        truth = sp.ground_truth()[0]
        rows = np.array([_row(sp, s) for s in truth.sensors])
        limits = np.array([first_level(sp.index.places[r].sensor) for r in rows])
        values = sp.true_values()[:, rows]
        t_s = (sp.step_times_ms - sp.start_ms) / 1000.0
        crossed = np.asarray(((values >= limits[:, 0]) | (values <= limits[:, 1])).any(axis=1))
        assert not crossed[t_s < truth.start_s].any(), f"{name}: crossed before it started"
        if truth.limit_crossing_s is None:
            assert not crossed.any(), name
        else:
            k = int(np.flatnonzero(t_s == truth.limit_crossing_s)[0])
            assert crossed[k] and not crossed[:k].any(), name


def test_steady_day_never_reaches_a_first_level_limit(
    plants: dict[str, ScenarioPlant],
) -> None:
    sp = plants["steady-day"]
    assert sp.ground_truth() == []
    values = sp.true_values()
    assert values.shape == (8640, sp.n_sensors)
    limits = np.array([first_level(p.sensor) for p in sp.index.places])
    deadband = np.array([p.sensor.effective_deadband() for p in sp.index.places])
    assert (values <= limits[:, 0] - deadband).all()
    assert (values >= limits[:, 1] + deadband).all()
    assert sp.first_crossing_s(np.arange(sp.n_sensors)) is None


def _limit_alarms(sp: ScenarioPlant, rows: list[int], t0: float, t1: float) -> int:
    """Limit alarms raised in [t0, t1) by a plain ISA-18.2 limit with deadband."""
    t_s = (sp.step_times_ms - sp.start_ms) / 1000.0
    values = sp.true_values()
    n = 0
    for r in rows:
        sensor = sp.index.places[r].sensor
        deadband = sensor.effective_deadband()
        for name, limit in sensor.effective_limits().items():
            up = name in ("h", "hh")
            active = False
            for t, v in zip(t_s, values[:, r], strict=True):
                if not active and (v >= limit if up else v <= limit):
                    active = True
                    n += int(t0 <= t < t1)
                elif active and (v < limit - deadband if up else v > limit + deadband):
                    active = False
    return n


def test_power_dip_floods_one_post(plants: dict[str, ScenarioPlant]) -> None:
    sp = plants["power-dip-flood"]
    truth = sp.ground_truth()[0]
    assert truth.limit_crossing_s is not None and truth.limit_crossing_s - truth.start_s < 10
    rows = sp.index.post_rows["rx-board"]
    assert _limit_alarms(sp, rows, truth.start_s, truth.start_s + 120) >= 40
    # before the sags, nothing
    assert _limit_alarms(sp, rows, 0, truth.start_s) == 0


def test_drift_hides_the_leak_at_the_drifting_sensor_but_not_its_neighbours(
    plants: dict[str, ScenarioPlant],
) -> None:
    sp = plants["drifting-sensor-slow-leak"]
    truth = sp.ground_truth()[0]
    lel05 = _row(sp, "TF-A-LEL-05")
    first_true = sp.first_crossing_s(np.array([lel05]))
    assert first_true == truth.limit_crossing_s, "the drifting sensor's true value leads"
    readings = np.array([sp.values_at(int(ts))[0][lel05] for ts in sp.step_times_ms])
    t_s = (sp.step_times_ms - sp.start_ms) / 1000.0
    read_cross = t_s[np.flatnonzero(readings >= 25.0)[0]]
    assert first_true is not None and read_cross - first_true >= 120, "the drift delays it"
    assert (readings[t_s < truth.start_s] == 0.0).all(), "in clean air it just reads 0"
    for neighbour in ("TF-A-LEL-02", "TF-A-LEL-06"):
        assert sp.first_crossing_s(np.array([_row(sp, neighbour)])) is not None


# -- determinism ----------------------------------------------------------------------


_MIXED_EVENTS: list[dict[str, Any]] = [
    {"kind": "leak", "at_s": 10, "area": "tf-sour-water", "ramp_s": 60},
    {"kind": "spikes", "at_s": 0, "sensors": ["RX-PI-101"], "rate_per_min": 20,
     "amplitude": 300},
    {"kind": "noise_burst", "at_s": 20, "sensors": ["CP-TI-201"], "sigma": 2.0,
     "duration_s": 30},
    {"kind": "duplicates", "at_s": 0, "gateway": "gw-compressor", "probability": 0.5},
    {"kind": "out_of_order", "at_s": 0, "gateway": "gw-reactor", "probability": 0.3},
    {"kind": "clock_skew", "at_s": 30, "gateway": "gw-tank-a", "skew_s": 2.5},
]


@pytest.mark.parametrize("fmt", ["json", "lp"])
def test_same_seed_gives_byte_identical_payloads(plant: PlantConfig, fmt: Format) -> None:
    a = list(scenario_messages(_scenario(plant, _MIXED_EVENTS), plant, fmt))
    b = list(scenario_messages(_scenario(plant, _MIXED_EVENTS), plant, fmt))
    assert len(a) > 120 * 7  # seven gateways, some duplicates
    assert a == b
    other = list(scenario_messages(_scenario(plant, _MIXED_EVENTS, seed=4), plant, fmt))
    assert [m.payload for m in a] != [m.payload for m in other]
    assert a[0].topic == other[0].topic


def test_a_file_scenario_is_deterministic(
    plant: PlantConfig, scenarios: dict[str, Scenario]
) -> None:
    scenario = scenarios["gateway-dropout"]
    first = list(itertools.islice(scenario_messages(scenario, plant, "lp"), 3000))
    again = list(itertools.islice(scenario_messages(scenario, plant, "lp"), 3000))
    assert first == again


def test_different_seed_changes_the_noise_not_the_physics(plant: PlantConfig) -> None:
    events = [{"kind": "overpressure", "at_s": 0, "sensors": ["RX-PI-101"], "rise_kpa": 500,
               "tau_s": 60, "relief_set_kpa": 5600, "incident": {"id": "op"}}]
    a = ScenarioPlant(_scenario(plant, events, seed=1), plant)
    b = ScenarioPlant(_scenario(plant, events, seed=2), plant)
    row = _row(a, "RX-PI-101")
    rise_a = a.true_values()[-1, row] - a.normal.normal_values_at(int(a.step_times_ms[-1]))[row]
    rise_b = b.true_values()[-1, row] - b.normal.normal_values_at(int(b.step_times_ms[-1]))[row]
    assert rise_a == pytest.approx(rise_b, rel=1e-9)
    assert rise_a == pytest.approx(500 * (1 - math.exp(-119 / 60)), rel=1e-9)
    assert not np.array_equal(a.true_values(), b.true_values())


def test_without_events_it_reads_like_the_plant_simulator(plant: PlantConfig) -> None:
    scenario = _scenario(plant, [], seed=9)
    sp = ScenarioPlant(scenario, plant)
    sim = PlantSimulator(plant, np.random.default_rng(9), scenario.start_ms)
    for ts in sp.step_times_ms[:20]:
        values, present = sp.values_at(int(ts))
        np.testing.assert_array_equal(values, sim.values_at(int(ts)))
        assert present.all()


def test_readings_depend_only_on_the_timestamp(plant: PlantConfig) -> None:
    sp = ScenarioPlant(_scenario(plant, _MIXED_EVENTS), plant)
    times = [int(t) for t in sp.step_times_ms[:40]]
    forward = [sp.values_at(t)[0] for t in times]
    backward = [sp.values_at(t)[0] for t in reversed(times)][::-1]
    np.testing.assert_array_equal(np.array(forward), np.array(backward))


# -- what the decoders accept ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "lp"])
def test_payloads_decode_to_the_readings(plant: PlantConfig, fmt: Format) -> None:
    events = [{"kind": "leak", "at_s": 5, "area": "cp-seal", "ramp_s": 30}]
    scenario = _scenario(plant, events, duration_s=40)
    sp = ScenarioPlant(scenario, plant)
    index = {s: i for i, s in enumerate(sp.sensor_ids)}
    got: dict[tuple[int, int], float] = {}
    for m in scenario_messages(scenario, plant, fmt, scenario_plant=sp):
        if fmt == "json":
            assert m.topic == f"plant/nanhai/{m.gateway}"
            result = decode_gateway_json(m.payload, index, m.publish_ts_ms)
        else:
            assert m.topic == "plant/nanhai/lp"
            result = decode_line_protocol(m.payload, index, m.publish_ts_ms)
        assert result.rejections == []
        assert len(result.batch) == m.n_readings
        for s, t, v in zip(result.batch.sensor, result.batch.ts, result.batch.value,
                           strict=True):
            got[int(t), int(s)] = float(v)
    assert len(got) == 40 * sp.n_sensors
    for ts in sp.step_times_ms:
        values, _ = sp.values_at(int(ts))
        for r in range(sp.n_sensors):
            assert got[int(ts), r] == values[r]  # exact: shortest round-trip text


def test_line_protocol_lines_are_in_the_stored_schema(plant: PlantConfig) -> None:
    scenario = _scenario(plant, [], duration_s=1)
    message = next(m for m in scenario_messages(scenario, plant, "lp") if m.gateway == "gw-tank-a")
    first = message.payload.decode().splitlines()[0]
    key, fields, ts = first.split(" ")
    assert key == ("combustible_lel,area=tf-group-a,sensor=TF-A-LEL-01,site=nanhai,"
                   "workshop=tank-farm")
    assert fields.startswith("value=") and fields.endswith(",quality=0i")
    assert int(ts) == scenario.start_ms
    assert message.payload.endswith(b"\n")


# -- ground truth is computed ---------------------------------------------------------


def test_limit_crossing_of_a_constant_ramp_is_at_the_expected_second(plant: PlantConfig) -> None:
    # A huge time constant makes the vessel's rise a constant 20 kPa/s ramp
    # (error below 1e-4 kPa over the minute it takes).
    rate, tau = 20.0, 1e9
    events = [{"kind": "overpressure", "at_s": 30, "sensors": ["RX-PI-101"],
               "rise_kpa": rate * tau, "tau_s": tau, "relief_set_kpa": 5600, "stuck": True,
               "incident": {"id": "ramp"}}]
    sp = ScenarioPlant(_scenario(plant, events), plant)
    row = _row(sp, "RX-PI-101")
    h = 4800.0
    expected = None
    for ts in sp.step_times_ms:
        t = (int(ts) - sp.start_ms) / 1000.0
        value = sp.normal.normal_values_at(int(ts))[row] + rate * max(t - 30.0, 0.0)
        if value >= h:
            expected = t
            break
    truth = sp.ground_truth()[0]
    assert truth.limit_crossing_s == expected
    # by hand: RX-PI-101 sits 520–800 kPa below h, so 26–40 s of ramp
    assert expected is not None and 30 + 26 <= expected <= 30 + 41
    assert truth.sensors == ["RX-PI-101"] and truth.ramp and truth.kind == "overpressure"


def test_low_limits_count_as_crossings(plant: PlantConfig) -> None:
    events = [{"kind": "cooling_loss", "at_s": 10, "cooling": {"RX-PI-120": -400},
               "tau_s": 20, "incident": {"id": "cw-pump-trip", "kind": "cooling_loss"}}]
    sp = ScenarioPlant(_scenario(plant, events), plant)
    truth = sp.ground_truth()[0]
    row = _row(sp, "RX-PI-120")
    assert truth.limit_crossing_s is not None
    k = int(truth.limit_crossing_s)
    assert sp.true_values()[k, row] <= 300.0 < sp.true_values()[k - 1, row]


def test_events_of_one_incident_are_merged(plant: PlantConfig) -> None:
    events = [
        {"kind": "cooling_loss", "at_s": 20, "cooling": {"RX-TI-120": 5}, "tau_s": 60,
         "incident": {"id": "rx", "kind": "runaway"}},
        {"kind": "runaway", "at_s": 40, "sensors": ["RX-TI-102"], "tmr_s": 60,
         "incident": {"id": "rx"}},
        {"kind": "dropout", "at_s": 50, "sensors": ["TF-A-LEL-01"], "duration_s": 10,
         "incident": {"id": "dead-head", "kind": "sensor_dropout"}},
    ]
    truths = _scenario_truth(plant, events)
    assert [t.id for t in truths] == ["rx", "dead-head"]
    rx, dead = truths
    assert rx.kind == "runaway" and rx.start_s == 20 and rx.ramp
    assert rx.sensors == ["RX-TI-102", "RX-TI-120"]
    assert rx.limit_crossing_s is not None and rx.limit_crossing_s > 40
    assert dead.sensors == ["TF-A-LEL-01"] and not dead.ramp
    assert dead.limit_crossing_s is None and dead.end_s == 60


def _scenario_truth(plant: PlantConfig, events: list[dict[str, Any]]) -> list[Any]:
    return ScenarioPlant(_scenario(plant, events), plant).ground_truth()


# -- process models ------------------------------------------------------------------


def test_gas_release_with_leak_defaults_is_leak_response() -> None:
    t = np.linspace(-10, 600, 2000)
    np.testing.assert_allclose(proc.gas_release(t, 30.0, 120.0, 60.0),
                               leak_response(t, 120.0), atol=1e-12)


def test_gas_release_shapes() -> None:
    t = np.arange(0.0, 2000.0, 1.0)
    linear = proc.gas_release(t, 600.0, 300.0, 120.0)
    quad = proc.gas_release(t, 600.0, 300.0, 120.0, quadratic=True)
    for r in (linear, quad):
        assert r[0] == 0.0 and r.max() == pytest.approx(1.0, abs=1e-6)
        assert (np.diff(r[:600]) >= 0).all(), "rises monotonically"
        assert r[-1] == 0.0, "gone once the cloud has cleared"
    assert (quad[1:600] < linear[1:600]).all(), "a wearing seal starts slower"
    # T90 = 30 s: a release that steps up reads 90 % of its peak 30 s later
    step = proc.gas_release(np.array([30.0]), 1e-3, 1000.0, 60.0)
    assert float(step[0]) == pytest.approx(0.9, abs=1e-3)


def test_runaway_creeps_then_accelerates() -> None:
    t = np.arange(0.0, 1200.0, 10.0)
    rise = proc.runaway_rise(t, 1200.0, 30.0, 150.0)
    rate = np.diff(rise)
    assert (np.diff(rate) > 0).all(), "every minute heats faster than the last"
    assert rate[0] == pytest.approx(10 * 30.0 / 1200.0, rel=0.05), "starts at r0 = θ/TMR"
    assert float(proc.runaway_rise(np.array(1200 * (1 - math.exp(-1))), 1200.0, 30.0, 150.0)) \
        == pytest.approx(30.0)
    assert float(proc.runaway_rise(np.array(5000.0), 1200.0, 30.0, 150.0)) == 150.0


def test_relief_valve_caps_unless_stuck(plant: PlantConfig) -> None:
    base = {"kind": "overpressure", "at_s": 0, "sensors": ["RX-PI-101", "RX-PI-102"],
            "rise_kpa": 5000, "tau_s": 60, "relief_set_kpa": 5000, "accumulation_kpa": 100}
    working = ScenarioPlant(_scenario(plant, [base], duration_s=600), plant)
    stuck = ScenarioPlant(_scenario(plant, [{**base, "stuck": True}], duration_s=600), plant)
    row = _row(working, "RX-PI-101")
    capped = working.true_values()[:, row]
    assert capped.max() <= 5000 + 100 + 1e-6, "never above set + accumulation"
    assert capped[-1] == pytest.approx(5100, abs=1), "held at full lift"
    assert stuck.true_values()[-1, row] == 6000.0, "pinned at full scale"
    # the second sensor of the vessel rises by the same amount
    row2 = _row(working, "RX-PI-102")
    last = int(working.step_times_ms[-1])
    d1 = capped[-1] - working.normal.normal_values_at(last)[row]
    d2 = working.true_values()[-1, row2] - working.normal.normal_values_at(last)[row2]
    assert d1 == pytest.approx(d2)


def test_two_lag_follows_slower_than_one() -> None:
    t = np.arange(0.0, 3000.0, 10.0)
    one = proc.first_order_step(t, 300.0)
    two = proc.two_lag_step(t, 300.0, 900.0)
    assert (two[1:] < one[1:]).all() and two[-1] > 0.9
    assert abs(two[1] - two[0]) < 1e-3, "starts flat"
    np.testing.assert_allclose(proc.two_lag_step(t, 300.0, 300.0 * (1 + 1e-7)),
                               proc.two_lag_step(t, 300.0, 300.0), atol=1e-5)


# -- sensor faults --------------------------------------------------------------------


def test_drift_offset_stuck_and_dropout_change_readings_not_truth(plant: PlantConfig) -> None:
    events = [
        {"kind": "drift", "at_s": 0, "sensors": ["CP-TI-201"], "rate_per_h": 36.0},
        {"kind": "offset", "at_s": 10, "sensors": ["CP-TI-202"], "offset": -3.0,
         "duration_s": 20},
        {"kind": "stuck", "at_s": 40.5, "sensors": ["RX-PI-101"], "duration_s": 30},
        {"kind": "dropout", "at_s": 60, "sensors": ["TF-A-LEL-01"], "duration_s": 10},
    ]
    sp = ScenarioPlant(_scenario(plant, events), plant)
    truth = sp.true_values()
    rows = {s: _row(sp, s) for s in ("CP-TI-201", "CP-TI-202", "RX-PI-101", "TF-A-LEL-01")}
    frozen = None
    for k, ts in enumerate(sp.step_times_ms):
        values, present = sp.values_at(int(ts))
        t = float(k)
        assert values[rows["CP-TI-201"]] == pytest.approx(truth[k, rows["CP-TI-201"]] + t / 100)
        off = -3.0 if 10 <= t < 30 else 0.0
        assert values[rows["CP-TI-202"]] == pytest.approx(truth[k, rows["CP-TI-202"]] + off)
        if 41 <= t < 70.5:
            frozen = values[rows["RX-PI-101"]] if frozen is None else frozen
            assert values[rows["RX-PI-101"]] == frozen
            assert frozen == truth[41, rows["RX-PI-101"]], "frozen at the first step ≥ at_s"
        else:
            assert values[rows["RX-PI-101"]] == truth[k, rows["RX-PI-101"]]
        assert present[rows["TF-A-LEL-01"]] == (not 60 <= t < 70)
        assert present.sum() >= sp.n_sensors - 1
    assert len(set(truth[41:71, rows["RX-PI-101"]])) > 20, "the true value kept moving"


def test_spikes_and_noise_bursts(plant: PlantConfig) -> None:
    events = [
        {"kind": "spikes", "at_s": 0, "sensors": ["RX-PI-101"], "rate_per_min": 6,
         "amplitude": 400, "sign": "up"},
        {"kind": "noise_burst", "at_s": 60, "sensors": ["CP-TI-201"], "sigma": 3.0,
         "duration_s": 60},
    ]
    sp = ScenarioPlant(_scenario(plant, events, duration_s=600), plant)
    truth = sp.true_values()
    readings = np.array([sp.values_at(int(ts))[0] for ts in sp.step_times_ms])
    jump = readings[:, _row(sp, "RX-PI-101")] - truth[:, _row(sp, "RX-PI-101")]
    spikes = jump[jump != 0]
    assert 30 <= len(spikes) <= 100, "about 6 a minute"
    assert (spikes >= 200 - 1e-9).all() and (spikes <= 400 + 1e-9).all()
    noise = readings[:, _row(sp, "CP-TI-201")] - truth[:, _row(sp, "CP-TI-201")]
    assert (noise[:60] == 0).all() and (noise[120:] == 0).all()
    assert 2.0 < noise[60:120].std() < 4.0


# -- gateway faults --------------------------------------------------------------------


def _by_gateway(messages: list[ScenarioMessage]) -> dict[str, list[ScenarioMessage]]:
    out: dict[str, list[ScenarioMessage]] = defaultdict(list)
    for m in messages:
        out[m.gateway].append(m)
    return out


def test_messages_are_in_publish_order_one_per_gateway_and_step(plant: PlantConfig) -> None:
    scenario = _scenario(plant, [], duration_s=30)
    messages = list(scenario_messages(scenario, plant))
    assert [m.publish_ts_ms for m in messages] == sorted(m.publish_ts_ms for m in messages)
    by_gw = _by_gateway(messages)
    assert len(by_gw) == 7
    for msgs in by_gw.values():
        assert [m.ts_ms for m in msgs] == [scenario.start_ms + 1000 * k for k in range(30)]
    assert sum(m.n_readings for m in messages) == 30 * 61


def test_silent_gateway_sends_nothing(plant: PlantConfig) -> None:
    events = [{"kind": "gateway_silent", "at_s": 20, "gateway": "gw-loading", "duration_s": 50,
               "incident": {"id": "gw", "kind": "gateway_dropout"}}]
    scenario = _scenario(plant, events)
    loading = _by_gateway(list(scenario_messages(scenario, plant)))["gw-loading"]
    seconds = [(m.ts_ms - scenario.start_ms) // 1000 for m in loading]
    assert seconds == [*range(20), *range(70, 120)]
    truth = ScenarioPlant(scenario, plant).ground_truth()[0]
    assert truth.kind == "gateway_dropout" and truth.limit_crossing_s is None
    assert truth.sensors == [f"TF-L-LEL-0{k}" for k in range(1, 6)] and truth.end_s == 70


def test_clock_skew_shifts_written_timestamps_only(plant: PlantConfig) -> None:
    events = [{"kind": "clock_skew", "at_s": 10, "gateway": "gw-tank-b", "skew_s": -40,
               "duration_s": 20}]
    scenario = _scenario(plant, events, duration_s=60)
    for fmt in FORMATS:
        tank_b = _by_gateway(list(scenario_messages(scenario, plant, fmt)))["gw-tank-b"]
        for k, m in enumerate(tank_b):
            step = scenario.start_ms + 1000 * k
            assert m.publish_ts_ms == step
            assert m.ts_ms == (step - 40_000 if 10 <= k < 30 else step)
            written = (_json(m)["ts"] if fmt == "json"
                       else {int(x.split(" ")[-1]) for x in m.payload.decode().splitlines()})
            assert written == (m.ts_ms if fmt == "json" else {m.ts_ms})


def test_duplicates_resend(plant: PlantConfig) -> None:
    events = [{"kind": "duplicates", "at_s": 5, "gateway": "gw-compressor", "duration_s": 5}]
    scenario = _scenario(plant, events, duration_s=20)
    compressor = _by_gateway(list(scenario_messages(scenario, plant)))["gw-compressor"]
    counts = Counter(m.ts_ms - scenario.start_ms for m in compressor)
    assert all(counts[1000 * k] == (2 if 5 <= k < 10 else 1) for k in range(20))
    for a, b in itertools.pairwise(compressor):
        if a.ts_ms == b.ts_ms:
            assert a == b, "a duplicate is the same message, right after its original"


def test_out_of_order_delivers_later_messages_first(plant: PlantConfig) -> None:
    events = [{"kind": "out_of_order", "at_s": 0, "gateway": "gw-reactor", "probability": 0.4,
               "delay_s": 2.5}]
    scenario = _scenario(plant, events)
    messages = list(scenario_messages(scenario, plant))
    reactor = _by_gateway(messages)["gw-reactor"]
    written = [m.ts_ms for m in reactor]
    assert sorted(written) == [scenario.start_ms + 1000 * k for k in range(120)], "none lost"
    swaps = sum(1 for a, b in itertools.pairwise(written) if b < a)
    assert 20 <= swaps <= 70
    assert all(m.publish_ts_ms - m.ts_ms in (0, 2500) for m in reactor)
    assert [m.publish_ts_ms for m in messages] == sorted(m.publish_ts_ms for m in messages)
    others = [m for m in messages if m.gateway != "gw-reactor"]
    assert all(m.publish_ts_ms == m.ts_ms for m in others)


def test_dropout_leaves_the_reading_out_of_the_message(plant: PlantConfig) -> None:
    events = [{"kind": "dropout", "at_s": 3, "sensors": ["CP-S-H2S-01"], "duration_s": 2}]
    scenario = _scenario(plant, events, duration_s=8)
    for fmt in FORMATS:
        compressor = _by_gateway(list(scenario_messages(scenario, plant, fmt)))["gw-compressor"]
        for k, m in enumerate(compressor):
            has = b"CP-S-H2S-01" in m.payload
            assert has == (not 3 <= k < 5)
            assert m.n_readings == (14 if 3 <= k < 5 else 15)


# -- bad files ------------------------------------------------------------------------


def _error(plant: PlantConfig, data: Any, source: str = "config/scenarios/bad.yaml") -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, plant, source)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    return str(info.value)


def _data(*events: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bad", "duration_s": 600, "events": list(events)}


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        ({"kind": "stuck", "at_s": 1, "sensors": ["RX-PI-101", "RX-PI-999"]},
         "events[0].sensors[1]: sensor 'RX-PI-999' is not in the plant"),
        ({"kind": "melt", "at_s": 1}, "events[0].kind: unknown event kind 'melt'"),
        ({"at_s": 1, "sensors": ["RX-PI-101"]}, "events[0].kind: missing"),
        ({"kind": "leak", "at_s": 1}, "events[0].area: required field is missing"),
        ({"kind": "leak", "at_s": 1, "area": "tf-nowhere"},
         "events[0].area: area 'tf-nowhere' is not in the plant"),
        ({"kind": "leak", "at_s": 1, "area": "tf-group-a", "sensors": ["RX-LEL-101"]},
         "events[0].sensors[0]: sensor 'RX-LEL-101' is not in area 'tf-group-a'"),
        ({"kind": "runaway", "at_s": 1, "sensors": ["RX-PI-101"], "tmr_s": 600},
         "events[0].sensors[0]: sensor 'RX-PI-101' is a pressure_kpa sensor"),
        ({"kind": "cooling_loss", "at_s": 1, "cooling": {"RX-TI-999": 3}},
         "events[0].cooling.RX-TI-999: sensor 'RX-TI-999' is not in the plant"),
        ({"kind": "gateway_silent", "at_s": 1, "gateway": "gw-moon"},
         "events[0].gateway: gateway 'gw-moon' is not in the plant"),
        ({"kind": "power_dip", "at_s": 1, "post": "rx-board", "sensors": ["CP-PI-201"]},
         "events[0].sensors[0]: sensor 'CP-PI-201' does not answer to post 'rx-board'"),
        ({"kind": "power_dip", "at_s": 1, "post": "nobody"},
         "events[0].post: post 'nobody' answers no area"),
        ({"kind": "drift", "at_s": 700, "sensors": ["RX-PI-101"], "rate_per_h": 1},
         "events[0].at_s: 700 s is not before the scenario's end"),
        ({"kind": "offset", "at_s": 1, "sensors": ["RX-PI-101"], "offset": 1, "sizes": 2},
         "events[0].sizes: unknown field"),
        ({"kind": "leak", "at_s": -1, "area": "tf-group-a"},
         "events[0].at_s: Input should be greater than or equal to 0"),
        ({"kind": "out_of_order", "at_s": 1, "gateway": "gw-reactor", "delay_s": 0.5},
         "events[0].delay_s: 0.5 s does not reach the next step"),
        ({"kind": "stuck", "at_s": 1, "sensors": ["RX-PI-101"],
          "incident": {"id": "x", "sensors": ["NOPE"]}},
         "events[0].incident.sensors[0]: sensor 'NOPE' is not in the plant"),
    ],
)
def test_bad_events_name_file_and_key_path(
    plant: PlantConfig, event: dict[str, Any], needle: str
) -> None:
    message = _error(plant, _data({"kind": "drift", "at_s": 0, "sensors": ["RX-PI-101"],
                                   "rate_per_h": 1}, event))
    needle = needle.replace("events[0]", "events[1]")
    assert f"config/scenarios/bad.yaml: {needle}" in message


def test_bad_top_level_fields(plant: PlantConfig) -> None:
    assert "bad.yaml: duration_s: required field is missing" in _error(plant, {"name": "x"})
    assert "bad.yaml: start: Input should have timezone info" in _error(
        plant, {"name": "x", "duration_s": 5, "start": "2026-06-01T00:00:00"})
    assert "bad.yaml: (top level): expected a mapping" in _error(plant, [1, 2])
    message = _error(plant, _data(
        {"kind": "stuck", "at_s": 1, "sensors": ["X1"]},
        {"kind": "leak", "at_s": 1, "area": "tf-group-a",
         "incident": {"id": "a", "kind": "leak"}},
        {"kind": "runaway", "at_s": 1, "sensors": ["RX-TI-101"], "tmr_s": 60,
         "incident": {"id": "a", "kind": "runaway"}},
    ))
    assert "events[0].sensors[0]: sensor 'X1'" in message, "every problem is reported"
    assert "events[2].incident.kind: 'runaway' differs from 'leak'" in message


def test_load_scenario_names_the_file(plant: PlantConfig, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nduration_s: 60\nevents:\n  - kind: stuck\n    at_s: 1\n"
                   "    sensors: [RX-PI-101, GHOST]\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: events\[0\]\.sensors\[1\]: "
                                            r"sensor 'GHOST' is not in the plant"):
        load_scenario(bad, plant)
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid YAML"):
        load_scenario(bad, plant)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml", plant)


def test_start_defaults_and_step_times(plant: PlantConfig) -> None:
    scenario = parse_scenario(yaml.safe_load("name: x\nduration_s: 2.5\nrate_hz: 2\n"), plant)
    assert scenario.start.isoformat() == "2026-06-01T00:00:00+08:00"
    assert scenario.start_ms == 1_780_243_200_000
    assert scenario.step_times_ms() == [scenario.start_ms + 500 * k for k in range(5)]
