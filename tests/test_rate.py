"""Rate-of-change detector: contract (reference, chunks, state, NaN rules) and behaviour."""

from __future__ import annotations

import itertools
import math
import pickle
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import Detector
from detectors.rate import SCALE_READINGS, SETTLE_READINGS, RateOfChangeDetector
from model.batch import ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable
from tests.plants import small_plant

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
T0 = 1_700_000_000_000

Reading = tuple[int, int, float]  # sensor, ts (ms), value


# -- a plain per-reading reference of the robust Holt filter ---------------------------
@dataclass
class _SensorRef:
    level: float = 0.0
    slope: float = 0.0
    scale: float = 0.0
    excess: float = 0.0
    last_ts: int = 0
    count: int = 0


class RefHolt:
    """The recursion of ``detectors.rate`` written out for one reading at a time.

    ``read`` returns ``(level, slope_per_s, scale, dt_s)`` after a scored
    reading and ``None`` for a reading that gets no score. Arithmetic is done
    in the same order as the vectorized code, so results agree to the bit.
    """

    def __init__(
        self, m: int, *, tau_level_s: float, tau_slope_s: float, clip_sigmas: float,
        warmup: int,
    ) -> None:
        self.sensors = [_SensorRef() for _ in range(m)]
        self.tau_level_s, self.tau_slope_s = tau_level_s, tau_slope_s
        self.clip_sigmas, self.warmup = clip_sigmas, warmup

    def read(self, s: int, ts: int, x: float) -> tuple[float, float, float, float] | None:
        z = self.sensors[s]
        if not math.isfinite(x):
            return None
        if z.count == 0:
            z.level, z.slope, z.scale, z.excess = x, 0.0, 0.0, 0.0
            z.count, z.last_ts = 1, ts
            return None
        if ts <= z.last_ts:
            return None
        dt = (ts - z.last_ts) * 1e-3
        decay = float(np.exp(max(dt * (-1.0 / self.tau_level_s), -40.0)))
        alpha = 1.0 - decay
        if self.tau_slope_s == self.tau_level_s:
            beta = alpha
        else:
            beta = 1.0 - float(np.exp(max(dt * (-1.0 / self.tau_slope_s), -40.0)))
        pred = z.slope * dt + z.level + 1e-150
        e = x - pred
        young = z.count < self.warmup
        lim = math.inf if young else z.scale * (self.clip_sigmas / decay)
        clipped = min(max(e, -lim), lim)
        over = e - clipped
        used = e if over * z.excess > 0 else clipped  # same-side overshoot twice: pass
        z.excess = over
        # The first readings: level and scale are running means (when that
        # weighs more than the time constant would).
        settling = z.count < SETTLE_READINGS
        level_gain = max(alpha, 1.0 / (z.count + 1)) if settling else alpha
        z.level = pred + used * level_gain
        z.slope = z.slope + used * alpha * (beta / dt)
        gain = max(1 / SCALE_READINGS, 1.0 / z.count)
        z.scale = max(z.scale + (abs(used) - z.scale) * gain, 1e-100)
        scored = z.count >= self.warmup
        z.count = min(z.count + 1, max(self.warmup, SETTLE_READINGS))
        z.last_ts = ts
        return (z.level, z.slope, z.scale, dt) if scored else None


def reference_rates(
    stream: list[Reading], *, tau_s: float = 30.0, clip_sigmas: float = 3.0, warmup: int = 5
) -> npt.NDArray[np.float64]:
    ref = RefHolt(M, tau_level_s=tau_s, tau_slope_s=tau_s, clip_sigmas=clip_sigmas,
                  warmup=warmup)
    out = []
    for s, ts, x in stream:
        r = ref.read(s, ts, x)
        out.append(np.nan if r is None else r[1] * 60.0)
    return np.array(out, np.float64)


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


def one_reading_per_sensor_and_ts(stream: list[Reading]) -> list[Reading]:
    """Drop repeated (sensor, ts) pairs: then the row order of a batch cannot matter."""
    first = {(s, ts): i for i, (s, ts, _) in reversed(list(enumerate(stream)))}
    return [r for i, r in enumerate(stream) if first[(r[0], r[1])] == i]


