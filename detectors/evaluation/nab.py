"""The Numenta Anomaly Benchmark (NAB v1.1) scoring rules, in NumPy.

A detector gives every row of a file a score in [0, 1]. For one cost profile
(``tpWeight``, ``fpWeight``, ``fnWeight``) NAB picks **one threshold per
detector over the whole corpus**, the one maximising the summed score of all
files, and reports ``100 · (S − S_null) / (S_perfect − S_null)``.

The rules follow NAB's own ``nab/sweeper.py`` (``Sweeper.calcSweepScore`` and
``calcScoreByThreshold``), ``nab/optimizer.py`` and ``Runner.normalize``:

* The first ``min(floor(0.15·n), 750)`` rows of a file are *probation*: they
  are neither detections nor misses and are left out of every count.
* A row inside a labelled window ``[left, right]`` (row indices, both ends
  included, width ``w``) at index ``i`` is worth
  ``tpWeight · σ(−(right − i + 1)/w) / σ(−1)``, where
  ``σ(x) = 2/(1 + e^{5x}) − 1`` is NAB's scaled sigmoid (``σ(x) = −1`` for
  ``x > 3``). A window counts once: the best (= earliest) detected row wins;
  a window with no detection costs ``−fnWeight``.
* A detection outside every window costs
  ``fpWeight · σ((i − right_prev)/(w_prev − 1))`` after a window (nearly
  ``−fpWeight`` far from it, milder just behind it) and ``−fpWeight`` before
  the file's first window.
* The threshold sweep sorts every scorable row of the corpus once by score,
  highest first, and lowers the threshold one distinct score at a time; rows
  with equal scores switch on together. Among equally good thresholds the
  highest wins (NAB's stable sort by score). "No detection at all" is a
  candidate too, reported as threshold 1.1 as in NAB.
* ``S_null = −fnWeight · (windows with a scorable row)`` (NAB's null detector
  never detects) and ``S_perfect = tpWeight · (windows)``.

Where NAB would crash this module decides instead, and says so: a window one
row wide uses a denominator of 1 row for the false positives behind it (NAB
divides by zero); windows are located by timestamp range (first row at or
after the start, last row not after the end) rather than by exact timestamp
equality, which is the same thing on the NAB corpus, whose window limits are
all row timestamps. Normalisation uses the windows of the files scored, which
on the full corpus is NAB's 116 windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_PROFILES",
    "NO_DETECTION_THRESHOLD",
    "PROBATION_FRACTION",
    "PROBATION_MAX_ROWS",
    "CostProfile",
    "FileOutput",
    "FileScore",
    "NabResult",
    "ProfileScore",
    "ThresholdCurve",
    "WindowLimits",
    "probation_rows",
    "scaled_sigmoid",
    "score_corpus",
    "threshold_curve",
]

PROBATION_FRACTION = 0.15
"""Share of each file's first rows left out of scoring."""

PROBATION_MAX_ROWS = 750
"""Cap on the probation period, in rows (NAB: ``0.15 · 5000``)."""

NO_DETECTION_THRESHOLD = 1.1
"""Threshold NAB reports when the best choice is to detect nothing."""

_MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # σ(−1): the earliest row of a window

Timestamp = np.datetime64 | int
WindowLimits = Sequence[tuple[Timestamp, Timestamp]]
"""Labelled windows of one file: ``(start, end)`` pairs, both ends included."""


@dataclass(frozen=True)
class CostProfile:
    """One NAB application profile (a row of ``config/profiles.json``)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


DEFAULT_PROFILES: tuple[CostProfile, ...] = (
    CostProfile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    CostProfile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    CostProfile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
)
"""NAB v1.1's three profiles, as in its ``config/profiles.json``."""


@dataclass(frozen=True)
class FileOutput:
    """A detector's output for one corpus file.

    Parameters
    ----------
    timestamps : ndarray, shape (n,)
        Row timestamps, ``datetime64`` (any unit) or integer epoch milliseconds,
        in file order.
    scores : ndarray, shape (n,)
        Anomaly score of each row, finite and in [0, 1].
    """

    timestamps: npt.NDArray[Any]
    scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class FileScore:
    """One file's result at the corpus threshold of a profile.

    ``tp``/``fp``/``fn``/``tn`` count scorable *rows*, as NAB's score files do
    (``tp``: detected rows inside windows); ``windows_detected`` counts windows.
    """

    file: str
    score: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    windows_detected: int


