"""An engine's state at one moment, and carrying it over to a changed plant.

A snapshot is the detectors' state arrays, the sensor ids their rows belong
to, and the alarm journal's size when it was taken: the alarm state is the
journal replayed up to that offset, so detector and alarm state restored from
one snapshot agree with each other. Where snapshots are kept (a file in the
state directory today) is the runner's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Snapshot", "remap_state"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: dict[str, npt.NDArray[Any]]
    sensor_ids: list[str]
    journal_offset: int


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
