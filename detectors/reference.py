"""Plain per-reading references of the detectors, for the contract to hold them to.

Each vectorized detector works in rounds over sensors, with fast paths for the
layouts gateways send; a reference here is the same arithmetic written out one
reading at a time in plain Python, as the detector's module docstring states
it. The contract (:mod:`detectors.contract`) checks that a detector's scores
and final state equal its reference's on any stream, which is what lets the
vectorized code be clever without being wrong.

They live beside the detectors, not in the tests, because a declared detector
names its reference (:attr:`detectors.registry.DetectorSpec.reference`) and
the contract is shipped with the package. They are slow on purpose: never
use one on the hot path.

Arithmetic is done in the same order as the vectorized code, so most agree to
the bit; the contract still compares floats to 1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from detectors.base import State
from detectors.mspc import PcaMonitor
from detectors.rate import SCALE_READINGS, SETTLE_READINGS
from model.batch import NO_TS
from model.sensor_table import LIMIT_NAMES, SensorTable

__all__ = [
    "DriftRef",
    "LimitRef",
    "MspcRef",
    "NoDataRef",
    "PerSensorReference",
    "RangeRef",
    "RateRef",
    "Reading",
    "Reference",
    "SpikeRef",
    "StuckRef",
    "TrendRef",
]

Reading = tuple[int, int, float]
"""One reading: sensor (table row), event time (ms), value."""


class Reference(Protocol):
    """What the contract needs of a reference: scores of a stream, then the state."""

    def run(self, stream: Sequence[Reading]) -> list[float]:
        """Score every reading of ``stream`` (any row order), as one batch would."""
        ...

    def state(self) -> State:
        """The state after the readings run so far, keyed as the detector's ``get_state``."""
        ...


class PerSensorReference:
    """Readings per sensor in (ts, row) order, one at a time.

    A reading not newer than its sensor's last one, or not finite, scores NaN
    and changes nothing. Subclasses give ``fields`` (name → initial value per
    sensor; an ``int`` initial value makes an int64 state array) and
    :meth:`first`/:meth:`step`, which read and write ``self.st[name][sensor]``.
    """

    fields: ClassVar[dict[str, float | int]] = {}

    def __init__(self, table: SensorTable) -> None:
        self.table = table
        m = len(table)
        self.st: dict[str, list[Any]] = {k: [v] * m for k, v in self.fields.items()}
        self.st["last_ts"] = [NO_TS] * m

    def run(self, stream: Sequence[Reading]) -> list[float]:
        out = [math.nan] * len(stream)
        for i in sorted(range(len(stream)), key=lambda i: (stream[i][0], stream[i][1])):
            s, ts, v = stream[i]
            last = self.st["last_ts"][s]
            if not math.isfinite(v) or ts <= last:
                continue  # late, duplicate or not a number: NaN, no state change
            out[i] = self.first(s, ts, v) if last == NO_TS else self.step(s, ts, v, last)
            self.st["last_ts"][s] = ts
        return out

    def first(self, s: int, ts: int, v: float) -> float:
        """A sensor's first reading: prime its state, return its score."""
        raise NotImplementedError

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        """A later reading (``last``: the sensor's previous time): return its score."""
        raise NotImplementedError

    def state(self) -> State:
        return {k: np.array(v, np.int64 if isinstance(self.fields.get(k, 0), int) else float)
                for k, v in self.st.items()}

    def span(self, s: int) -> float:
        """The sensor's measuring span, in its unit."""
        return float(self.table.range_hi[s]) - float(self.table.range_lo[s])


def _sign(x: float) -> float:
    return float(x > 0) - float(x < 0)


# -- limits ----------------------------------------------------------------------------


