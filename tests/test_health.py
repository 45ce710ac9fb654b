"""Sensor-fault detectors (stuck, range, spike, no data) and the rounds they share.

The contract of detectors/base.py (chunk invariance, state round trip and
pickle, input untouched, permutation, late readings, equality with the plain
per-reading references of detectors/reference.py) is checked for every
declared detector by tests/test_detector_contract.py. Here: the reference
with parameters the contract does not use, the rounds, and what each
detector is for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors.health import NoDataDetector, RangeDetector, SpikeDetector, StuckDetector
from detectors.reference import NoDataRef, PerSensorReference, RangeRef, SpikeRef, StuckRef
from detectors.rounds import RoundDetector, order_by_sensor_time, sensor_rounds
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from tests.plants import small_plant

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
T0 = 1_764_000_000_000  # ms since the epoch: real magnitudes, where float(ts) matters
LEL = TABLE.index["LEL-1"]

Reading = tuple[int, int, float]
Stream = list[Reading]


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


def as_batch(stream: Sequence[Reading]) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12, err_msg=k)


def assert_scores(got: np.ndarray, want: Sequence[float]) -> None:
    want_arr = np.array(want, float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want_arr))
    np.testing.assert_allclose(got, want_arr, rtol=1e-12, atol=1e-12)


def check_reference(make: Callable[[], RoundDetector], ref: PerSensorReference,
                    stream: Stream) -> None:  # fmt: skip
    det = make()
    assert_scores(det.update(as_batch(stream)), ref.run(stream))
    assert_same_state(det.get_state(), ref.state())


# -- the detectors and their references ---------------------------------------------

CASES: dict[str, tuple[Callable[[], RoundDetector], Callable[[], PerSensorReference]]] = {
    "stuck": (lambda: StuckDetector(TABLE), lambda: StuckRef(TABLE)),
    "stuck-tol": (lambda: StuckDetector(TABLE, tolerance=1.0),
                  lambda: StuckRef(TABLE, tolerance=1.0)),
    "range": (lambda: RangeDetector(TABLE), lambda: RangeRef(TABLE)),
    "spike": (lambda: SpikeDetector(TABLE, tau_s=5.0, warmup=3),
              lambda: SpikeRef(TABLE, tau_s=5.0, warmup=3)),
    "nodata": (lambda: NoDataDetector(TABLE), lambda: NoDataRef(TABLE)),
}
"""Each detector with its reference (benchmarks/detector_throughput.py times them); the
contract checks the declared ones, so only ``stuck-tol`` is checked here."""


@settings(max_examples=120, deadline=None)
@given(stream=readings)
def test_stuck_with_a_tolerance_equals_reference_in_any_row_order(stream: Stream) -> None:
    make, ref = CASES["stuck-tol"]
    check_reference(make, ref(), stream)


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
