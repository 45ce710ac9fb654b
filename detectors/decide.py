"""Deciding: turn a continuous input into condition points, the ISA-18.2 way.

A *condition bank* holds ``k`` condition points per sensor over one input per
reading (a measured value for limit alarms, a detector score for warnings and
faults). Each point is decided in the ISA-18.2 order, in event time:

1. **threshold with hysteresis** — a normal point's raise condition is the
   input at or beyond ``enter`` (``x >= enter`` for an upper point,
   ``x <= enter`` for a lower one); an active point's clear condition is the
   input back past ``leave`` (``x < leave`` / ``x > leave``). ``leave`` is
   ``enter`` less the deadband, so a value hovering at the limit does not
   chatter;
2. **on-delay** — a normal point is raised at the first input where the raise
   condition has held continuously for ``on_delay_ms`` (0 raises at once);
3. **off-delay** — an active point clears at the first input where the clear
   condition has held continuously for ``off_delay_ms``.

A NaN ``enter`` disables a point. A NaN input meets no raise condition; with
``nan_clears`` it meets the clear condition (a score that has no value any
more — a trend no longer heading for a limit — ends its warning).

The bank decides; it does not pick readings: callers pass one row per sensor
(a "round", see :func:`detectors.rounds.order_by_sensor_time`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.base import State
from model.batch import NO_TS

__all__ = ["CONDITIONS", "ConditionBank", "Transitions"]

_NONE = (np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, np.bool_))

CONDITIONS = ("ll", "l", "h", "hh", "rate", "trend", "drift", "stuck", "range", "spike",
              "nodata", "mspc")
"""Every condition a sensor can be in; a transition's ``condition`` indexes this."""


@dataclass(frozen=True, slots=True)
class Transitions:
    """Condition points that changed in one batch (or tick), in processing order.

    Attributes
    ----------
    sensor : int32 (k,)
    ts : int64 (k,)
        Event time of the reading (or the clock, for no-data) that decided it, ms.
    value : float64 (k,)
        The reading's value (NaN for no-data).
    condition : int8 (k,)
        Index into :data:`CONDITIONS`.
    active : bool (k,)
        True: raised; False: cleared.
    setpoint : float64 (k,)
        The threshold crossed: the raise threshold when raised, the clear
        threshold when cleared (for a trend warning: the limit approached).
    score : float64 (k,)
        The detector's score at that moment (a trend warning's ETA in seconds).
    """

    sensor: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    condition: npt.NDArray[np.int8]
    active: npt.NDArray[np.bool_]
    setpoint: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.sensor)

    @classmethod
    def empty(cls) -> Transitions:
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64),
                   np.empty(0, np.int8), np.empty(0, np.bool_), np.empty(0, np.float64),
                   np.empty(0, np.float64))

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in cls.__dataclass_fields__))


