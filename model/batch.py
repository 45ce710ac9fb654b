"""The columnar reading batch that flows from decoders to detectors and stores.

Nothing downstream of a decoder handles one reading at a time: a batch holds
four parallel NumPy arrays, one row per reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "F64",
    "NO_TS",
    "QUALITY_BAD",
    "QUALITY_GOOD",
    "QUALITY_STALE",
    "QUALITY_UNCERTAIN",
    "BatchBuilder",
    "ReadingBatch",
]

F64 = npt.NDArray[np.float64]
"""A float64 array: a column of values, or per-sensor state."""
NO_TS = np.iinfo(np.int64).min
"""The timestamp of nothing yet (a sensor never heard from, a delay not started)."""

QUALITY_GOOD = 0
QUALITY_UNCERTAIN = 1
QUALITY_BAD = 2
QUALITY_STALE = 3


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings as columns.

    Attributes
    ----------
    sensor : int32 array, shape (n,)
        Row of each reading's sensor in the :class:`~model.sensor_table.SensorTable`.
    ts : int64 array, shape (n,)
        Event time, milliseconds since the Unix epoch, UTC.
    value : float64 array, shape (n,)
        Measured value in the sensor's unit.
    quality : uint8 array, shape (n,)
        0 good, 1 uncertain, 2 bad, 3 stale (as the gateway reported it).
    """

    sensor: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = len(self.sensor)
        if not (len(self.ts) == len(self.value) == len(self.quality) == n):
            raise ValueError(
                "ReadingBatch columns differ in length: "
                f"sensor={n} ts={len(self.ts)} value={len(self.value)} quality={len(self.quality)}"
            )

    def __len__(self) -> int:
        return len(self.sensor)

    @classmethod
    def empty(cls) -> ReadingBatch:
        return cls(
            np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64),
            np.empty(0, np.uint8),
        )

    @classmethod
    def from_columns(
        cls,
        sensor: npt.ArrayLike,
        ts: npt.ArrayLike,
        value: npt.ArrayLike,
        quality: npt.ArrayLike | None = None,
    ) -> ReadingBatch:
        s = np.asarray(sensor, dtype=np.int32)
        q = (
            np.zeros(len(s), np.uint8)
            if quality is None
            else np.asarray(quality, dtype=np.uint8)
        )
        return cls(s, np.asarray(ts, dtype=np.int64), np.asarray(value, dtype=np.float64), q)

    @classmethod
    def concat(cls, batches: list[ReadingBatch]) -> ReadingBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.sensor for b in batches]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> ReadingBatch:
        return ReadingBatch(
            self.sensor[index], self.ts[index], self.value[index], self.quality[index]
        )


class BatchBuilder:
    """Readings appended as plain Python values, turned into one batch at the end.

    Decoders append here message by message; building NumPy arrays once per
    flush instead of once per message is what keeps single-reading messages
    cheap (``benchmarks/ingest_throughput.py``, the 1/msg row).
    """

    __slots__ = ("quality", "sensor", "ts", "value")

    def __init__(self) -> None:
        self.sensor: list[int] = []
        self.ts: list[int] = []
        self.value: list[float] = []
        self.quality: list[int] = []

    def __len__(self) -> int:
        return len(self.sensor)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` readings: takes back a message that failed half-way."""
        del self.sensor[n:], self.ts[n:], self.value[n:], self.quality[n:]

    def build(self) -> ReadingBatch:
        """The readings so far as a batch; the builder is left empty."""
        batch = ReadingBatch(
            np.array(self.sensor, np.int32),
            np.array(self.ts, np.int64),
            np.array(self.value, np.float64),
            np.array(self.quality, np.uint8),
        )
        self.sensor, self.ts, self.value, self.quality = [], [], [], []
        return batch
