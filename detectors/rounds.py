"""Walking a batch the way every detector must: per sensor, in event-time order.

A batch may hold several readings of one sensor, in any order. Detectors take
them in "rounds": round k holds the k-th reading (by timestamp) of each sensor,
so within a round each sensor appears at most once and the round is one
vectorized step; only the rounds are a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detectors.base import State
from model.batch import F64, NO_TS, ReadingBatch
from model.sensor_table import SensorTable

__all__ = [
    "Round",
    "RoundDetector",
    "at",
    "fresh_rounds",
    "in_sensor_order",
    "order_by_sensor_time",
    "sensor_rounds",
]


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


"""``last_ts`` of a sensor never heard from."""

I64 = npt.NDArray[np.int64]
Index = slice | npt.NDArray[np.intp]
"""Rows of a batch or sensors of a table: a slice when contiguous, else an index array."""


# -- rounds ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round:
    """The k-th reading of each sensor that has one, as one vectorized step.

    Attributes
    ----------
    rows : slice or intp array
        Batch rows of the readings.
    sensors : slice or intp array
        Their sensors, one per row and all different; a slice when they are a
        contiguous range (rows are then listed in sensor order).
    ts : int64 array
        Event times, ms.
    value : float64 array
    finite : bool
        Every value is finite (else detectors check per reading).
    """

    rows: Index
    sensors: Index
    ts: I64
    value: F64
    finite: bool


def _as_array(index: Index) -> npt.NDArray[np.intp]:
    if isinstance(index, slice):
        return np.arange(index.start, index.stop, index.step or 1, dtype=np.intp)
    return index


def _in_sensor_order(
    sensor: npt.NDArray[np.int32], increasing: bool
) -> tuple[npt.NDArray[np.intp] | None, Index]:
    """``(perm, sensors)`` for distinct sensors: ``perm`` (None: keep) lists rows in
    sensor order when the sensors form a range, so that ``sensors`` is a slice."""
    n = len(sensor)
    lo, hi = (int(sensor[0]), int(sensor[-1])) if increasing else (
        int(sensor.min()), int(sensor.max()))
    if hi - lo + 1 != n:
        return None, sensor.astype(np.intp)
    if increasing:
        return None, slice(lo, hi + 1)
    perm = np.empty(n, np.intp)
    perm[sensor - lo] = np.arange(n)
    return perm, slice(lo, hi + 1)


def _make_round(
    rows: Index, sensors: Index, batch: ReadingBatch, ts: I64 | None = None,
    value: F64 | None = None,
) -> Round:
    value = batch.value[rows] if value is None else value
    ts = batch.ts[rows] if ts is None else ts
    # Not math.isfinite(value.sum()): +inf and -inf in one round make the sum warn.
    return Round(rows, sensors, ts, value, bool(np.isfinite(value).all()))


def _blocks(
    batch: ReadingBatch, width: int, head_rising: bool | None
) -> tuple[Round, ...] | None:
    """Rounds of a batch made of blocks of ``width`` rows, each holding the same
    sensors in the same order (as a gateway sends one snapshot after another);
    None if the batch is not laid out so. ``head_rising``: the first block's
    sensors are known to rise (so they are distinct); None: not known."""
    sensor, ts = batch.sensor, batch.ts
    n = len(sensor)
    per = n // width
    if width * per != n:
        return None
    grid = sensor.reshape(per, width)
    head = grid[0]
    if not (grid[1:] == head).all():
        return None
    times = ts.reshape(per, width)
    if not (times[1:] >= times[:-1]).all():  # a sensor's time goes back: sort instead
        return None
    if head_rising is None:
        if int(np.bincount(head).max()) > 1:
            return None
        head_rising = bool((head[1:] > head[:-1]).all())
    perm, sensors = _in_sensor_order(head, head_rising)
    return tuple(
        _make_round(slice(k * width, (k + 1) * width) if perm is None else perm + k * width,
                    sensors, batch)
        for k in range(per)
    )


def _runs(batch: ReadingBatch, per: int, head_rising: bool | None) -> tuple[Round, ...] | None:
    """Rounds of a batch made of runs of ``per`` readings of one sensor each
    (a gateway sending each sensor's recent readings together); None if the
    batch is not laid out so."""
    sensor, ts = batch.sensor, batch.ts
    n = len(sensor)
    width = n // per
    if width * per != n:
        return None
    grid = sensor.reshape(width, per)
    head = grid[:, 0]
    if not (grid[:, 1:] == head[:, None]).all():
        return None
    times = ts.reshape(width, per)
    if not (times[:, 1:] >= times[:, :-1]).all():
        return None
    if head_rising is None:
        if int(np.bincount(head).max()) > 1:
            return None
        head_rising = bool((head[1:] > head[:-1]).all())
    perm, sensors = _in_sensor_order(head, head_rising)
    if perm is not None:
        return tuple(_make_round(perm * per + k, sensors, batch) for k in range(per))
    # One transposed copy makes every round's times and values contiguous.
    ts_by_round = times.T.copy()
    value_by_round = batch.value.reshape(width, per).T.copy()
    return tuple(
        _make_round(slice(k, n, per), sensors, batch, ts_by_round[k], value_by_round[k])
        for k in range(per)
    )


def _plan(batch: ReadingBatch) -> tuple[Round, ...]:
    sensor = batch.sensor
    n = len(sensor)
    if n == 0:
        return ()
    rising = sensor[1:] > sensor[:-1]
    if n == 1 or bool(rising.all()):
        return (_make_round(slice(0, n), _in_sensor_order(sensor, True)[1], batch),)
    # Cheap guesses first: the first block ends where the sensor number first
    # stops rising; the first run where the sensor first changes.
    width = int(np.argmin(rising)) + 1
    plan = _blocks(batch, width, True) if width > 1 else None
    if plan is None:
        changes = sensor[1:] != sensor[:-1]
        first = int(np.argmax(changes))
        plan = _runs(batch, first + 1 if changes[first] else n, None)
    if plan is not None:
        return plan
    counts = np.bincount(sensor)
    per = int(counts.max())
    if per == 1:
        perm, sensors = _in_sensor_order(sensor, False)
        return (_make_round(slice(0, n) if perm is None else perm, sensors, batch),)
    if per * np.count_nonzero(counts) == n:  # every sensor `per` times, blocks in any order
        plan = _blocks(batch, n // per, None)
        if plan is not None:
            return plan
    order, bounds = order_by_sensor_time(sensor, batch.ts)
    rounds = []
    for k in range(len(bounds) - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        s = sensor[rows]  # ascending within a round
        lo, hi = int(s[0]), int(s[-1])
        rounds.append(_make_round(
            rows, slice(lo, hi + 1) if hi - lo + 1 == len(s) else s.astype(np.intp), batch))
    return tuple(rounds)


_last_plan: tuple[ReadingBatch, tuple[Round, ...]] | None = None


def sensor_rounds(batch: ReadingBatch) -> tuple[Round, ...]:
    """The batch as rounds: round k holds the k-th reading (by time) of each sensor.

    The same rounds as :func:`~detectors.rounds.order_by_sensor_time` (per
    sensor, timestamp order, stable for ties). Batches with each sensor once,
    or every sensor the same number of times in time blocks or sensor runs,
    are recognised without sorting. The last plan is remembered (for the
    same batch object: batches are immutable), so the detectors of a suite
    plan a batch once.
    """
    global _last_plan
    memo = _last_plan
    if memo is not None and memo[0] is batch:
        return memo[1]
    plan = _plan(batch)
    _last_plan = (batch, plan)
    return plan


def fresh_rounds(batch: ReadingBatch, last_ts: I64) -> Iterator[tuple[Round, I64]]:
    """The batch's rounds (:func:`sensor_rounds`) with only fresh readings.

    A reading is fresh when its value is finite and its timestamp is newer
    than its sensor's entry in ``last_ts``; late, duplicate and non-finite
    readings are left out, so they never move a detector. Yields each round
    with its sensors' previous times, and advances ``last_ts`` in place as
    the rounds are consumed.
    """
    for r in sensor_rounds(batch):
        last = last_ts[r.sensors]
        ok = r.ts > last
        if not r.finite:
            ok &= np.isfinite(r.value)
        if not ok.all():
            keep = np.flatnonzero(ok)
            if len(keep) == 0:
                continue
            r = Round(_as_array(r.rows)[keep], _as_array(r.sensors)[keep], r.ts[keep],
                      r.value[keep], True)
            last = last[keep]
        elif isinstance(r.sensors, slice):
            last = last.copy()  # a view of last_ts, about to be overwritten
        last_ts[r.sensors] = r.ts
        yield r, last


def at(index: Index, pos: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Entries ``pos`` of a round's rows or sensors (a slice or an index array)."""
    if isinstance(index, slice):
        return pos * (index.step or 1) + (index.start or 0)
    return index[pos]


def in_sensor_order(
    sensors: Index, pos: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp] | None, npt.NDArray[np.int32]]:
    """``(order, sensor)`` of changes at positions ``pos`` of a round (as a
    :class:`~detectors.decide.ConditionBank` returns them): ``order`` puts them
    in sensor order, stably (None: they are already), and ``sensor`` is the
    sensor of each, in that order. Rounds list their sensors in any order;
    reporting changes by sensor keeps the output the same however a stream
    is cut into batches."""
    s = at(sensors, pos).astype(np.int32)
    if isinstance(sensors, slice) or len(s) < 2 or bool((s[1:] >= s[:-1]).all()):
        return None, s
    o = np.argsort(s, kind="stable")
    return o, s[o]