@dataclass(frozen=True)
class ProfileScore:
    """A detector's corpus result under one cost profile."""

    profile: str
    threshold: float
    raw_score: float
    normalized_score: float
    null_score: float
    perfect_score: float
    files: tuple[FileScore, ...]


@dataclass(frozen=True)
class NabResult:
    """A detector's NAB result: one :class:`ProfileScore` per profile name."""

    profiles: Mapping[str, ProfileScore]

    def normalized(self) -> dict[str, float]:
        """Normalised score per profile name."""
        return {name: p.normalized_score for name, p in self.profiles.items()}


@dataclass(frozen=True)
class ThresholdCurve:
    """Corpus score for every candidate threshold, highest threshold first.

    Row ``k`` holds the score and row counts when every scorable row with
    ``score >= thresholds[k]`` is a detection. Row 0 is "no detection".
    """

    thresholds: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    tp: npt.NDArray[np.int64]
    fp: npt.NDArray[np.int64]
    fn: npt.NDArray[np.int64]
    tn: npt.NDArray[np.int64]

    @property
    def best(self) -> int:
        """Index of the best threshold; ties go to the highest threshold."""
        return int(np.argmax(self.scores))


def probation_rows(n_rows: int) -> int:
    """Rows at the start of an ``n_rows`` file that are not scored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(position: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """NAB's scaled sigmoid ``2/(1 + e^{5x}) − 1``, and −1 beyond ``x > 3``.

    ``x`` is a position relative to a window's right end in window widths:
    −1 is the window's first row (≈ 0.987), 0 its right edge (0), positive
    values are past the window.
    """
    x = np.asarray(position, dtype=np.float64)
    inside = 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0
    return np.where(x > 3.0, -1.0, inside)


# --------------------------------------------------------------------------
# Preparation: per scorable row, its window and its unweighted worth
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """The scorable rows of a corpus, concatenated file after file."""

    names: tuple[str, ...]
    bounds: npt.NDArray[np.int64]  # shape (files + 1,): file f is rows bounds[f]:bounds[f+1]
    window_bounds: npt.NDArray[np.int64]  # shape (files + 1,): global window ids per file
    scores: npt.NDArray[np.float64]
    window: npt.NDArray[np.int64]  # global window id, −1 outside windows
    worth: npt.NDArray[np.float64]  # σ-weight: /σ(−1) inside windows, raw σ outside
    scorable_windows: int  # windows with at least one scorable row
    total_windows: int


def _ms(value: Timestamp) -> int:
    return int(_to_ms(np.asarray([value]))[0])


def _to_ms(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.datetime64):
        return array.astype("datetime64[ms]").astype(np.int64)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    raise TypeError(f"timestamps must be datetime64 or integer milliseconds, not {array.dtype}")


def _window_rows(
    name: str, times_ms: npt.NDArray[np.int64], limits: WindowLimits
) -> list[tuple[int, int]]:
    """Row index ranges ``(left, right)`` of the windows of one file, in time order."""
    rows: list[tuple[int, int]] = []
    n = times_ms.size
    for start, end in sorted((_ms(a), _ms(b)) for a, b in limits):
        after_start = np.flatnonzero(times_ms >= start)
        left = int(after_start[0]) if after_start.size else n
        past_end = np.flatnonzero(times_ms[left:] > end)
        right = left + (int(past_end[0]) if past_end.size else n - left) - 1
        if right < left:
            raise ValueError(f"{name}: window {start}..{end} (epoch ms) holds no row of the file")
        if rows and left <= rows[-1][1]:
            raise ValueError(f"{name}: window {start}..{end} (epoch ms) overlaps the previous one")
        rows.append((left, right))
    return rows


def _row_worth(
    n: int, windows: list[tuple[int, int]]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Unweighted worth and local window id of every row of a file."""
    worth = np.full(n, -1.0)  # before the first window: a full false positive
    window = np.full(n, -1, dtype=np.int64)
    index = np.arange(n, dtype=np.float64)
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        inside = slice(left, right + 1)
        worth[inside] = scaled_sigmoid(-(right - index[inside] + 1.0) / width) / _MAX_TP
        window[inside] = k
        stop = windows[k + 1][0] if k + 1 < len(windows) else n
        behind = slice(right + 1, stop)
        worth[behind] = scaled_sigmoid((index[behind] - right) / max(width - 1, 1))
    return worth, window


