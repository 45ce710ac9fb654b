"""The univariate detector suite and its deciding step, over the whole sensor table.

Every reading goes through every detector (limits, rate of change, predictive
trend, drift, and the sensor-health checks); each yields a score, and one
:class:`~detectors.decide.ConditionBank` turns the scores into conditions. The
detectors, and how each score is decided, are declared in
:mod:`detectors.registry` (a new one is one entry there); this is what they
declare:

========  ==========================  ===================  ==================
condition score                       raised when          cleared when
========  ==========================  ===================  ==================
rate      rate of change, units/min   |rate| ≥ max         |rate| < 0.8·max
trend     ETA to the next limit, s    ETA ≤ horizon        ETA > 1.25·horizon,
                                                           or no ETA
drift     CUSUM / threshold, while    ≥ 1 for              < 0.5
          the value is a deadband     ``drift_on_delay_s``
          or more off the baseline
stuck     seconds unchanged           ≥ stuck_after_s      < 1 s (it moved)
range     distance outside range      > 0                  back inside
spike     robust z of the previous    ≥ ``spike_z``, and   the next reading
          reading, once this one is   this reading back
          back                        below ``spike_z``/2
nodata    seconds since last reading  ≥ max_gap_s          a reading arrives
========  ==========================  ===================  ==================

A drift must matter in engineering units as well as statistically: the CUSUM
notices shifts far smaller than anything an operator acts on (a daily swing
of a few tenths of a percent, the clipped noise of a gas detector at zero), so
the drift condition also needs the value to be at least the sensor's deadband
away from its baseline. And a drift is slow: both must hold for
``drift_on_delay_s`` (15 s, an ISA-18.2 on-delay) before it is raised, so a
puff of gas that comes and goes in under about 20 s (the CUSUM needs ~5
readings to cross, then the delay) is not called a drift; a gas detector's
own response takes ~30 s (T90), so a leak reaching it builds up for longer.
On a combustible head in clean air, ten puffs of 3 %LEL lasting 5 or 10 s
raised ten drift warnings without the delay and none with it (30 s puffs
still raise: a level held for half a minute is worth a look). The price, in
the leak scenarios' backtests: the first warning came 15–26 s later (lead
times 414, 587 and 150 s instead of 440, 608 and 165).

A leak is not a drift: while a sensor has a limit alarm or a trend warning
active, and for ``drift_holdoff_s`` after they clear, its drift condition is
not raised and its drift baseline is re-anchored after each batch, so the
return to background after an incident is not reported as a drift either.
(That re-anchoring happens at batch ends, so unlike the detectors themselves
the suite's drift decisions around an incident depend on batch boundaries.)

A spike is an *isolated* outlier: it is only confirmed when the next reading
is back near the median. A genuine leak or step keeps the robust z-score high
for many readings while the median catches up, and must not be called a
sensor fault.

Limit alarms (ll/l/h/hh) are decided inside :class:`LimitDetector` with the
sensor's deadband and on/off delays. ``rate`` needs a configured
``max_rate_per_min``, ``stuck`` a ``stuck_after_s`` (process transmitters
get one by default) and ``drift`` ``drift_detection`` (gas detectors by
default); elsewhere the condition never raises.

Multivariate monitoring (MSPC) of sensor groups runs after them when fitted
group models are given (:mod:`detectors.groups`): its ``mspc`` warnings are
raised on the group's top-contributing sensor, and
``self.groups.last_contributions`` carries every sensor's share.

No-data is the one clock-driven judgement: :meth:`DetectorSuite.update` is
told when the batch *arrived* (``received_ms``; event time is used when it is
not given, as in a backtest), and :meth:`DetectorSuite.tick` judges silence
against a clock value passed in, so it fires when nothing arrives at all. A
sensor never heard from counts from the first tick. Arrival time, not event
time, because a gateway whose clock runs a few minutes slow is not silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, State
from detectors.decide import CONDITIONS, ConditionBank, Transitions
from detectors.drift import DriftDetector
from detectors.groups import GroupModel, GroupMonitors
from detectors.health import NoDataDetector
from detectors.limits import POINTS, LimitDetector
from detectors.registry import DECLARED, LIMITS, NODATA, DetectorSpec, SuiteParams
from detectors.rounds import at, fresh_rounds, in_sensor_order
from detectors.trend import TrendDetector
from model.batch import NO_TS, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["SCORED", "DetectorSuite"]

SCORED = tuple(spec.condition for spec in DECLARED)
"""The conditions decided from scores, in the bank's column order (:data:`DECLARED`)."""
_CODE = np.array([CONDITIONS.index(c) for c in SCORED], np.int8)
_NODATA = np.int8(CONDITIONS.index("nodata"))
# The columns with logic of their own in update(), looked up by name.
_TREND = SCORED.index("trend")
_DRIFT = SCORED.index("drift")
_SPIKE = SCORED.index("spike")
_SIGNED = tuple(i for i, spec in enumerate(DECLARED)
                if spec.decision is not None and spec.decision.magnitude)

