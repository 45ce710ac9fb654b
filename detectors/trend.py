"""Predictive trend (超前预警): seconds until a sensor reaches its next limit.

Each sensor's level and slope come from the robust Holt filter of
:mod:`detectors.rate` (event time, clipped innovations: a one-reading spike moves
the slope by a small bounded amount that fades within ≈ τ, a real change
passes from its second reading on). Holt was
chosen over other O(1) slope estimators because on a ramp — the shape of a gas
leak seen through a detector's T90 lag, or of a runaway temperature — its
level and slope converge without lag bias, so ``(limit − level) / slope`` is
an unbiased time to the limit; an EW mean of instantaneous rates is eight
times noisier at the same lag, and an EW regression on a window would need
more state for the same answer.

The score of a reading is the **estimated time to reach the next limit, in
seconds** (ETA):

* slope > 0: the next limit above the level among ``h``, ``hh`` — ``h`` while
  the level is below it, otherwise ``hh``;
* slope < 0: the next limit below among ``l``, ``ll`` — ``l`` while the level
  is above it, otherwise ``ll``;
* ``ETA = (limit − level) / slope``.

The score is NaN when the sensor is not heading for a limit (no such limit
configured, or already past the last one), and when the slope is not
significant against the sensor's own noise. Two tests, both needed, both
against ``σ̂``, the running noise estimate (``√(π/2)`` × the mean absolute
innovation, which is σ for Gaussian noise):

1. **the projected change over the sensor's horizon is real**:
   ``|slope|·trend_horizon_s > min_rise_sigmas·σ̂``;
2. **the slope is not the filter's own noise**: ``|slope| > min_slope_z·sd``,
   where ``sd = σ̂·√(Δt / (2·τ_level·τ_slope²))`` is the standard deviation of
   the Holt slope on white noise sampled every ``Δt`` (the continuous-time
   limit of the recursion, checked by simulation: the z-statistic on white
   noise has sd 0.96 at 1 s sampling and less, conservatively, at slower
   sampling). Test 1 alone would let a slowly sampled sensor warn on noise:
   its slope noise grows as ``√Δt``. ``min_slope_z = 6``: about 2·10⁻⁹ of
   noise readings pass.

3. **the slope is unusual for this sensor**: once it has ``wander_warm_s``
   (1 h) of history, ``|slope| > min_wander_ratio·W`` (4), where ``W`` is the
   sensor's usual ``|slope|``: its time-weighted mean over ``wander_tau_s``
   (a day), each reading's contribution capped at the threshold itself so an
   incident's slope hardly moves it (at most ×(1 + 3·Δt/1 h) per reading,
   and far less once a day of history is in). Tests 1 and 2 are against
   white noise, but a process value also *wanders*: control loops, feed and
   ambient move it up and down over minutes, with slopes that are real and
   mean nothing. A tank temperature at 35 °C with its H at 40 °C, wandering
   (σ 1 °C, correlation time 5 min) and never above 38.6 °C, got 46 trend
   warnings in the five hours after its first; at 38–39 °C with a 0.3 °C
   wander, 27–41. With test 3: three each. A runaway after two hours of the
   same wander is still warned 253–267 s before it crosses H (253–275 s
   without test 3), its slope soon being many times anything the wander
   made. In the first hour of a sensor's history (and so in the scenarios'
   backtests, which start cold) test 3 does not apply.

So a steady noisy signal gives NaN essentially always, whatever its noise and
sampling interval, and a slow swing (a daily cycle) gives NaN or an ETA far
beyond any horizon. A slope that would reach the limit within the horizon but
is not significant means the value is already within a few σ of the limit,
which is the limit alarm's business.

How early: a ramp leak (0 → 60 %LEL through the detector's T90 = 30 s lag,
noise σ = 0.3 %LEL, 1 s samples, horizon 300 s) gets an ETA under the horizon
≈ 205 s before it crosses 25 %LEL when the source ramps over 600 s, ≈ 103 s
over 300 s, ≈ 41 s over 120 s, and ≈ 12 s for the simulator's 30 s ramp, which
crosses 25 %LEL only 24 s after it starts. The ETA is then within 30 % of the
truth once the slope has caught up (from ≈ 60–150 s before the crossing for the
300–600 s ramps); on fast ramps it is an overestimate.

Late, duplicate and non-finite readings, and the first ``warmup`` readings of
a sensor, score NaN; late, duplicate and non-finite ones do not move state.

Deciding rule (applied by the suite, not here): a trend warning is raised when
``ETA ≤ trend_horizon_s`` of the sensor (config ``trend_horizon_s``, default
300 s) and cleared when the ETA is NaN or above ``1.25·trend_horizon_s``.

State: the filter's four float64 and two int64 per sensor, and the usual
slope with its weight (64 bytes).
"""

