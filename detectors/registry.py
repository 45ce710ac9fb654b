"""Every detector of the suite, declared once: what it is, how it is decided, what it means.

Before, a detector was spread over parallel lists that had to agree by
position: the suite built each detector by hand and kept its condition, raise
and clear thresholds, direction, delays and NaN rule in separate positional
arrays; the alarm categories sat in :mod:`model.alarm_events`; the contract
tests kept their own list of detectors. Adding one meant editing all of them
in step. Now a detector is one :class:`DetectorSpec`, and the suite
(:mod:`detectors.suite`), the categories (:data:`CATEGORY_OF`) and the
contract (:mod:`detectors.contract`) are all read from the declarations.

Adding a detector scored by the suite's condition bank is one entry in
:data:`DECLARED` (and its condition's name appended to
:data:`detectors.decide.CONDITIONS`, the table of condition codes that
transitions carry; importing this module fails until it is there). The suite
gives it a bank column, the alarm layer its category, and the contract test
checks it.

Order is saved state: :data:`DECLARED` is the condition bank's column order,
and a spec's ``name`` prefixes its detector's keys in the suite's checkpoint
(``drift.baseline``). Append new detectors; never reorder or rename (a
checkpoint of another layout is refused, and the suite starts cold).

The detectors decided elsewhere are declared too, so that categories and the
contract cover them: :data:`LIMITS` (decided inside
:class:`~detectors.limits.LimitDetector`), :data:`NODATA` (decided on the
clock, :meth:`DetectorSuite.tick <detectors.suite.DetectorSuite.tick>`) and
:data:`MSPC` (per fitted group, :mod:`detectors.groups`). :data:`EVERY` lists
them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

import numpy as np

from detectors.base import Detector
from detectors.decide import CONDITIONS
from detectors.drift import DriftDetector
from detectors.health import NoDataDetector, RangeDetector, SpikeDetector, StuckDetector
from detectors.limits import LimitDetector
from detectors.mspc import MspcDetector, PcaMonitor
from detectors.rate import RateOfChangeDetector
from detectors.reference import (
    DriftRef,
    LimitRef,
    MspcRef,
    NoDataRef,
    RangeRef,
    RateRef,
    Reference,
    SpikeRef,
    StuckRef,
    TrendRef,
)
from detectors.trend import TrendDetector
from model.batch import F64
from model.sensor_table import LIMIT_NAMES, SensorTable

__all__ = [
    "CATEGORY_OF",
    "DECLARED",
    "EVERY",
    "LIMITS",
    "MSPC",
    "NODATA",
    "BankDecision",
    "Category",
    "DetectorSpec",
    "SuiteParams",
]

Category = Literal["alarm", "warning", "fault"]
"""What a raised condition is: a process alarm, an early warning, or a sensor fault."""



@dataclass(frozen=True, slots=True)
class SuiteParams:
    """The suite-wide settings that declared thresholds and delays may depend on.

    They are :class:`~detectors.suite.DetectorSuite`'s keyword arguments;
    per-sensor settings come from the sensor table instead.
    """

    spike_z: float = 8.0
    """Robust z-score that confirms a spike."""
    drift_holdoff_s: float = 1800.0
    """How long after a limit alarm or trend warning no drift is raised."""
    warning_hold_s: float = 60.0
    """Off-delay of warnings, so a score near its threshold does not chatter."""
    drift_on_delay_s: float = 15.0
    """On-delay of drift, so a passing puff of gas is not called a drift."""


Threshold = Callable[[SensorTable, SuiteParams], F64]
"""A raise or clear threshold per sensor, (m,) float64; NaN to never raise."""
Delay = Callable[[SuiteParams], float]
"""An on- or off-delay, seconds."""


def _no_delay(params: SuiteParams) -> float:
    return 0.0


def _warning_hold(params: SuiteParams) -> float:
    # Warnings (trend, drift) clear only after their clear condition held for
    # warning_hold_s (an ISA-18.2 off-delay): a slow ramp's ETA or a CUSUM near
    # its threshold would otherwise raise and clear them every few seconds.
    # Backtests of config/scenarios: warning raises fell from 40 to 4 in the
    # cooling-water loss and 24 to 8 in the seal leak; lead times unchanged.
    return params.warning_hold_s


@dataclass(frozen=True, slots=True)
class BankDecision:
    """How the suite's :class:`~detectors.decide.ConditionBank` decides a score (one column).

    The point is raised at ``score ≥ enter`` (``≤`` when not ``upper``) held
    for ``on_delay_s`` and cleared at ``score < leave`` (``>``) held for
    ``off_delay_s``; see :mod:`detectors.decide`.
    """

    enter: Threshold
    leave: Threshold
    upper: bool = True
    """True: raised by high scores; False: by low ones (an ETA)."""
    on_delay_s: Delay = _no_delay
    off_delay_s: Delay = _no_delay
    nan_clears: bool = False
    """A NaN score meets the clear condition (a score that stopped having a value)."""
    magnitude: bool = False
    """Decide on ``|score|``; transitions still report the signed score (a rate falling)."""


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One detector, declared: how to build it, what it raises, how that is decided.

    Attributes
    ----------
    name : str
        The detector's name (its ``name`` attribute); in the suite, the prefix
        of its keys in the checkpoint. Never rename a shipped one.
    conditions : tuple of str
        The condition(s) it raises, from :data:`detectors.decide.CONDITIONS`.
    category : "alarm", "warning" or "fault"
        What those conditions are (:data:`CATEGORY_OF`).
    factory : callable (SensorTable) -> Detector, or None
        The detector as the suite builds it; None when the suite builds it
        from something else than the table (MSPC: fitted group models).
    decision : BankDecision or None
        How the suite's condition bank decides its score; None when it is
        decided elsewhere (limits, no-data, MSPC).
    check_factory : callable (SensorTable) -> Detector, or None
        The detector the contract checks: the suite's with warm-ups and time
        constants shortened so that short streams are scored and move (as
        scikit-learn's checks shorten ``max_iter``); None: ``factory``.
    reference : callable (SensorTable) -> Reference, or None
        The plain per-reading reference of ``check_factory``'s detector, with
        the same parameters (:mod:`detectors.reference`); None: none yet.
    """

    name: str
    conditions: tuple[str, ...]
    category: Category
    factory: Callable[[SensorTable], Detector] | None
    decision: BankDecision | None = None
    check_factory: Callable[[SensorTable], Detector] | None = None
    reference: Callable[[SensorTable], Reference] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a DetectorSpec needs a name")
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"detector {self.name!r}: conditions {self.conditions!r} must "
                             "name at least one condition, each once")
        if self.category not in get_args(Category):
            raise ValueError(f"detector {self.name!r}: category {self.category!r} is not one "
                             f"of {get_args(Category)}")
        if self.factory is None and self.check_factory is None:
            raise ValueError(f"detector {self.name!r}: give a factory or a check_factory")
        if self.decision is not None and len(self.conditions) != 1:
            raise ValueError(f"detector {self.name!r}: a bank column decides one condition, "
                             f"not {self.conditions!r}")

    @property
    def condition(self) -> str:
        """The one condition of a bank-decided detector (its column)."""
        if len(self.conditions) != 1:
            raise ValueError(f"detector {self.name!r} raises {self.conditions!r}, not one")
        return self.conditions[0]

    def build_checked(self, table: SensorTable) -> Detector:
        """The detector the contract checks, over ``table``."""
        make = self.check_factory if self.check_factory is not None else self.factory
        if make is None:  # refused by __post_init__; here for the type checker
            raise ValueError(f"detector {self.name!r} has no factory")
        return make(table)


