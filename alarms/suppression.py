"""Suppression by design: config rules that silence alarms a plant state makes meaningless.

Example: while the reactor feed pressure says the unit is shut down, its
low-pressure and low-temperature alarms are expected and would only bury the
alarms that matter. A rule names a state sensor and a condition on its value
(``below``/``above``), and the alarm points it silences (by area, sensor and
limit). The condition is judged on readings (:class:`SuppressionWatch`, run by
the engine on every batch before the detectors' conditions); an
engineer may also disable a rule, for example while the state sensor itself
is faulty. Suppressed points are still evaluated and recorded, never
annunciated (ISA-18.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from alarms.points import AlarmPoint
from alarms.records import SuppressRecord, suppress_record
from model.batch import ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["SuppressionRule", "SuppressionWatch"]


@dataclass(frozen=True, slots=True)
class SuppressionRule:
    """One suppression rule; empty ``areas``/``sensors``/``limits`` mean any."""

    id: str
    when_sensor: str
    below: float | None = None
    above: float | None = None
    areas: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()
    description: str = ""

    def condition(self, value: float) -> bool:
        """Whether a reading of the state sensor puts the rule in force."""
        if self.below is not None and value < self.below:
            return True
        return self.above is not None and value > self.above

    def matches(self, point: AlarmPoint) -> bool:
        if self.areas and point.area not in self.areas:
            return False
        if self.sensors and point.sensor not in self.sensors:
            return False
        if self.limits and point.limit not in self.limits:
            return False
        # A rule never silences its own state sensor: its faults must stay visible.
        return point.sensor != self.when_sensor

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "when_sensor": self.when_sensor, "below": self.below,
            "above": self.above, "areas": list(self.areas), "sensors": list(self.sensors),
            "limits": list(self.limits), "description": self.description,
        }


class SuppressionWatch:
    """Judges each rule's condition on the latest reading of its state sensor."""

    def __init__(self, rules: Sequence[SuppressionRule], table: SensorTable) -> None:
        self._rules = [(r, table.index[r.when_sensor]) for r in rules
                       if r.when_sensor in table.index]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def records(self, batch: ReadingBatch,
                active_now: Callable[[str], bool]) -> list[SuppressRecord]:
        """``suppress`` records for the rules whose condition this batch changed."""
        out: list[SuppressRecord] = []
        for rule, index in self._rules:
            mask = batch.sensor == index
            if not mask.any():
                continue
            ts, values = batch.ts[mask], batch.value[mask]
            k = int(np.argmax(ts))
            active = rule.condition(float(values[k]))
            if active != active_now(rule.id):
                out.append(suppress_record(rule.id, active, int(ts[k])))
        return out