# -- the shared walk -----------------------------------------------------------


class RoundDetector:
    """Base of the per-reading detectors: rounds, late readings, priming, state.

    Subclasses list their per-sensor state in ``_state`` ((name, dtype) pairs;
    each an attribute holding an array of shape (m,)) and implement
    :meth:`_first` (a sensor's first reading) and :meth:`_step` (any later
    reading). Both get one round of distinct sensors as a slice or an index
    array, return the scores, and leave ``last_ts`` to this class.

    A reading whose timestamp is not newer than its sensor's last processed
    one (late or duplicate) or whose value is not finite scores NaN and
    changes nothing.
    """

    name: str = "round"
    _state: ClassVar[tuple[tuple[str, type[np.generic]], ...]] = ()

    def __init__(self, table: SensorTable) -> None:
        self.table = table
        self.last_ts: I64 = np.full(len(table), NO_TS, np.int64)
        self._unseen = len(table)  # sensors never heard from (derived from last_ts)

    # -- state -------------------------------------------------------------
    def _state_names(self) -> dict[str, type[np.generic]]:
        return {**dict(self._state), "last_ts": np.int64}

    def get_state(self) -> State:
        return {name: getattr(self, name).copy() for name in self._state_names()}

    def set_state(self, state: State) -> None:
        m = len(self.table)
        owner = type(self).__name__
        names = self._state_names()
        missing = sorted(set(names) - set(state))
        if missing:
            raise ValueError(f"{owner} state lacks {missing}; it holds {sorted(state)}")
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name, dtype in names.items():
            arr = np.array(state[name], dtype=dtype)
            if arr.shape != (m,):
                raise ValueError(
                    f"{owner} state {name!r} has shape {arr.shape}, expected ({m},): the "
                    "saved state belongs to a different sensor table; delete the checkpoint "
                    "to start fresh"
                )
            arrays[name] = arr
        for name, arr in arrays.items():
            setattr(self, name, arr)
        self._unseen = int(np.count_nonzero(self.last_ts == NO_TS))

    # -- readings ----------------------------------------------------------
    def update(self, batch: ReadingBatch) -> F64:
        """Advance over ``batch``; return one score per row (NaN: late, duplicate,
        non-finite or warming up)."""
        out: F64 | None = None
        whole = sensor_rounds(batch)
        for r, last in fresh_rounds(batch, self.last_ts):
            rows, idx, ts, v = r.rows, r.sensors, r.ts, r.value
            if self._unseen and last.min() == NO_TS:
                score = np.empty(len(ts))
                new = last == NO_TS
                fresh = np.flatnonzero(new)
                seen = np.flatnonzero(~new)
                idx = _as_array(idx)
                self._unseen -= len(fresh)
                score[fresh] = self._first(idx[fresh], ts[fresh], v[fresh])
                if len(seen):
                    score[seen] = self._step(idx[seen], ts[seen], v[seen], last[seen])
            else:
                score = self._step(idx, ts, v, last)
            if len(whole) == 1 and isinstance(rows, slice) and rows == slice(0, len(batch)):
                return score
            if out is None:
                out = np.full(len(batch), np.nan)
            out[rows] = score
        return np.full(len(batch), np.nan) if out is None else out

    def _first(self, idx: npt.NDArray[np.intp], ts: I64, v: F64) -> F64:
        """Prime the sensors ``idx`` with their first reading; return its score."""
        raise NotImplementedError

    def _step(self, idx: Index, ts: I64, v: F64, last: I64) -> F64:
        """One later reading of each sensor ``idx`` (``last``: its previous time)."""
        raise NotImplementedError
