"""plantwatch's univariate detectors as NAB detectors: one series in, scores in [0, 1] out.

NAB scores each file as one sensor with no configured limits, so only the
limit-free detectors take part: spikes (robust z-score) and drift (CUSUM);
rate of change and the trend need a configured maximum or limit, which NAB
series do not have. Each score is mapped onto [0, 1] by ``x / (x + x₀)`` with
``x₀`` at the detector's own deciding threshold, so 0.5 means "at the
threshold" for every detector and NAB's threshold sweep compares like with
like; the combined detector takes the largest. The detectors stream over the
series exactly as they would in the plant (event time, chunk-invariant state).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from detectors.batch import ReadingBatch
from detectors.drift import DriftDetector
from detectors.health import SpikeDetector
from detectors.sensor_table import SensorTable

__all__ = ["NAB_DETECTORS", "one_sensor_table"]

NabDetector = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]

SPIKE_Z = 8.0  # the suite's spike threshold (detectors.suite)


def one_sensor_table(values: npt.NDArray[np.float64]) -> SensorTable:
    """A table of one limit-free sensor whose range spans the series."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not hi > lo:
        hi = lo + 1.0
    nan = np.array([np.nan])
    return SensorTable(
        ids=["series"], places=[], index={"series": 0},
        ll=nan.copy(), l=nan.copy(), h=nan.copy(), hh=nan.copy(),
        deadband=np.array([0.0]), range_lo=np.array([lo]), range_hi=np.array([hi]),
        drift_detection=np.array([True]),
    )


def _batch(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> ReadingBatch:
    return ReadingBatch.from_columns(np.zeros(len(values), np.int32), ts_ms, values)


def _squash(x: npt.NDArray[np.float64], x0: float) -> npt.NDArray[np.float64]:
    x = np.nan_to_num(np.abs(x), nan=0.0, posinf=1e12)
    return x / (x + x0)


def spike(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    det = SpikeDetector(one_sensor_table(values))
    return _squash(det.update(_batch(ts_ms, values)), SPIKE_Z)


def drift(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    det = DriftDetector(one_sensor_table(values))
    return _squash(det.update(_batch(ts_ms, values)), 1.0)


def combined(ts_ms: npt.NDArray[np.int64],
             values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.maximum(spike(ts_ms, values), drift(ts_ms, values))


NAB_DETECTORS: dict[str, NabDetector] = {
    "plantwatch-spike": spike,
    "plantwatch-drift": drift,
    "plantwatch-combined": combined,
}
