"""An engineer's own labelled history: fit MSPC on a normal file, score labelled test files.

Numeric columns are sensors (all but the label and time columns). The
monitor (:class:`~detectors.mspc.PcaMonitor`) is fitted on the normal file
(rows labelled 1 there, if it has the label column, are left out). The alarm
threshold ``c`` (in units of the control limits, cleared below
``c · off_ratio``) comes from the normal file alone: fit on its first
``calibration_split`` share, decide the rest, take the smallest ``c`` that
alarms at most ``target_alarm_fraction`` of those held-out rows; then refit
on the whole normal file. With too few rows for that split, ``c = 1``.

Per test file and pooled: detection rate (recall over anomalous rows),
false-alarm rate FP/(FP+TN), F1 and the first-detection delay of each
anomalous segment (a run of consecutive rows labelled 1): from its first row
to the first alarmed row inside it, in seconds with a time column, else in
rows; a segment without an alarmed row is missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.evaluation.tabular_data import LabelledTable, TableError, read_table
from detectors.mspc import PcaMonitor, hysteresis_alarm

__all__ = ["FileResult", "TableConfig", "TableReport", "detection_delays", "evaluate_table"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TableConfig:
    """Monitor and decision settings of ``plantwatch evaluate table``."""

    explained_variance: float = 0.90
    alpha: float = 0.01
    ewma_lambda: float = 1.0
    off_ratio: float = 0.5
    target_alarm_fraction: float = 0.01
    calibration_split: float = 0.5

    def monitor(self) -> PcaMonitor:
        return PcaMonitor(explained_variance=self.explained_variance, alpha=self.alpha,
                          ewma_lambda=self.ewma_lambda)


@dataclass(frozen=True, slots=True)
class FileResult:
    """Counts, rates and detection delays of one test file (or of all, pooled)."""

    file: str
    tp: int
    fp: int
    fn: int
    tn: int
    delays: list[float]
    segments: int

    @property
    def detection_rate(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def false_alarm_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    @property
    def f1(self) -> float:
        den = self.tp + (self.fp + self.fn) / 2
        return self.tp / den if den else float("nan")

    def delay_summary(self, unit: str) -> dict[str, object]:
        d = np.asarray(self.delays, dtype=np.float64)
        return {
            "mean": float(d.mean()) if len(d) else None,
            "median": float(np.median(d)) if len(d) else None,
            "segments": self.segments,
            "missed": self.segments - len(d),
            "unit": unit,
        }

    def as_json(self, unit: str) -> dict[str, object]:
        return {
            "file": self.file, "detection_rate": self.detection_rate,
            "false_alarm_rate": self.false_alarm_rate, "f1": self.f1,
            "first_detection_delay": self.delay_summary(unit),
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
        }


def detection_delays(
    labels: npt.ArrayLike, alarms: npt.ArrayLike, time: npt.ArrayLike | None = None
) -> tuple[list[float], int]:
    """Delay to the first alarm of each labelled segment (detected ones), and the segment count."""
    lab = np.asarray(labels) == 1
    alarm = np.asarray(alarms).astype(bool)
    edges = np.diff(np.r_[0, lab.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    t = np.arange(len(lab), dtype=np.float64) if time is None else np.asarray(time, np.float64)
    delays = []
    for start, end in zip(starts, ends, strict=True):
        hit = np.flatnonzero(alarm[start:end])
        if len(hit):
            delays.append(float(t[start + hit[0]] - t[start]))
    return delays, len(starts)


@dataclass(frozen=True, slots=True)
class TableReport:
    """Results of one ``evaluate table`` run."""

    config: TableConfig
    sensors: tuple[str, ...]
    threshold: float
    unit: str
    files: list[FileResult]

    @property
    def pooled(self) -> FileResult:
        return FileResult(
            "pooled", sum(f.tp for f in self.files), sum(f.fp for f in self.files),
            sum(f.fn for f in self.files), sum(f.tn for f in self.files),
            [d for f in self.files for d in f.delays], sum(f.segments for f in self.files),
        )

    def as_json(self) -> dict[str, object]:
        summary = self.pooled.as_json(self.unit)
        del summary["file"]
        return {
            "summary": summary, "threshold": self.threshold, "sensors": list(self.sensors),
            "config": asdict(self.config), "files": [f.as_json(self.unit) for f in self.files],
        }


def _calibrate(config: TableConfig, normal: FloatArray) -> float:
    n, p = normal.shape
    split = int(n * config.calibration_split)
    if split < p + 4 or n - split < 10:
        return 1.0
    monitor = config.monitor().fit(normal[:split])
    index = monitor.index(*monitor.score(normal))
    target = config.target_alarm_fraction

    def fraction(c: float) -> float:
        return float(np.mean(hysteresis_alarm(index, c, c * config.off_ratio)[split:]))

    lo, hi = 0.0, 1.0
    while fraction(hi) > target:
        lo, hi = hi, hi * 2.0
    for _ in range(50):
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if fraction(mid) <= target else (mid, hi)
    return hi


def _check_columns(train: LabelledTable, test_path: Path, test_header: Sequence[str]) -> None:
    extra = [c for c in test_header if c not in train.sensors]
    if extra:
        raise TableError(
            test_path, f"is not a sensor of the training file {train.path.name}", extra[0]
        )


def evaluate_table(
    train_path: Path,
    test_paths: Sequence[Path],
    label_column: str,
    time_column: str | None = None,
    sep: str = ",",
    config: TableConfig | None = None,
    exclude: Sequence[str] = (),
) -> TableReport:
    """Fit on ``train_path``, decide and score every test file (see the module docstring).

    ``exclude`` names columns that are neither sensors nor the label (another
    label, an identifier); each may be absent from a file.
    """
    cfg = config or TableConfig()
    if not test_paths:
        raise ValueError("give at least one test file")
    train = _read_train(train_path, label_column, time_column, sep, exclude)
    normal = train.values if train.labels is None else train.values[train.labels == 0]
    if len(normal) < len(train.sensors) + 4:
        raise TableError(
            train_path, f"{len(normal)} normal rows are too few for {len(train.sensors)} sensors"
        )
    threshold = _calibrate(cfg, normal)
    monitor = cfg.monitor().fit(normal)
    results = []
    for path in test_paths:
        header = read_table(path, sep=sep, label_column=label_column, time_column=time_column,
                            exclude=exclude)
        _check_columns(train, path, header.sensors)
        test = read_table(path, sep=sep, label_column=label_column, time_column=time_column,
                          sensors=train.sensors)
        if test.labels is None:  # read_table always returns labels when asked for them
            raise TableError(path, "has no labels", label_column)
        index = monitor.index(*monitor.score(test.values))
        alarm = hysteresis_alarm(index, threshold, threshold * cfg.off_ratio)
        lab = test.labels == 1
        delays, segments = detection_delays(lab, alarm, test.time_s)
        results.append(FileResult(
            path.name, int(np.sum(lab & alarm)), int(np.sum(~lab & alarm)),
            int(np.sum(lab & ~alarm)), int(np.sum(~lab & ~alarm)), delays, segments,
        ))
    unit = "s" if time_column is not None else "rows"
    return TableReport(cfg, train.sensors, threshold, unit, results)


def _read_train(
    path: Path, label_column: str, time_column: str | None, sep: str, exclude: Sequence[str]
) -> LabelledTable:
    """The normal file; its label column is optional (rows labelled 1 are dropped)."""
    first = read_table(path, sep=sep, time_column=time_column, exclude=(*exclude, label_column))
    try:
        return read_table(path, sep=sep, label_column=label_column, time_column=time_column,
                          sensors=first.sensors)
    except TableError as exc:
        if exc.column == label_column and "no such column" in str(exc):
            return first
        raise