class LimitRef(PerSensorReference):
    """:mod:`detectors.limits`: four ISA-18.2 points, deadband, on- and off-delay.

    Besides scores and state it keeps every change, ``(sensor, ts, point,
    active)``, in :attr:`changes` (in the order decided).
    """

    def __init__(self, table: SensorTable) -> None:
        super().__init__(table)
        m = len(table)
        self.active = [[False] * 4 for _ in range(m)]
        self.since: list[list[int | None]] = [[None] * 4 for _ in range(m)]
        self.changes: list[tuple[int, int, int, bool]] = []

    def first(self, s: int, ts: int, v: float) -> float:
        return self.step(s, ts, v, ts)

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        t = self.table
        for p, name in enumerate(LIMIT_NAMES):
            lim = float(t.limit(name)[s])
            if math.isnan(lim):
                continue
            high = name in ("h", "hh")
            db = float(t.deadband[s])
            if self.active[s][p]:
                cond = v < lim - db if high else v > lim + db
                delay = int(t.off_delay_ms[s])
            else:
                cond = v >= lim if high else v <= lim
                delay = int(t.on_delay_ms[s])
            if not cond:
                self.since[s][p] = None
                continue
            start = self.since[s][p]
            start = ts if start is None else start
            self.since[s][p] = start
            if ts - start >= delay:
                self.active[s][p] = not self.active[s][p]
                self.since[s][p] = None
                self.changes.append((s, ts, p, self.active[s][p]))
        above, below = v - float(t.h[s]), float(t.l[s]) - v  # np.fmax: NaN loses
        if math.isnan(above):
            return below
        return above if math.isnan(below) else max(above, below)

    def state(self) -> State:
        since = [[NO_TS if x is None else x for x in row] for row in self.since]
        return {"active": np.array(self.active, np.bool_).reshape(-1, 4),
                "since": np.array(since, np.int64).reshape(-1, 4),
                "last_ts": np.array(self.st["last_ts"], np.int64)}


# -- rate and trend: the robust Holt filter ----------------------------------------


class RateRef(PerSensorReference):
    """:mod:`detectors.rate`: the robust Holt recursion; the score is the slope per minute.

    :meth:`filter_step` is the recursion itself, shared with :class:`TrendRef`.
    """

    fields: ClassVar[dict[str, float | int]] = {
        "level": 0.0, "slope_per_s": 0.0, "scale": 0.0, "excess": 0.0, "count": 0,
    }

    def __init__(self, table: SensorTable, *, tau_level_s: float = 30.0,
                 tau_slope_s: float | None = None, clip_sigmas: float = 3.0,
                 warmup: int = 5) -> None:  # fmt: skip
        super().__init__(table)
        self.tau_level_s = tau_level_s
        self.tau_slope_s = tau_level_s if tau_slope_s is None else tau_slope_s
        self.clip_sigmas, self.warmup = clip_sigmas, warmup

    def first(self, s: int, ts: int, v: float) -> float:
        for name, value in (("level", v), ("slope_per_s", 0.0), ("scale", 0.0),
                            ("excess", 0.0), ("count", 1)):
            self.st[name][s] = value
        return math.nan

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        r = self.filter_step(s, ts, v, last)
        return math.nan if r is None else r[1] * 60.0

    def filter_step(self, s: int, ts: int, x: float,
                    last: int) -> tuple[float, float, float, float] | None:  # fmt: skip
        """Advance sensor ``s``; ``(level, slope_per_s, scale, dt_s)`` if the reading is scored."""
        z = self.st
        level, slope, scale, excess = (z["level"][s], z["slope_per_s"][s], z["scale"][s],
                                       z["excess"][s])
        count = z["count"][s]
        dt = (ts - last) * 1e-3
        decay = float(np.exp(max(dt * (-1.0 / self.tau_level_s), -40.0)))
        alpha = 1.0 - decay
        if self.tau_slope_s == self.tau_level_s:
            beta = alpha
        else:
            beta = 1.0 - float(np.exp(max(dt * (-1.0 / self.tau_slope_s), -40.0)))
        pred = slope * dt + level + 1e-150
        e = x - pred
        lim = math.inf if count < self.warmup else scale * (self.clip_sigmas / decay)
        clipped = min(max(e, -lim), lim)
        over = e - clipped
        used = e if over * excess > 0 else clipped  # same-side overshoot twice: pass
        # The first readings: level and scale are running means (when that
        # weighs more than the time constant would).
        settling = count < SETTLE_READINGS
        level_gain = max(alpha, 1.0 / (count + 1)) if settling else alpha
        level = pred + used * level_gain
        slope = slope + used * alpha * (beta / dt)
        gain = max(1 / SCALE_READINGS, 1.0 / count)
        scale = max(scale + (abs(used) - scale) * gain, 1e-100)
        z["level"][s], z["slope_per_s"][s], z["scale"][s], z["excess"][s] = (level, slope,
                                                                             scale, over)
        z["count"][s] = min(count + 1, max(self.warmup, SETTLE_READINGS))
        return (level, slope, scale, dt) if count >= self.warmup else None


