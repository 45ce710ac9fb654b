"""Slow drift: a leak that builds up over hours, a sensor whose calibration wanders.

Per sensor, per reading, in event time (``Δt``: seconds since the sensor's
previous reading; ``w = Δt/(τ + Δt)``, the backward-Euler weight of an
exponential average with time constant ``τ = baseline_tau_s``)::

    σ̂   = max(√π/2 · MR, floor)              noise scale, before this reading
    z    = clip((x − μ) / σ̂, −c, c)          standardized residual, c = clip_sigmas
    S⁺  ← max(0, S⁺ + z − k)                 two-sided CUSUM (Page 1954),
    S⁻  ← max(0, S⁻ − z − k)                 k = k_sigmas, h = h_sigmas
    score = max(S⁺, S⁻) / h                  ≥ 1: drift detected
    MR  ← EW mean of |x − x_prev|            weight w, debiased (below)
    μ   ← EW mean of x (the baseline)        weight w, debiased; frozen while
                                             max(S⁺, S⁻) ≥ freeze_fraction·h

The score is unsigned so that a deciding rule ``score ≥ 1`` catches a drift
down (an oxygen cell failing low) as surely as one up; the direction comes
from :meth:`DriftDetector.update_signed` (negative: downwards).

Why the noise scale is not fooled by the drift
----------------------------------------------
The scale is the moving range: the average absolute difference of
*consecutive readings*, converted to σ with d₂ = 2/√π ≈ 1.128 (Gaussian
noise), as on a Shewhart individuals chart. A difference of consecutive
readings cancels the level, so neither a ramp nor a step inflates it: a
1 %LEL/h ramp adds 0.0003 %LEL to a 1 s difference, a step enters one
difference once. A scale taken from the residual ``x − μ`` would grow with
the drift (the baseline lags a ramp by ``rate·τ``), so z would stay small
and the drift would hide inside its own noise estimate. The price: noise
that is correlated from one reading to the next (a heavily filtered
transmitter) makes the moving range read low and the detector too eager;
give such sensors a larger ``h_sigmas``.

Why one reading cannot make a drift
-----------------------------------
A drift is slow, so it is judged on many readings, never on one. Without a
bound on z a single reading can: a combustible gas head in clean air reads
exactly 0 %LEL, its noise scale sits at the floor (0.1 %LEL), and one blip
to 2 %LEL gives z = 20 ≥ h = 16, a drift warning held for a minute; in
simulation, an hour of such a head with twelve 1–3 %LEL blips raised six.
Each reading's z is therefore clipped to ±``clip_sigmas`` (4) before it is
accumulated (a winsorized CUSUM, after Huber's clipped score): one reading
adds at most ``c − k`` = 3.5, so a detection takes at least ``h/(c − k)``
≈ 5 readings that all lie far off the baseline, and the blip's 3.5 fades at
``k`` per reading. On Gaussian noise |z| > 4 has probability 6·10⁻⁵, so the
false-detection rate and the delay to shifts under 4σ (every drift this
detector is for) do not change; a larger step is caught after about five
readings, by which time the limit and spike checks have judged it.

Freezing the baseline
---------------------
While the CUSUM is high (``max(S⁺, S⁻) ≥ freeze_fraction·h``, half-way to a
detection by default) the baseline does not follow the readings, so it
cannot chase the drift it is measuring: a ramp's residual keeps growing
instead of settling at ``rate·τ``, and a step offset stays detected instead
of being absorbed within hours. The consequence is deliberate: a detection
holds until the readings come back to the old baseline (recalibration) or
:meth:`DriftDetector.rebaseline` accepts the new level (a real process
change, or after recalibrating). Drifts slower than about ``k·σ/τ`` (0.15
%LEL/h for σ = 0.3 %LEL, τ = 1 h) are followed by the baseline before the
CUSUM can accumulate; watch for those with a longer ``baseline_tau_s``.

Choosing h
----------
The two-sided CUSUM's average run length on steady noise is about
``(e^{2k(h+1.166)} − 2k(h+1.166) − 1)/(4k²)`` readings (Siegmund). With
k = 0.5 that is ≈ 9,500 readings for h = 8 — every 2.6 h at 1 Hz; in
simulation every one of 2,000 sensor-days had a false detection — but
≈ 3·10⁷ for h = 16 (about a year at 1 Hz; this detector on simulated 1 Hz
gas noise: 1 to 5 sensor-days in 1,000 with one), hence the default. The
delay to a sustained shift of δσ is about ``(h + 1.166)/(δ − k)`` readings:
34 s at 1 Hz for δ = 1. False detections scale with the reading rate: ten
times the rate wants h larger by ln(10)/(2k) ≈ 2.3.

Debiasing and warm-up
---------------------
Each average carries its weight ``W ← W·(1 − w) + 1`` and moves by
``(target − avg)/W``: a plain mean over the first readings, an exponential
one once ``W`` reaches ``τ/Δt`` (no start-up bias from an initial value).
The first ``warmup`` readings of a sensor (counted with an int64, so a
sensor reading exactly 0.0 is no special case) score NaN and leave the
CUSUM at 0 while baseline and scale settle. A reading not newer than its
sensor's last one, or with a non-finite value, scores NaN and changes
nothing.

State: seven float64 and two int64 per sensor (72 bytes).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.rounds import I64, Index, RoundDetector
from model.batch import F64, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["DriftDetector"]

_MR_TO_SIGMA = math.sqrt(math.pi) / 2  # 1/d₂ for ranges of two readings


class DriftDetector(RoundDetector):
    """EWMA baseline, moving-range noise scale and a two-sided CUSUM per sensor.

    Parameters
    ----------
    table : SensorTable
    baseline_tau_s : float
        Time constant of the baseline and of the noise scale, seconds.
    k_sigmas : float
        CUSUM reference value, in σ: half the shift detected fastest.
    h_sigmas : float
        CUSUM decision interval, in σ (see "Choosing h" in the module notes).
    warmup : int
        Readings per sensor that score NaN while baseline and scale settle (≥ 2).
    freeze_fraction : float
        The baseline stops following while ``max(S⁺, S⁻) ≥ freeze_fraction·h``
        (> 0; above 1 it never freezes before a detection).
    sigma_floor_fraction : float
        Floor of the noise scale as a fraction of the span, so a quantized
        sensor reading one value does not give z = x/0.
    clip_sigmas : float
        Bound on each reading's |z| in the CUSUM (> k_sigmas): one reading
        moves it by at most ``clip_sigmas − k_sigmas``.

    Notes
    -----
    ``update`` returns ``max(S⁺, S⁻)/h`` per reading (NaN: warming up, late,
    duplicate, non-finite). Deciding rule (the suite's): raised at ≥ 1,
    cleared below 0.5.
    """

    name = "drift"
    _state = (
        ("last_value", np.float64), ("baseline", np.float64), ("mean_step", np.float64),
        ("baseline_weight", np.float64), ("step_weight", np.float64),
        ("cusum_up", np.float64), ("cusum_down", np.float64), ("count", np.int64),
    )

    def __init__(
        self,
        table: SensorTable,
        *,
        baseline_tau_s: float = 3600.0,
        k_sigmas: float = 0.5,
        h_sigmas: float = 16.0,
        warmup: int = 120,
        freeze_fraction: float = 0.5,
        sigma_floor_fraction: float = 1e-3,
        clip_sigmas: float = 4.0,
    ) -> None:
        super().__init__(table)
        for what, value, low in (("baseline_tau_s", baseline_tau_s, 0.0),
                                 ("h_sigmas", h_sigmas, 0.0),
                                 ("freeze_fraction", freeze_fraction, 0.0),
                                 ("sigma_floor_fraction", sigma_floor_fraction, 0.0)):
            if not (math.isfinite(value) and value > low):
                raise ValueError(f"DriftDetector: {what}={value} must be finite and > 0")
        if not (math.isfinite(k_sigmas) and k_sigmas >= 0):
            raise ValueError(f"DriftDetector: k_sigmas={k_sigmas} must be finite and ≥ 0")
        if not (math.isfinite(clip_sigmas) and clip_sigmas > k_sigmas):
            raise ValueError(f"DriftDetector: clip_sigmas={clip_sigmas} must be finite and > "
                             f"k_sigmas={k_sigmas} (or no reading could move the CUSUM)")
        if int(warmup) != warmup or warmup < 2:
            raise ValueError(
                f"DriftDetector: warmup={warmup} must be an integer ≥ 2 (the noise scale "
                "needs one difference of readings to start from)"
            )
        m = len(table)
        self.tau_s = float(baseline_tau_s)
        self._tau_ms = 1000.0 * self.tau_s
        self.k = float(k_sigmas)
        self.h = float(h_sigmas)
        self.clip = float(clip_sigmas)
        self.warmup = int(warmup)
        self.freeze_level = float(freeze_fraction) * self.h
        self.sigma_floor: F64 = sigma_floor_fraction * (table.range_hi - table.range_lo)
        self._inv_h = 1.0 / self.h
        self._signed = False
        self.last_value: F64 = np.zeros(m)
        self.baseline: F64 = np.zeros(m)
        self.mean_step: F64 = np.zeros(m)
        self.baseline_weight: F64 = np.zeros(m)
        self.step_weight: F64 = np.zeros(m)
        self.cusum_up: F64 = np.zeros(m)
        self.cusum_down: F64 = np.zeros(m)
        self.count: I64 = np.zeros(m, np.int64)

    def update_signed(self, batch: ReadingBatch) -> F64:
        """Like :meth:`update`, negative where the drift is downwards (S⁻ > S⁺)."""
        self._signed = True
        try:
            return self.update(batch)
        finally:
            self._signed = False

    def rebaseline(self, sensors: npt.ArrayLike) -> None:
        """Accept the current level of ``sensors`` (table rows) as their new baseline.

        Their CUSUM restarts from 0 and they warm up again from their next
        reading; the noise scale is kept. For a real process change, or
        after a recalibration, once the hazard is dealt with.
        """
        s = np.asarray(sensors, np.intp)
        self.count[s] = 0
        self.baseline_weight[s] = 0.0
        self.cusum_up[s] = 0.0
        self.cusum_down[s] = 0.0

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        self.last_value[idx] = v
        self.baseline[idx] = v
        self.mean_step[idx] = 0.0
        self.baseline_weight[idx] = 1.0
        self.step_weight[idx] = 0.0
        self.cusum_up[idx] = 0.0
        self.cusum_down[idx] = 0.0
        self.count[idx] = 1
        return np.full(len(ts), np.nan)

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        # Slices give views: the in-place operations below write the state.
        count = self.count[idx]
        x0 = self.last_value[idx]
        mu = self.baseline[idx]
        mr = self.mean_step[idx]
        wb = self.baseline_weight[idx]
        wd = self.step_weight[idx]
        up = self.cusum_up[idx]
        down = self.cusum_down[idx]

        decay = (ts - last).astype(np.float64)  # Δt, ms
        decay += self._tau_ms
        np.divide(self._tau_ms, decay, out=decay)  # 1 − w = τ/(τ + Δt)

        z = mr * _MR_TO_SIGMA
        np.maximum(z, self.sigma_floor[idx], out=z)
        resid = v - mu
        np.divide(resid, z, out=z)
        np.clip(z, -self.clip, self.clip, out=z)
        z_plus_k = z + self.k
        z -= self.k
        up += z
        np.maximum(up, 0.0, out=up)
        down -= z_plus_k
        np.maximum(down, 0.0, out=down)
        young = None
        if count.min() < self.warmup:
            young = np.flatnonzero(count < self.warmup)
            up[young] = 0.0
            down[young] = 0.0
        peak = np.maximum(up, down)

        wd *= decay
        wd += 1.0
        step = v - x0
        np.abs(step, out=step)
        step -= mr
        step /= wd
        mr += step

        wb *= decay
        wb += 1.0
        resid /= wb
        frozen = peak >= self.freeze_level  # rare: keep their baseline
        held = mu[frozen] if frozen.any() else None
        mu += resid
        if held is not None:
            mu[frozen] = held
        count += 1

        if not isinstance(idx, slice):
            self.count[idx] = count
            self.baseline[idx] = mu
            self.mean_step[idx] = mr
            self.baseline_weight[idx] = wb
            self.step_weight[idx] = wd
            self.cusum_up[idx] = up
            self.cusum_down[idx] = down
        self.last_value[idx] = v

        peak *= self._inv_h
        if young is not None:
            peak[young] = np.nan
        if self._signed:
            peak[down > up] *= -1.0
        return peak
