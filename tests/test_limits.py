"""Contract tests of the limit detector: reference equality, chunk invariance, state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import ReadingBatch
from detectors.limits import LimitDetector, order_by_sensor_time
from detectors.sensor_table import SensorTable
from tests.plants import small_plant

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)


def reference(stream: list[tuple[int, int, float]]) -> list[tuple[int, int, int, int, int]]:
    """Plain per-reading implementation: (sensor, ts, side, old, new) per change."""
    hi = [0] * M
    lo = [0] * M
    last = [None] * M
    out = []
    for s, ts, v in sorted(stream, key=lambda r: (r[0], r[1])):
        if last[s] is not None and ts <= last[s]:
            continue
        last[s] = ts
        db = TABLE.deadband[s]
        h, hh, low, ll = TABLE.h[s], TABLE.hh[s], TABLE.l[s], TABLE.ll[s]
        entered = (1 if v >= h else 0) + (1 if v >= hh else 0)
        held = (1 if v >= h - db else 0) + (1 if v >= hh - db else 0)
        new_hi = max(entered, min(hi[s], held))
        entered = (1 if v <= low else 0) + (1 if v <= ll else 0)
        held = (1 if v <= low + db else 0) + (1 if v <= ll + db else 0)
        new_lo = max(entered, min(lo[s], held))
        if new_hi != hi[s]:
            out.append((s, ts, 1, hi[s], new_hi))
        if new_lo != lo[s]:
            out.append((s, ts, -1, lo[s], new_lo))
        hi[s], lo[s] = new_hi, new_lo
    return sorted(out)


def as_batch(stream: list[tuple[int, int, float]]) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def changes(det: LimitDetector, batch: ReadingBatch) -> list[tuple[int, int, int, int, int]]:
    tr = det.update(batch)
    return list(zip(tr.sensor.tolist(), tr.ts.tolist(), tr.side.tolist(),
                    tr.old_level.tolist(), tr.new_level.tolist(), strict=True))


readings = st.lists(
    st.tuples(
        st.integers(0, M - 1),
        st.integers(0, 200),
        # values around every limit of the table, plus exact limit values and 0.0
        st.one_of(st.floats(-10, 1100, allow_nan=False),
                  st.sampled_from([0.0, 19.0, 20.0, 25.0, 23.0, 50.0, 48.0, 19.5, 23.5,
                                   100.0, 50.0, 800.0, 900.0, 7.1, 14.1])),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(stream=readings)
def test_one_batch_in_any_order_equals_reference(stream) -> None:
    """Within a batch, readings are processed per sensor in time order, whatever order
    they arrived in; across batches a reading older than the last one is ignored."""
    assert sorted(changes(LimitDetector(TABLE), as_batch(stream))) == reference(stream)


@settings(max_examples=150, deadline=None)
@given(stream=readings, size=st.sampled_from([1, 7, 10_000]))
def test_chunk_invariance_time_ordered(stream, size) -> None:
    stream = sorted(stream, key=lambda r: r[1])
    whole = LimitDetector(TABLE)
    expected = sorted(changes(whole, as_batch(stream)))
    assert expected == reference(stream)
    chunked = LimitDetector(TABLE)
    got = []
    for i in range(0, len(stream), size):
        got += changes(chunked, as_batch(stream[i : i + size]))
    assert sorted(got) == expected
    for name, arr in whole.get_state().items():
        np.testing.assert_array_equal(arr, chunked.get_state()[name])


@settings(max_examples=60, deadline=None)
@given(stream=readings, cut=st.integers(0, 120))
def test_state_round_trip_and_pickle(stream, cut) -> None:
    stream = sorted(stream, key=lambda r: r[1])
    a = LimitDetector(TABLE)
    first = changes(a, as_batch(stream[:cut]))
    b = LimitDetector(TABLE)
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    rest = as_batch(stream[cut:])
    assert changes(a, rest) == changes(b, rest)
    assert sorted(first + changes(LimitDetector(TABLE), ReadingBatch.empty())) == sorted(first)


def test_input_not_mutated_and_permutation() -> None:
    rng = np.random.default_rng(3)
    n = 300
    batch = ReadingBatch.from_columns(
        rng.integers(0, M, n), np.sort(rng.integers(0, 10_000, n)), rng.uniform(0, 1000, n)
    )
    copy = ReadingBatch(batch.sensor.copy(), batch.ts.copy(), batch.value.copy(),
                        batch.quality.copy())
    det = LimitDetector(TABLE)
    out1 = sorted(changes(det, batch))
    for a, b in zip((batch.sensor, batch.ts, batch.value, batch.quality),
                    (copy.sensor, copy.ts, copy.value, copy.quality), strict=True):
        np.testing.assert_array_equal(a, b)
    perm = rng.permutation(n)
    out2 = sorted(changes(LimitDetector(TABLE), batch.take(perm)))
    assert out1 == out2


def test_deadband_hysteresis_and_zero_reading() -> None:
    lel = TABLE.index["LEL-1"]  # 25/50 preset, deadband 2
    det = LimitDetector(TABLE)
    vals = [0.0, 25.0, 60.0, 49.0, 47.9, 24.0, 23.0, 22.9, 0.0]
    tr = det.update(ReadingBatch.from_columns([lel] * 9, range(9), vals))
    assert list(zip(tr.ts.tolist(), tr.old_level.tolist(), tr.new_level.tolist(),
                    strict=True)) == [(1, 0, 1), (2, 1, 2), (4, 2, 1), (7, 1, 0)]


def test_late_and_duplicate_readings_do_not_move_state() -> None:
    lel = TABLE.index["LEL-1"]
    det = LimitDetector(TABLE)
    det.update(ReadingBatch.from_columns([lel], [100], [30.0]))
    tr = det.update(ReadingBatch.from_columns([lel, lel], [50, 100], [0.0, 0.0]))
    assert len(tr) == 0
    assert det.high_level[lel] == 1


def test_low_side_oxygen() -> None:
    o2 = TABLE.index["O2-1"]
    det = LimitDetector(TABLE)
    tr = det.update(ReadingBatch.from_columns([o2] * 3, [1, 2, 3], [20.9, 19.4, 24.0]))
    got = set(zip(tr.ts.tolist(), tr.side.tolist(), tr.new_level.tolist(), strict=True))
    assert got == {(2, -1, 1), (3, -1, 0), (3, 1, 1)}


def test_set_state_rejects_wrong_shape() -> None:
    det = LimitDetector(TABLE)
    state = det.get_state()
    state["last_ts"] = state["last_ts"][:2]
    with pytest.raises(ValueError, match="different sensor table"):
        det.set_state(state)


def test_rounds_group_each_sensor_once() -> None:
    sensor = np.array([2, 0, 2, 2, 0], np.int32)
    ts = np.array([5, 1, 3, 4, 0], np.int64)
    order, bounds = order_by_sensor_time(sensor, ts)
    rounds = [order[bounds[k]:bounds[k + 1]].tolist() for k in range(len(bounds) - 1)]
    assert rounds == [[4, 2], [1, 3], [0]]
