"""The detector contract over every declared detector, and proof that it bites.

The checks live in detectors/contract.py; this file parametrizes them over
every declared detector (detectors/registry.py, ``EVERY``), one test per
detector and check (``drift-chunk_invariance``), so a new detector is checked
by being declared. The same checks also run on hypothesis-generated streams.
Toy detectors show that each check fails a detector breaking its promise.

The declarations are held to what the rest of the project relies on: every
condition has one category, the one in ``model.alarm_events``; the suite's
bank columns are the declared decisions; the suite's checkpoint keys keep
their names.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import registry
from detectors.base import State
from detectors.contract import USES_STREAMS, Stream, check_table, checks
from detectors.decide import CONDITIONS
from detectors.reference import PerSensorReference
from detectors.registry import DECLARED, EVERY, BankDecision, DetectorSpec, SuiteParams
from detectors.rounds import I64, Index, RoundDetector
from detectors.suite import SCORED, DetectorSuite
from model.batch import F64, ReadingBatch
from model.sensor_table import SensorTable

CASES = [(f"{spec.name}-{name}", check) for spec in EVERY for name, check in checks(spec)]


@pytest.mark.parametrize("check", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_contract(check: Callable[[], None]) -> None:
    check()


# -- the same checks on generated streams --------------------------------------------

M = len(check_table())
T0 = 1_764_000_000_000

values = st.one_of(
    st.floats(-50, 1100, allow_nan=False),
    st.sampled_from([0.0, 0.0, 1.0, 20.0, 25.0, 50.0, 100.0, 800.0, 900.0, 19.5, 23.5, 1e6,
                     float("nan"), float("inf"), float("-inf")]),
)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Time-ordered readings (several per timestamp), after 35 whole-table snapshots
    (so warm-ups end and the settled fast paths are taken) or not; or all shuffled."""
    out: list[tuple[int, int, float]] = []
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        out = [(s, T0 + 1000 * k, float(20.0 + rng.normal())) for k in range(35)
               for s in range(M)]
    start = out[-1][1] + 1000 if out else T0
    n = draw(st.integers(0, 80))
    steps = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
    sensors = draw(st.lists(st.integers(0, M - 1), min_size=n, max_size=n))
    vals = draw(st.lists(values, min_size=n, max_size=n))
    ts = (start + np.cumsum(steps, dtype=np.int64)).tolist()
    out += zip(sensors, ts, vals, strict=True)
    return draw(st.permutations(out)) if draw(st.booleans()) else out


@pytest.mark.parametrize("spec", EVERY, ids=[s.name for s in EVERY])
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_contract_on_generated_streams(spec: DetectorSpec, stream: Stream) -> None:
    for name, check in checks(spec, streams=[stream]):
        if name in USES_STREAMS:
            check()


# -- the checks catch broken detectors -----------------------------------------------


class Step(RoundDetector):
    """A toy detector, declared below the way a real one is: each reading's change
    from its sensor's previous reading (0 for the first)."""

    name = "toy"
    _state = (("previous", np.float64),)

    def __init__(self, table: SensorTable) -> None:
        super().__init__(table)
        self.previous: F64 = np.zeros(len(table))

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        self.previous[idx] = v
        return np.zeros(len(ts))

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        score = v - self.previous[idx]
        self.previous[idx] = v
        return score


class StepRef(PerSensorReference):
    fields: ClassVar[dict[str, float | int]] = {"previous": 0.0}

    def first(self, s: int, ts: int, v: float) -> float:
        self.st["previous"][s] = v
        return 0.0

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        change = v - self.st["previous"][s]
        self.st["previous"][s] = v
        return change


class Mutating(Step):
    def update(self, batch: ReadingBatch) -> F64:
        out = super().update(batch)
        np.abs(batch.value, out=batch.value)  # "cleaning" the input in place
        return out


class Forgetful(Step):
    def set_state(self, state: State) -> None:
        pass


class BatchCounting(Step):
    _state = (("previous", np.float64), ("batches", np.int64))

    def __init__(self, table: SensorTable) -> None:
        super().__init__(table)
        self.batches: I64 = np.zeros(len(table), np.int64)

    def update(self, batch: ReadingBatch) -> F64:
        self.batches[np.unique(batch.sensor)] += 1
        return super().update(batch)


