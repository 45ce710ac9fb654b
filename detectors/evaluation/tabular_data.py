"""Reading labelled sensor tables (CSV) for the tabular evaluations, with NumPy only.

A table is one row per time step: an optional time column, numeric sensor
columns and an optional 0/1 label column. Problems are reported as
:class:`TableError` naming the file and, where there is one, the column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["LabelledTable", "TableError", "read_table"]


class TableError(ValueError):
    """A table that cannot be evaluated; carries the file and the column at fault."""

    def __init__(self, path: Path, message: str, column: str | None = None) -> None:
        self.path = path
        self.column = column
        where = f"{path}" if column is None else f"{path}: column {column!r}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class LabelledTable:
    """One CSV file as arrays.

    Attributes
    ----------
    path : Path
    sensors : tuple of str, length p
        Sensor column names, in file order.
    values : float64 (n, p)
    labels : int8 (n,) or None
        The 0/1 label column, if one was asked for.
    time_s : float64 (n,) or None
        Seconds (since the Unix epoch for date-times), if a time column was given.
    """

    path: Path
    sensors: tuple[str, ...]
    values: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int8] | None
    time_s: npt.NDArray[np.float64] | None

    def __len__(self) -> int:
        return len(self.values)


def _parse_time(path: Path, column: str, cells: Sequence[str]) -> npt.NDArray[np.float64]:
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            stamp = datetime.fromisoformat(cell.strip())
        except ValueError as exc:
            raise TableError(
                path, f"row {i + 2}: {cell!r} is neither seconds nor an ISO date-time", column
            ) from exc
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        out[i] = stamp.timestamp()
    return out


def read_table(
    path: Path,
    *,
    sep: str = ",",
    label_column: str | None = None,
    time_column: str | None = None,
    exclude: Sequence[str] = (),
    sensors: Sequence[str] | None = None,
) -> LabelledTable:
    """Read ``path``; every column but the label, time and ``exclude`` ones is a sensor.

    ``sensors`` fixes the sensor columns (and their order) instead; a missing
    one is an error. Sensor cells must be numbers (empty cells are an error
    too: a gap in a training table is better filled knowingly).
    """
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter=sep))
    except OSError as exc:
        raise TableError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise TableError(path, "is empty (no header)")
    header = [cell.strip() for cell in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise TableError(path, "has a header but no data rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise TableError(path, f"row {i + 2} has {len(r)} cells, the header {len(header)}")
    index = {name: i for i, name in enumerate(header)}
    for name in (label_column, time_column):
        if name is not None and name not in index:
            raise TableError(path, f"no such column (columns: {', '.join(header)})", name)
    if sensors is None:
        skip = {label_column, time_column, *exclude}
        chosen = [h for h in header if h not in skip]
    else:
        chosen = list(sensors)
        missing = [s for s in chosen if s not in index]
        if missing:
            raise TableError(path, "sensor column missing", missing[0])
    if not chosen:
        raise TableError(path, "has no sensor columns")
    values = np.empty((len(body), len(chosen)))
    for j, name in enumerate(chosen):
        cells = [r[index[name]] for r in body]
        try:
            values[:, j] = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise TableError(
                path, f"is not numeric (found {bad!r}); exclude it or fix the data", name
            ) from None
    labels = None
    if label_column is not None:
        cells = [r[index[label_column]] for r in body]
        try:
            raw = np.array([float(c) for c in cells])
        except ValueError:
            raise TableError(path, "labels must be 0 or 1", label_column) from None
        if not np.all((raw == 0) | (raw == 1)):
            raise TableError(path, "labels must be 0 or 1", label_column)
        labels = raw.astype(np.int8)
    time_s = None
    if time_column is not None:
        time_s = _parse_time(path, time_column, [r[index[time_column]] for r in body])
    return LabelledTable(path, tuple(chosen), values, labels, time_s)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
