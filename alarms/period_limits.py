"""Important periods tighten limits: which limits the detectors should use now.

While a period with ``tighten_limits_pct`` is in force over an area, that
area's sensors alarm earlier (:func:`alarms.periods.tightened_limits`); when it
ends they return to their configured limits. The engine asks on every tick
and moves the detectors' limits only when the set of such periods changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from alarms.periods import ImportantPeriod, limit_factor, tightened_limits
from model.sensor_table import SensorTable

__all__ = ["PeriodLimits"]

log = logging.getLogger(__name__)

Limits = dict[str, npt.NDArray[np.float64]]


class PeriodLimits:
    """The limit arrays (``ll``, ``l``, ``h``, ``hh``) for the periods in force."""

    def __init__(self, table: SensorTable) -> None:
        self.table = table
        self._base: Limits = {n: table.limit(n).copy() for n in ("ll", "l", "h", "hh")}
        self._in_force: tuple[tuple[str, float], ...] = ()

    def changed(self, periods: Sequence[ImportantPeriod]) -> Limits | None:
        """The limits to use if the tightening periods in force changed, else None."""
        tightening = [p for p in periods if p.tighten_limits_pct > 0]
        key = tuple(sorted((p.id, p.tighten_limits_pct) for p in tightening))
        if key == self._in_force:
            return None
        self._in_force = key
        limits = {n: a.copy() for n, a in self._base.items()}
        tightened = 0
        for place in self.table.places:
            factor = limit_factor(tightening, place.area)
            if factor >= 1.0:
                continue
            sensor = place.sensor
            moved = tightened_limits(sensor.effective_limits(), sensor.range, factor)
            for name, value in moved.items():
                limits[name][place.index] = value
            tightened += 1
        log.info("important periods in force %s: limits of %d sensors tightened",
                 [p.id for p in tightening] or "none", tightened)
        return limits
