"""The alarm catalogue: every alarm point the plant can raise, with its rationalization.

ISA-18.2 calls this the master alarm database. A point exists for each
condition of each configured sensor (``<sensor>:<condition>``); its
definition starts from defaults and is overridden by rationalization entries
from the alarm config, matched by glob on the alarm id, later entries
winning (``"TF-*-LEL-*:hh"`` then ``"TF-A-LEL-05:hh"``).

Default priorities: the sensor's configured priority is that of its first
level (``h``/``l``) and rate alarms; the second level (``hh``/``ll``) is one
step higher; warnings (trend, drift) and sensor faults are ``low`` — the
operator should hear about them, but never above a limit alarm.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alarms.points import PRIORITIES, AlarmDefinition, AlarmPoint, priority_rank
from detectors.registry import CATEGORY_OF
from model.plant import PlantConfig, SensorPlace

__all__ = ["AlarmCatalogue", "Rationalization", "default_priority"]


@dataclass(frozen=True, slots=True)
class Rationalization:
    """One rationalization entry: the fields it sets, for alarm ids matching ``match``."""

    match: str
    fields: Mapping[str, Any]

    def applies(self, alarm_id: str) -> bool:
        return fnmatch.fnmatchcase(alarm_id, self.match)


def default_priority(sensor_priority: str, condition: str) -> str:
    if CATEGORY_OF[condition] != "alarm":
        return "low"
    if condition in ("hh", "ll"):
        return PRIORITIES[min(priority_rank(sensor_priority) + 1, len(PRIORITIES) - 1)]
    return sensor_priority


class AlarmCatalogue:
    """Builds a fresh :class:`AlarmPoint` for any alarm id of the plant (the manager's factory)."""

    def __init__(
        self,
        plant: PlantConfig,
        rationalization: Sequence[Rationalization] = (),
        *,
        realarm_s: Mapping[str, float] | None = None,
        max_shelve_s: float = 8 * 3600.0,
    ) -> None:
        self._places: dict[str, SensorPlace] = {p.sensor.id: p for p in plant.places()}
        self._entries = list(rationalization)
        self._realarm_s = dict(realarm_s or {})
        self._max_shelve_s = max_shelve_s
        self._templates: dict[str, AlarmPoint] = {}

    def definition(self, place: SensorPlace, condition: str) -> AlarmDefinition:
        alarm_id = f"{place.sensor.id}:{condition}"
        priority = default_priority(place.sensor.priority, condition)
        fields: dict[str, Any] = {
            "priority": priority,
            "realarm_s": float(self._realarm_s.get(priority, 0.0)),
            "max_shelve_s": self._max_shelve_s,
        }
        explicit_realarm = False
        for entry in self._entries:
            if entry.applies(alarm_id):
                fields.update(entry.fields)
                explicit_realarm = explicit_realarm or "realarm_s" in entry.fields
        if not explicit_realarm:
            # A rationalized priority brings its own default re-alarm time.
            fields["realarm_s"] = float(self._realarm_s.get(fields["priority"], 0.0))
        return AlarmDefinition(**fields)

    def __call__(self, alarm_id: str) -> AlarmPoint | None:
        template = self._templates.get(alarm_id)
        if template is None:
            sensor, _, condition = alarm_id.rpartition(":")
            place = self._places.get(sensor)
            if place is None or condition not in CATEGORY_OF:
                return None
            definition = self.definition(place, condition)
            template = AlarmPoint(
                alarm_id=alarm_id, sensor=sensor, limit=condition,
                category=CATEGORY_OF[condition], kind=place.sensor.kind,
                unit=place.sensor.effective_unit(), site=place.site, workshop=place.workshop,
                area=place.area, team=place.team, post=place.post, definition=definition,
                priority=definition.priority,
            )
            self._templates[alarm_id] = template
        return replace(template, recent_raises=[])
