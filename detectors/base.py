"""The contract every streaming detector keeps.

A detector is a pure object: arrays in, scores out; no I/O, no wall clock,
no logging of data. Time is the readings' own event time (or an argument).

* ``update(batch)`` consumes a :class:`~model.batch.ReadingBatch` and
  returns one float64 score per row of the batch, in the batch's row order.
  Readings are taken per sensor in timestamp order; a reading not newer than
  the sensor's last processed one (late or duplicate) does not move state and
  scores NaN. During warm-up a score is NaN too.
* Scoring is separate from deciding: a score is continuous (a distance past a
  limit, a z-score, a statistic); thresholds, deadbands and delays are applied
  by a separate step.
* State is explicit, serializable and chunk-invariant: all of it lives in
  NumPy arrays returned by ``get_state()`` and accepted by ``set_state()``;
  feeding a time-ordered stream in chunks of 1, 7 or everything at once gives
  identical scores and identical final state.
* The input batch is never mutated; permuting sensors permutes outputs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from model.batch import ReadingBatch

__all__ = ["Detector", "State"]

State = dict[str, npt.NDArray[Any]]


@runtime_checkable
class Detector(Protocol):
    """A streaming detector over the sensors of a sensor table."""

    name: str

    def update(self, batch: ReadingBatch) -> npt.NDArray[np.float64]:
        """Advance over ``batch``; return one score per row (NaN: late or warming up)."""
        ...

    def get_state(self) -> State: ...

    def set_state(self, state: State) -> None: ...