class Aliasing(Step):
    def get_state(self) -> State:
        return {"previous": self.previous, "last_ts": self.last_ts}


class Lenient(Step):
    def update(self, batch: ReadingBatch) -> F64:
        out = super().update(batch)
        missing = ~np.isfinite(batch.value)
        self.previous[batch.sensor[missing]] = 0.0  # a NaN reading resets the sensor
        return out


class OffByALittle(Step):
    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        return super()._step(idx, ts, v, last) * (1.0 + 1e-9)


class Misnamed(Step):
    name = "step"


class TableBound(Step):
    def update(self, batch: ReadingBatch) -> F64:
        return super().update(batch) + 1e-6 * (batch.sensor == 0)


def toy(detector: Callable[[SensorTable], Any]) -> DetectorSpec:
    return DetectorSpec(
        name="toy", conditions=("toy",), category="fault", factory=detector,
        decision=BankDecision(enter=lambda t, p: np.full(len(t), 10.0),
                              leave=lambda t, p: np.full(len(t), 5.0)),
        reference=StepRef,
    )


def test_a_detector_keeping_the_contract_passes_every_check() -> None:
    names = []
    for name, check in checks(toy(Step)):
        check()
        names.append(name)
    assert names == ["protocol", "decision", "chunk_invariance", "state_round_trip",
                     "state_is_a_snapshot", "input_untouched", "rows_permute",
                     "late_readings_ignored", "table_order", "foreign_state_refused",
                     "reference"]


BROKEN = [
    (Mutating, "input_untouched", "update wrote into the batch's value column"),
    (Forgetful, "state_round_trip", "resumed from set_state"),
    (BatchCounting, "chunk_invariance", "state 'batches' differs"),
    (Aliasing, "state_is_a_snapshot", "a state taken moved with later readings"),
    (Lenient, "late_readings_ignored", "moved the state"),
    (OffByALittle, "reference", "against the reference"),
    (Misnamed, "protocol", "named 'step', declared 'toy'"),
    (TableBound, "table_order", "sensors listed as"),
]


@pytest.mark.parametrize(("detector", "fails", "says"),
                         [pytest.param(*case, id=case[0].__name__) for case in BROKEN])
def test_a_broken_detector_fails_its_check(detector: type[Step], fails: str, says: str) -> None:
    check = dict(checks(toy(detector)))[fails]
    with pytest.raises(AssertionError, match=says):
        check()


def test_a_hysteresis_the_wrong_way_round_is_refused() -> None:
    spec = DetectorSpec(
        name="toy", conditions=("toy",), category="fault", factory=Step,
        decision=BankDecision(enter=lambda t, p: np.full(len(t), 5.0),
                              leave=lambda t, p: np.full(len(t), 10.0)),
    )
    with pytest.raises(AssertionError, match="beyond its raise threshold"):
        dict(checks(spec))["decision"]()


@pytest.mark.parametrize(("fields", "says"), [
    pytest.param({"conditions": ()}, "at least one condition", id="no-condition"),
    pytest.param({"category": "alert"}, "category 'alert'", id="unknown-category"),
    pytest.param({"factory": None}, "give a factory or a check_factory", id="no-factory"),
    pytest.param({"conditions": ("a", "b")}, "a bank column decides one condition",
                 id="two-conditions-one-column"),
])
def test_a_malformed_declaration_is_refused(fields: dict[str, Any], says: str) -> None:
    base: dict[str, Any] = {
        "name": "toy", "conditions": ("toy",), "category": "fault", "factory": Step,
        "decision": BankDecision(enter=lambda t, p: np.full(len(t), 10.0),
                                 leave=lambda t, p: np.full(len(t), 5.0)),
    }
    with pytest.raises(ValueError, match=says):
        DetectorSpec(**{**base, **fields})


# -- the declarations against their users ---------------------------------------------


