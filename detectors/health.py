"""Sensor faults: a stuck (flatlined) value, out of range, spikes, no data.

Four small detectors, each keeping the contract of :mod:`detectors.base`, and
the helpers they share with :mod:`detectors.drift`:

* :func:`sensor_rounds` splits a batch into rounds (round k: the k-th reading
  of each sensor, per sensor in timestamp order, as
  :func:`detectors.rounds.order_by_sensor_time` does) without sorting for the
  layouts gateways produce, and lists each round's rows in sensor order when
  its sensors form a range, so detectors work on *slices* of their state;
* :class:`RoundDetector` walks the rounds: it drops late, duplicate and
  non-finite readings (score NaN, no state change), primes a sensor on its
  first reading, and hands every other round to one vectorized step.

Deciding rules (the suite's condition bank applies them, not these classes):

=========  ===============================================  =====================
detector   score                                            raised when
=========  ===============================================  =====================
stuck      seconds the value has stayed within ±tolerance   ≥ ``stuck_after_s``
           of where its run started                         (NaN: not judged)
range      span units beyond range_lo/hi ± margin           > 0
spike      |x − median| / (1.4826·MAD), robust z-score      ≥ ``spike_z``
no data    seconds since the last reading (``check``)       ≥ ``max_gap_s``
=========  ===============================================  =====================

The ``quality`` column is not consulted: which readings reach the detectors
is the pipeline's decision.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.rounds import I64, Index, RoundDetector
from model.batch import F64, NO_TS
from model.sensor_table import SensorTable

__all__ = [
    "NoDataDetector",
    "RangeDetector",
    "SpikeDetector",
    "StuckDetector",
]

def _per_sensor(value: float | npt.ArrayLike, m: int, what: str) -> F64:
    arr = np.array(np.broadcast_to(np.asarray(value, np.float64), (m,)))
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{what} must be finite and ≥ 0 for every sensor, got {value!r}")
    return arr


# -- the detectors -------------------------------------------------------------


class StuckDetector(RoundDetector):
    """Flatline: seconds the value has stayed within ±tolerance of where it settled.

    A run starts at a reading that differs from the run's first value (the
    *anchor*) by more than ``tolerance``; the score of each reading is the
    time since its run started (0 at the reading that moved). Comparing with
    the anchor rather than with the previous reading means a slow creep in
    sub-tolerance steps is movement, not a flat line.

    The decision must only apply to sensors that normally show noise: a
    process transmitter (pressure, temperature, level, flow) never reads the
    same value for minutes, but a gas detector in clean air legitimately reads
    a steady 0 (many suppress readings near zero), and an oxygen cell often a
    steady 20.9. The suite decides with the table's per-sensor
    ``stuck_after_s``, which is NaN (never raised) for those kinds unless the
    config asks for it.

    Parameters
    ----------
    table : SensorTable
    min_stuck_s : float
        Seconds stuck that make a fault, for a caller deciding on its own
        (:attr:`min_stuck_s`); the suite uses the table's ``stuck_after_s``.
    tolerance : float or array (m,), optional
        Largest change still counted as "unchanged", in the sensor's unit.
        Default: 1e-5 of the span, below one step of a 16-bit converter, so
        any real noise moves the value.

    Notes
    -----
    No warm-up: the first reading scores 0. State: ``anchor`` (float64),
    ``run_start`` and ``last_ts`` (int64) per sensor, 24 bytes.
    """

    name = "stuck"
    _state = (("anchor", np.float64), ("run_start", np.int64))

    def __init__(
        self,
        table: SensorTable,
        *,
        min_stuck_s: float = 600.0,
        tolerance: float | npt.ArrayLike | None = None,
    ) -> None:
        super().__init__(table)
        m = len(table)
        if not (math.isfinite(min_stuck_s) and min_stuck_s > 0):
            raise ValueError(f"StuckDetector: min_stuck_s={min_stuck_s} must be finite and > 0")
        span = table.range_hi - table.range_lo
        self.tolerance = (1e-5 * span if tolerance is None
                          else _per_sensor(tolerance, m, "StuckDetector: tolerance"))
        self.min_stuck_s = float(min_stuck_s)
        self.anchor: F64 = np.zeros(m)
        self.run_start: I64 = np.zeros(m, np.int64)

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        self.anchor[idx] = v
        self.run_start[idx] = ts
        return np.zeros(len(ts))

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        anchor = self.anchor[idx]
        start = self.run_start[idx]
        moved = np.abs(v - anchor) > self.tolerance[idx]
        np.copyto(anchor, v, where=moved)
        np.copyto(start, ts, where=moved)
        if not isinstance(idx, slice):  # a slice gave views: already written
            self.anchor[idx] = anchor
            self.run_start[idx] = start
        score = (ts - start).astype(np.float64)
        score *= 1e-3
        return score


class RangeDetector(RoundDetector):
    """Out of the calibrated range: span units beyond ``range_lo/hi ± margin``.

    ``score = max(range_lo − margin − x, x − range_hi − margin, 0) / span``
    with ``margin = margin_fraction · span``; 0 inside the tolerated band,
    and the fault is ``score > 0``. A transmitter signals its own failure
    this way: NAMUR NE 43 puts a 4–20 mA loop's fault currents below 3.6 mA
    and above 21 mA, 2.5–6 % of the span outside it, while a healthy signal
    may overshoot by up to 3 % (3.8–20.5 mA); a gas detector saturating
    above full scale must read as a fault, never as "just high". A reading
    pinned exactly at full scale is in range: the stuck detector sees that.

    Stateless except ``last_ts`` (8 bytes per sensor), kept only so a late
    reading scores NaN like in every other detector.
    """

    name = "range"
    _state = ()

    def __init__(self, table: SensorTable, *, margin_fraction: float = 0.02) -> None:
        super().__init__(table)
        if not (math.isfinite(margin_fraction) and margin_fraction >= 0):
            raise ValueError(
                f"RangeDetector: margin_fraction={margin_fraction} must be finite and ≥ 0")
        span = table.range_hi - table.range_lo
        self.low: F64 = table.range_lo - margin_fraction * span
        self.high: F64 = table.range_hi + margin_fraction * span
        self.inv_span: F64 = 1.0 / span

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        return self._step(idx, ts, v, ts)

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        below = self.low[idx] - v
        np.maximum(below, v - self.high[idx], out=below)
        np.maximum(below, 0.0, out=below)
        below *= self.inv_span[idx]
        return below


_MEDIAN_GAIN = math.sqrt(math.pi / 2)
"""Median step in σ per unit weight: gives the sign update an EWMA's gain for
small offsets (E sign(x − m) ≈ 0.798·δ/σ for Gaussian noise)."""
_MAD_TO_SIGMA = 1.4826
_MEAN_ABS_TO_MAD = 0.6744897501960817 / math.sqrt(2 / math.pi)
"""MAD from a mean absolute deviation, for Gaussian noise (warm-up only)."""


class SpikeDetector(RoundDetector):
    """Spikes: a robust z-score against a streaming median and MAD.

    ``score = |x − median| / (1.4826 · max(MAD, floor))``, the median and MAD
    being those before the reading. Both are tracked by stochastic
    approximation in O(1) per reading, with weight ``α = Δt/(tau_s + Δt)``::

        median ← median + α·√(π/2)·σ̂·sign(x − median)       σ̂ = 1.4826·max(MAD, floor)
        MAD    ← max(MAD·(1 + α·sign(|x − median| − MAD)), floor)

    The fixed points are the median of x and the median of ``|x − median|``.
    A reading moves the median by at most ``α·1.25·σ̂`` and the MAD by a
    factor ``1 ± α`` however far out it is: a 20σ spike moves them as little
    as a 2σ reading, so the next normal reading scores small. (For small
    offsets the median's gain equals an EWMA's with the same weight.)

    A real change also looks like a spike until the MAD has grown and the
    median caught up: at 1 Hz and the default ``tau_s``, a 20σ level step
    keeps z ≥ 8 for about 250 readings and a leak rising to 20 %LEL in 30 s
    for about 600. Read the spike condition beside the limit and rate ones.

    Warm-up: readings 1 … ``warmup`` score NaN while the median starts as
    their running mean and the MAD as their running mean absolute deviation
    (scaled to a MAD for Gaussian noise): sign updates need a scale to start.

    Parameters
    ----------
    table : SensorTable
    tau_s : float
        Time constant of the median and MAD, seconds.
    warmup : int
        Readings per sensor before a score is given (≥ 2).
    mad_floor_fraction : float
        Floor on the MAD as a fraction of the span: a quantized or very quiet
        sensor does not divide by ~0, and a blip of a few units on a sensor
        that reads one value is not a spike. The default (0.4 %LEL on a
        0–100 %LEL head) makes the smallest spike the suite raises (z ≥ 8) on
        such a sensor 8 × 1.4826 × 0.4 ≈ 4.7 % of span. With a floor of 0.1 %
        of span, a combustible head in clean air (exactly 0 %LEL) raised a
        spike fault for every one-reading blip of 2–3 %LEL: seven in an hour
        with twelve blips of 1–3 %LEL, each a call to maintenance for the
        instrument's own noise (docs/domain.md §7: fewer, truer alarms). Sensors
        whose noise is above the floor are judged on their noise, unchanged.

    Notes
    -----
    State: ``median``, ``mad`` (float64), ``count``, ``last_ts`` (int64) per
    sensor, 32 bytes.
    """

    name = "spike"
    _state = (("median", np.float64), ("mad", np.float64), ("count", np.int64))

    def __init__(
        self,
        table: SensorTable,
        *,
        tau_s: float = 300.0,
        warmup: int = 30,
        mad_floor_fraction: float = 4e-3,
    ) -> None:
        super().__init__(table)
        m = len(table)
        if not (math.isfinite(tau_s) and tau_s > 0):
            raise ValueError(f"SpikeDetector: tau_s={tau_s} must be finite and > 0")
        if int(warmup) != warmup or warmup < 2:
            raise ValueError(f"SpikeDetector: warmup={warmup} must be an integer ≥ 2")
        if not (math.isfinite(mad_floor_fraction) and mad_floor_fraction > 0):
            raise ValueError(
                f"SpikeDetector: mad_floor_fraction={mad_floor_fraction} must be finite and > 0")
        self.tau_s = float(tau_s)
        self._tau_ms = 1000.0 * self.tau_s
        self.warmup = int(warmup)
        self.mad_floor: F64 = mad_floor_fraction * (table.range_hi - table.range_lo)
        self.median: F64 = np.zeros(m)
        self.mad: F64 = np.zeros(m)
        self.count: I64 = np.zeros(m, np.int64)

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        self.median[idx] = v
        self.mad[idx] = 0.0
        self.count[idx] = 1
        return np.full(len(ts), np.nan)

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        median = self.median[idx]
        mad = self.mad[idx]
        count = self.count[idx]
        floor = self.mad_floor[idx]
        alpha = (ts - last).astype(np.float64)  # Δt, ms
        alpha /= alpha + self._tau_ms
        sigma = np.maximum(mad, floor)
        sigma *= _MAD_TO_SIGMA
        resid = v - median
        dev = np.abs(resid)
        score = dev / sigma
        young = None
        if count.min() < self.warmup:
            young = np.flatnonzero(count < self.warmup)
            n = count[young].astype(np.float64)
            plain_median = median[young] + resid[young] / (n + 1.0)
            target = dev[young] * (_MEAN_ABS_TO_MAD * np.sqrt(n / (n + 1.0)))
            plain_mad = mad[young] + (target - mad[young]) / n
        # robust updates, in place (views of the state when idx is a slice)
        sigma *= alpha
        sigma *= _MEDIAN_GAIN
        sigma *= np.sign(resid)
        median += sigma
        dev -= mad
        np.sign(dev, out=dev)
        dev *= alpha
        dev += 1.0
        mad *= dev
        np.maximum(mad, floor, out=mad)
        count += 1
        if young is not None:
            median[young] = plain_median
            mad[young] = plain_mad
            score[young] = np.nan
        if not isinstance(idx, slice):
            self.median[idx] = median
            self.mad[idx] = mad
            self.count[idx] = count
        return score


class NoDataDetector(RoundDetector):
    """No data for too long, judged against a clock value passed in.

    :meth:`update` only records each sensor's last reading time; it scores
    0.0 for a reading that advances it (the sensor's silence is 0 at that
    moment) and NaN for a late, duplicate or non-finite reading, like every
    detector. :meth:`check` gives the silence at any clock value, so a
    sensor that stopped sending is caught while nothing arrives at all.

    Parameters
    ----------
    table : SensorTable
    max_gap_s : float or array (m,)
        Longest silence before a no-data fault, seconds (:attr:`max_gap_s`;
        the deciding rule is ``check(now) ≥ max_gap_s``).

    Notes
    -----
    State: ``last_ts`` (int64), 8 bytes per sensor.
    """

    name = "nodata"
    _state = ()

    def __init__(self, table: SensorTable, *, max_gap_s: float | npt.ArrayLike = 60.0) -> None:
        super().__init__(table)
        self.max_gap_s = _per_sensor(max_gap_s, len(table), "NoDataDetector: max_gap_s")

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        return np.zeros(len(ts))

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        return np.zeros(len(ts))

    def check(self, now_ms: int) -> F64:
        """Seconds since each sensor's last reading at clock ``now_ms``, shape (m,).

        NaN for a sensor never heard from; negative when a reading is stamped
        after ``now_ms`` (a gateway clock running ahead).
        """
        seen = self.last_ts != NO_TS
        silent: F64 = np.where(seen, (now_ms - self.last_ts.astype(np.float64)) * 1e-3, np.nan)
        return silent