_SIGMA_PER_MEAN_ABS = math.sqrt(math.pi / 2.0)


class TrendRef(RateRef):
    """:mod:`detectors.trend`: the ETA to the next limit, with the three significance tests."""

    fields: ClassVar[dict[str, float | int]] = {
        **RateRef.fields, "wander": 0.0, "wander_weight": 0.0,
    }

    def __init__(self, table: SensorTable, *, tau_level_s: float = 10.0,
                 tau_slope_s: float = 30.0, min_rise_sigmas: float = 4.0,
                 min_slope_z: float = 6.0, clip_sigmas: float = 3.0, warmup: int = 20,
                 wander_tau_s: float = 86400.0, min_wander_ratio: float = 4.0,
                 wander_warm_s: float = 3600.0) -> None:  # fmt: skip
        super().__init__(table, tau_level_s=tau_level_s, tau_slope_s=tau_slope_s,
                         clip_sigmas=clip_sigmas, warmup=warmup)
        self.min_rise_sigmas, self.min_slope_z = min_rise_sigmas, min_slope_z
        self.wander_tau_s, self.min_wander_ratio = wander_tau_s, min_wander_ratio
        self.wander_warm_s = wander_warm_s
        self.horizon = [p.sensor.trend_horizon_s for p in table.places]

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        r = self.filter_step(s, ts, v, last)
        if r is None:
            return math.nan
        level, slope, scale, dt = r
        tl, tb = self.tau_level_s, self.tau_slope_s
        # Significant: projected change over the horizon ≥ k·σ̂ and slope ≥ z·sd(slope),
        # and (with enough history) several times the sensor's usual slope.
        test1 = self.min_rise_sigmas * _SIGMA_PER_MEAN_ABS / self.horizon[s]
        test2 = (self.min_slope_z * _SIGMA_PER_MEAN_ABS
                 / math.sqrt(2.0 * tl * tb**2)) * math.sqrt(dt)
        usual, weight = self.st["wander"][s], self.st["wander_weight"][s]
        ratio = self.min_wander_ratio
        warm = weight >= self.wander_warm_s
        test3 = ratio * usual if warm else 0.0
        target_w = min(abs(slope), ratio * usual) if warm else abs(slope)
        weight = weight * (self.wander_tau_s / (self.wander_tau_s + dt)) + dt
        self.st["wander"][s] = usual + (target_w - usual) * (dt / weight)
        self.st["wander_weight"][s] = weight
        if not abs(slope) > max(max(test1, test2) * scale, test3):
            return math.nan
        t = self.table
        h, hh, low, ll = float(t.h[s]), float(t.hh[s]), float(t.l[s]), float(t.ll[s])
        above = h if level < h else hh  # a NaN limit compares False
        below = low if level > low else ll
        eta = ((above if slope > 0 else below) - level) / slope
        return eta if eta > 0 else math.nan


# -- drift -----------------------------------------------------------------------------


