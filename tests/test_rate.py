"""Rate-of-change detector: the reference at several parameter sets, and behaviour.

The contract (chunks, state, input, late and non-finite readings, the reference
at the parameters declared for checking) is tests/test_detector_contract.py's;
the plain reference is detectors/reference.py's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.rate import SETTLE_READINGS, RateOfChangeDetector
from detectors.reference import RateRef
from model.batch import ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable
from tests.plants import small_plant

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
T0 = 1_700_000_000_000

Reading = tuple[int, int, float]  # sensor, ts (ms), value


def reference_rates(
    stream: list[Reading], *, tau_s: float = 30.0, clip_sigmas: float = 3.0, warmup: int = 5
) -> npt.NDArray[np.float64]:
    """Rates per reading, unit/min, from the plain reference (one reading at a time)."""
    ref = RateRef(TABLE, tau_level_s=tau_s, clip_sigmas=clip_sigmas, warmup=warmup)
    return np.array(ref.run(stream), np.float64)


# -- streams ---------------------------------------------------------------------------
def as_batch(stream: list[Reading]) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


@st.composite
def streams(draw: st.DrawFn, max_size: int = 80) -> list[Reading]:
    """Time-ordered readings of several sensors: irregular steps (0 ms = duplicate,
    hours = gap), ramps with noise, exact zeros, spikes, the odd NaN."""
    base = draw(st.lists(st.sampled_from([0.0, 0.5, 21.0, 80.0, 500.0]), min_size=M,
                         max_size=M))
    rate = draw(st.lists(st.sampled_from([0.0, 0.0, 0.01, -0.2, 3.0]), min_size=M,
                         max_size=M))
    steps = draw(st.lists(
        st.tuples(
            st.integers(0, M - 1),
            st.one_of(st.integers(0, 3_000), st.sampled_from([0, 1, 1_000, 7_200_000])),
            st.one_of(
                st.floats(-1.0, 1.0),
                st.sampled_from([0.0, 0.0, 1e4, -1e4, math.nan, 5e-324]),
            ),
        ),
        max_size=max_size,
    ))
    out: list[Reading] = []
    t = T0
    if draw(st.booleans()):
        # Settle every sensor first (whole-table snapshots), so that the random
        # part runs through the settled fast paths too.
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        for _ in range(SETTLE_READINGS + 2):
            t += 1000
            out.extend((s, t, base[s] + float(rng.normal())) for s in range(M))
    for s, dt, noise in steps:
        t += dt
        if noise in (0.0, 1e4, -1e4, 5e-324) or math.isnan(noise):
            value = noise  # exactly zero, a spike, a subnormal or NaN
        else:
            value = base[s] + rate[s] * (t - T0) * 1e-3 + noise
        out.append((s, t, value))
    return out


def run(det: RateOfChangeDetector, stream: list[Reading], cuts: list[int]) -> np.ndarray:
    """Feed ``stream`` in chunks split at ``cuts``; scores in stream order."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    parts = [det.update(as_batch(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


# -- state and the reference --------------------------------------------------------
def test_state_is_int64_and_float64_within_200_bytes_a_sensor() -> None:
    state = RateOfChangeDetector(TABLE).get_state()
    assert {a.dtype for a in state.values()} <= {np.dtype(np.int64), np.dtype(np.float64)}
    assert sum(a.nbytes for a in state.values()) / M <= 200
    assert state["count"].dtype == np.int64


@settings(max_examples=300, deadline=None)
@given(streams(), st.sampled_from([(30.0, 3.0, 5), (2.0, 1.5, 2), (600.0, 3.0, 3)]))
def test_equals_the_reference(stream: list[Reading], params: tuple[float, float, int]) -> None:
    tau, clip, warmup = params
    det = RateOfChangeDetector(TABLE, tau_s=tau, clip_sigmas=clip, warmup=warmup)
    got = run(det, stream, [])
    want = reference_rates(stream, tau_s=tau, clip_sigmas=clip, warmup=warmup)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_warmup_counts_readings_even_when_they_are_zero() -> None:
    det = RateOfChangeDetector(TABLE, warmup=5)
    scores = det.update(ReadingBatch.from_columns(np.zeros(40), T0 + np.arange(40) * 1000,
                                                  np.zeros(40)))
    assert np.isnan(scores[:5]).all()
    assert (np.abs(scores[5:]) < 1e-100).all()  # 0, but for the anti-subnormal bias
    assert det.get_state()["count"][0] == SETTLE_READINGS  # counting stops once settled


