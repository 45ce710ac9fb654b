"""Walking a batch the way every detector must: per sensor, in event-time order.

A batch may hold several readings of one sensor, in any order. Detectors take
them in "rounds": round k holds the k-th reading (by timestamp) of each sensor,
so within a round each sensor appears at most once and the round is one
vectorized step; only the rounds are a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from detectors.batch import ReadingBatch

__all__ = ["fresh_rounds", "order_by_sensor_time"]


def order_by_sensor_time(
    sensor: npt.NDArray[np.int32], ts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Group readings into "rounds": round k holds the k-th reading of each sensor.

    Returns ``(order, bounds)``: ``order`` lists batch rows round by round
    (within a round each sensor appears at most once, so a round is one
    vectorized step), and round k is ``order[bounds[k]:bounds[k+1]]``.
    Within a sensor, readings are in timestamp order (stable for ties).
    """
    n = len(sensor)
    if n == 0:
        return np.empty(0, np.intp), np.zeros(1, np.intp)
    by_sensor = np.lexsort((ts, sensor))
    s_sorted = sensor[by_sensor]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    if len(starts) == n:  # one reading per sensor: a single round
        return by_sensor.astype(np.intp), np.array([0, n], np.intp)
    run_len = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, run_len)
    by_round = np.argsort(rank, kind="stable")
    order = by_sensor[by_round]
    counts = np.bincount(rank)
    bounds = np.r_[0, np.cumsum(counts)].astype(np.intp)
    return order.astype(np.intp), bounds


def fresh_rounds(
    batch: ReadingBatch, last_ts: npt.NDArray[np.int64]
) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.int32], npt.NDArray[np.int64]]]:
    """Yield ``(rows, sensor, ts)`` round by round, keeping only fresh readings.

    A reading is fresh when its value is finite and its timestamp is newer
    than its sensor's entry in ``last_ts``; late, duplicate and non-finite
    readings are dropped, so they never move a detector. ``last_ts`` is
    advanced (in place) as the rounds are consumed.
    """
    order, bounds = order_by_sensor_time(batch.sensor, batch.ts)
    for k in range(len(bounds) - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        s = batch.sensor[rows]
        ts = batch.ts[rows]
        fresh = (ts > last_ts[s]) & np.isfinite(batch.value[rows])
        if not fresh.all():
            rows, s, ts = rows[fresh], s[fresh], ts[fresh]
            if len(rows) == 0:
                continue
        last_ts[s] = ts
        yield rows, s, ts