# -- the declarations ----------------------------------------------------------------

_TINY = 1e-12


def _full(table: SensorTable, value: float) -> F64:
    return np.full(len(table), value, np.float64)


LIMITS = DetectorSpec(
    name="limits", conditions=LIMIT_NAMES, category="alarm", factory=LimitDetector,
    reference=LimitRef,
)
"""ISA-18.2 limit alarms, decided inside the detector with deadband and delays."""

RATE = DetectorSpec(
    name="rate", conditions=("rate",), category="alarm",
    factory=RateOfChangeDetector,
    decision=BankDecision(
        enter=lambda t, p: t.max_rate_per_min,
        leave=lambda t, p: 0.8 * t.max_rate_per_min,
        magnitude=True,
    ),
    check_factory=lambda t: RateOfChangeDetector(t, tau_s=5.0, warmup=3),
    reference=lambda t: RateRef(t, tau_level_s=5.0, warmup=3),
)
"""Rate of change beyond the sensor's ``max_rate_per_min``, either way."""

class _TrendParams(TypedDict):
    tau_level_s: float
    tau_slope_s: float
    min_rise_sigmas: float
    min_slope_z: float
    warmup: int
    wander_tau_s: float
    min_wander_ratio: float
    wander_warm_s: float


_TREND_CHECKED = _TrendParams(
    tau_level_s=2.0, tau_slope_s=3.0, min_rise_sigmas=1.0, min_slope_z=1.0, warmup=3,
    wander_tau_s=20.0, min_wander_ratio=1.5, wander_warm_s=4.0,
)
"""Fast filters, weak significance tests and a usual slope learnt in seconds, so that a
short stream gets ETAs and the third test comes into play."""

TREND = DetectorSpec(
    name="trend", conditions=("trend",), category="warning",
    factory=TrendDetector,
    decision=BankDecision(
        enter=lambda t, p: t.trend_horizon_s,
        leave=lambda t, p: 1.25 * t.trend_horizon_s,
        upper=False, off_delay_s=_warning_hold, nan_clears=True,
    ),
    check_factory=lambda t: TrendDetector(t, **_TREND_CHECKED),
    reference=lambda t: TrendRef(t, **_TREND_CHECKED),
)
"""A predicted limit crossing within the sensor's horizon (the score is the ETA)."""