def test_snapshot_layouts_take_the_fast_paths_and_agree() -> None:
    """Whole-table snapshots (regular and jittered Δt) batched several ways give
    the same scores and state as one reading at a time, and as the reference."""
    rng = np.random.default_rng(5)
    k = 40
    ts = T0 + np.repeat(np.arange(k) * 1000, M) + np.where(
        np.repeat(np.arange(k), M) % 3 == 0, rng.integers(0, 300, k * M), 0)
    sensor = np.tile(np.arange(M), k)
    value = 50.0 + rng.normal(0.0, 1.0, k * M) + np.repeat(np.arange(k) * 0.3, M)
    stream = list(zip(sensor.tolist(), ts.tolist(), value.tolist(), strict=True))
    want = reference_rates(stream)
    snapshots = [j * M for j in range(k)]
    for cuts in ([], snapshots, snapshots[::4], list(range(len(stream)))):
        got = run(RateOfChangeDetector(TABLE), stream, cuts)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="tau_level_s"):
        RateOfChangeDetector(TABLE, tau_s=0.0)
    with pytest.raises(ValueError, match="warmup"):
        RateOfChangeDetector(TABLE, warmup=1)


# -- behaviour -------------------------------------------------------------------------
def _temperature_plant(n: int) -> PlantConfig:
    sensors = [{"id": f"TT-{i}", "kind": "temperature_c", "range": [0, 200],
                "limits": {"l": 20, "h": 95, "hh": 120}} for i in range(n)]
    return parse_plant({
        "enterprise": {"id": "acme"},
        "sites": [{"id": "s1", "workshops": [{
            "id": "reactors", "teams": [{"id": "t", "posts": [{"id": "p"}]}],
            "areas": [{"id": "r1", "post": "p", "sensors": sensors}],
        }]}],
    }, "tests/test_rate.py")


TEMPS = SensorTable.from_config(_temperature_plant(1))


def _one_sensor(values: np.ndarray, dt_ms: int = 1000) -> ReadingBatch:
    n = len(values)
    return ReadingBatch.from_columns(np.zeros(n), T0 + np.arange(n) * dt_ms, values)


def test_a_2_c_per_min_ramp_on_a_noisy_temperature_reads_2_c_per_min() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(1800.0)
    values = 80.0 + 2.0 * t / 60.0 + rng.normal(0.0, 0.5, t.size)
    rate = RateOfChangeDetector(TEMPS).update(_one_sensor(values))
    settled = rate[150:]  # five time constants after the start
    assert abs(settled.mean() - 2.0) < 0.05
    # Slope noise of the filter on σ = 0.5 °C at 1 s, τ = 30 s: ≈ 0.11 °C/min.
    assert settled.std() < 0.2
    assert np.abs(settled - 2.0).max() < 0.7


@pytest.mark.parametrize("spike_c", [30.0, -30.0, 1e4])
def test_one_spike_moves_the_rate_by_a_small_bounded_amount_that_fades(spike_c: float) -> None:
    """A spike's innovation is clipped: its kick on the slope is at most
    α·β·c·scale/Δt (≈ 0.1 °C/min here), whatever its size, and fades within ~τ."""
    rng = np.random.default_rng(2)
    values = 80.0 + 2.0 * np.arange(600.0) / 60.0 + rng.normal(0.0, 0.5, 600)
    spiked = values.copy()
    spiked[400] += spike_c  # 30 °C off for one reading: an instantaneous 1800 °C/min
    clean = RateOfChangeDetector(TEMPS).update(_one_sensor(values))
    dirty = RateOfChangeDetector(TEMPS).update(_one_sensor(spiked))
    moved = np.abs(dirty - clean)
    assert moved[5:400].max() == 0.0
    assert moved[400:].max() < 0.2  # °C/min
    assert moved[430:].max() < 0.05


def test_a_real_change_is_not_held_back_by_clipping() -> None:
    """A noiseless signal that starts ramping: from the second overshoot on the
    ramp passes unclipped, so the estimate converges like a plain Holt filter."""
    values = np.r_[np.full(100, 50.0), 50.0 + np.arange(1, 401) * (3.0 / 60.0)]
    rate = RateOfChangeDetector(TEMPS).update(_one_sensor(values))
    assert abs(rate[-1] - 3.0) < 0.01
    assert rate[100 + 120] > 2.5  # 90 % within ≈ 2.2 τ


def test_steady_noise_stays_well_under_a_2_c_per_min_limit() -> None:
    rng = np.random.default_rng(3)
    values = 80.0 + rng.normal(0.0, 0.5, 20_000)
    rate = RateOfChangeDetector(TEMPS).update(_one_sensor(values))
    assert np.nanmax(np.abs(rate)) < 0.8


def test_dashboard_views() -> None:
    det = RateOfChangeDetector(TABLE, warmup=2)
    assert np.isnan(det.rate_per_min).all() and np.isnan(det.level).all()
    det.update(ReadingBatch.from_columns([1, 1, 1], T0 + np.arange(3) * 60_000,
                                         [10.0, 11.0, 12.0]))
    assert det.rate_per_min.shape == (M,) and det.rate_per_min[1] > 0
    assert np.isnan(det.rate_per_min[0]) and det.level[1] > 10.0
