"""Detector checkpoints: detector state plus the alarm-journal offset it matches.

Written atomically (temporary file, fsync, rename) after every flush and
before the flush's messages are acknowledged. On restart the detector resumes
from it and the alarm journal is cut back to the recorded offset, so detector
state and alarm state always describe the same instant; readings after that
instant were not acknowledged and are redelivered by the broker.

State arrays are stored with the sensor ids they belong to, so a config that
adds, removes or reorders sensors keeps the state of the sensors it kept.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Checkpoint", "CheckpointFile", "remap_state"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    state: dict[str, npt.NDArray[Any]]
    sensor_ids: list[str]
    journal_offset: int


class CheckpointFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def save(self, state: dict[str, npt.NDArray[Any]], sensor_ids: list[str],
             journal_offset: int) -> None:
        buf = io.BytesIO()
        arrays: dict[str, npt.NDArray[Any]] = {
            "__sensor_ids__": np.array(sensor_ids, dtype=np.str_),
            "__journal_offset__": np.array(journal_offset, dtype=np.int64),
            **state,
        }
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self) -> Checkpoint | None:
        if not self.path.exists():
            return None
        with np.load(self.path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files if not k.startswith("__")}
            ids = [str(x) for x in data["__sensor_ids__"].tolist()]
            offset = int(data["__journal_offset__"])
        return Checkpoint(state, ids, offset)


def remap_state(
    saved: dict[str, npt.NDArray[Any]],
    saved_ids: list[str],
    fresh: dict[str, npt.NDArray[Any]],
    ids: list[str],
) -> dict[str, npt.NDArray[Any]]:
    """Carry saved state over to the current detectors, whatever changed since.

    Per-sensor arrays (first axis = sensors) keep the rows of the sensors that
    are still configured, matched by id; new sensors start fresh. Other arrays
    (a clock, say) are taken as saved when their shape still fits. Keys the
    saved state lacks (a detector added since) start fresh; keys the
    detectors no longer have are dropped.
    """
    where = {sid: i for i, sid in enumerate(saved_ids)}
    new_rows = np.array([i for i, sid in enumerate(ids) if sid in where], dtype=np.intp)
    old_rows = np.array([where[sid] for sid in ids if sid in where], dtype=np.intp)
    out: dict[str, npt.NDArray[Any]] = {}
    for name, arr in fresh.items():
        old = saved.get(name)
        if old is None:
            out[name] = arr
        elif arr.ndim and old.ndim and len(arr) == len(ids) and len(old) == len(saved_ids):
            merged = arr.copy()
            if len(new_rows):
                merged[new_rows] = old[old_rows]
            out[name] = merged
        elif old.shape == arr.shape:
            out[name] = old
        else:
            out[name] = arr
    return out
