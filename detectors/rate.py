"""Rate of change per sensor, in the sensor's unit per minute, robust to one bad sample.

The estimator: a robust Holt filter in event time
-------------------------------------------------
Each sensor carries a level and a slope (Holt's double exponential smoothing),
advanced per reading with that reading's own ``Δt`` (seconds since the sensor's
previous reading), so irregular sampling is handled exactly::

    p      = level + slope·Δt                   one-step prediction
    e      = x − p                              innovation
    lim    = c·scale / exp(−Δt/τ_level)         clip limit (loosens across gaps)
    ê      = clip(e, −lim, +lim)                unless the previous innovation also
                                                overshot its limit on the same side:
                                                then ê = e (a real change)
    level ← p + α·ê                             α = 1 − exp(−Δt/τ_level)
    slope ← slope + α·β·ê/Δt                    β = 1 − exp(−Δt/τ_slope)
    scale ← scale + g·(|ê| − scale)             EW mean absolute innovation,
                                                g = 1/30 per reading
    excess ← e − clip(e, −lim, +lim)            signed overshoot, for the next reading

Why Holt, not an EW mean of the instantaneous rates ``Δx/Δt``: that mean
carries the newest sample's noise with weight α, so its noise is about
``σ·α/Δt`` — ``60·σ/τ`` per minute: 1 °C/min for σ = 0.5 °C and τ = 30 s,
half of a 2 °C/min limit. Holt's slope is fed by level innovations, which
averages twice; its noise is ``σ·sqrt(Δt / (2·τ_level·τ_slope²))`` per second
(continuous-time limit, checked by simulation): 0.12 °C/min for the same
sensor at τ_level = τ_slope = 30 s, eight times less, with about the same 90 %
response time to a ramp's start (65 s against 70 s). On a steady ramp Holt's
level and slope have no lag bias.

Robust to one noisy sample: a spike's innovation is clipped to ``±lim``, so
it moves the level by at most ``α·lim`` and the slope by at most
``α·β·lim/Δt`` — whatever its size: a 30 °C spike on a σ = 0.5 °C sensor moves
the rate by 0.13 °C/min (its own instantaneous rate is 1800 °C/min), and the
following readings, whose innovations have the opposite sign, pull it back
within ≈ τ. (An EW mean of clipped instantaneous rates would jump by
``α·c·MAD(Δx/Δt)`` ≈ 3 °C/min on that sensor for one reading, then undo it: a
one-reading false alarm against a 2 °C/min limit.) Two consecutive overshoots
on the same side are a real change (a step, a leak's ramp), not a spike: from
the second one on they pass unclipped, so robustness delays the answer to a
real change by one reading at most. The clip limit grows as
``exp(Δt/τ_level)`` with the time since the previous reading: after a gap of
several τ the old state has decayed, a projection across the gap is no judge
of outliers, and the reading is taken as it is (the slope becomes the mean
slope across the gap). The noise scale
is weighted per reading, not per second: noise belongs to each reading, and a
sensor sampled every τ or slower still averages it over ~30 readings.

Contract (:mod:`detectors.base`):

* readings per sensor in timestamp order; a reading not newer than the
  sensor's last processed one (late, duplicate), or with a non-finite value,
  scores NaN and does not move state;
* readings are counted with an int64 per sensor (the count stops at
  ``max(warmup, 30)``). The first reading sets ``level = x``, ``slope = 0``.
  Readings 1 … ``warmup`` score NaN and are not clipped. While a sensor has had
  fewer than 30 readings its level and scale are plain means of the readings
  and innovations so far (gains ``max(α, 1/n)``, ``1/n``): the clip limit starts
  from data, not from zero, and the first reading's noise does not linger in
  the level (and so in the slope); the slope keeps its own small gain, so it
  starts quiet instead of from the line through two noisy points;
* state: four float64 and two int64 per sensor (48 bytes), in named arrays.

Deciding rule (applied by the suite, not here): a rate condition is raised
when ``|score| ≥ max_rate_per_min`` of the sensor, cleared when it falls back
below ``0.8 · max_rate_per_min``; NaN never raises. Choose ``tau_s`` so that the
slope noise above, ``60·σ·sqrt(Δt/(2·τ³))`` per minute, is well under the
sensor's ``max_rate_per_min`` (five times under: about one reading in 1.7
million beyond it on white noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from detectors.base import State
from detectors.rounds import order_by_sensor_time
from model.batch import F64, NO_TS, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["RateOfChangeDetector", "RobustHolt", "SensorRound", "Sensors"]

SCALE_READINGS = 30
"""The noise scale is an EW mean over about this many readings, whatever their Δt."""
SETTLE_READINGS = SCALE_READINGS
"""The first readings of a sensor, whose level and scale are plain means."""
_MAX_DECAY = 40.0  # exp(-40) ≈ 4e-18: beyond 40 τ a gap is as good as forever
# A sensor that reads exactly 0.0 for hours (a zero-suppressed gas detector)
# would take level, slope and scale down into subnormal floats, where arithmetic
# is ~40 times slower, and keep them there. A constant bias in the prediction
# moves that fixed point to ±1e-150-ish normal numbers, and the scale has a
# floor; both are far below anything a sensor can resolve.
_BIAS = 1e-150
_SCALE_FLOOR = 1e-100
_LEVEL, _SLOPE, _SCALE, _EXCESS = range(4)
_FIELDS = ("level", "slope_per_s", "scale", "excess")

Rows = npt.NDArray[np.intp] | slice
"""Batch rows of a round: an index array, or a slice when they are contiguous."""
Sensors = npt.NDArray[np.int32] | npt.NDArray[np.intp] | slice
"""Sensors of a round: an index array, or ``slice(None)`` when it is every sensor in order."""


def _rounds(batch: ReadingBatch, m: int) -> Iterator[tuple[Rows, bool]]:
    """Yield ``(rows, full)`` per round; ``full``: the round is sensors 0 … m-1 in order.

    Two layouts are recognised without sorting: one reading per sensor in
    sensor order (a snapshot), and k snapshots of every sensor one after the
    other, each sensor's readings in time order (a backlog of snapshots). Any
    other batch is grouped by :func:`~detectors.rounds.order_by_sensor_time`.
    """
    sensor = batch.sensor
    n = len(sensor)
    if n == 0:
        return
    if n == 1 or bool((sensor[1:] > sensor[:-1]).all()):
        yield slice(0, n), bool(n == m and sensor[0] == 0 and sensor[-1] == m - 1)
        return
    if m and n % m == 0:
        k = n // m
        ts = batch.ts.reshape(k, m)
        if (
            bool((sensor.reshape(k, m) == np.arange(m, dtype=np.int32)).all())
            and bool((ts[1:] >= ts[:-1]).all())
        ):
            for j in range(k):
                yield slice(j * m, (j + 1) * m), True
            return
    order, bounds = order_by_sensor_time(sensor, batch.ts)
    for k in range(len(bounds) - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        full = len(rows) == m and sensor[rows[0]] == 0 and sensor[rows[-1]] == m - 1
        yield rows, bool(full)


class SensorRound:
    """The readings of one round that got a score, with their sensors' new state.

    Attributes
    ----------
    rows : int array or slice
        Batch rows of the scored readings.
    sensors : int array or slice
        Their sensors; ``slice(None)`` when the round is every sensor in order
        (index per-sensor constants with it).
    level, slope_per_s, scale : float64 arrays, shape (k,)
        Level (unit), slope (unit/s) and mean absolute innovation (unit) after
        the reading. Read-only: they may be views of the filter's state.
    dt_s : float64 array, shape (k,), or float
        Seconds since each sensor's previous reading; one float when it is the
        same for the whole round.
    """

    __slots__ = ("dt_s", "level", "rows", "scale", "sensors", "slope_per_s")

    def __init__(self, rows: Rows, sensors: Sensors, f: F64, dt_s: F64 | float) -> None:
        self.rows = rows
        self.sensors = sensors
        self.level = f[_LEVEL]
        self.slope_per_s = f[_SLOPE]
        self.scale = f[_SCALE]
        self.dt_s = dt_s

    def row_index(self, i: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Batch rows of the scored readings ``i`` (positions within this round)."""
        if isinstance(self.rows, slice):
            return i + (self.rows.start or 0)
        return self.rows[i]

    def sensor_index(self, i: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Sensors of the scored readings ``i``."""
        if isinstance(self.sensors, slice):
            return i
        return np.asarray(self.sensors[i], np.intp)


class RobustHolt:
    """Per-sensor robust level and slope in event time (see the module docstring).

    Parameters
    ----------
    n_sensors : int
    tau_level_s, tau_slope_s : float
        Time constants of the level and of the slope, seconds (> 0).
    clip_sigmas : float
        Clip limit in units of the running mean absolute innovation (> 0).
    warmup : int
        Readings per sensor before a score is given (≥ 2).
    owner : str
        Name used in error messages (the detector that owns the filter).
    """

    def __init__(
        self,
        n_sensors: int,
        *,
        tau_level_s: float,
        tau_slope_s: float,
        clip_sigmas: float,
        warmup: int,
        owner: str,
    ) -> None:
        for name, value in (("tau_level_s", tau_level_s), ("tau_slope_s", tau_slope_s),
                            ("clip_sigmas", clip_sigmas)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{owner}: {name}={value} must be a finite number > 0")
        if int(warmup) != warmup or warmup < 2:
            raise ValueError(
                f"{owner}: warmup={warmup} must be an integer ≥ 2 (the clip limit needs "
                "at least one innovation to start from)"
            )
        self.owner = owner
        self.tau_level_s = float(tau_level_s)
        self.tau_slope_s = float(tau_slope_s)
        self.clip_sigmas = float(clip_sigmas)
        self.warmup = int(warmup)
        self._same_tau = self.tau_level_s == self.tau_slope_s
        self._neg_inv_tau_level = -1.0 / self.tau_level_s
        self._neg_inv_tau_slope = -1.0 / self.tau_slope_s
        self._scale_gain = 1.0 / SCALE_READINGS
        # Readings are counted up to here; past it a sensor is fully settled.
        self._settled = max(self.warmup, SETTLE_READINGS)
        self.f: F64 = np.zeros((4, n_sensors))
        self.last_ts = np.full(n_sensors, NO_TS, np.int64)
        self.count = np.zeros(n_sensors, np.int64)
        self._all_warm = n_sensors == 0

    def __len__(self) -> int:
        return len(self.count)

    @property
    def level(self) -> F64:
        """(m,) level per sensor, unit (a view of the state: do not write)."""
        row: F64 = self.f[_LEVEL]
        return row

    @property
    def slope_per_s(self) -> F64:
        """(m,) slope per sensor, unit/s (a view of the state: do not write)."""
        row: F64 = self.f[_SLOPE]
        return row

    @property
    def scale(self) -> F64:
        """(m,) mean absolute innovation per sensor, unit (a view of the state: do not write)."""
        row: F64 = self.f[_SCALE]
        return row

    # -- state -------------------------------------------------------------
    def get_state(self) -> State:
        state: State = {name: self.f[i].copy() for i, name in enumerate(_FIELDS)}
        state["last_ts"] = self.last_ts.copy()
        state["count"] = self.count.copy()
        return state

    def set_state(self, state: State) -> None:
        m = len(self)
        expected = (*_FIELDS, "last_ts", "count")
        missing = [k for k in expected if k not in state]
        if missing:
            raise ValueError(f"{self.owner} state lacks {missing}; it holds {sorted(state)}")
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for name in expected:
            arr: npt.NDArray[np.generic] = np.asarray(
                state[name], dtype=np.int64 if name in ("last_ts", "count") else np.float64
            )
            if arr.shape != (m,):
                raise ValueError(
                    f"{self.owner} state {name!r} has shape {arr.shape}, expected ({m},): the "
                    "saved state belongs to a different sensor table; delete the checkpoint "
                    "to start fresh"
                )
            arrays[name] = arr
        self.f = np.stack([np.asarray(arrays[n], np.float64) for n in _FIELDS])
        self.last_ts = np.asarray(arrays["last_ts"], np.int64).copy()
        self.count = np.minimum(np.asarray(arrays["count"], np.int64), self._settled)
        self._all_warm = bool(self.count.min(initial=self._settled) >= self._settled)

    # -- readings ----------------------------------------------------------
    def advance(self, batch: ReadingBatch) -> Iterator[SensorRound]:
        """Take the batch round by round; yield the scored readings of each round.

        Late, duplicate and non-finite readings and readings still in warm-up
        are left out of what is yielded (their score is NaN). Consume the whole
        iterator: state advances as it goes.
        """
        m = len(self)
        for rows, full in _rounds(batch, m):
            ts = batch.ts[rows]
            v = batch.value[rows]
            s: Sensors = slice(None) if full else batch.sensor[rows]
            dt_ms = ts - self.last_ts[s]
            shortest, longest = int(dt_ms.min()), int(dt_ms.max())
            if (
                shortest > 0
                and (self._all_warm or self.count[s].min() >= self._settled)
                and bool(np.isfinite(v).all())  # a sum would warn at +inf and -inf
            ):
                # The common round: every reading fresh, finite and past warm-up.
                # A gateway's snapshot has one Δt for all its sensors: then the
                # gains are scalars (bitwise the same numbers as per-sensor ones).
                dt: F64 | float = (
                    shortest * 1e-3
                    if shortest == longest
                    else np.multiply(dt_ms, 1e-3, dtype=np.float64)
                )
                f = self.f if full else self.f[:, s]
                self._step(f, dt, v, None)  # in place on the state when full
                if not full:
                    self.f[:, s] = f
                self.last_ts[s] = ts
                yield SensorRound(rows, s, f, dt)
                continue
            sensors = np.arange(m, dtype=np.int32) if full else batch.sensor[rows]
            done = self._slow_round(rows, sensors, ts, v)
            if done is not None:
                yield done

    def _slow_round(
        self,
        rows: Rows,
        s: npt.NDArray[np.int32],
        ts: npt.NDArray[np.int64],
        v: F64,
    ) -> SensorRound | None:
        """A round with first, late, non-finite or warming-up readings."""
        count = self.count[s]
        first = count == 0
        ok = np.isfinite(v) & (first | (ts > self.last_ts[s]))
        new = ok & first
        if new.any():
            sn = s[new]
            self.f[:, sn] = 0.0
            self.f[_LEVEL, sn] = v[new]
            self.count[sn] = 1
            self.last_ts[sn] = ts[new]
        idx = np.flatnonzero(ok & ~first)
        if len(idx) == 0:
            return None
        ss = s[idx]
        c = count[idx]
        f = self.f[:, ss]
        dt = np.multiply(ts[idx] - self.last_ts[ss], 1e-3, dtype=np.float64)
        self._step(f, dt, v[idx], c)
        self.f[:, ss] = f
        self.last_ts[ss] = ts[idx]
        self.count[ss] = np.minimum(c + 1, self._settled)
        if not self._all_warm:
            self._all_warm = bool(self.count.min() >= self._settled)
        scored = np.flatnonzero(c >= self.warmup)  # reading number c + 1 > warmup
        if len(scored) == 0:
            return None
        row_arr = np.arange(rows.start or 0, rows.stop) if isinstance(rows, slice) else rows
        return SensorRound(row_arr[idx[scored]], ss[scored], f[:, scored], dt[scored])

    def _step(
        self,
        f: F64,
        dt: F64 | float,
        v: F64,
        count: npt.NDArray[np.int64] | None,
    ) -> None:
        """Advance ``f`` (rows level, slope, scale, excess; one column per reading) in place.

        ``dt`` is Δt in seconds, per reading or one for all. ``count`` (readings
        before this one) is given only when some sensors may still be settling.
        """
        level, slope, scale, excess = f[_LEVEL], f[_SLOPE], f[_SCALE], f[_EXCESS]
        decay = np.exp(np.maximum(np.multiply(dt, self._neg_inv_tau_level), -_MAX_DECAY))
        alpha = 1.0 - decay
        if self._same_tau:
            beta = alpha
        else:
            beta = 1.0 - np.exp(np.maximum(np.multiply(dt, self._neg_inv_tau_slope), -_MAX_DECAY))
        pred = slope * dt
        pred += level
        pred += _BIAS
        e = v - pred
        # Same operation order whether the gains are scalars or arrays, so both
        # paths give bitwise the same state (chunk invariance).
        lim = scale * (self.clip_sigmas / decay)
        young = None
        if count is not None:
            young = count < self.warmup
            lim[young] = np.inf
        e_used = np.negative(lim)
        np.maximum(e, e_used, out=e_used)
        np.minimum(e_used, lim, out=e_used)
        over = e - e_used  # signed overshoot past the clip limit, 0 inside it
        # Overshooting again on the same side is a real change, not a spike: pass it.
        np.multiply(over, excess, out=lim)
        np.copyto(e_used, e, where=lim > 0)
        excess[:] = over
        step = e_used * alpha
        gain: F64 | float = self._scale_gain
        if count is None:
            np.add(pred, step, out=level)
        else:
            # Settling: level and scale are plain means of the first readings and
            # innovations (as far as that weighs more than α and 1/30); the slope
            # keeps its own gain, so it starts quiet instead of from two points.
            settling = count < SETTLE_READINGS
            level_gain = np.where(settling, np.maximum(alpha, 1.0 / (count + 1)), alpha)
            np.add(pred, e_used * level_gain, out=level)
            gain = np.maximum(gain, 1.0 / count)
        step *= beta / dt
        slope += step
        np.abs(e_used, out=e_used)
        e_used -= scale
        e_used *= gain
        scale += e_used
        np.maximum(scale, _SCALE_FLOOR, out=scale)


class RateOfChangeDetector:
    """Rate of change of each sensor, unit per minute, robust to one bad sample.

    Parameters
    ----------
    table : SensorTable
    tau_s : float
        Time constant of the level and of the slope, seconds. The rate answers
        a ramp's start with 63 % after ≈ 1.6·tau_s and 90 % after ≈ 2.2·tau_s.
    clip_sigmas : float
        Innovations are clipped at this many mean absolute innovations.
    warmup : int
        Readings per sensor that score NaN while the filter settles (≥ 2).

    Notes
    -----
    ``update`` returns the signed rate estimate per reading, unit/min (NaN:
    late, duplicate, non-finite or warming up). Deciding rule (the suite's):
    ``|rate| ≥ max_rate_per_min``.
    """

    name = "rate"

    def __init__(
        self,
        table: SensorTable,
        *,
        tau_s: float = 30.0,
        clip_sigmas: float = 3.0,
        warmup: int = 5,
    ) -> None:
        self.table = table
        self.filter = RobustHolt(
            len(table), tau_level_s=tau_s, tau_slope_s=tau_s, clip_sigmas=clip_sigmas,
            warmup=warmup, owner="RateOfChangeDetector",
        )

    def update(self, batch: ReadingBatch) -> F64:
        """Advance over ``batch``; return the rate per row, unit/min."""
        scores = np.full(len(batch), np.nan)
        for r in self.filter.advance(batch):
            if isinstance(r.rows, slice):
                np.multiply(r.slope_per_s, 60.0, out=scores[r.rows])
            else:
                scores[r.rows] = r.slope_per_s * 60.0
        return scores

    def get_state(self) -> State:
        return self.filter.get_state()

    def set_state(self, state: State) -> None:
        self.filter.set_state(state)

    @property
    def rate_per_min(self) -> F64:
        """(m,) current rate estimate per sensor, unit/min; NaN before a sensor's first reading."""
        return np.where(self.filter.count > 0, self.filter.slope_per_s * 60.0, np.nan)

    @property
    def level(self) -> F64:
        """(m,) current level estimate per sensor, unit; NaN before a sensor's first reading."""
        return np.where(self.filter.count > 0, self.filter.level, np.nan)