class DriftRef(PerSensorReference):
    """:mod:`detectors.drift`: EW baseline, moving-range scale, clipped two-sided CUSUM."""

    fields: ClassVar[dict[str, float | int]] = {
        "last_value": 0.0, "baseline": 0.0, "mean_step": 0.0, "baseline_weight": 0.0,
        "step_weight": 0.0, "cusum_up": 0.0, "cusum_down": 0.0, "count": 0,
    }

    def __init__(self, table: SensorTable, *, baseline_tau_s: float = 3600.0,
                 k_sigmas: float = 0.5, h_sigmas: float = 16.0, warmup: int = 120,
                 freeze_fraction: float = 0.5, sigma_floor_fraction: float = 1e-3,
                 clip_sigmas: float = 4.0, signed: bool = False) -> None:  # fmt: skip
        super().__init__(table)
        self.tau, self.k, self.h, self.warmup = baseline_tau_s, k_sigmas, h_sigmas, warmup
        self.clip = clip_sigmas
        self.freeze = freeze_fraction * h_sigmas
        self.floor = [sigma_floor_fraction * self.span(s) for s in range(len(table))]
        self.signed = signed

    def first(self, s: int, ts: int, v: float) -> float:
        for name, value in (("last_value", v), ("baseline", v), ("mean_step", 0.0),
                            ("baseline_weight", 1.0), ("step_weight", 0.0),
                            ("cusum_up", 0.0), ("cusum_down", 0.0), ("count", 1)):
            self.st[name][s] = value
        return math.nan

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        g = {name: values[s] for name, values in self.st.items()}
        tau_ms = 1000.0 * self.tau
        decay = tau_ms / ((ts - last) + tau_ms)
        sigma = max(g["mean_step"] * (math.sqrt(math.pi) / 2), self.floor[s])
        resid = v - g["baseline"]
        z = min(max(resid / sigma, -self.clip), self.clip)
        up = max(g["cusum_up"] + (z - self.k), 0.0)
        down = max(g["cusum_down"] - (z + self.k), 0.0)
        young = g["count"] < self.warmup
        if young:
            up = down = 0.0
        peak = max(up, down)
        wd = g["step_weight"] * decay + 1.0
        mean_step = g["mean_step"] + (abs(v - g["last_value"]) - g["mean_step"]) / wd
        wb = g["baseline_weight"] * decay + 1.0
        baseline = g["baseline"] + resid / wb if peak < self.freeze else g["baseline"]
        for name, value in (("last_value", v), ("baseline", baseline), ("mean_step", mean_step),
                            ("baseline_weight", wb), ("step_weight", wd), ("cusum_up", up),
                            ("cusum_down", down), ("count", g["count"] + 1)):
            self.st[name][s] = value
        if young:
            return math.nan
        score = peak * (1.0 / self.h)
        return float(-score if self.signed and down > up else score)


# -- sensor health ---------------------------------------------------------------------


class StuckRef(PerSensorReference):
    """:class:`detectors.health.StuckDetector`: seconds within ±tolerance of the run's anchor."""

    fields: ClassVar[dict[str, float | int]] = {"anchor": 0.0, "run_start": 0}

    def __init__(self, table: SensorTable, tolerance: float | None = None) -> None:
        super().__init__(table)
        self.tol = [1e-5 * self.span(s) if tolerance is None else tolerance
                    for s in range(len(table))]

    def first(self, s: int, ts: int, v: float) -> float:
        self.st["anchor"][s] = v
        self.st["run_start"][s] = ts
        return 0.0

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        if abs(v - self.st["anchor"][s]) > self.tol[s]:
            self.st["anchor"][s] = v
            self.st["run_start"][s] = ts
        return float((ts - self.st["run_start"][s]) * 1e-3)


class RangeRef(PerSensorReference):
    """:class:`detectors.health.RangeDetector`: span units beyond the range and its margin."""

    def __init__(self, table: SensorTable, margin_fraction: float = 0.02) -> None:
        super().__init__(table)
        self.margin = margin_fraction

    def first(self, s: int, ts: int, v: float) -> float:
        return self.step(s, ts, v, ts)

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        lo, hi, w = float(self.table.range_lo[s]), float(self.table.range_hi[s]), self.span(s)
        low, high = lo - self.margin * w, hi + self.margin * w
        return max(max(low - v, v - high), 0.0) * (1.0 / w)


