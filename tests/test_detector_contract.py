"""One contract suite over every registered detector (docs/style.md, "Tests").

Every detector must: give identical scores and final state whether a
time-ordered stream comes in chunks of 1, 7 or all at once; resume exactly
from ``set_state(get_state())`` and from a pickle; leave its input alone;
permute its scores with the rows of a batch; score NaN without moving for
late, duplicate and non-finite readings; and give the same scores when the
sensor table lists its sensors in another order. Each detector's own test file
checks its scores against a plain per-reading reference implementation.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.base import Detector
from detectors.drift import DriftDetector
from detectors.health import NoDataDetector, RangeDetector, SpikeDetector, StuckDetector
from detectors.limits import LimitDetector
from detectors.mspc import MspcDetector, PcaMonitor
from detectors.rate import RateOfChangeDetector
from detectors.trend import TrendDetector
from model.batch import ReadingBatch
from model.plant import parse_plant
from model.sensor_table import SensorTable
from tests.plants import small_plant_data

DATA = small_plant_data()
TABLE = SensorTable.from_config(parse_plant(DATA))
M = len(TABLE)


def _mspc(table: SensorTable) -> MspcDetector:
    rows = np.array([table.index[i] for i in ("LEL-1", "LEL-2", "PT-1")])
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 1))
    normal = np.hstack([base + 0.3 * rng.normal(size=(300, 1)) for _ in range(3)]) * [2, 2, 50]
    return MspcDetector(rows, PcaMonitor(n_components=1).fit(normal + np.array([3, 3, 500])))


REGISTRY: dict[str, Callable[[SensorTable], Any]] = {
    "limits": LimitDetector,
    "rate": lambda t: RateOfChangeDetector(t, warmup=3),
    "trend": lambda t: TrendDetector(t, warmup=3, wander_warm_s=5.0),
    "drift": lambda t: DriftDetector(t, warmup=3),
    "stuck": lambda t: StuckDetector(t, min_stuck_s=5),
    "range": RangeDetector,
    "spike": lambda t: SpikeDetector(t, warmup=3),
    "nodata": NoDataDetector,
    "mspc": _mspc,
}

Stream = list[tuple[int, int, float]]

values = st.one_of(
    st.floats(-50, 1100, allow_nan=False),
    st.sampled_from([0.0, 0.0, 1.0, 20.0, 25.0, 50.0, 100.0, 800.0, 900.0, 19.5, 23.5]),
)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Time-ordered readings of the table's sensors (several per timestamp)."""
    n = draw(st.integers(0, 80))
    steps = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
    sensors = draw(st.lists(st.integers(0, M - 1), min_size=n, max_size=n))
    vals = draw(st.lists(values, min_size=n, max_size=n))
    ts = np.cumsum(steps).tolist()
    return list(zip(sensors, [1_764_000_000_000 + t for t in ts], vals, strict=True))


def batch_of(stream: Stream) -> ReadingBatch:
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def run_chunks(det: Detector, stream: Stream, size: int) -> np.ndarray:
    parts = [det.update(batch_of(stream[i : i + size])) for i in range(0, len(stream), size)]
    return np.concatenate(parts) if parts else np.empty(0)


def assert_same_state(a: Detector, b: Detector) -> None:
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


NAMES = sorted(REGISTRY)
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", NAMES)
def test_is_a_detector(name: str) -> None:
    det = REGISTRY[name](TABLE)
    assert isinstance(det, Detector)
    assert isinstance(det.name, str) and det.name


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(stream=streams())
def test_chunk_invariance(name: str, stream: Stream) -> None:
    whole = REGISTRY[name](TABLE)
    expected = whole.update(batch_of(stream))
    assert expected.shape == (len(stream),)
    for size in (1, 7):
        det = REGISTRY[name](TABLE)
        np.testing.assert_array_equal(run_chunks(det, stream, size), expected)
        assert_same_state(det, whole)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(stream=streams(), cut=st.integers(0, 80))
def test_state_round_trip_and_pickle(name: str, stream: Stream, cut: int) -> None:
    a = REGISTRY[name](TABLE)
    a.update(batch_of(stream[:cut]))
    b = REGISTRY[name](TABLE)
    b.set_state(copy.deepcopy(a.get_state()))
    c = pickle.loads(pickle.dumps(a))
    rest = batch_of(stream[cut:])
    expected = a.update(rest)
    np.testing.assert_array_equal(b.update(rest), expected)
    np.testing.assert_array_equal(c.update(rest), expected)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(stream=streams(), seed=st.integers(0, 2**32 - 1))
def test_input_untouched_and_rows_permute(name: str, stream: Stream, seed: int) -> None:
    batch = batch_of(stream)
    before = [col.copy() for col in (batch.sensor, batch.ts, batch.value, batch.quality)]
    scores = REGISTRY[name](TABLE).update(batch)
    for col, old in zip((batch.sensor, batch.ts, batch.value, batch.quality), before,
                        strict=True):
        np.testing.assert_array_equal(col, old)
    # Row order matters by design only between readings with equal timestamps:
    # of two readings of one sensor the first row counts and the other is a
    # duplicate; and a multivariate detector scores each reading against the
    # group's values as they stand when it arrives (which is what keeps it
    # chunk-invariant). Permute a stream with distinct timestamps.
    seen: set[int] = set()
    unique = [r for r in stream if r[1] not in seen and not seen.add(r[1])]
    batch = batch_of(unique)
    scores = REGISTRY[name](TABLE).update(batch)
    perm = np.random.default_rng(seed).permutation(len(unique))
    np.testing.assert_array_equal(REGISTRY[name](TABLE).update(batch.take(perm)), scores[perm])


@pytest.mark.parametrize("name", NAMES)
def test_late_duplicate_and_non_finite_readings_do_not_move(name: str) -> None:
    det = REGISTRY[name](TABLE)
    t0 = 1_764_000_000_000
    warm = [(s, t0 + 1000 * k, 1.0 + 0.01 * k) for k in range(10) for s in range(M)]
    det.update(batch_of(warm))
    state = det.get_state()
    last = t0 + 9000
    odd = batch_of([(0, last, 5.0), (1, last - 5000, 5.0), (2, last + 1000, float("nan")),
                    (3, last + 1000, float("inf"))])
    scores = det.update(odd)
    assert np.isnan(scores).all()
    after = det.get_state()
    for k in state:
        np.testing.assert_array_equal(after[k], state[k], err_msg=k)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(stream=streams(), seed=st.integers(0, 2**32 - 1))
def test_sensor_order_in_the_table_does_not_matter(name: str, stream: Stream,
                                                   seed: int) -> None:
    data = copy.deepcopy(DATA)
    area = data["sites"][0]["workshops"][0]["areas"][0]
    order = np.random.default_rng(seed).permutation(M)
    area["sensors"] = [area["sensors"][i] for i in order]
    shuffled = SensorTable.from_config(parse_plant(data))
    remap = {TABLE.index[sid]: shuffled.index[sid] for sid in TABLE.ids}
    moved = [(remap[s], t, v) for s, t, v in stream]
    np.testing.assert_array_equal(REGISTRY[name](shuffled).update(batch_of(moved)),
                                  REGISTRY[name](TABLE).update(batch_of(stream)))