DRIFT = DetectorSpec(
    name="drift", conditions=("drift",), category="warning",
    factory=DriftDetector,
    decision=BankDecision(
        enter=lambda t, p: np.where(t.drift_detection, 1.0, np.nan),
        leave=lambda t, p: _full(t, 0.5),
        on_delay_s=lambda p: p.drift_on_delay_s, off_delay_s=_warning_hold,
    ),
    check_factory=lambda t: DriftDetector(t, baseline_tau_s=20.0, h_sigmas=3.0, warmup=3),
    reference=lambda t: DriftRef(t, baseline_tau_s=20.0, h_sigmas=3.0, warmup=3),
)
"""A slow shift off the baseline, where the sensor has ``drift_detection``."""

STUCK = DetectorSpec(
    name="stuck", conditions=("stuck",), category="fault",
    factory=StuckDetector,
    decision=BankDecision(
        enter=lambda t, p: t.stuck_after_s,
        leave=lambda t, p: _full(t, 1.0),  # it moved
    ),
    reference=StuckRef,
)
"""A flat line for ``stuck_after_s``, where the sensor has one."""

RANGE = DetectorSpec(
    name="range", conditions=("range",), category="fault",
    factory=RangeDetector,
    decision=BankDecision(
        enter=lambda t, p: _full(t, _TINY),
        leave=lambda t, p: _full(t, _TINY),
    ),
    reference=RangeRef,
)
"""A reading outside the calibrated range and its margin."""

SPIKE = DetectorSpec(
    name="spike", conditions=("spike",), category="fault",
    factory=SpikeDetector,
    decision=BankDecision(
        enter=lambda t, p: _full(t, p.spike_z),
        leave=lambda t, p: _full(t, 0.5 * p.spike_z),
        nan_clears=True,
    ),
    check_factory=lambda t: SpikeDetector(t, tau_s=5.0, warmup=3),
    reference=lambda t: SpikeRef(t, tau_s=5.0, warmup=3),
)
"""An isolated outlier (the suite confirms it when the next reading is back)."""

NODATA = DetectorSpec(
    name="nodata", conditions=("nodata",), category="fault",
    factory=lambda t: NoDataDetector(t, max_gap_s=t.max_gap_s),
    reference=NoDataRef,
)
"""Silence for ``max_gap_s``, judged on the clock by the suite's ``tick``."""


def _check_group(table: SensorTable) -> tuple[list[int], PcaMonitor]:
    """Three sensors of ``table`` (the first by id, so the table's order does not matter)
    and a monitor fitted on correlated normal data around their mid-ranges."""
    rows = [table.index[i] for i in sorted(table.ids)[:3]]
    lo, hi = table.range_lo[rows], table.range_hi[rows]
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 1))
    normal = np.hstack([base + 0.3 * rng.normal(size=(300, 1)) for _ in rows])
    monitor = PcaMonitor(n_components=1).fit((lo + hi) / 2 + normal * 0.02 * (hi - lo))
    return rows, monitor


def _checked_mspc(table: SensorTable) -> MspcDetector:
    rows, monitor = _check_group(table)
    return MspcDetector(rows, monitor)


def _mspc_reference(table: SensorTable) -> MspcRef:
    rows, monitor = _check_group(table)
    return MspcRef(rows, monitor)


MSPC = DetectorSpec(
    name="mspc", conditions=("mspc",), category="warning", factory=None,
    check_factory=_checked_mspc, reference=_mspc_reference,
)
"""A sensor group out of statistical control; built and decided per fitted group."""

DECLARED: tuple[DetectorSpec, ...] = (RATE, TREND, DRIFT, STUCK, RANGE, SPIKE)
"""The detectors decided by the suite's condition bank, in its column order (saved state:
append only)."""

EVERY: tuple[DetectorSpec, ...] = (LIMITS, *DECLARED, NODATA, MSPC)
"""Every detector of the suite, in the order of :data:`~detectors.decide.CONDITIONS`."""


def _categories(specs: Sequence[DetectorSpec]) -> dict[str, Category]:
    """Condition → category, grouped alarms, warnings, faults (the order lists show)."""
    return {c: s.category for cat in get_args(Category) for s in specs if s.category == cat
            for c in s.conditions}


def _validate(specs: Sequence[DetectorSpec]) -> None:
    """Refuse declarations that disagree with each other or with the condition codes."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must be unique, got {names}")
    declared = [c for s in specs for c in s.conditions]
    if len(set(declared)) != len(declared):
        raise ValueError(f"each condition is declared by one detector, got {declared}")
    missing = [c for c in declared if c not in CONDITIONS]
    if missing:
        raise ValueError(f"conditions {missing} have no code: append them to "
                         "detectors.decide.CONDITIONS")
    undeclared = [c for c in CONDITIONS if c not in declared]
    if undeclared:
        raise ValueError(f"conditions {undeclared} of detectors.decide.CONDITIONS are "
                         "declared by no detector")
    for s in DECLARED:
        if s.decision is None or s.factory is None:
            raise ValueError(f"{s.name!r} is in DECLARED but has no bank decision or factory")


_validate(EVERY)

CATEGORY_OF: dict[str, Category] = _categories(EVERY)
"""Condition → ``alarm``, ``warning`` or ``fault``, from the declarations."""