D = TypeVar("D")


class _Stateful(Protocol):
    def get_state(self) -> State: ...

    def set_state(self, state: State) -> None: ...


def _factory(spec: DetectorSpec) -> Callable[[SensorTable], Detector]:
    if spec.factory is None:
        raise TypeError(f"detector {spec.name!r} has no factory: the suite cannot build it")
    return spec.factory


def _as(kind: type[D], det: object, name: str) -> D:
    """``det``, which the suite's own logic for ``name`` needs to be a ``kind``."""
    if not isinstance(det, kind):
        raise TypeError(f"the suite needs detector {name!r} to be a {kind.__name__}, its "
                        f"factory gave a {type(det).__name__}")
    return det


def _bank(specs: Sequence[DetectorSpec], table: SensorTable,
          params: SuiteParams) -> ConditionBank:  # fmt: skip
    """One bank column per bank-decided spec, in order, from its declared decision."""
    decisions = []
    for spec in specs:
        if spec.decision is None:
            raise ValueError(f"detector {spec.name!r} is not decided by the condition bank")
        decisions.append(spec.decision)
    m, k = len(table), len(decisions)

    def per_point_ms(seconds: list[float]) -> npt.NDArray[np.int64]:
        row = np.array([round(x * 1000) for x in seconds], np.int64)
        return np.ascontiguousarray(np.broadcast_to(row, (m, k)))

    return ConditionBank(
        np.column_stack([d.enter(table, params) for d in decisions]),
        np.column_stack([d.leave(table, params) for d in decisions]),
        np.array([d.upper for d in decisions], np.bool_),
        per_point_ms([d.on_delay_s(params) for d in decisions]),
        per_point_ms([d.off_delay_s(params) for d in decisions]),
        nan_clears=np.array([d.nan_clears for d in decisions], np.bool_),
    )


