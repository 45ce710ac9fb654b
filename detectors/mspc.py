"""Multivariate statistical process monitoring (MSPC) of a group of related sensors.

A group is an area or a unit whose sensors move together: flow, pressure and
motor current of one pump, the temperatures of one reactor. A single sensor
can stay inside its limits while the group as a whole is not where normal
operation puts it; PCA-based monitoring catches that.

:class:`PcaMonitor` learns normal operation from a table of normal rows:

* every sensor is standardised with its training mean and standard deviation
  (a sensor that never moved gets scale 1, so its deviations are measured in
  its own unit instead of dividing by zero);
* PCA by SVD of the standardised data keeps ``k`` principal components;
* Hotelling's T² measures how far a row is inside the PCA model, SPE (Q) how
  far it is off the model plane (a broken correlation).

Control limits, for a false-alarm probability ``alpha`` per row:

* T²: ``k (n-1)(n+1) / (n (n-k)) · F(1-alpha; k, n-k)``, the limit for *new*
  observations (Tracy, Young & Mason 1992);
* SPE: Jackson & Mudholkar (1979), from the residual eigenvalues
  ``theta_i = sum(lambda_j ** i)``. It is the standard limit of the PCA-MSPC
  literature and stays accurate when a few unequal residual eigenvalues
  dominate; where its normal approximation breaks down (``h0 <= 0``) Box's
  (1954) ``g · chi2(h)`` approximation is used instead;
* or ``limit="empirical"``: the ``1 - alpha`` quantile of the training
  statistics themselves.

Two options make the monitor usable on real, slowly drifting plants:

* ``ewma_lambda < 1`` smooths the standardised deviations with an EWMA before
  the statistics (MEWMA, Lowry et al. 1992): a small persistent shift of a
  noisy sensor becomes visible. The variance of each smoothed sensor is
  measured on the training data instead of assuming ``lambda / (2 - lambda)``,
  because an autocorrelated sensor is not quietened by smoothing.
* ``drift_horizon > 0`` (in samples) widens each sensor's scale by the linear
  drift it showed during training, extrapolated over the horizon the model
  will be used for (shrunk so that pure noise adds nothing on average). A
  temperature that crept up by 0.1 °C during training is expected to creep on.

The correlation structure (the principal components) always comes from the
unsmoothed standardised training data; options only change each sensor's
scale. With ``ewma_lambda=1`` and ``drift_horizon=0`` the statistics are the
textbook T² and SPE.

:class:`MspcDetector` is the streaming wrapper (detectors/base.py contract):
each reading updates a sample-and-hold vector of the group's latest values;
the score of a reading is ``max(T²/T²_lim, SPE/SPE_lim)`` of that vector
(>= 1 means out of control). The fitted monitor is configuration, not state:
``get_state()`` holds only what the stream changed.

:func:`hysteresis_alarm` is the separate deciding step: alarm on above ``on``,
clear below ``off``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import signal, stats

from detectors.base import State
from model.batch import NO_TS, ReadingBatch

__all__ = ["MspcDetector", "PcaMonitor", "hysteresis_alarm"]

FloatArray = npt.NDArray[np.float64]


def _ewma(z: FloatArray, lam: float, start: FloatArray | None = None) -> FloatArray:
    """EWMA along rows, ``e_t = lam z_t + (1 - lam) e_{t-1}``, from ``start`` (default 0)."""
    if lam >= 1.0:
        return z.copy()
    zi = np.zeros((1, z.shape[1])) if start is None else ((1.0 - lam) * start)[None, :]
    out, _ = signal.lfilter([lam], [1.0, -(1.0 - lam)], z, axis=0, zi=zi)
    return np.asarray(out, dtype=np.float64)


def _spe_limit(residual_eigenvalues: FloatArray, alpha: float) -> float:
    """Jackson–Mudholkar limit of SPE; Box's g·chi2(h) where JM is undefined."""
    lam = residual_eigenvalues[residual_eigenvalues > 0]
    if len(lam) == 0:
        return float("inf")
    theta1, theta2, theta3 = (float(np.sum(lam**i)) for i in (1, 2, 3))
    h0 = 1.0 - 2.0 * theta1 * theta3 / (3.0 * theta2**2)
    c_alpha = float(stats.norm.ppf(1.0 - alpha))
    if h0 > 0:
        base = (
            c_alpha * np.sqrt(2.0 * theta2 * h0**2) / theta1
            + 1.0
            + theta2 * h0 * (h0 - 1.0) / theta1**2
        )
        if base > 0:
            return float(theta1 * base ** (1.0 / h0))
    g, h = theta2 / theta1, theta1**2 / theta2
    return float(g * stats.chi2.ppf(1.0 - alpha, h))


