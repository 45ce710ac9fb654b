"""Trend detector: the reference at several parameter sets, the ETA rules, and behaviour
on leaks and on steady days.

The contract (chunks, state, input, late and non-finite readings, the reference
at the parameters declared for checking) is tests/test_detector_contract.py's;
the plain reference is detectors/reference.py's.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.reference import TrendRef
from detectors.trend import TrendDetector
from model.batch import ReadingBatch
from model.plant import parse_plant
from model.sensor_table import SensorTable
from simulators.leak import DETECTOR_T90_S, leak_response
from tests.plants import small_plant
from tests.test_rate import T0, Reading, as_batch, streams

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)

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
    """ETA per reading from the plain reference (one reading at a time)."""
    return np.array(TrendRef(table, **params).run(stream), np.float64)


def run(det: TrendDetector, stream: list[Reading], cuts: list[int]) -> np.ndarray:
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    parts = [det.update(as_batch(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


# -- state and the reference --------------------------------------------------------
def test_state_is_int64_and_float64_within_200_bytes_a_sensor() -> None:
    state = TrendDetector(TABLE).get_state()
    assert {a.dtype for a in state.values()} <= {np.dtype(np.int64), np.dtype(np.float64)}
    assert sum(a.nbytes for a in state.values()) / M <= 200


@settings(max_examples=300, deadline=None)
@given(streams(max_size=120), st.sampled_from([DEFAULTS, PERMISSIVE, FAST, WANDER]))
def test_equals_the_reference(stream: list[Reading], params: dict[str, Any]) -> None:
    got = run(TrendDetector(TABLE, **params), stream, [])
    want = reference_etas(stream, TABLE, params)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


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


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="min_slope_z"):
        TrendDetector(TABLE, min_slope_z=-1.0)
    with pytest.raises(ValueError, match="tau_slope_s"):
        TrendDetector(TABLE, tau_slope_s=math.inf)


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
