"""Multivariate monitoring of sensor groups, decided into alarm points.

A group is a unit whose sensors move together (a reactor's temperatures and
pressures, a compressor's suction and discharge). Each fitted group runs an
:class:`~detectors.mspc.MspcDetector`; its index ``max(T²/T²_lim,
SPE/SPE_lim)`` is decided the ISA-18.2 way, in event time, reading by reading:

* raise when the index has been at or above 1 (out of statistical control)
  for ``on_delay_ms``;
* clear when it has been below ``clear_below`` (default 0.8) for
  ``off_delay_ms``.

Alarm points belong to sensors, and a group is not a sensor, so the group's
``mspc`` point is raised on the sensor that contributes most to the
out-of-control statistic at the reading that raised it (its share of T² or
of SPE, whichever statistic crossed further) and cleared on that same sensor.
That is also where an operator should look first. The raise transition's
score is the index; :attr:`GroupMonitors.last_contributions` has every
sensor's share at each raise of the last update, for the alarm's detail.

A sensor belongs to at most one group, so a group's alarm point
(``<sensor>:mspc``) is never shared with another group.

The fitted models are configuration (learned from normal history by
``plantwatch mspc fit``), not state; ``get_state`` holds what the stream moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors.base import State
from detectors.decide import CONDITIONS, Transitions
from detectors.mspc import MspcDetector, PcaMonitor
from model.batch import NO_TS, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["GroupModel", "GroupMonitors"]

_MSPC = np.int8(CONDITIONS.index("mspc"))


@dataclass(frozen=True)
class GroupModel:
    """A fitted group: its sensors (in the monitor's column order) and how to decide."""

    id: str
    sensors: tuple[str, ...]
    monitor: PcaMonitor
    on_delay_ms: int = 30_000
    off_delay_ms: int = 60_000
    clear_below: float = 0.8
    fitted: dict[str, object] = field(default_factory=dict)
    """Where the model came from (period, rows), for display only."""


class GroupMonitors:
    """Every fitted group of the table, decided into ``mspc`` transitions."""

    name = "groups"

    def __init__(self, table: SensorTable, models: list[GroupModel] | tuple[GroupModel, ...]
                 ) -> None:  # fmt: skip
        self.table = table
        self.models = list(models)
        self.detectors: list[MspcDetector] = []
        owner: dict[str, str] = {}
        for model in self.models:
            for s in model.sensors:
                if s in owner:
                    raise ValueError(f"sensor {s!r} is in MSPC groups {owner[s]!r} and "
                                     f"{model.id!r}; a sensor may belong to one group only")
                owner[s] = model.id
            unknown = [s for s in model.sensors if s not in table.index]
            if unknown:
                raise ValueError(f"MSPC group {model.id!r}: sensors {unknown} are not in the "
                                 "plant config; refit the group or fix config/mspc.yaml")
            if not 0.0 < model.clear_below <= 1.0:
                raise ValueError(f"MSPC group {model.id!r}: clear_below={model.clear_below} "
                                 "is not in (0, 1]")
            rows = [table.index[s] for s in model.sensors]
            self.detectors.append(MspcDetector(rows, model.monitor, name=model.id))
        g = len(self.models)
        self.active = np.zeros(g, np.bool_)
        self.since = np.full(g, NO_TS, np.int64)  # when the pending raise/clear began
        self.raised_on = np.full(g, -1, np.int32)  # table row the active alarm is on
        self.last_contributions: dict[int, dict[str, float]] = {}
        """Raises of the last update: table row → each group sensor's share (0..1)
        of the out-of-control statistic at the raise."""

    def __len__(self) -> int:
        return len(self.models)

    def group_of(self, row: int) -> int | None:
        """Index of the group the sensor at table ``row`` belongs to, if any."""
        for i, det in enumerate(self.detectors):
            if (det.table_rows == row).any():
                return i
        return None

    # -- state -------------------------------------------------------------
    def get_state(self) -> State:
        state: State = {"active": self.active.copy(), "since": self.since.copy(),
                        "raised_on": self.raised_on.copy()}
        for model, det in zip(self.models, self.detectors, strict=True):
            for key, arr in det.get_state().items():
                state[f"{model.id}.{key}"] = arr
        return state

    def set_state(self, state: State) -> None:
        g = len(self.models)
        for key, dtype in (("active", np.bool_), ("since", np.int64), ("raised_on", np.int32)):
            arr = np.asarray(state.get(key, getattr(self, key)), dtype)
            if arr.shape != (g,):
                raise ValueError(f"groups state {key!r} has shape {arr.shape}, expected ({g},):"
                                 " the saved state belongs to other MSPC groups")
            setattr(self, key, arr.copy())
        for model, det in zip(self.models, self.detectors, strict=True):
            prefix = model.id + "."
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if own:
                det.set_state(own)

    # -- readings ----------------------------------------------------------
    def update(self, batch: ReadingBatch) -> Transitions:
        """Score and decide every group over ``batch``; the ``mspc`` points that changed."""
        parts = [Transitions.empty()]
        self.last_contributions = {}
        for i, (model, det) in enumerate(zip(self.models, self.detectors, strict=True)):
            index = det.update(batch)
            rows = det.last_rows
            if len(rows):
                parts.append(self._decide(i, model, det, index[rows], rows, batch))
        return Transitions.concat(parts)

    def _decide(self, i: int, model: GroupModel, det: MspcDetector,
                index: npt.NDArray[np.float64], rows: npt.NDArray[np.intp],
                batch: ReadingBatch) -> Transitions:  # fmt: skip
        """Walk the group's readings in processing order (a scalar loop: a group
        has a handful of sensors, and most readings change nothing)."""
        sensor, ts, value, cond, active, setpoint, score = [], [], [], [], [], [], []
        ts_all = batch.ts[rows].tolist()
        for j, x in enumerate(index.tolist()):
            t = ts_all[j]
            if not self.active[i]:
                meets, delay = x >= 1.0, model.on_delay_ms  # NaN (warm-up) never meets
            else:
                meets, delay = x < model.clear_below, model.off_delay_ms
            if not meets:
                self.since[i] = NO_TS
                continue
            if self.since[i] == NO_TS:
                self.since[i] = t
            if t - int(self.since[i]) < delay:
                continue
            self.since[i] = NO_TS
            if not self.active[i]:
                row, shares = self._top_contributor(det, j)
                self.raised_on[i] = row
                self.last_contributions[row] = shares
                setpoint.append(1.0)
            else:
                row = int(self.raised_on[i])
                if row < 0:  # a state that lost its alarm sensor: clear on the group's first
                    row = int(det.table_rows[0])
                self.raised_on[i] = -1
                setpoint.append(model.clear_below)
            self.active[i] = not self.active[i]
            sensor.append(row)
            ts.append(t)
            # the alarm sensor's (held) value at the deciding reading
            col = int(np.flatnonzero(det.table_rows == row)[0])
            value.append(float(det.last_hold[j, col]))
            cond.append(_MSPC)
            active.append(bool(self.active[i]))
            score.append(x)
        if not sensor:
            return Transitions.empty()
        return Transitions(np.array(sensor, np.int32), np.array(ts, np.int64),
                           np.array(value, np.float64),
                           np.array(cond, np.int8), np.array(active, np.bool_),
                           np.array(setpoint, np.float64), np.array(score, np.float64))

    def _top_contributor(self, det: MspcDetector, j: int) -> tuple[int, dict[str, float]]:
        """The table row contributing most at reading ``j``, and every sensor's share."""
        mon = det.monitor
        u = det.last_u[j : j + 1]
        t2c, spec = mon.contributions_of(u)
        t2, spe = mon.statistics(u)
        # the statistic that is further beyond its limit decides which contributions count
        contrib = t2c[0] if t2[0] / mon.t2_limit_ >= spe[0] / mon.spe_limit_ else spec[0]
        total = float(contrib.sum())
        shares = contrib / total if total > 0 else np.full(len(contrib), 1.0 / len(contrib))
        top = int(np.argmax(shares))
        ids = [self.table.ids[r] for r in det.table_rows.tolist()]
        return int(det.table_rows[top]), {s: round(float(v), 4) for s, v in zip(ids, shares,
                                                                                strict=True)}
