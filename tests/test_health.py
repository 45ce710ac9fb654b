"""Sensor-fault detectors (stuck, range, spike, no data) and the rounds they share.

Each detector is checked against a plain per-reading Python reference of the
same logic (hypothesis streams, any row order, late/duplicate/NaN readings),
and for the contract of detectors/base.py: chunk invariance, state round-trip
and pickle, input not mutated, permutation, late readings, warm-up. The
contract helpers here are reused by tests/test_drift.py.
"""

from __future__ import annotations

import itertools
import math
import pickle
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors.base import Detector
from detectors.health import NoDataDetector, RangeDetector, SpikeDetector, StuckDetector
from detectors.rounds import NO_TS, RoundDetector, order_by_sensor_time, sensor_rounds
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from tests.plants import small_plant

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
T0 = 1_764_000_000_000  # ms since the epoch: real magnitudes, where float(ts) matters
LEL = TABLE.index["LEL-1"]

Reading = tuple[int, int, float]
Stream = list[Reading]


# -- the plain reference walk ------------------------------------------------------


class Reference:
    """Per-reading reference: readings per sensor in (ts, row) order, one at a time.

    Subclasses give ``fields`` (name → initial value) and ``first``/``step``,
    which read and write ``self.st[name][sensor]``.
    """

    fields: ClassVar[dict[str, float | int]] = {}

    def __init__(self) -> None:
        self.st: dict[str, list[Any]] = {k: [v] * M for k, v in self.fields.items()}
        self.st["last_ts"] = [NO_TS] * M

    def run(self, stream: Sequence[Reading]) -> list[float]:
        out = [math.nan] * len(stream)
        for i in sorted(range(len(stream)), key=lambda i: (stream[i][0], stream[i][1])):
            s, ts, v = stream[i]
            last = self.st["last_ts"][s]
            if not math.isfinite(v) or ts <= last:
                continue  # late, duplicate or not a number: NaN, no state change
            out[i] = self.first(s, ts, v) if last == NO_TS else self.step(s, ts, v, last)
            self.st["last_ts"][s] = ts
        return out

    def first(self, s: int, ts: int, v: float) -> float:
        raise NotImplementedError

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        return {k: np.array(v, np.int64 if isinstance(self.fields.get(k, 0), int) else float)
                for k, v in self.st.items()}


def span(s: int) -> float:
    return float(TABLE.range_hi[s]) - float(TABLE.range_lo[s])


class StuckRef(Reference):
    fields: ClassVar[dict[str, float | int]] = {"anchor": 0.0, "run_start": 0}

    def __init__(self, tolerance: float | None = None) -> None:
        super().__init__()
        self.tol = [1e-5 * span(s) if tolerance is None else tolerance for s in range(M)]

    def first(self, s: int, ts: int, v: float) -> float:
        self.st["anchor"][s] = v
        self.st["run_start"][s] = ts
        return 0.0

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        if abs(v - self.st["anchor"][s]) > self.tol[s]:
            self.st["anchor"][s] = v
            self.st["run_start"][s] = ts
        return float((ts - self.st["run_start"][s]) * 1e-3)


class RangeRef(Reference):
    def __init__(self, margin_fraction: float = 0.02) -> None:
        super().__init__()
        self.margin = margin_fraction

    def first(self, s: int, ts: int, v: float) -> float:
        return self.step(s, ts, v, ts)

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        lo, hi, w = float(TABLE.range_lo[s]), float(TABLE.range_hi[s]), span(s)
        low, high = lo - self.margin * w, hi + self.margin * w
        return max(max(low - v, v - high), 0.0) * (1.0 / w)


def sign(x: float) -> float:
    return float(x > 0) - float(x < 0)


