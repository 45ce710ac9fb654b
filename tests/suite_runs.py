"""One sensor of config/plant.yaml fed through the whole detector suite, for plant-case tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.decide import CONDITIONS
from detectors.suite import DetectorSuite
from model.batch import ReadingBatch
from model.plant import load_plant
from model.sensor_table import SensorTable

ROOT = Path(__file__).resolve().parents[1]
PLANT_TABLE = SensorTable.from_config(load_plant(ROOT / "config" / "plant.yaml"))
T0 = 1_764_000_000_000


def suite_raises(sensor: int, values: npt.NDArray[np.float64],
                 per_batch: int = 1) -> list[tuple[int, str]]:  # fmt: skip
    """(second, condition) of every raise on ``sensor``, fed one reading a second
    in batches of ``per_batch`` readings."""
    suite = DetectorSuite(PLANT_TABLE)
    out: list[tuple[int, str]] = []
    for k in range(0, len(values), per_batch):
        chunk = values[k : k + per_batch]
        suite.update(ReadingBatch.from_columns(
            np.full(len(chunk), sensor), T0 + 1000 * np.arange(k, k + len(chunk)), chunk))
        t = suite.transitions
        out += [(int(ts - T0) // 1000, CONDITIONS[c])
                for c, a, ts in zip(t.condition, t.active, t.ts, strict=True) if a]
    return out