class DetectorSuite:
    """All univariate detectors of the table, decided into condition transitions.

    The detectors and the bank's columns are the declared ones
    (:mod:`detectors.registry`). After :meth:`update` (or :meth:`tick`),
    :attr:`transitions` holds every condition that changed, limit alarms
    included.
    """

    name = "suite"

    def __init__(
        self, table: SensorTable, *, spike_z: float = 8.0, drift_holdoff_s: float = 1800.0,
        warning_hold_s: float = 60.0, drift_on_delay_s: float = 15.0,
        groups: Sequence[GroupModel] = (),
    ) -> None:
        self.table = table
        m = len(table)
        self.params = SuiteParams(spike_z=spike_z, drift_holdoff_s=drift_holdoff_s,
                                  warning_hold_s=warning_hold_s,
                                  drift_on_delay_s=drift_on_delay_s)
        self.limits = _as(LimitDetector, _factory(LIMITS)(table), LIMITS.name)
        self.scored: dict[str, Detector] = {spec.name: _factory(spec)(table)
                                            for spec in DECLARED}
        """The bank-decided detectors by name, in column order."""
        self.trend = _as(TrendDetector, self.scored[DECLARED[_TREND].name], "trend")
        self.drift = _as(DriftDetector, self.scored[DECLARED[_DRIFT].name], "drift")
        self.nodata = _as(NoDataDetector, _factory(NODATA)(table), NODATA.name)
        self.groups = GroupMonitors(table, list(groups))
        self.bank = _bank(DECLARED, table, self.params)
        zero_delay = np.zeros(m, np.int64)
        self.nodata_bank = ConditionBank(
            table.max_gap_s[:, None].copy(), table.max_gap_s[:, None].copy(),
            np.array([True]), zero_delay, zero_delay,
        )
        self.spike_z = spike_z
        self.prev_spike_z = np.zeros(m, np.float64)
        self.drift_holdoff_ms = int(drift_holdoff_s * 1000)
        self.drift_hold_until = np.full(m, NO_TS, np.int64)
        self.last_ts = np.full(m, NO_TS, np.int64)
        self.first_tick_ms = np.array(NO_TS, np.int64)
        self.transitions = Transitions.empty()

    def set_limits(self, limits: dict[str, npt.NDArray[np.float64]]) -> None:
        """Move the alarm limits of every sensor (see :meth:`LimitDetector.set_limits`)."""
        self.limits.set_limits(limits)

    @property
    def _parts(self) -> dict[str, _Stateful]:
        """Everything with state, by checkpoint key prefix (the order of the saved keys)."""
        return {"limits": self.limits, **self.scored, "nodata": self.nodata,
                "bank": self.bank, "nodata_bank": self.nodata_bank, "groups": self.groups}

    # -- state -------------------------------------------------------------
    def get_state(self) -> State:
        state: State = {"last_ts": self.last_ts.copy(),
                        "first_tick_ms": self.first_tick_ms.copy(),
                        "prev_spike_z": self.prev_spike_z.copy(),
                        "drift_hold_until": self.drift_hold_until.copy()}
        for prefix, part in self._parts.items():
            for key, arr in part.get_state().items():
                state[f"{prefix}.{key}"] = arr
        return state

    def set_state(self, state: State) -> None:
        for prefix, part in self._parts.items():
            part.set_state({k.split(".", 1)[1]: v for k, v in state.items()
                            if k.startswith(prefix + ".")})
        last_ts = np.asarray(state["last_ts"], np.int64)
        if last_ts.shape != self.last_ts.shape:
            raise ValueError(
                f"suite state 'last_ts' has shape {last_ts.shape}, expected "
                f"{self.last_ts.shape}: the saved state belongs to a different sensor table"
            )
        self.last_ts = last_ts.copy()
        self.first_tick_ms = np.asarray(state["first_tick_ms"], np.int64).copy()
        self.prev_spike_z = np.asarray(state["prev_spike_z"], np.float64).copy()
        self.drift_hold_until = np.asarray(state["drift_hold_until"], np.int64).copy()

    def restore_active(self, conditions: list[tuple[str, str]]) -> None:
        """Mark ``(sensor id, condition)`` pairs active, e.g. from the alarm board
        when no checkpoint exists, so nothing active is raised a second time and
        each still clears normally. Unknown sensors and conditions are ignored."""
        state = self.get_state()
        columns = {
            **{c: ("limits.active", i) for i, c in enumerate(POINTS)},
            **{c: ("bank.active", i) for i, c in enumerate(SCORED)},
            "nodata": ("nodata_bank.active", 0),
        }
        for sensor, condition in conditions:
            row = self.table.index.get(sensor)
            if row is not None and condition in columns:
                key, col = columns[condition]
                state[key][row, col] = True
            elif row is not None and condition == "mspc":
                g = self.groups.group_of(row)
                if g is not None:  # the group's warning stands, on this sensor
                    state["groups.active"][g] = True
                    state["groups.raised_on"][g] = row
        self.set_state(state)

    # -- readings ----------------------------------------------------------
    def update(self, batch: ReadingBatch, received_ms: int | None = None) -> Transitions:
        """Run every detector over ``batch`` and decide; return the condition points that
        changed (also kept in :attr:`transitions`, with the MSPC contributions in
        ``self.groups.last_contributions``)."""
        scores = {"limits": self.limits.update(batch)}
        for name, det in self.scored.items():
            scores[name] = det.update(batch)
        if received_ms is None:
            self.nodata.update(batch)
        else:
            arrived = np.full(len(batch), received_ms, np.int64)
            self.nodata.update(ReadingBatch(batch.sensor, arrived, batch.value, batch.quality))
        # One row per scored condition (the bank's point-major layout).
        x_all = np.stack([np.abs(scores[spec.name]) if i in _SIGNED else scores[spec.name]
                          for i, spec in enumerate(DECLARED)])
        t = self.table
        parts = [self.limits.transitions]
        held: list[npt.NDArray[np.intp]] = []
        for r, _ in fresh_rounds(batch, self.last_ts):
            rows, s, ts, v = r.rows, r.sensors, r.ts, r.value
            x = x_all[:, rows]  # a view for a slice of rows: rounds never share rows
            busy = self.limits.bank.any_active(s) | self.bank.point_active(_TREND, s)
            hold_until = np.where(busy, ts + self.drift_holdoff_ms, self.drift_hold_until[s])
            self.drift_hold_until[s] = hold_until
            hold = ts <= hold_until
            off_baseline = np.abs(v - self.drift.baseline[s])
            x[_DRIFT] = np.where((off_baseline >= t.deadband[s]) & ~hold, x[_DRIFT], 0.0)
            if hold.any():
                held.append(at(s, np.flatnonzero(hold)))
            z = np.nan_to_num(x[_SPIKE], nan=0.0)
            x[_SPIKE] = np.where(z < 0.5 * self.spike_z, self.prev_spike_z[s], 0.0)
            self.prev_spike_z[s] = z
            pos, p, raised = self.bank.step(s, ts, x)
            if not len(pos):
                continue
            order, sr = in_sensor_order(s, pos)
            if order is not None:
                pos, p, raised = pos[order], p[order], raised[order]
            rr = at(rows, pos)
            setpoint = self.bank.setpoints(sr, p, raised)
            score = x[p, pos]
            for i in _SIGNED:  # decided on |score|, reported signed (a rate: units/min)
                signed = p == i
                score[signed] = scores[DECLARED[i].name][rr][signed]
            trend = p == _TREND
            if trend.any():
                # The limit being approached: the next one from the trend's own
                # level in the direction of its own slope (what the ETA used).
                level = self.trend.level[sr]
                up = self.trend.slope_per_s[sr] >= 0
                above = np.where(level < t.h[sr], t.h[sr], t.hh[sr])
                below = np.where(level > t.l[sr], t.l[sr], t.ll[sr])
                setpoint[trend] = np.where(up, above, below)[trend]
            parts.append(Transitions(sr, ts[pos], v[pos], _CODE[p], raised, setpoint, score))
        if held:
            self.drift.rebaseline(np.unique(np.concatenate(held)))
        if len(self.groups):
            parts.append(self.groups.update(batch))
        self.transitions = Transitions.concat(parts)
        return self.transitions

    # -- the clock ---------------------------------------------------------
    def tick(self, now_ms: int) -> Transitions:
        """Judge silence at ``now_ms``; the no-data changes are also left in
        :attr:`transitions`."""
        if self.first_tick_ms == NO_TS:
            self.first_tick_ms = np.array(now_ms, np.int64)
        silent_s = self.nodata.check(now_ms)
        never = np.isnan(silent_s)
        silent_s = np.where(never, (now_ms - int(self.first_tick_ms)) / 1000.0, silent_s)
        m = len(self.table)
        sensors = np.arange(m, dtype=np.int32)
        r, p, raised = self.nodata_bank.step(
            slice(0, m), np.full(m, now_ms, np.int64), silent_s
        )
        self.transitions = Transitions(
            sensors[r], np.full(len(r), now_ms, np.int64), np.full(len(r), np.nan),
            np.full(len(r), _NODATA, np.int8), raised,
            self.nodata_bank.setpoints(sensors[r], p, raised), silent_s[r],
        )
        return self.transitions
