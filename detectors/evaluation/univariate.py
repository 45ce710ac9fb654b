"""plantwatch's univariate detectors as NAB detectors: one series in, scores in [0, 1] out.

NAB scores each file as one sensor with no configured limits, so only the
limit-free detectors take part: spikes (robust z-score) and drift (CUSUM);
rate of change and the trend need a configured maximum or limit, which NAB
series do not have. NAB's series are sampled every few minutes while the
detectors' time constants are set in seconds for 1 Hz plant data, so each
series is fed with its sample index as the time in seconds (NAB detectors are
judged per sample; its probation period is 15 % of the samples). The sensor's
range comes from the probation rows only: nothing looks ahead. Each score
is mapped onto [0, 1] by ``x / (x + x₀)`` with ``x₀`` at the detector's own
deciding threshold, so 0.5 means "at the threshold". The detectors stream
over each series with the same code and state as in the plant.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from detectors.drift import DriftDetector
from detectors.health import SpikeDetector
from model.batch import ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["NAB_DETECTORS", "one_sensor_table"]

NabDetector = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]

SPIKE_Z = 8.0  # the suite's spike threshold (detectors.suite)


def one_sensor_table(values: npt.NDArray[np.float64]) -> SensorTable:
    """A table of one limit-free sensor whose range spans the series' probation rows."""
    head = values[: max(2, int(0.15 * len(values)))]
    lo, hi = float(np.nanmin(head)), float(np.nanmax(head))
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
    """One sensor's series, one sample per second (see the module notes)."""
    del ts_ms  # per-sample time, not wall time
    return ReadingBatch.from_columns(
        np.zeros(len(values), np.int32), np.arange(len(values), dtype=np.int64) * 1000, values
    )


def _squash(x: npt.NDArray[np.float64], x0: float) -> npt.NDArray[np.float64]:
    x = np.nan_to_num(np.abs(x), nan=0.0, posinf=1e12)
    return x / (x + x0)


def spike(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    det = SpikeDetector(one_sensor_table(values))
    return _squash(det.update(_batch(ts_ms, values)), SPIKE_Z)


def drift(ts_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """CUSUM as a changepoint detector: re-anchored after each detection.

    In the plant a detected drift holds (the baseline freezes) until someone
    deals with it; NAB asks for each change to be flagged once, so here the
    baseline never freezes and is re-anchored as soon as a change is found.
    Chunks of rows are scored at a time; after a detection the chunk is
    replayed up to it (the detector is chunk-invariant, so the replay gives
    the same scores) and the baseline re-anchored there.
    """
    det = DriftDetector(one_sensor_table(values), freeze_fraction=2.0)
    batch = _batch(ts_ms, values)
    n = len(values)
    out = np.zeros(n)
    start = 0
    while start < n:
        stop = min(n, start + 512)
        saved = det.get_state()
        scores = det.update(batch.take(np.arange(start, stop)))
        hit = np.flatnonzero(scores >= 1.0)
        if not len(hit):
            out[start:stop] = scores
            start = stop
            continue
        end = start + int(hit[0]) + 1
        out[start:end] = scores[: end - start]
        det.set_state(saved)
        det.update(batch.take(np.arange(start, end)))
        det.rebaseline([0])
        start = end
    return _squash(out, 1.0)


NAB_DETECTORS: dict[str, NabDetector] = {
    "plantwatch-spike": spike,
    "plantwatch-drift": drift,
}
