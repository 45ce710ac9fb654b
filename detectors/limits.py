"""Two-level limit detection with deadband, vectorized over sensors.

Each sensor has a high side (``h`` first level, ``hh`` second level) and a low
side (``l``, ``ll``). The detector keeps, per sensor and side, the level that
is currently active (0, 1 or 2) and moves it one reading at a time:

* a level is **entered** when the value reaches its limit
  (``value >= h`` / ``value <= l``);
* an active level is **held** until the value falls back through the limit
  less the deadband (``value < h - deadband`` / ``value > l + deadband``).

So ``new = max(entered(value), min(previous, held(value)))`` per side.

Readings are taken in event-time order per sensor. A reading whose timestamp is
not newer than the sensor's last processed one (late or duplicate) is stored
by ingest but does not move the detector: that is what keeps a redelivery
after a crash, or an out-of-order gateway, from re-firing alarms.

The score/decide split: :meth:`LimitDetector.scores` gives the signed
distance past the nearest limit (a continuous score); :meth:`update` is the
deciding step with deadband. On-delay and off-delay come with the detector
suite (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.batch import ReadingBatch
from detectors.sensor_table import SensorTable

__all__ = ["LimitDetector", "LimitTransitions", "order_by_sensor_time"]

_NO_TS = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class LimitTransitions:
    """Level changes found in one batch, one row per change, in processing order.

    Attributes
    ----------
    sensor : int32 (k,)
    ts : int64 (k,)
        Event time of the reading that changed the level, ms.
    value : float64 (k,)
    side : int8 (k,)
        +1 high side (h/hh), -1 low side (l/ll).
    old_level, new_level : int8 (k,)
        0 normal, 1 first level, 2 second level.
    """

    sensor: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    side: npt.NDArray[np.int8]
    old_level: npt.NDArray[np.int8]
    new_level: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.sensor)


def order_by_sensor_time(
    sensor: npt.NDArray[np.int32], ts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Group readings into "rounds": round k holds the k-th reading of each sensor.

    Returns ``(order, bounds)``: ``order`` lists batch rows round by round
    (within a round each sensor appears at most once, so a round is one
    vectorized step), and round k is ``order[bounds[k]:bounds[k+1]]``.
    Within a sensor, readings are in timestamp order (stable for ties).
    """
    n = len(sensor)
    if n == 0:
        return np.empty(0, np.intp), np.zeros(1, np.intp)
    by_sensor = np.lexsort((ts, sensor))
    s_sorted = sensor[by_sensor]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    run_len = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, run_len)
    by_round = np.argsort(rank, kind="stable")
    order = by_sensor[by_round]
    counts = np.bincount(rank)
    bounds = np.r_[0, np.cumsum(counts)].astype(np.intp)
    return order.astype(np.intp), bounds


class LimitDetector:
    """Vectorized two-level high/low limit detector with deadband.

    Parameters
    ----------
    table : SensorTable
        Limits (NaN where absent) and deadbands per sensor.
    """

    def __init__(self, table: SensorTable) -> None:
        self.table = table
        m = len(table)
        self.high_level = np.zeros(m, np.int8)
        self.low_level = np.zeros(m, np.int8)
        self.last_ts = np.full(m, _NO_TS, np.int64)

    # -- state -------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "high_level": self.high_level.copy(),
            "low_level": self.low_level.copy(),
            "last_ts": self.last_ts.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        m = len(self.table)
        for name, dtype in (("high_level", np.int8), ("low_level", np.int8), ("last_ts", np.int64)):
            arr = np.asarray(state[name], dtype=dtype)
            if arr.shape != (m,):
                raise ValueError(
                    f"LimitDetector state {name!r} has shape {arr.shape}, expected ({m},): "
                    "the saved state belongs to a different sensor table; delete the "
                    "checkpoint to start fresh"
                )
            setattr(self, name, arr.copy())

    # -- scoring -----------------------------------------------------------
    def scores(self, batch: ReadingBatch) -> npt.NDArray[np.float64]:
        """Signed distance past the nearest first-level limit, in the sensor's unit.

        Positive when the reading is beyond ``h`` (above) or ``l`` (below),
        negative when inside; NaN for a sensor with no first-level limit.
        """
        s = batch.sensor
        above = batch.value - self.table.h[s]
        below = self.table.l[s] - batch.value
        return np.fmax(above, below)

    # -- deciding ----------------------------------------------------------
    def update(self, batch: ReadingBatch) -> LimitTransitions:
        """Advance the detector over a batch; return every level change."""
        t = self.table
        order, bounds = order_by_sensor_time(batch.sensor, batch.ts)
        out_rows: list[npt.NDArray[np.intp]] = []
        out_side: list[npt.NDArray[np.int8]] = []
        out_old: list[npt.NDArray[np.int8]] = []
        out_new: list[npt.NDArray[np.int8]] = []
        for k in range(len(bounds) - 1):
            rows = order[bounds[k] : bounds[k + 1]]
            s = batch.sensor[rows]
            ts = batch.ts[rows]
            fresh = ts > self.last_ts[s]
            if not fresh.all():
                rows, s, ts = rows[fresh], s[fresh], ts[fresh]
            if len(rows) == 0:
                continue
            v = batch.value[rows]
            db = t.deadband[s]
            hi_in = (v >= t.h[s]).astype(np.int8) + (v >= t.hh[s]).astype(np.int8)
            hi_hold = (v >= t.h[s] - db).astype(np.int8) + (v >= t.hh[s] - db).astype(np.int8)
            lo_in = (v <= t.l[s]).astype(np.int8) + (v <= t.ll[s]).astype(np.int8)
            lo_hold = (v <= t.l[s] + db).astype(np.int8) + (v <= t.ll[s] + db).astype(np.int8)
            old_hi = self.high_level[s]
            old_lo = self.low_level[s]
            new_hi = np.maximum(hi_in, np.minimum(old_hi, hi_hold))
            new_lo = np.maximum(lo_in, np.minimum(old_lo, lo_hold))
            self.high_level[s] = new_hi
            self.low_level[s] = new_lo
            self.last_ts[s] = ts
            for side, old, new in ((1, old_hi, new_hi), (-1, old_lo, new_lo)):
                changed = np.flatnonzero(old != new)
                if len(changed):
                    out_rows.append(rows[changed])
                    out_side.append(np.full(len(changed), side, np.int8))
                    out_old.append(old[changed])
                    out_new.append(new[changed])
        if not out_rows:
            return LimitTransitions(
                np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64),
                np.empty(0, np.int8), np.empty(0, np.int8), np.empty(0, np.int8),
            )
        rows_all = np.concatenate(out_rows)
        return LimitTransitions(
            sensor=batch.sensor[rows_all],
            ts=batch.ts[rows_all],
            value=batch.value[rows_all],
            side=np.concatenate(out_side),
            old_level=np.concatenate(out_old),
            new_level=np.concatenate(out_new),
        )