class SpikeRef(PerSensorReference):
    """:class:`detectors.health.SpikeDetector`: robust z against a streaming median and MAD."""

    fields: ClassVar[dict[str, float | int]] = {"median": 0.0, "mad": 0.0, "count": 0}
    MEAN_ABS_TO_MAD = 0.6744897501960817 / math.sqrt(2 / math.pi)

    def __init__(self, table: SensorTable, tau_s: float = 300.0, warmup: int = 30,
                 mad_floor_fraction: float = 4e-3) -> None:  # fmt: skip
        super().__init__(table)
        self.tau, self.warmup = tau_s, warmup
        self.floor = [mad_floor_fraction * self.span(s) for s in range(len(table))]

    def first(self, s: int, ts: int, v: float) -> float:
        self.st["median"][s], self.st["mad"][s], self.st["count"][s] = v, 0.0, 1
        return math.nan

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        med, mad, n = self.st["median"][s], self.st["mad"][s], self.st["count"][s]
        dt_ms = ts - last
        alpha = dt_ms / (dt_ms + 1000.0 * self.tau)
        sigma = max(mad, self.floor[s]) * 1.4826
        resid = v - med
        dev = abs(resid)
        if n < self.warmup:  # plain running mean and mean absolute deviation
            med = med + resid / (n + 1.0)
            mad = mad + (dev * (self.MEAN_ABS_TO_MAD * math.sqrt(n / (n + 1.0))) - mad) / n
            score = math.nan
        else:  # sign (stochastic-approximation) updates
            score = dev / sigma
            med = med + sigma * alpha * math.sqrt(math.pi / 2) * _sign(resid)
            mad = max(mad * (_sign(dev - mad) * alpha + 1.0), self.floor[s])
        self.st["median"][s], self.st["mad"][s], self.st["count"][s] = med, mad, n + 1
        return score


class NoDataRef(PerSensorReference):
    """:class:`detectors.health.NoDataDetector`: 0 for every fresh reading (silence is judged
    on the clock, by ``check``)."""

    def first(self, s: int, ts: int, v: float) -> float:
        return 0.0

    def step(self, s: int, ts: int, v: float, last: int) -> float:
        return 0.0


# -- MSPC ------------------------------------------------------------------------------


class MspcRef:
    """:class:`detectors.mspc.MspcDetector`: T²/SPE of a sample-and-hold vector, one reading
    at a time in event-time order (stable for ties), one EWMA step per distinct time."""

    def __init__(self, table_rows: Sequence[int], monitor: PcaMonitor) -> None:
        self.monitor = monitor
        self.col = {int(r): j for j, r in enumerate(table_rows)}
        p = len(self.col)
        self.hold = [math.nan] * p
        self.seen = [False] * p
        self.last_ts = [NO_TS] * p
        self.clock = NO_TS
        self.ewma = [0.0] * p
        self.ewma_before = [0.0] * p

    def run(self, stream: Sequence[Reading]) -> list[float]:
        mon = self.monitor
        lam = mon.ewma_lambda
        out = [math.nan] * len(stream)
        for i in sorted(range(len(stream)), key=lambda i: stream[i][1]):
            s, ts, v = stream[i]
            j = self.col.get(s)
            if j is None or not math.isfinite(v) or ts <= self.last_ts[j]:
                continue
            self.hold[j], self.seen[j], self.last_ts[j] = v, True, ts
            complete = all(self.seen)
            z = ((np.array(self.hold) - mon.mean_) / mon.scale_ if complete
                 else np.zeros(len(self.hold)))
            step_ts = max(ts, self.clock)
            if step_ts > self.clock:  # a new step: its base is the last step's end
                self.ewma_before = list(self.ewma)
            self.clock = step_ts
            e = z if lam >= 1.0 else lam * z + (1.0 - lam) * np.array(self.ewma_before)
            self.ewma = [float(x) for x in e]
            t2, spe = mon.statistics((e / mon.sensor_scale_)[None, :])
            if complete:
                out[i] = float(mon.index(t2, spe)[0])
        return out

    def state(self) -> State:
        arrays: dict[str, npt.NDArray[Any]] = {
            "hold": np.array(self.hold, np.float64), "seen": np.array(self.seen, np.bool_),
            "last_ts": np.array(self.last_ts, np.int64),
            "ewma": np.array(self.ewma, np.float64),
            "ewma_before": np.array(self.ewma_before, np.float64),
            "clock": np.array([self.clock], np.int64),
        }
        return arrays