def run(det: RateOfChangeDetector, stream: list[Reading], cuts: list[int]) -> np.ndarray:
    """Feed ``stream`` in chunks split at ``cuts``; scores in stream order."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    parts = [det.update(as_batch(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- the contract ----------------------------------------------------------------------
def test_is_a_detector_with_int64_float64_state() -> None:
    det = RateOfChangeDetector(TABLE)
    assert isinstance(det, Detector)
    state = det.get_state()
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


@settings(max_examples=200, deadline=None)
@given(streams(), st.lists(st.integers(0, 250), max_size=6))
def test_chunk_invariance(stream: list[Reading], cuts: list[int]) -> None:
    runs = {
        "all": [],
        "ones": list(range(len(stream))),
        "sevens": list(range(0, len(stream), 7)),
        "random": cuts,
    }
    results = {}
    for name, c in runs.items():
        det = RateOfChangeDetector(TABLE, warmup=2)
        results[name] = (run(det, stream, c), det.get_state())
    scores, state = results["all"]
    for name, (s2, state2) in results.items():
        np.testing.assert_array_equal(s2, scores, err_msg=name)
        assert_same_state(state2, state)


@settings(max_examples=100, deadline=None)
@given(streams(), st.integers(0, 250))
def test_state_round_trip_and_pickle_mid_stream(stream: list[Reading], cut: int) -> None:
    first, rest = stream[:cut], stream[cut:]
    det = RateOfChangeDetector(TABLE, warmup=2)
    det.update(as_batch(first))
    restored = RateOfChangeDetector(TABLE, warmup=2)
    restored.set_state(det.get_state())
    pickled = pickle.loads(pickle.dumps(det))
    want = det.update(as_batch(rest))
    for other in (restored, pickled):
        np.testing.assert_array_equal(other.update(as_batch(rest)), want)
        assert_same_state(other.get_state(), det.get_state())


@settings(max_examples=100, deadline=None)
@given(streams())
def test_batch_not_mutated_and_rows_permute(stream: list[Reading]) -> None:
    stream = one_reading_per_sensor_and_ts(stream)
    batch = as_batch(stream)
    copies = [a.copy() for a in (batch.sensor, batch.ts, batch.value, batch.quality)]
    scores = RateOfChangeDetector(TABLE, warmup=2).update(batch)
    for a, b in zip(copies, (batch.sensor, batch.ts, batch.value, batch.quality), strict=True):
        np.testing.assert_array_equal(a, b)
    perm = np.random.default_rng(len(stream)).permutation(len(stream))
    permuted = RateOfChangeDetector(TABLE, warmup=2).update(batch.take(perm))
    np.testing.assert_array_equal(permuted, scores[perm])


def test_late_and_duplicate_readings_score_nan_and_do_not_move_state() -> None:
    det = RateOfChangeDetector(TABLE, warmup=2)
    ts = T0 + np.arange(10) * 1000
    det.update(ReadingBatch.from_columns(np.zeros(10), ts, 20.0 + np.arange(10.0)))
    before = det.get_state()
    late = ReadingBatch.from_columns([0, 0, 0], [ts[-1], ts[3], ts[0] - 1], [99.0, -5.0, 0.0])
    assert np.isnan(det.update(late)).all()
    assert_same_state(det.get_state(), before)


def test_non_finite_values_score_nan_and_do_not_move_state() -> None:
    det = RateOfChangeDetector(TABLE, warmup=2)
    ts = T0 + np.arange(10) * 1000
    det.update(ReadingBatch.from_columns(np.zeros(10), ts, np.arange(10.0)))
    before = det.get_state()
    bad = ReadingBatch.from_columns([0, 0], [ts[-1] + 1000, ts[-1] + 2000], [np.nan, np.inf])
    assert np.isnan(det.update(bad)).all()
    assert_same_state(det.get_state(), before)


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


def test_bad_parameters_and_foreign_state_are_refused() -> None:
    with pytest.raises(ValueError, match="tau_level_s"):
        RateOfChangeDetector(TABLE, tau_s=0.0)
    with pytest.raises(ValueError, match="warmup"):
        RateOfChangeDetector(TABLE, warmup=1)
    other = RateOfChangeDetector(SensorTable.from_config(_temperature_plant(2)))
    with pytest.raises(ValueError, match="different sensor table"):
        RateOfChangeDetector(TABLE).set_state(other.get_state())


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
