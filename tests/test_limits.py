"""Limit detector: its transitions against the plain reference, in any row order and in
chunks, across a resume; and the ISA-18.2 order deadband → on-delay → off-delay.

The contract on scores and state (chunks, state round trip, input, late readings,
the reference's scores and state) is tests/test_detector_contract.py's; the plain
reference is detectors/reference.py's.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.limits import POINTS, LimitDetector, order_by_sensor_time
from detectors.reference import LimitRef
from model.batch import ReadingBatch
from model.plant import parse_plant
from model.sensor_table import SensorTable
from tests.plants import small_plant, small_plant_data

TABLE = SensorTable.from_config(small_plant())
M = len(TABLE)
Change = tuple[int, int, int, bool]  # sensor, ts, point, active


def reference(stream: list[tuple[int, int, float]], table: SensorTable = TABLE) -> list[Change]:
    """Every change the plain per-reading reference decides, sorted."""
    ref = LimitRef(table)
    ref.run(stream)
    return sorted(ref.changes)


def as_batch(stream: list[tuple[int, int, float]]) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def changes(det: LimitDetector, batch: ReadingBatch) -> list[Change]:
    det.update(batch)
    tr = det.transitions
    return list(zip(tr.sensor.tolist(), tr.ts.tolist(), tr.condition.tolist(), tr.active.tolist(),
                    strict=True))


readings = st.lists(
    st.tuples(
        st.integers(0, M - 1),
        st.integers(0, 200),
        # values around every limit of the table, plus exact limit values and 0.0
        st.one_of(st.floats(-10, 1100, allow_nan=False),
                  st.sampled_from([0.0, 19.0, 20.0, 25.0, 23.0, 50.0, 48.0, 19.5, 23.5,
                                   100.0, 50.0, 800.0, 900.0, 7.1, 14.1, 799.0, 101.0])),
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
    whole_scores = whole.update(as_batch(stream))
    expected = sorted(zip(whole.transitions.sensor.tolist(), whole.transitions.ts.tolist(),
                          whole.transitions.condition.tolist(), whole.transitions.active.tolist(),
                          strict=True))
    assert expected == reference(stream)
    chunked = LimitDetector(TABLE)
    got: list[Change] = []
    scores = []
    for i in range(0, len(stream), size):
        part = as_batch(stream[i : i + size])
        got += changes(chunked, part)
        scores.append(chunked.update(ReadingBatch.empty()))  # empty batches are harmless
    assert sorted(got) == expected
    for name, arr in whole.get_state().items():
        np.testing.assert_array_equal(arr, chunked.get_state()[name])
    assert len(whole_scores) == len(stream)


@settings(max_examples=60, deadline=None)
@given(stream=readings, cut=st.integers(0, 120))
def test_transitions_resume_from_a_checkpoint(stream, cut) -> None:
    """Restored mid-stream (from a pickled state), the rest of the stream decides the
    same changes as it does without stopping."""
    stream = sorted(stream, key=lambda r: r[1])
    a = LimitDetector(TABLE)
    changes(a, as_batch(stream[:cut]))
    b = LimitDetector(TABLE)
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    rest = as_batch(stream[cut:])
    assert changes(b, rest) == changes(a, rest)


def test_deadband_hysteresis_and_zero_reading() -> None:
    lel = TABLE.index["LEL-1"]  # 25/50 preset, deadband 2
    det = LimitDetector(TABLE)
    vals = [0.0, 25.0, 60.0, 49.0, 47.9, 24.0, 23.0, 22.9, 0.0]
    got = changes(det, ReadingBatch.from_columns([lel] * 9, range(9), vals))
    h, hh = POINTS.index("h"), POINTS.index("hh")
    assert got == [(lel, 1, h, True), (lel, 2, hh, True), (lel, 4, hh, False),
                   (lel, 7, h, False)]


def test_on_and_off_delay_in_event_time() -> None:
    data = small_plant_data()
    sensor = data["sites"][0]["workshops"][0]["areas"][0]["sensors"][0]
    sensor.update(on_delay_s=5, off_delay_s=10)
    table = SensorTable.from_config(parse_plant(data))
    lel = table.index["LEL-1"]
    det = LimitDetector(table)
    ts = [0, 2000, 3000, 4000, 8000, 9000, 12000, 20000, 21000, 30000, 31000]
    vals = [30.0, 30.0, 10.0, 30.0, 30.0, 30.0, 5.0, 5.0, 30.0, 5.0, 5.0]
    #       raise run starts at 0, broken at 3000; restarts 4000, raise at 9000 (5 s);
    #       clear run starts 12000; broken at 21000; restarts 30000; not 10 s yet at 31000
    got = changes(det, ReadingBatch.from_columns([lel] * len(ts), ts, vals))
    assert got == [(lel, 9000, POINTS.index("h"), True)]
    got = changes(det, ReadingBatch.from_columns([lel, lel], [39999, 40000], [5.0, 5.0]))
    assert got == [(lel, 40000, POINTS.index("h"), False)]
    assert sorted(got) == [c for c in reference(
        list(zip([lel] * 13, [*ts, 39999, 40000], [*vals, 5.0, 5.0], strict=True)), table)
        if c[1] >= 39999]


def test_low_side_oxygen_and_scores() -> None:
    o2 = TABLE.index["O2-1"]
    det = LimitDetector(TABLE)
    scores = det.update(ReadingBatch.from_columns([o2] * 3, [1, 2, 3], [20.9, 19.4, 24.0]))
    assert sorted(c[1:] for c in changes(LimitDetector(TABLE), ReadingBatch.from_columns(
        [o2] * 3, [1, 2, 3], [20.9, 19.4, 24.0]))) == [
        (2, POINTS.index("l"), True), (3, POINTS.index("l"), False),
        (3, POINTS.index("h"), True)]
    # the nearer first-level limit decides: 20.9 is 1.4 inside l, 2.6 inside h
    np.testing.assert_allclose(scores, [19.5 - 20.9, 19.5 - 19.4, 24.0 - 23.5])


def test_rounds_group_each_sensor_once() -> None:
    sensor = np.array([2, 0, 2, 2, 0], np.int32)
    ts = np.array([5, 1, 3, 4, 0], np.int64)
    order, bounds = order_by_sensor_time(sensor, ts)
    rounds = [order[bounds[k]:bounds[k + 1]].tolist() for k in range(len(bounds) - 1)]
    assert rounds == [[4, 2], [1, 3], [0]]


def test_changes_of_one_round_are_reported_in_sensor_order() -> None:
    """A gateway may list its sensors in any order; the changes decided at one
    reading time come out by sensor, as they do when the readings come one by one."""
    with_h = [i for i in range(M) if not math.isnan(TABLE.h[i]) and TABLE.on_delay_ms[i] == 0]
    a, b = with_h[0], with_h[-1]
    assert a < b
    stream = []
    for k, ts in enumerate((1000, 2000, 3000)):
        # snapshots listing b before a: the batch is laid out as blocks of [b, a]
        above = k > 0
        stream += [(b, ts, float(TABLE.h[b]) + (1.0 if above else -5.0)),
                   (a, ts, float(TABLE.h[a]) + (1.0 if above else -5.0))]
    det = LimitDetector(TABLE)
    det.update(as_batch(stream))
    tr = det.transitions
    assert len(tr) >= 2, "both sensors cross their h limit"
    one_by_one = LimitDetector(TABLE)
    expected: list[Change] = []
    for reading in stream:
        expected += changes(one_by_one, as_batch([reading]))
    got = list(zip(tr.sensor.tolist(), tr.ts.tolist(), tr.condition.tolist(),
                   tr.active.tolist(), strict=True))
    # by time, then by sensor; one sensor's changes keep their order (stable sort)
    assert got == sorted(expected, key=lambda c: (c[1], c[0]))
    at_2000 = tr.sensor[tr.ts == 2000].tolist()
    assert at_2000[0] == a and b in at_2000  # a first, though b was listed first