from __future__ import annotations

import math

import numpy as np

from detectors.base import State
from detectors.rate import RobustHolt, Sensors
from model.batch import F64, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["TrendDetector"]

_SIGMA_PER_MEAN_ABS = math.sqrt(math.pi / 2.0)  # σ / E|x| for Gaussian noise



class TrendDetector:
    """Estimated time to each sensor's next limit, seconds, from a robust level and slope.

    Parameters
    ----------
    table : SensorTable
        Limits (``l``, ``ll``, ``h``, ``hh``; NaN where absent) and each
        sensor's ``trend_horizon_s``.
    tau_level_s, tau_slope_s : float
        Time constants of the level and of the slope, seconds. With the
        defaults the slope answers a ramp's start with 10 % after ≈ 9 s, 63 %
        after ≈ 34 s and 90 % after ≈ 57 s; its noise is ≈ 0.0075·σ per second
        at 1 s sampling.
    min_rise_sigmas : float
        Significance test 1: the slope's projected change over the horizon, in
        noise σ.
    min_slope_z : float
        Significance test 2: the slope in standard deviations of its own noise.
    clip_sigmas : float
        Innovations are clipped at this many mean absolute innovations.
    warmup : int
        Readings per sensor that score NaN while the filter settles (≥ 2).
    wander_tau_s, min_wander_ratio, wander_warm_s : float
        Significance test 3 (the module notes): time constant of the usual
        slope, seconds; how many times the usual slope a trend's must be; the
        seconds of history before the test applies.
    """

    name = "trend"

    def __init__(
        self,
        table: SensorTable,
        *,
        tau_level_s: float = 10.0,
        tau_slope_s: float = 30.0,
        min_rise_sigmas: float = 4.0,
        min_slope_z: float = 6.0,
        clip_sigmas: float = 3.0,
        warmup: int = 20,
        wander_tau_s: float = 86400.0,
        min_wander_ratio: float = 4.0,
        wander_warm_s: float = 3600.0,
    ) -> None:
        for name, value in (("min_rise_sigmas", min_rise_sigmas), ("min_slope_z", min_slope_z)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TrendDetector: {name}={value} must be a finite number ≥ 0")
        self.table = table
        self.filter = RobustHolt(
            len(table), tau_level_s=tau_level_s, tau_slope_s=tau_slope_s,
            clip_sigmas=clip_sigmas, warmup=warmup, owner="TrendDetector",
        )
        if not (math.isfinite(wander_tau_s) and wander_tau_s > 0):
            raise ValueError(f"TrendDetector: wander_tau_s={wander_tau_s} must be finite and > 0")
        if not (math.isfinite(wander_warm_s) and wander_warm_s >= 0):
            raise ValueError(f"TrendDetector: wander_warm_s={wander_warm_s} must be finite and ≥ 0")
        if not (math.isfinite(min_wander_ratio) and min_wander_ratio >= 1):
            raise ValueError(
                f"TrendDetector: min_wander_ratio={min_wander_ratio} must be finite and ≥ 1")
        m = len(table)
        self.wander_tau_s = float(wander_tau_s)
        self.min_wander_ratio = float(min_wander_ratio)
        self.wander_warm_s = float(wander_warm_s)
        self.wander: F64 = np.zeros(m)
        self.wander_weight: F64 = np.zeros(m)
        self.min_rise_sigmas = float(min_rise_sigmas)
        self.min_slope_z = float(min_slope_z)
        self.horizon_s: F64 = np.array(
            [p.sensor.trend_horizon_s for p in table.places], np.float64
        )
        # Both significance tests as one threshold on |slope| / (mean |innovation|):
        # max(test 1 per sensor, test 2 per √Δt).
        self._rise_per_scale: F64 = self.min_rise_sigmas * _SIGMA_PER_MEAN_ABS / self.horizon_s
        self._z_per_scale = (
            self.min_slope_z * _SIGMA_PER_MEAN_ABS / math.sqrt(2.0 * tau_level_s * tau_slope_s**2)
        )

    def update(self, batch: ReadingBatch) -> F64:
        """Advance over ``batch``; return the ETA to the next limit per row, seconds."""
        t = self.table
        scores = np.full(len(batch), np.nan)
        for r in self.filter.advance(batch):
            # Significance first: on steady signals it fails for (nearly) every
            # sensor, and the ETA is worked out only for those that pass.
            threshold = np.maximum(
                self._rise_per_scale[r.sensors], self._z_per_scale * np.sqrt(r.dt_s)
            )
            threshold *= r.scale
            steep = np.abs(r.slope_per_s)
            usual = self._usual_slope(r.sensors, steep, r.dt_s)
            np.maximum(threshold, usual, out=threshold)
            i = np.flatnonzero(steep > threshold)
            if len(i) == 0:
                continue
            s = r.sensor_index(i)
            level, slope = r.level[i], r.slope_per_s[i]
            target = np.where(
                slope > 0,
                np.where(level < t.h[s], t.h[s], t.hh[s]),
                np.where(level > t.l[s], t.l[s], t.ll[s]),
            )
            eta = (target - level) / slope
            ok = eta > 0  # NaN (no limit that way) compares False
            scores[r.row_index(i[ok])] = eta[ok]
        return scores

    def _usual_slope(self, sensors: Sensors, steep: F64,
                     dt_s: F64 | float) -> F64:
        """Test 3's threshold per reading, then the wander scale moved by it."""
        scale = self.wander[sensors]
        weight = self.wander_weight[sensors]  # seconds of history, decayed
        warm = weight >= self.wander_warm_s
        limit = self.min_wander_ratio * scale
        usual = np.where(warm, limit, 0.0)
        dt = np.asarray(dt_s, np.float64)
        weight = weight * (self.wander_tau_s / (self.wander_tau_s + dt)) + dt
        target = np.where(warm, np.minimum(steep, limit), steep)
        self.wander[sensors] = scale + (target - scale) * (dt / weight)
        self.wander_weight[sensors] = weight
        return usual

    def get_state(self) -> State:
        state = self.filter.get_state()
        state["wander"] = self.wander.copy()
        state["wander_weight"] = self.wander_weight.copy()
        return state

    def set_state(self, state: State) -> None:
        self.filter.set_state({k: v for k, v in state.items()
                               if k not in ("wander", "wander_weight")})
        for name in ("wander", "wander_weight"):
            arr = np.asarray(state[name], np.float64) if name in state else None
            if arr is None or arr.shape != self.wander.shape:
                raise ValueError(f"TrendDetector state {name!r} is missing or has the wrong "
                                 f"shape: the saved state belongs to another table or version")
            setattr(self, name, arr.copy())

    # -- for the dashboard -------------------------------------------------
    @property
    def level(self) -> F64:
        """(m,) level estimate per sensor, unit; NaN before a sensor's first reading."""
        return np.where(self.filter.count > 0, self.filter.level, np.nan)

    @property
    def slope_per_s(self) -> F64:
        """(m,) slope estimate per sensor, unit/s; NaN before a sensor's first reading."""
        return np.where(self.filter.count > 0, self.filter.slope_per_s, np.nan)

    @property
    def noise_sigma(self) -> F64:
        """(m,) running noise estimate σ̂ per sensor, unit; NaN before a sensor's first reading."""
        return np.where(self.filter.count > 0, self.filter.scale * _SIGMA_PER_MEAN_ABS, np.nan)