@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_condition_is_declared_once_with_a_category(condition: str) -> None:
    declaring = [s.name for s in EVERY if condition in s.conditions]
    assert len(declaring) == 1, declaring
    assert registry.CATEGORY_OF[condition] in ("alarm", "warning", "fault")


def test_categories_follow_the_alarm_philosophy() -> None:
    """Alarms need an operator response, warnings predict one, faults are the
    instrument's (docs/alarms.md); KPIs and risk colours count by these."""
    assert registry.CATEGORY_OF == {
        "ll": "alarm", "l": "alarm", "h": "alarm", "hh": "alarm", "rate": "alarm",
        "trend": "warning", "drift": "warning", "mspc": "warning",
        "stuck": "fault", "range": "fault", "spike": "fault", "nodata": "fault",
    }


def test_the_suite_is_built_from_the_declarations() -> None:
    table = check_table()
    params = SuiteParams(spike_z=6.0, warning_hold_s=30.0, drift_on_delay_s=5.0)
    suite = DetectorSuite(table, spike_z=params.spike_z, warning_hold_s=params.warning_hold_s,
                          drift_on_delay_s=params.drift_on_delay_s)
    assert SCORED == ("rate", "trend", "drift", "stuck", "range", "spike")  # saved column order
    assert list(suite.scored) == [s.name for s in DECLARED]
    for i, spec in enumerate(DECLARED):
        d = spec.decision
        assert d is not None
        assert type(suite.scored[spec.name]) is type(spec.build_checked(table))
        np.testing.assert_array_equal(suite.bank.enter[:, i], d.enter(table, params))
        np.testing.assert_array_equal(suite.bank.leave[:, i], d.leave(table, params))
        assert suite.bank.upper[i] == d.upper
    on = [round(1000 * s.decision.on_delay_s(params)) for s in DECLARED if s.decision]
    off = [round(1000 * s.decision.off_delay_s(params)) for s in DECLARED if s.decision]
    assert on == [0, 0, 5000, 0, 0, 0] and off == [0, 30_000, 30_000, 0, 0, 0]


SUITE_STATE_KEYS = [
    "last_ts", "first_tick_ms", "prev_spike_z", "drift_hold_until",
    "limits.active", "limits.since", "limits.last_ts",
    "rate.level", "rate.slope_per_s", "rate.scale", "rate.excess", "rate.last_ts", "rate.count",
    "trend.level", "trend.slope_per_s", "trend.scale", "trend.excess", "trend.last_ts",
    "trend.count", "trend.wander", "trend.wander_weight",
    "drift.last_value", "drift.baseline", "drift.mean_step", "drift.baseline_weight",
    "drift.step_weight", "drift.cusum_up", "drift.cusum_down", "drift.count", "drift.last_ts",
    "stuck.anchor", "stuck.run_start", "stuck.last_ts", "range.last_ts",
    "spike.median", "spike.mad", "spike.count", "spike.last_ts", "nodata.last_ts",
    "bank.active", "bank.since", "nodata_bank.active", "nodata_bank.since",
    "groups.active", "groups.since", "groups.raised_on",
]


def test_checkpoint_keys_keep_their_names() -> None:
    """Checkpoints on disk are read back by these names (and the bank's column order)."""
    suite = DetectorSuite(check_table())
    assert list(suite.get_state()) == SUITE_STATE_KEYS
    assert suite.get_state()["bank.active"].shape == (M, len(DECLARED))


def test_the_suites_checkpoint_is_a_snapshot() -> None:
    """A one-column bank (no-data) used to hand out its live arrays as its state."""
    suite = DetectorSuite(check_table())
    readings = ReadingBatch.from_columns(np.arange(M), np.full(M, T0), np.ones(M))
    suite.update(readings)
    taken = suite.get_state()
    kept = copy.deepcopy(taken)
    assert len(suite.tick(T0 + 3_600_000)) == M  # every sensor silent for an hour
    for key in kept:
        np.testing.assert_array_equal(taken[key], kept[key], err_msg=key)
    resumed = DetectorSuite(check_table())
    resumed.set_state(taken)
    taken["nodata_bank.active"][:] = True  # the caller's arrays stay the caller's
    assert len(resumed.tick(T0 + 3_600_000)) == M