class SpikeRef(Reference):
    fields: ClassVar[dict[str, float | int]] = {"median": 0.0, "mad": 0.0, "count": 0}
    MEAN_ABS_TO_MAD = 0.6744897501960817 / math.sqrt(2 / math.pi)

    def __init__(self, tau_s: float = 300.0, warmup: int = 30,
                 mad_floor_fraction: float = 4e-3) -> None:
        super().__init__()
        self.tau, self.warmup = tau_s, warmup
        self.floor = [mad_floor_fraction * span(s) for s in range(M)]

    def first(self, s: int, ts: int, v: float) -> float:
        self.st["median"][s], self.st["mad"][s], self.st["count"][s] = v, 0.0, 1
        return math.nan

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        med, mad, n = self.st["median"][s], self.st["mad"][s], self.st["count"][s]
        dt_ms = ts - last
        alpha = dt_ms / (dt_ms + 1000.0 * self.tau)
        sigma = max(mad, self.floor[s]) * 1.4826
        resid = v - med
        dev = abs(resid)
        if n < self.warmup:  # plain running mean and mean absolute deviation
            med = med + resid / (n + 1.0)
            mad = mad + (dev * (self.MEAN_ABS_TO_MAD * math.sqrt(n / (n + 1.0))) - mad) / n
            score = math.nan
        else:  # sign (stochastic-approximation) updates
            score = dev / sigma
            med = med + sigma * alpha * math.sqrt(math.pi / 2) * sign(resid)
            mad = max(mad * (sign(dev - mad) * alpha + 1.0), self.floor[s])
        self.st["median"][s], self.st["mad"][s], self.st["count"][s] = med, mad, n + 1
        return score


class NoDataRef(Reference):
    def first(self, s: int, ts: int, v: float) -> float:
        return 0.0

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        return 0.0


# -- streams ------------------------------------------------------------------------

VALUES = st.one_of(
    st.floats(-60, 1100, allow_nan=False),
    # repeated values (flat runs), exact zero, range ends, margins, a huge spike, NaN
    st.sampled_from([0.0, 0.0, 0.0, 1.0, 3.5, 3.5, 4.5, 20.9, 100.0, 102.0, 102.5, -2.0,
                     -2.5, 25.0, 1000.0, 1e6, math.nan]),
)
readings = st.lists(
    st.tuples(st.integers(0, M - 1), st.integers(0, 600_000).map(lambda t: T0 + t), VALUES),
    max_size=80,
)


def time_ordered(stream: Stream) -> Stream:
    return sorted(stream, key=lambda r: r[1])