class ConditionBank:
    """``k`` condition points for each of ``m`` sensors.

    Parameters
    ----------
    enter, leave : float64 (m, k)
        Raise and clear thresholds per sensor and point.
    upper : bool (k,)
        True for a point raised by high inputs, False for one raised by low.
    on_delay_ms, off_delay_ms : int64 (m,) or (m, k)
        Per sensor, or per sensor and point.
    nan_clears : bool or bool (k,)
        Whether a NaN input counts as the clear condition (per point).
    severity : int (k,) or None
        Order of points changing at the same reading: raises by rising
        severity, clears by falling severity (``h`` before ``hh`` on the way
        up, ``hh`` before ``h`` on the way down).

    The arrays are kept point-major, (k, m), so that every operation of a
    step runs along the sensors. Sensor-major (m, k) arrays made NumPy loop
    over k = 4 or 6 elements at a time, several times slower per step
    (docs/benchmarks.md, "Design measurements"; docs/decisions/0003). The public
    :attr:`active` and :attr:`since` are (m, k) views, and the state is saved
    as (m, k) as before.
    """

    def __init__(
        self,
        enter: npt.NDArray[np.float64],
        leave: npt.NDArray[np.float64],
        upper: npt.NDArray[np.bool_],
        on_delay_ms: npt.NDArray[np.int64],
        off_delay_ms: npt.NDArray[np.int64],
        *,
        nan_clears: bool | npt.NDArray[np.bool_] = False,
        severity: npt.NDArray[np.int64] | None = None,
    ) -> None:
        m, k = enter.shape
        self.upper = upper
        # Lower points are decided on the negated input against negated
        # thresholds, so every point is an upper one: x' >= enter', x' < leave'.
        self._sign = np.where(upper, 1.0, -1.0)[:, None]
        self.enter = enter
        self.leave = leave
        self._enter_s = np.ascontiguousarray(enter.T) * self._sign
        self._leave_s = np.ascontiguousarray(leave.T) * self._sign
        self._on = _point_major(on_delay_ms, m, k)
        self._off = _point_major(off_delay_ms, m, k)
        self._nan_clears = np.broadcast_to(np.asarray(nan_clears, np.bool_), (k,))[:, None]
        self._any_nan_clears = bool(self._nan_clears.any())
        self.severity = np.zeros(k, np.int64) if severity is None else severity
        self._active = np.zeros((k, m), np.bool_)
        self._since = np.full((k, m), NO_TS, np.int64)
        self._busy = np.zeros(m, np.bool_)  # any point active or timing a delay

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        """(m, k) which points are active (a view: writing to it changes the bank)."""
        return self._active.T

    @property
    def since(self) -> npt.NDArray[np.int64]:
        """(m, k) when each point's pending raise or clear began (``NO_TS``: none)."""
        return self._since.T

    def any_active(self, sensors: slice | npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """Per sensor of ``sensors``: is any of its points active?"""
        out: npt.NDArray[np.bool_] = np.logical_or.reduce(self._active[:, sensors], axis=0)
        return out

    def point_active(
        self, point: int, sensors: slice | npt.NDArray[np.intp]
    ) -> npt.NDArray[np.bool_]:
        """Per sensor of ``sensors``: is point ``point`` active?"""
        return self._active[point, sensors]

    def set_thresholds(self, enter: npt.NDArray[np.float64],
                       leave: npt.NDArray[np.float64]) -> None:
        """Replace the raise and clear thresholds, (m, k) each; state is kept."""
        if enter.shape != self.enter.shape or leave.shape != self.leave.shape:
            raise ValueError(f"thresholds of shape {enter.shape}/{leave.shape}, expected "
                             f"{self.enter.shape}")
        self.enter = enter
        self.leave = leave
        self._enter_s = np.ascontiguousarray(enter.T) * self._sign
        self._leave_s = np.ascontiguousarray(leave.T) * self._sign

    def get_state(self) -> State:
        # Copies, always: with one point the (m, 1) views are contiguous already, and
        # ascontiguousarray handed out the live arrays (a later step moved the snapshot).
        return {"active": self._active.T.copy(), "since": self._since.T.copy()}

    def set_state(self, state: State) -> None:
        shape = self.active.shape
        arrays = {}
        for name, dtype in (("active", np.bool_), ("since", np.int64)):
            arr = np.asarray(state[name], dtype=dtype)
            if arr.shape != shape:
                raise ValueError(
                    f"condition state {name!r} has shape {arr.shape}, expected "
                    f"{shape}: the saved state belongs to a different sensor table; "
                    "delete the checkpoint to start fresh"
                )
            arrays[name] = np.array(arr.T, order="C")  # a copy: the caller keeps theirs
        self._active, self._since = arrays["active"], arrays["since"]
        self._busy = self._active.any(axis=0) | (self._since != NO_TS).any(axis=0)

    def setpoints(
        self, sensor: npt.NDArray[np.int32], point: npt.NDArray[np.intp],
        raised: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.float64]:
        """The threshold each change crossed: ``enter`` when raised, ``leave`` when cleared."""
        return np.where(raised, self.enter[sensor, point], self.leave[sensor, point])

    def step(
        self,
        sensors: slice | npt.NDArray[np.intp] | npt.NDArray[np.int32],
        ts: npt.NDArray[np.int64],
        x: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """Advance the points of ``sensors`` (each at most once) by one input each.

        ``sensors`` is an index array, or a slice (step 1) when the round is a
        contiguous block of sensors (a gateway's message, or the whole plant:
        then nothing is gathered). ``x`` is (n,), one input for all of a
        sensor's points, or (k, n), one row per point. Returns
        ``(position, point, active)`` of every point that changed, positions
        within the round, ordered by position, then as ``severity`` says.
        """
        xs = self._sign * x  # (k, n)
        beyond = xs >= self._enter_s[:, sensors]
        # Only sensors with a point beyond its threshold, active, or timing a
        # delay can change; in steady state that is almost none of them.
        hot = np.logical_or.reduce(beyond, axis=0)
        hot |= self._busy[sensors]
        if not hot.any():
            return _NONE
        h = np.flatnonzero(hot)
        sh = h + (sensors.start or 0) if isinstance(sensors, slice) else sensors[h]
        xs_h = xs[:, h]
        act = self._active[:, sh]
        since = self._since[:, sh]
        back = xs_h < self._leave_s[:, sh]
        if self._any_nan_clears:
            back |= np.isnan(xs_h) & self._nan_clears
        cond = np.where(act, back, beyond[:, h])
        ts2 = ts[h]
        since = np.where(cond, np.where(since == NO_TS, ts2, since), NO_TS)
        delay = np.where(act, self._off[:, sh], self._on[:, sh])
        flip = cond & (ts2 - since >= delay)
        act ^= flip
        since[flip] = NO_TS
        self._active[:, sh] = act
        self._since[:, sh] = since
        self._busy[sh] = act.any(axis=0) | (since != NO_TS).any(axis=0)
        if not flip.any():
            return _NONE
        p, r = np.nonzero(flip)
        raised = act[p, r]
        sev = self.severity[p]
        # Stable sort: points of one position with equal keys keep point order.
        key = (r * 64 + np.where(raised, sev, 31 - sev)) * 2 + self.upper[p]
        o = np.argsort(key, kind="stable")
        return h[r[o]], p[o], raised[o]


def _point_major(delay_ms: npt.NDArray[np.int64], m: int, k: int) -> npt.NDArray[np.int64]:
    """Delays given per sensor (m,) or per sensor and point (m, k), as (k, m)."""
    per_point = delay_ms[:, None] if delay_ms.ndim == 1 else delay_ms
    return np.ascontiguousarray(np.broadcast_to(per_point, (m, k)).T)