def _prepare(outputs: Mapping[str, FileOutput], windows: Mapping[str, WindowLimits]) -> _Prepared:
    names = tuple(sorted(outputs))
    bounds = [0]
    window_bounds = [0]
    parts_scores: list[npt.NDArray[np.float64]] = []
    parts_window: list[npt.NDArray[np.int64]] = []
    parts_worth: list[npt.NDArray[np.float64]] = []
    scorable_windows = 0
    for name in names:
        if name not in windows:
            raise KeyError(f"{name}: no labelled windows for this file")
        output = outputs[name]
        times = _to_ms(output.timestamps)
        scores = np.asarray(output.scores, dtype=np.float64)
        if times.shape != scores.shape or times.ndim != 1:
            raise ValueError(
                f"{name}: {times.shape} timestamps but {scores.shape} scores; "
                "want two 1-D arrays of one length"
            )
        if not np.all(np.isfinite(scores)) or np.any((scores < 0.0) | (scores > 1.0)):
            raise ValueError(f"{name}: anomaly scores must be finite and in [0, 1]")
        file_windows = _window_rows(name, times, windows[name])
        worth, window = _row_worth(times.size, file_windows)
        first = probation_rows(times.size)
        kept_window = window[first:]
        scorable_windows += np.unique(kept_window[kept_window >= 0]).size
        parts_scores.append(scores[first:])
        parts_window.append(np.where(kept_window >= 0, kept_window + window_bounds[-1], -1))
        parts_worth.append(worth[first:])
        bounds.append(bounds[-1] + times.size - first)
        window_bounds.append(window_bounds[-1] + len(file_windows))
    return _Prepared(
        names=names,
        bounds=np.asarray(bounds, dtype=np.int64),
        window_bounds=np.asarray(window_bounds, dtype=np.int64),
        scores=np.concatenate(parts_scores) if parts_scores else np.zeros(0),
        window=np.concatenate(parts_window) if parts_window else np.zeros(0, dtype=np.int64),
        worth=np.concatenate(parts_worth) if parts_worth else np.zeros(0),
        scorable_windows=scorable_windows,
        total_windows=window_bounds[-1],
    )


# --------------------------------------------------------------------------
# The sweep: sort once, accumulate score changes, read off each threshold
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sweep:
    """Profile-independent parts of the sweep, in descending score order."""

    thresholds: npt.NDArray[np.float64]  # one per distinct score, descending
    ends: npt.NDArray[np.int64]  # last sorted row of each distinct score
    fp_worth: npt.NDArray[np.float64]  # σ of a false positive, 0 inside windows
    tp_gain: npt.NDArray[np.float64]  # rise of a window's best σ-worth, 0 elsewhere
    first_hit: npt.NDArray[np.float64]  # 1 where a window is detected for the first time
    in_window: npt.NDArray[np.int64]


def _sweep(prepared: _Prepared) -> _Sweep:
    order = np.argsort(-prepared.scores, kind="stable")
    scores = prepared.scores[order]
    window = prepared.window[order]
    worth = prepared.worth[order]
    in_window = window >= 0

    # Per window, in descending-score order: the earliest row detected so far.
    # Worth falls strictly with the row index inside a window, so NAB's
    # running max of worth is the worth of the running min of the row index.
    # Grouping by window (stable) and offsetting the keys so that each group
    # starts below all previous ones lets one minimum.accumulate do every group.
    positions = np.flatnonzero(in_window)
    grouped = positions[np.argsort(window[positions], kind="stable")]
    group = window[grouped]
    span = np.int64(prepared.scores.size + 1)
    offset = (np.int64(prepared.total_windows) - group) * span
    earliest = np.minimum.accumulate(offset + order[grouped]) - offset
    best = prepared.worth[earliest]
    starts = np.ones(grouped.size, dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    previous = np.concatenate(([0.0], best[:-1]))
    gain = np.where(starts, best, best - previous)

    tp_gain = np.zeros(scores.size)
    tp_gain[grouped] = gain
    first_hit = np.zeros(scores.size)
    first_hit[grouped[starts]] = 1.0

    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)).astype(np.int64)
    return _Sweep(
        thresholds=scores[ends],
        ends=ends,
        fp_worth=np.where(in_window, 0.0, worth),
        tp_gain=tp_gain,
        first_hit=first_hit,
        in_window=in_window.astype(np.int64),
    )