class PcaMonitor:
    """PCA model of normal operation with Hotelling's T² and SPE (Q) control limits.

    Parameters
    ----------
    explained_variance : float
        Keep the fewest components explaining at least this share of the
        standardised variance (ignored when ``n_components`` is given).
    n_components : int, optional
        Number of components to keep (at most ``p - 1``, so SPE always exists
        unless ``p == 1``).
    alpha : float
        False-alarm probability per row of each control limit.
    ewma_lambda : float
        EWMA weight of the newest row, in (0, 1]; 1 means no smoothing.
    drift_horizon : float
        Samples over which the model will be used; 0 disables drift widening.
    limit : {"theoretical", "empirical"}
        F / Jackson–Mudholkar limits, or the ``1 - alpha`` quantile of the
        training statistics.

    Attributes
    ----------
    mean_, scale_ : float64 (p,)
        Training mean and standard deviation (1 where the sensor was constant).
    components_ : float64 (k, p)
        Principal directions in standardised units.
    explained_variance_ : float64 (k,)
        Variances of the kept component scores.
    residual_variance_ : float64 (p - k,)
        Eigenvalues of the discarded components (they set the SPE limit).
    sensor_scale_ : float64 (p,)
        Standard deviation of each (smoothed, drift-widened) standardised
        deviation; 1 for the textbook statistics.
    t2_limit_, spe_limit_ : float
    n_samples_, n_components_ : int
    """

    mean_: FloatArray
    scale_: FloatArray
    components_: FloatArray
    explained_variance_: FloatArray
    residual_variance_: FloatArray
    sensor_scale_: FloatArray
    t2_limit_: float
    spe_limit_: float
    n_samples_: int
    n_components_: int

    def __init__(
        self,
        explained_variance: float = 0.90,
        n_components: int | None = None,
        alpha: float = 0.01,
        ewma_lambda: float = 1.0,
        drift_horizon: float = 0.0,
        limit: Literal["theoretical", "empirical"] = "theoretical",
    ) -> None:
        if not 0.0 < explained_variance <= 1.0:
            raise ValueError(f"explained_variance={explained_variance} is not in (0, 1]")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha={alpha} is not in (0, 1)")
        if not 0.0 < ewma_lambda <= 1.0:
            raise ValueError(f"ewma_lambda={ewma_lambda} is not in (0, 1]")
        if drift_horizon < 0.0:
            raise ValueError(f"drift_horizon={drift_horizon} is negative")
        if limit not in ("theoretical", "empirical"):
            raise ValueError(f"limit={limit!r} is neither 'theoretical' nor 'empirical'")
        self.explained_variance = explained_variance
        self.n_components = n_components
        self.alpha = alpha
        self.ewma_lambda = ewma_lambda
        self.drift_horizon = drift_horizon
        self.limit = limit

    # -- fitting -----------------------------------------------------------
    def fit(self, X: npt.ArrayLike) -> PcaMonitor:
        """Learn normal operation from ``X``, float64 (n, p) rows of normal data."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"X must be a 2-D table of rows, got shape {x.shape}")
        n, p = x.shape
        if not np.all(np.isfinite(x)):
            raise ValueError("X holds NaN or infinite values; fill or drop those rows first")
        max_k = max(p - 1, 1)
        if self.n_components is not None and not 1 <= self.n_components <= max_k:
            raise ValueError(f"n_components={self.n_components} is not in [1, {max_k}]")
        if n < max(p, 2) + 2:
            raise ValueError(f"{n} training rows are too few for {p} sensors")
        mean = x.mean(axis=0)
        scale = x.std(axis=0, ddof=1)
        # a sensor that never moved (up to rounding of its mean) keeps its own unit
        scale[(np.ptp(x, axis=0) == 0) | ~(scale > 1e-12 * np.maximum(np.abs(mean), 1.0))] = 1.0
        z = (x - mean) / scale
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        eig = singular**2 / (n - 1)
        if self.n_components is not None:
            k = self.n_components
        else:
            share = np.cumsum(eig) / eig.sum() if eig.sum() > 0 else np.ones(len(eig))
            k = min(int(np.searchsorted(share, self.explained_variance - 1e-12)) + 1, max_k)
        k = min(k, max(int(np.sum(eig > 1e-12 * max(eig.max(), 1e-300))), 1))
        self.mean_ = mean
        self.scale_ = scale
        self.components_ = vt[:k].copy()
        self.explained_variance_ = eig[:k].copy()
        self.residual_variance_ = np.concatenate([eig[k:], np.zeros(p - len(eig))])
        self.n_samples_ = n
        self.n_components_ = k
        self.sensor_scale_ = self._sensor_scale(z)
        if self.limit == "theoretical":
            self.t2_limit_ = float(
                k * (n - 1) * (n + 1) / (n * (n - k)) * stats.f.ppf(1.0 - self.alpha, k, n - k)
            )
            self.spe_limit_ = _spe_limit(self.residual_variance_, self.alpha)
        else:
            t2, spe = self.score(x)
            self.t2_limit_ = float(np.quantile(t2, 1.0 - self.alpha))
            self.spe_limit_ = float(np.quantile(spe, 1.0 - self.alpha)) if p > k else np.inf
        return self

    def _sensor_scale(self, z: FloatArray) -> FloatArray:
        lam, horizon = self.ewma_lambda, self.drift_horizon
        n = len(z)
        if lam >= 1.0 and horizon <= 0.0:
            return np.ones(z.shape[1])
        drift2 = np.zeros(z.shape[1])
        resid = z
        if horizon > 0.0:
            t = np.arange(n) - (n - 1) / 2.0
            stt = float(t @ t)
            slope = (t @ z) / stt
            resid = z - np.outer(t, slope)
            slope_var = (resid**2).sum(axis=0) / (n - 2) / stt
            # subtract the slope's own sampling variance: noise alone adds no drift
            drift2 = np.maximum(slope**2 - slope_var, 0.0) * horizon**2
        smooth = _ewma(resid, lam)
        burn_in = min(int(np.ceil(2.0 / lam)), n // 2) if lam < 1.0 else 0
        var = np.mean(smooth[burn_in:] ** 2, axis=0)
        out: FloatArray = np.sqrt(var + drift2)
        out[~(out > 0)] = 1.0
        return out

    # -- as data -----------------------------------------------------------
    _FITTED = ("mean_", "scale_", "components_", "explained_variance_", "residual_variance_",
               "sensor_scale_", "t2_limit_", "spe_limit_", "n_samples_", "n_components_")
    _PARAMS = ("explained_variance", "alpha", "ewma_lambda", "drift_horizon")

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The fitted model and its options as plain arrays (to save with ``np.savez``)."""
        if not hasattr(self, "mean_"):
            raise ValueError("monitor is not fitted; nothing to save")
        out: dict[str, npt.NDArray[np.generic]] = {
            name: np.asarray(getattr(self, name)) for name in self._FITTED + self._PARAMS
        }
        out["limit"] = np.array(self.limit)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> PcaMonitor:
        """A fitted monitor back from :meth:`to_arrays`; it scores exactly as the saved one."""
        missing = [k for k in (*cls._FITTED, *cls._PARAMS, "limit") if k not in arrays]
        if missing:
            raise ValueError(f"saved monitor lacks {', '.join(missing)}")
        limit = str(arrays["limit"])
        if limit not in ("theoretical", "empirical"):
            raise ValueError(f"saved monitor has limit={limit!r}")
        monitor = cls(
            explained_variance=float(arrays["explained_variance"]),
            alpha=float(arrays["alpha"]),
            ewma_lambda=float(arrays["ewma_lambda"]),
            drift_horizon=float(arrays["drift_horizon"]),
            limit="theoretical" if limit == "theoretical" else "empirical",
        )
        for name in ("mean_", "scale_", "components_", "explained_variance_",
                     "residual_variance_", "sensor_scale_"):
            setattr(monitor, name, np.asarray(arrays[name], np.float64).copy())
        monitor.t2_limit_ = float(arrays["t2_limit_"])
        monitor.spe_limit_ = float(arrays["spe_limit_"])
        monitor.n_samples_ = int(arrays["n_samples_"])
        monitor.n_components_ = int(arrays["n_components_"])
        p = len(monitor.mean_)
        if monitor.components_.shape != (monitor.n_components_, p):
            raise ValueError(f"saved monitor has components of shape {monitor.components_.shape},"
                             f" expected ({monitor.n_components_}, {p})")
        return monitor

    # -- scoring -----------------------------------------------------------
    def monitored(self, X: npt.ArrayLike, start: FloatArray | None = None) -> FloatArray:
        """Rows of ``X`` as monitored vectors: standardised, smoothed, divided by ``sensor_scale_``.

        ``start`` is the EWMA vector before the first row (default 0, the
        in-control target).
        """
        z = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean_) / self.scale_
        return _ewma(z, self.ewma_lambda, start) / self.sensor_scale_

    def statistics(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        """T² and SPE of monitored vectors ``u`` (n, p).

        Row by row with ``einsum`` (no BLAS), so a row's statistics do not depend
        on how many rows are scored with it: streaming in chunks of any size
        gives bit-identical scores.
        """
        t = np.einsum("ij,kj->ik", u, self.components_)
        t2 = np.einsum("ik,ik,k->i", t, t, 1.0 / self.explained_variance_)
        resid = u - np.einsum("ik,kj->ij", t, self.components_)
        spe = np.einsum("ij,ij->i", resid, resid)
        return t2, spe

    def score(self, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """T² and SPE, float64 (n,) each, of the rows of ``X`` taken as one time series."""
        return self.statistics(self.monitored(X))

    def index(self, t2: FloatArray, spe: FloatArray) -> FloatArray:
        """``max(T²/T²_lim, SPE/SPE_lim)``: at or above 1 the group is out of control."""
        out: FloatArray = np.maximum(t2 / self.t2_limit_, spe / self.spe_limit_)
        return out

    def contributions(self, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Per-sensor contributions to T² and SPE, float64 (n, p) each.

        T²: ``((P Λ^-1/2 Pᵀ u)_j)²`` and SPE: ``(u - P Pᵀ u)_j²``; both are
        non-negative and each row sums to the statistic. With EWMA smoothing
        pass the history, as for :meth:`score`: the last row is the current one.
        """
        return self.contributions_of(self.monitored(X))

    def contributions_of(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Contributions of monitored vectors ``u`` (n, p) (see :meth:`contributions`)."""
        p_mat = self.components_
        half = (u @ p_mat.T / np.sqrt(self.explained_variance_)) @ p_mat
        resid = u - (u @ p_mat.T) @ p_mat
        return half**2, resid**2


def hysteresis_alarm(
    score: npt.ArrayLike, on: float, off: float, initial: bool = False
) -> npt.NDArray[np.bool_]:
    """Alarm state per row: set when ``score > on``, cleared when ``score < off``.

    Between the two (and on NaN) the previous state holds; ``initial`` is the
    state before the first row. Vectorised: the state after row i is set by
    whichever of the two events happened last.
    """
    if off > on:
        raise ValueError(f"off={off} is above on={on}")
    s = np.asarray(score, dtype=np.float64)
    idx = np.arange(len(s))
    last_on = np.maximum.accumulate(np.where(s > on, idx, -1)) if len(s) else idx
    last_off = np.maximum.accumulate(np.where(s < off, idx, -1)) if len(s) else idx
    never = (last_on < 0) & (last_off < 0)
    out: npt.NDArray[np.bool_] = np.where(never, initial, last_on > last_off)
    return out


@dataclass(frozen=True, slots=True)
class _Fresh:
    """The readings of one batch that move the detector, in processing order."""

    rows: npt.NDArray[np.intp]
    col: npt.NDArray[np.intp]
    ts: npt.NDArray[np.int64]
    value: FloatArray


class MspcDetector:
    """Streaming T²/SPE of one sensor group over a sample-and-hold vector.

    Parameters
    ----------
    table_rows : int array (p,)
        Rows of the group's sensors in the sensor table, in the column order
        of the table ``monitor`` was fitted on.
    monitor : PcaMonitor
        A fitted monitor. It is configuration: ``get_state`` does not hold it,
        and a restored state must be paired with the same fitted monitor.
    name : str

    Notes
    -----
    Semantics of one reading, in event-time order (a batch is processed sorted
    by timestamp, stable for ties, so a time-ordered stream gives the same
    scores however it is cut into batches):

    * a reading of a sensor outside the group scores NaN;
    * a non-finite value is missing: NaN, and the state does not move;
    * a late reading (``ts <=`` that sensor's last processed ts) scores NaN and
      does not move the state;
    * otherwise the value replaces the sensor's entry of the hold vector, and
      the reading scores ``max(T²/T²_lim, SPE/SPE_lim)`` of the updated
      vector: NaN until every sensor of the group has reported once.

    The EWMA (``monitor.ewma_lambda < 1``) steps once per distinct timestamp
    of the group: readings sharing a timestamp, in one batch or split over
    several, make one step, each scoring the vector as it stands after it. So
    on an aligned table streamed row by row, the last reading of each row
    scores exactly what ``score(table)`` gives for that row. A reading newer
    for its own sensor but older than the group's newest timestamp joins the
    current step. The EWMA starts from 0 at the first step with a complete
    vector.
    """

    def __init__(
        self, table_rows: npt.ArrayLike, monitor: PcaMonitor, name: str = "mspc"
    ) -> None:
        rows = np.asarray(table_rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0 or len(np.unique(rows)) != len(rows):
            raise ValueError("table_rows must list each sensor row of the group once")
        if not hasattr(monitor, "mean_"):
            raise ValueError("monitor is not fitted; call monitor.fit(normal_rows) first")
        if len(monitor.mean_) != len(rows):
            raise ValueError(
                f"monitor was fitted on {len(monitor.mean_)} sensors, the group has {len(rows)}"
            )
        self.name = name
        self.table_rows = rows
        self.monitor = monitor
        self._sorted_rows = np.sort(rows)
        self._sorted_col = np.argsort(rows)
        p = len(rows)
        self.hold = np.full(p, np.nan)
        self.seen = np.zeros(p, np.bool_)
        self.last_ts = np.full(p, NO_TS, np.int64)
        self.clock = np.full(1, NO_TS, np.int64)
        self.ewma = np.zeros(p)
        self.ewma_before = np.zeros(p)
        # The batch rows that moved the detector in the last update, in
        # processing order, and the monitored and held vectors after each: what
        # a caller needs for the contributions at the reading that crossed a limit.
        self.last_rows: npt.NDArray[np.intp] = np.empty(0, np.intp)
        self.last_u: FloatArray = np.empty((0, p))
        self.last_hold: FloatArray = np.empty((0, p))

    # -- state -------------------------------------------------------------
    _STATE = (
        ("hold", np.float64),
        ("seen", np.bool_),
        ("last_ts", np.int64),
        ("ewma", np.float64),
        ("ewma_before", np.float64),
    )

    def get_state(self) -> State:
        """Hold vector, reported flags, last timestamps, group clock and EWMA vectors."""
        state: State = {name: getattr(self, name).copy() for name, _ in self._STATE}
        state["clock"] = self.clock.copy()
        return state

    def set_state(self, state: State) -> None:
        p = len(self.table_rows)
        shapes = [(name, dtype, (p,)) for name, dtype in self._STATE]
        shapes.append(("clock", np.int64, (1,)))
        loaded = {}
        for name, dtype, shape in shapes:
            arr = np.asarray(state[name], dtype=dtype)
            if arr.shape != shape:
                raise ValueError(
                    f"MspcDetector {self.name!r} state {name!r} has shape {arr.shape}, "
                    f"expected {shape}: the saved state belongs to another sensor group"
                )
            loaded[name] = arr.copy()
        for name, arr in loaded.items():
            setattr(self, name, arr)

    # -- scoring -----------------------------------------------------------
    def score(self, X: npt.ArrayLike) -> FloatArray:
        """Tabular reference: the index of each row of an aligned table (n, p), EWMA from 0."""
        t2, spe = self.monitor.score(X)
        return self.monitor.index(t2, spe)

    def contributions(self) -> tuple[FloatArray, FloatArray]:
        """Per-sensor contributions to T² and SPE of the current vector (NaN in warm-up)."""
        if not self.seen.all():
            nan = np.full(len(self.table_rows), np.nan)
            return nan, nan.copy()
        t2c, spec = self.monitor.contributions_of(self._current_u()[None, :])
        return t2c[0], spec[0]

    def _current_u(self) -> FloatArray:
        m = self.monitor
        if m.ewma_lambda >= 1.0:
            return ((self.hold - m.mean_) / m.scale_) / m.sensor_scale_
        return self.ewma / m.sensor_scale_

    def _fresh(self, batch: ReadingBatch) -> _Fresh:
        """Readings of the group with a finite value and newer than their sensor's last."""
        sensor = batch.sensor.astype(np.int64)
        pos = np.clip(np.searchsorted(self._sorted_rows, sensor), 0, len(self._sorted_rows) - 1)
        in_group = self._sorted_rows[pos] == sensor
        candidate = np.flatnonzero(in_group & np.isfinite(batch.value))
        order = candidate[np.argsort(batch.ts[candidate], kind="stable")]
        col = self._sorted_col[pos[order]]
        ts = batch.ts[order]
        # previous reading of the same sensor in this batch (time order within sensor)
        by_col = np.argsort(col, kind="stable")
        prev = np.full(len(order), NO_TS, np.int64)
        same = col[by_col][1:] == col[by_col][:-1]
        prev[by_col[1:][same]] = ts[by_col[:-1][same]]
        fresh = ts > np.maximum(prev, self.last_ts[col])
        return _Fresh(order[fresh], col[fresh], ts[fresh], batch.value[order[fresh]])

    def update(self, batch: ReadingBatch) -> FloatArray:
        """Advance over ``batch``; one score per row (NaN: other sensor, late, missing, warm-up)."""
        out = np.full(len(batch), np.nan)
        f = self._fresh(batch)
        m = len(f.rows)
        if m == 0:
            p = len(self.table_rows)
            self.last_rows, self.last_u, self.last_hold = f.rows, np.empty((0, p)), np.empty((0, p))
            return out
        p = len(self.table_rows)
        mon = self.monitor
        # hold vector after each reading: forward fill of the latest reading per sensor
        latest = np.full((m, p), -1, np.intp)
        latest[np.arange(m), f.col] = np.arange(m)
        latest = np.maximum.accumulate(latest, axis=0)
        hold = np.where(latest >= 0, f.value[np.maximum(latest, 0)], self.hold)
        complete = np.all((latest >= 0) | self.seen, axis=1)
        z = np.where(complete[:, None], (hold - mon.mean_) / mon.scale_, 0.0)
        # one EWMA step per distinct timestamp; the first may continue the stored step
        step_ts = np.maximum(f.ts, self.clock[0])
        new_step = np.r_[step_ts[0] > self.clock[0], step_ts[1:] > step_ts[:-1]]
        step_id = np.cumsum(new_step) - (1 if new_step[0] else 0)
        last_of_step = np.r_[step_id[1:] != step_id[:-1], True]
        first_base = self.ewma if new_step[0] else self.ewma_before
        lam = mon.ewma_lambda
        if lam >= 1.0:
            e = z
            step_end = z[last_of_step]
            base_of_step = np.vstack([first_base, step_end[:-1]])
        else:
            step_end = _ewma(z[last_of_step], lam, first_base)
            base_of_step = np.vstack([first_base, step_end[:-1]])
            e = lam * z + (1.0 - lam) * base_of_step[step_id]
        u = e / mon.sensor_scale_
        t2, spe = mon.statistics(u)
        out[f.rows] = np.where(complete, mon.index(t2, spe), np.nan)
        self.last_rows, self.last_u, self.last_hold = f.rows, u, hold
        # state after the batch
        self.hold = hold[-1].copy()
        self.seen = self.seen | (latest[-1] >= 0)
        np.maximum.at(self.last_ts, f.col, f.ts)
        self.clock = step_ts[-1:].copy()
        self.ewma = step_end[-1].copy()
        self.ewma_before = base_of_step[-1].copy()
        return out
