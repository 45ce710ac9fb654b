"""Reading a NAB checkout: corpus files, labels, profiles and detector results.

Layout (NAB v1.1)::

    <data_dir>/data/<category>/<file>.csv          timestamp,value
    <data_dir>/labels/combined_windows.json         {"<category>/<file>.csv": [[start, end], ...]}
    <data_dir>/config/profiles.json                 {"standard": {"CostMatrix": {...}}, ...}
    <data_dir>/results_scores/final_results.json    published scores per detector and profile
    <results_dir>/<detector>/<category>/<detector>_<file>.csv   timestamp,...,anomaly_score,...

Nothing here copies or writes data; every path is given by the caller.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.evaluation.nab import CostProfile, FileOutput, WindowLimits

__all__ = [
    "NabDataError",
    "Series",
    "find_detectors",
    "load_corpus",
    "load_profiles",
    "load_published_scores",
    "load_results",
    "load_windows",
    "read_series",
]


class NabDataError(Exception):
    """A NAB file is missing or malformed; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Series:
    """One corpus file: timestamps (``datetime64[ms]``) and values, shape (n,)."""

    timestamps: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]


def _read_columns(path: Path, wanted: tuple[str, ...]) -> dict[str, list[str]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise NabDataError(path, "empty file")
            missing = [name for name in wanted if name not in header]
            if missing:
                raise NabDataError(path, f"no column {', '.join(missing)} (header: {header})")
            index = [header.index(name) for name in wanted]
            columns: dict[str, list[str]] = {name: [] for name in wanted}
            lists = [columns[name] for name in wanted]
            for row in reader:
                for column, i in zip(lists, index, strict=True):
                    column.append(row[i])
    except OSError as exc:
        raise NabDataError(path, f"cannot read ({exc.strerror})") from exc
    return columns


def _timestamps(path: Path, text: list[str]) -> npt.NDArray[np.datetime64]:
    try:
        return np.asarray(text, dtype="datetime64[ms]")
    except ValueError as exc:
        raise NabDataError(path, f"unreadable timestamp ({exc})") from exc


def _floats(path: Path, column: str, text: list[str]) -> npt.NDArray[np.float64]:
    try:
        return np.asarray(text, dtype=np.float64)
    except ValueError as exc:
        raise NabDataError(path, f"non-numeric {column} ({exc})") from exc


def read_series(path: Path) -> Series:
    """Read one corpus CSV (``timestamp,value``)."""
    columns = _read_columns(path, ("timestamp", "value"))
    return Series(
        timestamps=_timestamps(path, columns["timestamp"]),
        values=_floats(path, "value", columns["value"]),
    )


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise NabDataError(path, f"cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise NabDataError(path, f"invalid JSON ({exc})") from exc


def load_windows(data_dir: Path) -> dict[str, WindowLimits]:
    """Labelled windows per corpus file, from ``labels/combined_windows.json``."""
    path = data_dir / "labels" / "combined_windows.json"
    raw = _load_json(path)
    if not isinstance(raw, dict):
        raise NabDataError(path, "expected an object of file -> windows")
    windows: dict[str, WindowLimits] = {}
    for name, pairs in raw.items():
        try:
            limits = np.asarray(pairs, dtype="datetime64[ms]").reshape(-1, 2)
        except ValueError as exc:
            raise NabDataError(path, f"{name}: windows must be [start, end] pairs ({exc})") from exc
        windows[name] = [(start, end) for start, end in limits]
    return windows


def load_profiles(data_dir: Path) -> tuple[CostProfile, ...]:
    """Cost profiles from ``config/profiles.json``, in file order."""
    path = data_dir / "config" / "profiles.json"
    raw = _load_json(path)
    if not isinstance(raw, dict):
        raise NabDataError(path, "expected an object of profile -> {CostMatrix: ...}")
    profiles = []
    for name, body in raw.items():
        try:
            costs = body["CostMatrix"]
            profiles.append(
                CostProfile(
                    name=name,
                    tp_weight=float(costs["tpWeight"]),
                    fp_weight=float(costs["fpWeight"]),
                    fn_weight=float(costs["fnWeight"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NabDataError(path, f"{name}: bad CostMatrix ({exc!r})") from exc
    return tuple(profiles)


def load_corpus(data_dir: Path, files: Iterable[str]) -> dict[str, Series]:
    """Read the corpus files named (``"<category>/<file>.csv"``) under ``data/``."""
    return {name: read_series(data_dir / "data" / name) for name in files}


def find_detectors(results_dir: Path) -> list[str]:
    """Names of the detector subdirectories of a NAB ``results`` directory."""
    if not results_dir.is_dir():
        raise NabDataError(results_dir, "not a directory")
    return sorted(
        p.name for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def load_results(results_dir: Path, detector: str) -> dict[str, FileOutput]:
    """A detector's raw outputs, keyed by corpus file (``"<category>/<file>.csv"``).

    Reads ``<results_dir>/<detector>/<category>/<detector>_<file>.csv``; the
    ``timestamp`` and ``anomaly_score`` columns are used, the rest ignored.
    """
    root = results_dir / detector
    if not root.is_dir():
        raise NabDataError(root, "no such detector results directory")
    prefix = f"{detector}_"
    outputs: dict[str, FileOutput] = {}
    for path in sorted(root.glob("*/*.csv")):
        if not path.name.startswith(prefix):
            continue
        columns = _read_columns(path, ("timestamp", "anomaly_score"))
        name = f"{path.parent.name}/{path.name[len(prefix) :]}"
        outputs[name] = FileOutput(
            timestamps=_timestamps(path, columns["timestamp"]),
            scores=_floats(path, "anomaly_score", columns["anomaly_score"]),
        )
    if not outputs:
        raise NabDataError(root, f"no {prefix}*.csv result files under its category folders")
    return outputs


def load_published_scores(data_dir: Path) -> dict[str, dict[str, float]]:
    """Published normalised scores per detector and profile (NAB's final_results.json).

    Returns an empty mapping when the file is absent.
    """
    path = data_dir / "results_scores" / "final_results.json"
    if not path.is_file():
        return {}
    raw = _load_json(path)
    if not isinstance(raw, dict):
        raise NabDataError(path, "expected an object of detector -> profile -> score")
    try:
        return {
            str(detector): {str(profile): float(score) for profile, score in scores.items()}
            for detector, scores in raw.items()
        }
    except (AttributeError, TypeError, ValueError) as exc:
        raise NabDataError(path, f"bad score entry ({exc!r})") from exc
