"""Trend detector: contract (reference, chunks, state, NaN rules) and behaviour on leaks
and on steady days."""

from __future__ import annotations

import itertools
import math
import pickle
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import Detector
from detectors.trend import TrendDetector
from model.batch import ReadingBatch
from model.plant import parse_plant
from model.sensor_table import SensorTable
from simulators.leak import DETECTOR_T90_S, leak_response
from tests.plants import small_plant
from tests.test_rate import (
    T0,
    Reading,
    RefHolt,
    as_batch,
    assert_same_state,
    one_reading_per_sensor_and_ts,
    streams,
)

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
SIGMA_PER_MEAN_ABS = math.sqrt(math.pi / 2.0)

DEFAULTS: dict[str, Any] = {"tau_level_s": 10.0, "tau_slope_s": 30.0, "min_rise_sigmas": 4.0,
                            "min_slope_z": 6.0, "clip_sigmas": 3.0, "warmup": 20,
                            "wander_tau_s": 86400.0, "min_wander_ratio": 4.0,
                            "wander_warm_s": 3600.0}
# Significance off: every reading heading for a limit gets an ETA (exercises the ETA rules).
PERMISSIVE: dict[str, Any] = {**DEFAULTS, "min_rise_sigmas": 0.0, "min_slope_z": 0.0,
                              "warmup": 2}
FAST: dict[str, Any] = {**PERMISSIVE, "tau_level_s": 2.0, "tau_slope_s": 2.0, "warmup": 3}
# Test 3 in play within a short stream: a usual slope learnt in seconds.
WANDER: dict[str, Any] = {**FAST, "wander_tau_s": 20.0, "min_wander_ratio": 1.5,
                          "wander_warm_s": 4.0}


def reference_etas(
    stream: list[Reading], table: SensorTable, params: dict[str, Any]
) -> npt.NDArray[np.float64]:
    """ETA per reading, written out one reading at a time from the module docstring."""
    tl, tb = params["tau_level_s"], params["tau_slope_s"]
    ref = RefHolt(len(table), tau_level_s=tl, tau_slope_s=tb,
                  clip_sigmas=params["clip_sigmas"], warmup=params["warmup"])
    horizon = [p.sensor.trend_horizon_s for p in table.places]
    usual = [0.0] * len(table)  # test 3: the usual |slope| and its seconds of history
    weight = [0.0] * len(table)
    tau_w, ratio, warm_s = (params["wander_tau_s"], params["min_wander_ratio"],
                            params["wander_warm_s"])
    out = []
    for s, ts, x in stream:
        r = ref.read(s, ts, x)
        if r is None:
            out.append(np.nan)
            continue
        level, slope, scale, dt = r
        # Significant: projected change over the horizon ≥ k·σ̂ and slope ≥ z·sd(slope),
        # and (with enough history) several times the sensor's usual slope.
        test1 = params["min_rise_sigmas"] * SIGMA_PER_MEAN_ABS / horizon[s]
        test2 = (params["min_slope_z"] * SIGMA_PER_MEAN_ABS
                 / math.sqrt(2.0 * tl * tb**2)) * math.sqrt(dt)
        warm = weight[s] >= warm_s
        test3 = ratio * usual[s] if warm else 0.0
        target_w = min(abs(slope), ratio * usual[s]) if warm else abs(slope)
        weight[s] = weight[s] * (tau_w / (tau_w + dt)) + dt
        usual[s] = usual[s] + (target_w - usual[s]) * (dt / weight[s])
        if not abs(slope) > max(max(test1, test2) * scale, test3):
            out.append(np.nan)
            continue
        h, hh, low, ll = table.h[s], table.hh[s], table.l[s], table.ll[s]
        above = h if level < h else hh  # a NaN limit compares False
        below = low if level > low else ll
        target = above if slope > 0 else below
        eta = (target - level) / slope
        out.append(eta if eta > 0 else np.nan)
    return np.array(out, np.float64)


