"""Detector checkpoints: detector state plus the alarm-journal offset it matches.

Written atomically (temporary file, fsync, rename) after every flush and
before the flush's messages are acknowledged. On restart the detector resumes
from it and the alarm journal is cut back to the recorded offset, so detector
state and alarm state always describe the same instant; readings after that
instant were not acknowledged and are redelivered by the broker.

State arrays are stored with the sensor ids they belong to, so a config that
adds, removes or reorders sensors keeps the state of the sensors it kept.

The file is owner-only (mode 0600, whatever the umask): the temporary file is
created so, and the rename keeps its mode. A directory it creates is 0700.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from alarms.jsonl import make_private_dir, sync_dir
from engine.snapshot import Snapshot

__all__ = ["CheckpointFile"]


class CheckpointFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        make_private_dir(self.path.parent)

    def save(self, snapshot: Snapshot) -> None:
        buf = io.BytesIO()
        arrays: dict[str, npt.NDArray[Any]] = {
            "__sensor_ids__": np.array(snapshot.sensor_ids, dtype=np.str_),
            "__journal_offset__": np.array(snapshot.journal_offset, dtype=np.int64),
            **snapshot.state,
        }
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as fh:
            os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        sync_dir(self.path.parent)

    def load(self) -> Snapshot | None:
        if not self.path.exists():
            return None
        with np.load(self.path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files if not k.startswith("__")}
            ids = [str(x) for x in data["__sensor_ids__"].tolist()]
            offset = int(data["__journal_offset__"])
        return Snapshot(state, ids, offset)