def _curve(prepared: _Prepared, sweep: _Sweep, profile: CostProfile) -> ThresholdCurve:
    null = -profile.fn_weight * prepared.scorable_windows
    change = (
        profile.fp_weight * sweep.fp_worth
        + profile.tp_weight * sweep.tp_gain
        + profile.fn_weight * sweep.first_hit
    )
    running = null + np.cumsum(change)
    tp = np.cumsum(sweep.in_window)[sweep.ends]
    fp = (sweep.ends + 1) - tp
    window_rows = int(sweep.in_window.sum())
    other_rows = sweep.in_window.size - window_rows
    top = float(sweep.thresholds[0]) if sweep.thresholds.size else 0.0
    nothing = (
        NO_DETECTION_THRESHOLD if top < NO_DETECTION_THRESHOLD else float(np.nextafter(top, np.inf))
    )
    zero = np.zeros(1, dtype=np.int64)
    tp = np.concatenate((zero, tp))
    fp = np.concatenate((zero, fp))
    return ThresholdCurve(
        thresholds=np.concatenate(([nothing], sweep.thresholds)),
        scores=np.concatenate(([null], running[sweep.ends])),
        tp=tp,
        fp=fp,
        fn=window_rows - tp,
        tn=other_rows - fp,
    )


def threshold_curve(
    outputs: Mapping[str, FileOutput],
    windows: Mapping[str, WindowLimits],
    profile: CostProfile,
) -> ThresholdCurve:
    """Corpus score of ``outputs`` at every candidate threshold under ``profile``."""
    prepared = _prepare(outputs, windows)
    return _curve(prepared, _sweep(prepared), profile)


def _file_scores(
    prepared: _Prepared, profile: CostProfile, threshold: float
) -> tuple[FileScore, ...]:
    files: list[FileScore] = []
    for f, name in enumerate(prepared.names):
        rows = slice(int(prepared.bounds[f]), int(prepared.bounds[f + 1]))
        detected = prepared.scores[rows] >= threshold
        window = prepared.window[rows]
        worth = prepared.worth[rows]
        in_window = window >= 0
        hits = detected & in_window
        false_alarms = detected & ~in_window
        # Rows are in file order, so the first index per window is its earliest detection.
        _, first = np.unique(window[hits], return_index=True)
        scorable = np.unique(window[in_window]).size
        score = (
            profile.fp_weight * float(worth[false_alarms].sum())
            + profile.tp_weight * float(worth[hits][first].sum())
            - profile.fn_weight * (scorable - first.size)
        )
        tp = int(hits.sum())
        fp = int(false_alarms.sum())
        files.append(
            FileScore(
                file=name,
                score=score,
                tp=tp,
                fp=fp,
                fn=int(in_window.sum()) - tp,
                tn=int((~in_window).sum()) - fp,
                windows=int(prepared.window_bounds[f + 1] - prepared.window_bounds[f]),
                windows_detected=int(first.size),
            )
        )
    return tuple(files)


def score_corpus(
    outputs: Mapping[str, FileOutput],
    windows: Mapping[str, WindowLimits],
    profiles: Sequence[CostProfile] = DEFAULT_PROFILES,
) -> NabResult:
    """Score one detector's outputs over a corpus, NAB style.

    Parameters
    ----------
    outputs : mapping of str to FileOutput
        The detector's output per corpus file, keyed like ``windows``
        (NAB: ``"realKnownCause/nyc_taxi.csv"``). Every key must be labelled.
    windows : mapping of str to WindowLimits
        Labelled anomaly windows per file (``labels/combined_windows.json``);
        files of ``windows`` missing from ``outputs`` are not scored.
    profiles : sequence of CostProfile
        Cost profiles to score under; each gets its own corpus threshold.

    Returns
    -------
    NabResult
        Per profile: the chosen threshold, raw and normalised corpus scores and
        each file's score and row counts at that threshold.
    """
    prepared = _prepare(outputs, windows)
    sweep = _sweep(prepared)
    results: dict[str, ProfileScore] = {}
    for profile in profiles:
        curve = _curve(prepared, sweep, profile)
        best = curve.best
        threshold = float(curve.thresholds[best])
        null = -profile.fn_weight * prepared.scorable_windows
        perfect = profile.tp_weight * prepared.total_windows
        raw = float(curve.scores[best])
        normalized = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
        results[profile.name] = ProfileScore(
            profile=profile.name,
            threshold=threshold,
            raw_score=raw,
            normalized_score=normalized,
            null_score=null,
            perfect_score=perfect,
            files=_file_scores(prepared, profile, threshold),
        )
    return NabResult(profiles=results)