def run(det: TrendDetector, stream: list[Reading], cuts: list[int]) -> np.ndarray:
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    parts = [det.update(as_batch(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


# -- the contract ----------------------------------------------------------------------
def test_is_a_detector_with_int64_float64_state() -> None:
    det = TrendDetector(TABLE)
    assert isinstance(det, Detector)
    state = det.get_state()
    assert {a.dtype for a in state.values()} <= {np.dtype(np.int64), np.dtype(np.float64)}
    assert sum(a.nbytes for a in state.values()) / M <= 200


@settings(max_examples=300, deadline=None)
@given(streams(max_size=120), st.sampled_from([DEFAULTS, PERMISSIVE, FAST, WANDER]))
def test_equals_the_reference(stream: list[Reading], params: dict[str, Any]) -> None:
    got = run(TrendDetector(TABLE, **params), stream, [])
    want = reference_etas(stream, TABLE, params)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(0, 250), max_size=6),
       st.sampled_from([DEFAULTS, PERMISSIVE, WANDER]))
def test_chunk_invariance(stream: list[Reading], cuts: list[int], params: dict[str, Any]) -> None:
    results = []
    for c in ([], list(range(len(stream))), list(range(0, len(stream), 7)), cuts):
        det = TrendDetector(TABLE, **params)
        results.append((run(det, stream, c), det.get_state()))
    scores, state = results[0]
    for s2, state2 in results[1:]:
        np.testing.assert_array_equal(s2, scores)
        assert_same_state(state2, state)


@settings(max_examples=100, deadline=None)
@given(streams(), st.integers(0, 250))
def test_state_round_trip_and_pickle_mid_stream(stream: list[Reading], cut: int) -> None:
    det = TrendDetector(TABLE, **WANDER)
    det.update(as_batch(stream[:cut]))
    restored = TrendDetector(TABLE, **WANDER)
    restored.set_state(det.get_state())
    pickled = pickle.loads(pickle.dumps(det))
    want = det.update(as_batch(stream[cut:]))
    for other in (restored, pickled):
        np.testing.assert_array_equal(other.update(as_batch(stream[cut:])), want)
        assert_same_state(other.get_state(), det.get_state())


@settings(max_examples=100, deadline=None)
@given(streams())
def test_batch_not_mutated_and_rows_permute(stream: list[Reading]) -> None:
    stream = one_reading_per_sensor_and_ts(stream)
    batch = as_batch(stream)
    copies = [a.copy() for a in (batch.sensor, batch.ts, batch.value, batch.quality)]
    scores = TrendDetector(TABLE, **PERMISSIVE).update(batch)
    for a, b in zip(copies, (batch.sensor, batch.ts, batch.value, batch.quality), strict=True):
        np.testing.assert_array_equal(a, b)
    perm = np.random.default_rng(len(stream)).permutation(len(stream))
    np.testing.assert_array_equal(TrendDetector(TABLE, **PERMISSIVE).update(batch.take(perm)),
                                  scores[perm])


def test_late_duplicate_and_non_finite_readings_score_nan_and_do_not_move_state() -> None:
    det = TrendDetector(TABLE, **PERMISSIVE)
    ts = T0 + np.arange(30) * 1000
    scores = det.update(ReadingBatch.from_columns(np.zeros(30), ts, np.arange(30.0) * 0.5))
    assert np.isfinite(scores[2:]).all()  # a clean ramp towards h = 25 %LEL
    before = det.get_state()
    late = ReadingBatch.from_columns([0, 0, 0, 0, 0], [ts[-1], ts[5], ts[-1] + 1, ts[-1] + 2,
                                                       ts[-1] + 1],
                                     [99.0, 1.0, np.nan, np.inf, 14.0])
    assert np.isnan(det.update(late)[:4]).all()
    # ...the fresh one (ts[-1] + 1, 14.0) was taken; the later duplicate of its ts was not.
    assert not np.array_equal(det.get_state()["last_ts"], before["last_ts"])
    after = det.get_state()
    assert np.isnan(det.update(late)).all()
    assert_same_state(det.get_state(), after)


def test_warmup_counts_readings_even_when_they_are_zero() -> None:
    det = TrendDetector(TABLE, **{**PERMISSIVE, "warmup": 4})
    values = np.r_[np.zeros(4), np.arange(1.0, 11.0)]
    scores = det.update(ReadingBatch.from_columns(np.zeros(14), T0 + np.arange(14) * 1000,
                                                  values))
    assert np.isnan(scores[:4]).all()
    assert np.isfinite(scores[-5:]).all()


def test_eta_picks_the_next_limit_in_the_direction_of_travel() -> None:
    """PT-1 has ll 50, l 100, h 800, hh 900 kPa: rising towards 760 aims at h, past h
    at hh, past hh at nothing; falling towards 240 aims at l, past l at ll, past ll
    at nothing."""
    pt = TABLE.index["PT-1"]
    for start, rate, target in ((700.0, 1.0, 800.0), (820.0, 0.5, 900.0), (950.0, 1.0, None),
                                (300.0, -1.0, 100.0), (90.0, -0.5, 50.0), (30.0, -1.0, None)):
        det = TrendDetector(TABLE, **FAST)
        t = np.arange(60.0)
        eta = det.update(ReadingBatch.from_columns(np.full(60, pt), T0 + t.astype(np.int64) * 1000,
                                                   start + rate * t))
        if target is None:
            assert np.isnan(eta[-1])
        else:
            assert eta[-1] == pytest.approx((target - (start + rate * 59)) / rate, rel=1e-6)


def test_bad_parameters_and_foreign_state_are_refused() -> None:
    with pytest.raises(ValueError, match="min_slope_z"):
        TrendDetector(TABLE, min_slope_z=-1.0)
    with pytest.raises(ValueError, match="tau_slope_s"):
        TrendDetector(TABLE, tau_slope_s=math.inf)
    with pytest.raises(ValueError, match="different sensor table"):
        TrendDetector(TABLE).set_state(TrendDetector(_table([_temp(0)])).get_state())


def test_dashboard_views() -> None:
    det = TrendDetector(TABLE, **PERMISSIVE)
    assert np.isnan(det.level).all() and np.isnan(det.slope_per_s).all()
    det.update(ReadingBatch.from_columns([0] * 5, T0 + np.arange(5) * 1000, [1.0, 2, 3, 4, 5]))
    assert det.slope_per_s[0] > 0 and 1.0 < det.level[0] <= 5.0
    assert det.noise_sigma[0] >= 0 and np.isnan(det.noise_sigma[1])


# -- behaviour: leaks ------------------------------------------------------------------
def _table(sensors: list[dict[str, Any]]) -> SensorTable:
    return SensorTable.from_config(parse_plant({
        "enterprise": {"id": "acme"},
        "sites": [{"id": "s1", "workshops": [{
            "id": "w", "teams": [{"id": "t", "posts": [{"id": "p"}]}],
            "areas": [{"id": "a", "post": "p", "sensors": sensors}],
        }]}],
    }, "tests/test_trend.py"))


def _lel(i: int) -> dict[str, Any]:
    return {"id": f"LEL-{i}", "kind": "combustible_lel", "range": [0, 100]}  # h 25, hh 50


def _temp(i: int) -> dict[str, Any]:
    return {"id": f"TT-{i}", "kind": "temperature_c", "range": [0, 200],
            "limits": {"l": 20, "h": 95, "hh": 120}}


def _lagged_ramp(t_s: npt.NDArray[np.float64], rise_s: float) -> npt.NDArray[np.float64]:
    """0 → 1 over ``rise_s`` at the detector head, seen through the detector's
    first-order lag (T90 = 30 s): the shape of a leak's reading."""
    tau = DETECTOR_T90_S / math.log(10.0)

    def lagged(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        xp = np.maximum(x, 0.0)
        return np.asarray(xp - tau * -np.expm1(-xp / tau), np.float64)

    return np.asarray((lagged(t_s) - lagged(t_s - rise_s)) / rise_s, np.float64)


def _leak_etas(shape: np.ndarray, n_sensors: int = 8) -> tuple[np.ndarray, int]:
    """ETAs of ``n_sensors`` LEL detectors reading 0.5 + 60·shape ± 0.3 at 1 s (clipped
    at 0 like a real detector), and the second the clean reading reaches 25 %LEL."""
    rng = np.random.default_rng(11)
    clean = 0.5 + 60.0 * shape
    values = np.clip(clean[:, None] + rng.normal(0.0, 0.3, (len(shape), n_sensors)), 0.0, 100.0)
    ts = T0 + np.repeat(np.arange(len(shape)) * 1000, n_sensors)
    batch = ReadingBatch.from_columns(np.tile(np.arange(n_sensors), len(shape)), ts,
                                      values.ravel())
    eta = TrendDetector(_table([_lel(i) for i in range(n_sensors)])).update(batch)
    return eta.reshape(len(shape), n_sensors), int(np.argmax(clean >= 25.0))


@pytest.mark.parametrize(("rise_s", "min_lead_s", "accurate_from_s"), [(300.0, 60, 60),
                                                                        (600.0, 60, 150)])
def test_a_ramp_leak_is_announced_well_before_the_first_level(
    rise_s: float, min_lead_s: int, accurate_from_s: int
) -> None:
    """0 → 60 %LEL over ``rise_s`` through the T90 lag: the ETA to 25 %LEL drops below
    the 300 s horizon ≥ 60 s before the crossing (measured: ≈ 103 s for a 300 s rise,
    ≈ 205 s for 600 s), and from ``accurate_from_s`` before the crossing it is within
    30 % of the true time left."""
    start = 300
    t = np.arange(start + 2 * int(rise_s), dtype=np.float64)
    eta, crossing = _leak_etas(_lagged_ramp(t - start, rise_s))
    assert not (eta[:start] <= 300).any()
    for col in eta.T:
        first = start + int(np.argmax(col[start:] <= 300.0))
        assert crossing - first >= min_lead_s
    k = np.arange(crossing - accurate_from_s, crossing - 10)
    left = (crossing - k)[:, None]
    assert (np.abs(eta[k] - left) <= 0.3 * left).all()


def test_the_simulators_fast_leak_is_announced_before_the_first_level() -> None:
    """The simulator's leak reaches 25 %LEL only ≈ 24 s after it starts (a 30 s
    source ramp through the T90 lag); the ETA still comes ≈ 12 s before the
    crossing, which is about all the signal allows."""
    start = 300
    t = np.arange(start + 400, dtype=np.float64)
    eta, crossing = _leak_etas(leak_response(t - start, duration_s=300.0))
    assert not (eta[:start] <= 300).any()
    for col in eta.T:
        first = start + int(np.argmax(col[start:] <= 300.0))
        assert crossing - first >= 8


# -- behaviour: steady days ------------------------------------------------------------
def _day(
    mean: list[Any], sigma: list[float], every_s: int, rng: np.random.Generator
) -> list[ReadingBatch]:
    """A day of readings of len(mean) sensors, one batch per hour (snapshots)."""
    n = len(mean)
    hours = []
    for hour in range(24):
        t = np.arange(hour * 3600, (hour + 1) * 3600, every_s, dtype=np.float64)
        cols = [np.asarray(f(t), np.float64) + rng.normal(0.0, sd, t.size)
                for f, sd in zip(mean, sigma, strict=True)]
        values = np.stack(cols, axis=1)
        ts = T0 + (t * 1000).astype(np.int64)
        hours.append(ReadingBatch.from_columns(np.tile(np.arange(n), t.size),
                                               np.repeat(ts, n), values.ravel()))
    return hours


def _steady(value: float) -> Any:
    return lambda t: np.full(t.size, value)


def _swing(mean: float, amplitude: float) -> Any:
    return lambda t: mean + amplitude * np.sin(2 * np.pi * t / 86_400.0 + 1.0)


@pytest.mark.parametrize("every_s", [1, 10])
def test_steady_noisy_days_never_warn(every_s: int) -> None:
    """24 h of steady noise (LEL 0.5 ± 0.3 clipped at 0, temperature 80 ± 0.5 °C
    with h = 95, and 92 ± 0.5 °C: only 6 σ under h), and slow daily swings: not
    one ETA under the horizon (not one ETA at all, in fact)."""
    table = _table([_lel(0), _temp(1), _temp(2), _temp(3), _lel(4)])
    det = TrendDetector(table)
    mean = [_steady(0.5), _steady(80.0), _steady(92.0), _swing(80.0, 3.0), _swing(2.0, 1.5)]
    sigma = [0.3, 0.5, 0.5, 0.5, 0.3]
    rng = np.random.default_rng(2024 + every_s)
    warnings = 0
    for batch in _day(mean, sigma, every_s, rng):
        lel = np.isin(batch.sensor, [0, 4])
        batch = ReadingBatch(batch.sensor, batch.ts,
                             np.where(lel, np.maximum(batch.value, 0.0), batch.value),
                             batch.quality)
        eta = det.update(batch)
        warnings += int((eta <= table.trend_horizon_s[batch.sensor]).sum())
    assert warnings == 0