def as_batch(stream: Sequence[Reading]) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def feed(det: Detector, stream: Stream, cuts: Sequence[int]) -> np.ndarray:
    """Scores of ``stream`` fed in the chunks that ``cuts`` mark."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(stream)), len(stream)]
    parts = [det.update(as_batch(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray], exact: bool) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12, err_msg=k)


def assert_scores(got: np.ndarray, want: Sequence[float]) -> None:
    want_arr = np.array(want, float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want_arr))
    np.testing.assert_allclose(got, want_arr, rtol=1e-12, atol=1e-12)


# -- the contract, for any detector -----------------------------------------------


def check_reference(make: Callable[[], RoundDetector], ref: Reference, stream: Stream) -> None:
    det = make()
    assert_scores(det.update(as_batch(stream)), ref.run(stream))
    assert_same_state(det.get_state(), ref.state(), exact=False)


def check_chunks(make: Callable[[], RoundDetector], stream: Stream, cuts: Sequence[int]) -> None:
    stream = time_ordered(stream)
    whole = make()
    expected = whole.update(as_batch(stream))
    for chunking in ([*range(len(stream))], [*range(0, len(stream), 7)], cuts):
        det = make()
        np.testing.assert_array_equal(feed(det, stream, chunking), expected)
        assert_same_state(det.get_state(), whole.get_state(), exact=True)


def check_round_trip(make: Callable[[], RoundDetector], stream: Stream, cut: int) -> None:
    stream = time_ordered(stream)
    a = make()
    a.update(as_batch(stream[:cut]))
    b = make()
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    a.set_state(a.get_state())
    rest = as_batch(stream[cut:])
    np.testing.assert_array_equal(a.update(rest), b.update(rest))
    assert_same_state(a.get_state(), b.get_state(), exact=True)


def check_not_mutated_and_permutation(make: Callable[[], RoundDetector], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    sensor = rng.integers(0, M, n)
    ts = T0 + rng.choice(10_000_000, n, replace=False)  # distinct: order per sensor is clear
    value = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(-10, 120, n))
    batch = ReadingBatch.from_columns(sensor, ts, value)
    copies = [a.copy() for a in (batch.sensor, batch.ts, batch.value, batch.quality)]
    scores = make().update(batch)
    for a, c in zip((batch.sensor, batch.ts, batch.value, batch.quality), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    perm = rng.permutation(n)
    np.testing.assert_array_equal(make().update(batch.take(perm)), scores[perm])


def check_late_readings(make: Callable[[], RoundDetector], warm: int) -> None:
    det = make()
    values = [0.0, 1.0, 0.0, 2.0, 0.5] * (warm // 5 + 2)
    det.update(as_batch([(LEL, T0 + 1000 * i, v) for i, v in enumerate(values)]))
    before = det.get_state()
    last = T0 + 1000 * (len(values) - 1)
    late = det.update(as_batch([(LEL, last, 99.0), (LEL, last - 1, 7.0), (LEL, T0, 0.0),
                                (LEL, last + 5, math.nan)]))
    assert np.isnan(late).all()
    assert_same_state(det.get_state(), before, exact=True)


def check_state_rejects_other_table(make: Callable[[], RoundDetector]) -> None:
    det = make()
    state = det.get_state()
    state["last_ts"] = state["last_ts"][:2]
    with pytest.raises(ValueError, match="different sensor table"):
        det.set_state(state)
    with pytest.raises(ValueError, match="lacks"):
        det.set_state({})


# -- the four detectors through the contract -------------------------------------

CASES: dict[str, tuple[Callable[[], RoundDetector], Callable[[], Reference]]] = {
    "stuck": (lambda: StuckDetector(TABLE), StuckRef),
    "stuck-tol": (lambda: StuckDetector(TABLE, tolerance=1.0), lambda: StuckRef(1.0)),
    "range": (lambda: RangeDetector(TABLE), RangeRef),
    "spike": (lambda: SpikeDetector(TABLE, tau_s=5.0, warmup=3),
              lambda: SpikeRef(tau_s=5.0, warmup=3)),
    "nodata": (lambda: NoDataDetector(TABLE), NoDataRef),
}
case = pytest.mark.parametrize("name", list(CASES))


@case
@settings(max_examples=120, deadline=None)
@given(stream=readings)
def test_equals_reference_in_any_row_order(name: str, stream: Stream) -> None:
    make, ref = CASES[name]
    check_reference(make, ref(), stream)


@case
@settings(max_examples=60, deadline=None)
@given(stream=readings, cuts=st.lists(st.integers(0, 80), max_size=8))
def test_chunk_invariance(name: str, stream: Stream, cuts: list[int]) -> None:
    check_chunks(CASES[name][0], stream, cuts)


@case
@settings(max_examples=40, deadline=None)
@given(stream=readings, cut=st.integers(0, 80))
def test_state_round_trip_and_pickle(name: str, stream: Stream, cut: int) -> None:
    check_round_trip(CASES[name][0], stream, cut)


@case
def test_input_not_mutated_and_permutation(name: str) -> None:
    check_not_mutated_and_permutation(CASES[name][0], seed=len(name))


@case
def test_late_duplicate_and_nan_readings_change_nothing(name: str) -> None:
    check_late_readings(CASES[name][0], warm=3)


@case
def test_state_from_another_table_is_refused(name: str) -> None:
    check_state_rejects_other_table(CASES[name][0])


def test_every_detector_keeps_the_protocol() -> None:
    for make, _ in CASES.values():
        assert isinstance(make(), Detector)


# -- rounds -----------------------------------------------------------------------

layouts = st.sampled_from(["any", "tile", "repeat", "tile-shuffled", "repeat-shuffled",
                           "tile-cut", "repeat-cut", "tile-shuffled-cut"])


@settings(max_examples=200, deadline=None)
@example(layout="any", per=1, width=1, data=None,  # blocks guessed from a rising start
         stream=[(s, T0 + i // 5, 0.0) for i, s in enumerate([0, 1, 2, 3, 0, 0, 1, 2, 3, 0])])
@given(layout=layouts, per=st.integers(1, 4), width=st.integers(1, M),
       stream=readings, data=st.data())
def test_rounds_are_the_rounds_of_order_by_sensor_time(
    layout: str, per: int, width: int, stream: Stream, data: st.DataObject
) -> None:
    if layout == "any":
        batch = as_batch(stream)
    else:
        sensors = data.draw(st.permutations(range(M)))[:width]
        if "shuffled" not in layout:
            sensors = sorted(sensors)
        times = data.draw(st.lists(st.integers(0, 3), min_size=per, max_size=per))
        if layout.startswith("tile"):
            grid = [(s, T0 + t) for t in times for s in sensors]
        else:
            grid = [(s, T0 + t) for s in sensors for t in times]
        if layout.endswith("cut"):  # not quite the layout: the last readings missing
            grid = grid[: len(grid) - data.draw(st.integers(1, len(grid)))]
        batch = as_batch([(s, t, 0.0) for s, t in grid])
    order, bounds = order_by_sensor_time(batch.sensor, batch.ts)
    want = [sorted(order[bounds[k]:bounds[k + 1]].tolist()) for k in range(len(bounds) - 1)]
    got = []
    for r in sensor_rounds(batch):
        rows = np.arange(len(batch))[r.rows]
        sens = np.arange(M)[r.sensors]
        np.testing.assert_array_equal(batch.sensor[rows], sens)  # rows match their sensors
        np.testing.assert_array_equal(batch.ts[rows], r.ts)
        np.testing.assert_array_equal(batch.value[rows], r.value)
        assert r.finite == bool(np.isfinite(r.value).all())
        got.append(sorted(rows.tolist()))
    assert got == want


def test_a_full_round_in_sensor_order_is_a_slice() -> None:
    batch = as_batch([(s, T0, 1.0) for s in range(M)] + [(s, T0 + 1, 1.0) for s in range(M)])
    rounds = sensor_rounds(batch)
    assert [r.sensors for r in rounds] == [slice(0, M), slice(0, M)]
    assert sensor_rounds(batch) is rounds  # planned once per batch
    shuffled = as_batch([(s, T0, 1.0) for s in (3, 0, 4, 1, 2)])
    (r,) = sensor_rounds(shuffled)
    assert r.sensors == slice(0, M)
    np.testing.assert_array_equal(shuffled.sensor[r.rows], np.arange(M))


# -- behaviour ----------------------------------------------------------------------


def lel_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """0.5 ± 0.3 %LEL background, clipped at 0 as a gas head reads it."""
    return np.maximum(0.5 + 0.3 * rng.standard_normal(n), 0.0)


def one_sensor(sensor: int, seconds: np.ndarray, values: np.ndarray) -> ReadingBatch:
    return ReadingBatch.from_columns(np.full(len(values), sensor), T0 + 1000 * seconds, values)


def test_stuck_flatlined_gas_sensor_flagged_noisy_one_never() -> None:
    rng = np.random.default_rng(11)
    det = StuckDetector(TABLE)
    assert det.min_stuck_s == 600.0
    t = np.arange(3600)
    flat = np.r_[lel_noise(rng, 1200), np.full(2400, 12.3)]  # frozen from t = 1200 s
    noisy = np.round(lel_noise(rng, 3600), 1)  # quantized: repeats are common
    lel2 = TABLE.index["LEL-2"]
    batch = ReadingBatch.concat([one_sensor(LEL, t, flat), one_sensor(lel2, t, noisy)])
    score = det.update(batch)
    s_flat, s_noisy = score[:3600], score[3600:]
    flagged = np.flatnonzero(s_flat >= det.min_stuck_s)
    assert flagged[0] == 1200 + 600
    np.testing.assert_allclose(s_flat[1200:], np.arange(2400))
    assert s_flat[:1200].max() < 5
    assert s_noisy.max() < 10  # a noisy sensor never looks stuck


def test_stuck_creep_in_small_steps_is_movement() -> None:
    det = StuckDetector(TABLE, tolerance=0.05)
    creep = 10.0 + 0.02 * np.arange(100)  # each step under the tolerance
    score = det.update(one_sensor(LEL, np.arange(100), creep))
    assert score.max() < 3


def test_range_above_and_below_flagged() -> None:
    det = RangeDetector(TABLE)  # LEL-1: 0–100 %LEL, margin 2 %
    values = [50.0, 0.0, 100.0, 101.9, 102.5, 150.0, -1.0, -2.5, -10.0]
    score = det.update(one_sensor(LEL, np.arange(len(values)), np.array(values)))
    np.testing.assert_allclose(score, [0, 0, 0, 0, 0.005, 0.48, 0, 0.005, 0.08], atol=1e-12)
    pt = TABLE.index["PT-1"]  # 0–1000 kPa: span units, not kPa
    assert det.update(one_sensor(pt, np.array([0]), np.array([1120.0])))[0] == pytest.approx(0.1)


def test_spike_scores_high_next_reading_low_and_noise_rarely_above_6() -> None:
    rng = np.random.default_rng(3)
    det = SpikeDetector(TABLE)
    n = 3000
    v = 5.0 + 1.0 * rng.standard_normal(n)  # noise above the MAD floor (0.4 %LEL)
    v[2000] = 5.0 + 20 * 1.0  # a 20σ spike
    score = det.update(one_sensor(LEL, np.arange(n), v))
    assert np.isnan(score[:30]).all() and not np.isnan(score[30:]).any()
    assert score[2000] > 15
    assert score[2001] < 4
    np.testing.assert_allclose(det.mad[LEL] * 1.4826, 1.0, rtol=0.2)
    assert abs(det.median[LEL] - 5.0) < 0.3

    # a day of steady 1 Hz noise on three sensors: z > 6 is (almost) never seen
    det = SpikeDetector(TABLE)
    sensors = [LEL, TABLE.index["LEL-2"], TABLE.index["H2S-1"]]
    day = 86_400
    exceed = 0
    for start in range(0, day, 3600):
        t = np.arange(start, start + 3600)
        batch = ReadingBatch.concat([one_sensor(s, t, 0.5 + 0.3 * rng.standard_normal(3600))
                                     for s in sensors])
        exceed += int(np.sum(det.update(batch) > 6))
    assert exceed <= 3  # of 259,200 readings


def test_spike_zero_noise_sensor_does_not_divide_by_zero() -> None:
    det = SpikeDetector(TABLE, warmup=5)
    values = np.r_[np.zeros(50), 0.1, np.zeros(5)]  # quantized to 0.1, reads 0.0
    score = det.update(one_sensor(LEL, np.arange(len(values)), values))
    assert np.isfinite(score[5:]).all()
    assert score[50] == pytest.approx(0.1 / (1.4826 * 0.4))  # the floor: 4e-3 of 100 %LEL


def test_warm_up_counts_readings_even_at_exactly_zero() -> None:
    det = SpikeDetector(TABLE, warmup=4)
    score = det.update(one_sensor(LEL, np.arange(6), np.zeros(6)))
    assert np.isnan(score[:4]).all() and (score[4:] == 0.0).all()
    assert det.count[LEL] == 6


def test_nodata_check_grows_with_clock_resets_on_reading_nan_never_seen() -> None:
    det = NoDataDetector(TABLE, max_gap_s=[60.0, 30.0, 60.0, 60.0, 10.0])
    assert np.isnan(det.check(T0)).all()
    assert (det.update(one_sensor(LEL, np.array([0, 5]), np.array([0.0, 0.0]))) == 0.0).all()
    np.testing.assert_allclose(det.check(T0 + 65_000)[LEL], 60.0)
    np.testing.assert_allclose(det.check(T0 + 125_000)[LEL], 120.0)
    assert np.isnan(np.delete(det.check(T0 + 125_000), LEL)).all()
    det.update(one_sensor(LEL, np.array([130]), np.array([1.0])))
    np.testing.assert_allclose(det.check(T0 + 131_000)[LEL], 1.0)
    late = det.update(one_sensor(LEL, np.array([100]), np.array([1.0])))
    assert np.isnan(late).all()
    np.testing.assert_allclose(det.check(T0 + 131_000)[LEL], 1.0)
    np.testing.assert_array_equal(det.max_gap_s, [60.0, 30.0, 60.0, 60.0, 10.0])
