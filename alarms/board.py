"""The alarm board: the current state of every alarm point, built from events.

Applying an event is idempotent: raising an alarm that is already active, or
clearing one that is already normal, changes nothing and is reported as such.
That is what makes a replay of redelivered readings after a crash harmless,
and what lets the board be rebuilt from the journal at start-up without
re-annunciating anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from alarms.events import AlarmEvent

__all__ = ["Alarm", "AlarmBoard"]


@dataclass(frozen=True, slots=True)
class Alarm:
    """Current state of one alarm point."""

    alarm_id: str
    sensor: str
    limit: str
    active: bool
    raised_ts: int
    raised_value: float
    setpoint: float
    cleared_ts: int | None
    cleared_value: float | None
    priority: str
    site: str
    workshop: str
    area: str
    team: str
    post: str
    kind: str
    unit: str
    raise_count: int
    category: str = "alarm"
    eta_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id,
            "sensor": self.sensor,
            "limit": self.limit,
            "state": "active" if self.active else "normal",
            "raised_ts": self.raised_ts,
            "raised_value": self.raised_value,
            "setpoint": self.setpoint,
            "cleared_ts": self.cleared_ts,
            "cleared_value": self.cleared_value,
            "priority": self.priority,
            "site": self.site,
            "workshop": self.workshop,
            "area": self.area,
            "team": self.team,
            "post": self.post,
            "kind": self.kind,
            "unit": self.unit,
            "raise_count": self.raise_count,
            "category": self.category,
            "eta_s": self.eta_s,
        }


class AlarmBoard:
    """Every alarm point seen so far, keyed by alarm id."""

    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}

    def apply(self, event: AlarmEvent) -> bool:
        """Apply one event; return True if it changed the board."""
        current = self._alarms.get(event.alarm_id)
        if event.action == "raise":
            if current is not None and current.active:
                return False
            self._alarms[event.alarm_id] = Alarm(
                alarm_id=event.alarm_id,
                sensor=event.sensor,
                limit=event.limit,
                active=True,
                raised_ts=event.ts,
                raised_value=event.value,
                setpoint=event.setpoint,
                cleared_ts=None,
                cleared_value=None,
                priority=event.priority,
                site=event.site,
                workshop=event.workshop,
                area=event.area,
                team=event.team,
                post=event.post,
                kind=event.kind,
                unit=event.unit,
                raise_count=(current.raise_count if current else 0) + 1,
                category=event.category,
                eta_s=event.eta_s,
            )
            return True
        if current is None or not current.active:
            return False
        self._alarms[event.alarm_id] = replace(
            current, active=False, cleared_ts=event.ts, cleared_value=event.value
        )
        return True

    def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    def active(self) -> list[Alarm]:
        return sorted(
            (a for a in self._alarms.values() if a.active), key=lambda a: (a.raised_ts, a.alarm_id)
        )

    def all(self) -> list[Alarm]:
        return sorted(self._alarms.values(), key=lambda a: (a.raised_ts, a.alarm_id))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Comparable picture of the board (used to check a restart changed nothing)."""
        return {k: v.to_dict() for k, v in sorted(self._alarms.items())}
