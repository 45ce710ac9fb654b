"""Turn limit-level transitions into alarm events, one per alarm point.

A jump from normal straight to the second level raises both the first- and the
second-level alarm points (each is its own alarm in ISA-18.2 terms); falling
from the second level to the first clears only the second-level one.
"""

from __future__ import annotations

from alarms.events import AlarmEvent, alarm_id
from detectors.limits import LimitTransitions
from detectors.sensor_table import SensorTable

__all__ = ["LIMIT_OF_LEVEL", "events_from_transitions"]

# (side, level) -> limit name
LIMIT_OF_LEVEL: dict[tuple[int, int], str] = {
    (1, 1): "h", (1, 2): "hh", (-1, 1): "l", (-1, 2): "ll",
}


def events_from_transitions(
    table: SensorTable, transitions: LimitTransitions
) -> list[AlarmEvent]:
    """Alarm events for every level change, in the order the changes happened."""
    events: list[AlarmEvent] = []
    for s, ts, value, side, old, new in zip(
        transitions.sensor.tolist(),
        transitions.ts.tolist(),
        transitions.value.tolist(),
        transitions.side.tolist(),
        transitions.old_level.tolist(),
        transitions.new_level.tolist(),
        strict=True,
    ):
        place = table.places[s]
        deadband = float(table.deadband[s])
        if new > old:
            steps = [(lvl, "raise") for lvl in range(old + 1, new + 1)]
        else:
            steps = [(lvl, "clear") for lvl in range(old, new, -1)]
        for level, action in steps:
            limit = LIMIT_OF_LEVEL[(side, level)]
            setpoint = float(table.limit(limit)[s])
            if action == "clear":
                setpoint = setpoint - deadband if side > 0 else setpoint + deadband
            events.append(
                AlarmEvent(
                    alarm_id=alarm_id(place.sensor.id, limit),
                    sensor=place.sensor.id,
                    limit=limit,
                    action="raise" if action == "raise" else "clear",
                    ts=ts,
                    value=value,
                    setpoint=setpoint,
                    priority=place.sensor.priority,
                    site=place.site,
                    workshop=place.workshop,
                    area=place.area,
                    team=place.team,
                    post=place.post,
                    kind=place.sensor.kind,
                    unit=place.sensor.effective_unit(),
                )
            )
    return events
