"""Limit alarms with deadband, on-delay and off-delay, vectorized over sensors.

Each sensor has up to four alarm points, ISA-18.2's ``ll``, ``l``, ``h`` and
``hh`` (for gas: ``h``/``hh`` are the first and second level). Each point is
decided from the readings in the ISA-18.2 order, in event time:

1. **limit with deadband** — while the point is normal the *raise condition*
   is the value at or beyond its limit (``value >= h``, ``value <= l``); while
   it is active the *clear condition* is the value back inside by the deadband
   (``value < h - deadband``, ``value > l + deadband``);
2. **on-delay** — a normal point is raised at the first reading where the
   raise condition has held continuously for ``on_delay`` (measured from the
   first reading that met it; 0 raises at once);
3. **off-delay** — an active point clears at the first reading where the
   clear condition has held continuously for ``off_delay``.

A reading that breaks a condition's run restarts it. Delays are judged at
readings: with no reading, nothing changes (the no-data detector covers
silence).

Readings are taken in event-time order per sensor. A reading whose timestamp
is not newer than the sensor's last processed one (late or duplicate) is
stored by ingest but does not move the detector: that is what keeps a
redelivery after a crash, or an out-of-order gateway, from re-firing alarms.

Score/decide split: :meth:`LimitDetector.update` returns the continuous score
(signed distance past the nearest first-level limit, in the sensor's unit);
the alarm-point transitions it decided are in :attr:`LimitDetector.transitions`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.base import State
from detectors.decide import ConditionBank, Transitions
from detectors.rounds import fresh_rounds, in_sensor_order, order_by_sensor_time
from model.batch import NO_TS, ReadingBatch
from model.sensor_table import LIMIT_NAMES, SensorTable

__all__ = ["POINTS", "LimitDetector", "order_by_sensor_time"]

POINTS = LIMIT_NAMES  # ("ll", "l", "h", "hh"): column order of the point arrays
_HIGH = np.array([False, False, True, True])
_SEVERITY = np.array([2, 1, 1, 2])  # ll, l, h, hh


class LimitDetector:
    """Four alarm points per sensor (ll, l, h, hh) with deadband and delays.

    Parameters
    ----------
    table : SensorTable
        Limits (NaN where absent), deadbands and on/off delays per sensor.
    """

    name = "limits"

    def __init__(self, table: SensorTable) -> None:
        self.table = table
        limit = np.stack([table.limit(n) for n in POINTS], axis=1)  # (m, 4)
        signed_deadband = np.where(_HIGH, -1.0, 1.0) * table.deadband[:, None]
        self.bank = ConditionBank(
            limit, limit + signed_deadband, _HIGH, table.on_delay_ms, table.off_delay_ms,
            severity=_SEVERITY,
        )
        self.last_ts = np.full(len(table), NO_TS, np.int64)
        self.transitions = Transitions.empty()

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        """(m, 4) which alarm points are active, columns as :data:`POINTS`."""
        return self.bank.active

    # -- state -------------------------------------------------------------
    def get_state(self) -> State:
        return {**self.bank.get_state(), "last_ts": self.last_ts.copy()}

    def set_state(self, state: State) -> None:
        last_ts = np.asarray(state["last_ts"], dtype=np.int64)
        if last_ts.shape != self.last_ts.shape:
            raise ValueError(
                f"LimitDetector state 'last_ts' has shape {last_ts.shape}, expected "
                f"{self.last_ts.shape}: the saved state belongs to a different sensor table; "
                "delete the checkpoint to start fresh"
            )
        self.bank.set_state(state)
        self.last_ts = last_ts.copy()

    def set_limits(self, limits: dict[str, npt.NDArray[np.float64]]) -> None:
        """Move the limits (an important period tightening them, or ending).

        ``limits`` maps ``ll``/``l``/``h``/``hh`` to (m,) arrays. The sensor
        table's columns are overwritten in place, so the trend detector sees
        the same limits; deadbands stay as they were. Active points stay
        active: whether they clear is judged against the new limits at the
        next reading.
        """
        t = self.table
        for name in POINTS:
            getattr(t, name)[:] = limits[name]
        limit = np.stack([t.limit(n) for n in POINTS], axis=1)
        signed_deadband = np.where(_HIGH, -1.0, 1.0) * t.deadband[:, None]
        self.bank.set_thresholds(limit, limit + signed_deadband)

    # -- one batch ---------------------------------------------------------
    def update(self, batch: ReadingBatch) -> npt.NDArray[np.float64]:
        """Advance over a batch; return the score per row (NaN for late readings).

        The alarm-point changes decided on the way are left in
        :attr:`transitions`.
        """
        t = self.table
        scores = np.full(len(batch), np.nan)
        parts: list[Transitions] = []
        for r, _ in fresh_rounds(batch, self.last_ts):
            s, v = r.sensors, r.value
            score = np.fmax(v - t.h[s], t.l[s] - v)
            scores[r.rows] = score
            pos, p, raised = self.bank.step(s, r.ts, v)
            if len(pos):
                order, sensor = in_sensor_order(s, pos)
                if order is not None:
                    pos, p, raised = pos[order], p[order], raised[order]
                parts.append(Transitions(
                    sensor=sensor, ts=r.ts[pos], value=v[pos], condition=p.astype(np.int8),
                    active=raised, setpoint=self.bank.setpoints(sensor, p, raised),
                    score=score[pos],
                ))
        self.transitions = Transitions.concat(parts)
        return scores
