"""Turn limit alarm-point transitions into alarm events, one per point change."""

from __future__ import annotations

from alarms.events import AlarmEvent, alarm_id
from detectors.limits import POINTS, LimitTransitions
from detectors.sensor_table import SensorTable

__all__ = ["events_from_transitions"]


def events_from_transitions(
    table: SensorTable, transitions: LimitTransitions
) -> list[AlarmEvent]:
    """Alarm events for every point change, in the order the changes happened.

    ``setpoint`` is the limit for a raise, and the limit less the deadband
    (the value the reading had to pass back through) for a clear.
    """
    events: list[AlarmEvent] = []
    for s, ts, value, point, active in zip(
        transitions.sensor.tolist(),
        transitions.ts.tolist(),
        transitions.value.tolist(),
        transitions.point.tolist(),
        transitions.active.tolist(),
        strict=True,
    ):
        place = table.places[s]
        limit = POINTS[point]
        setpoint = float(table.limit(limit)[s])
        if not active:
            deadband = float(table.deadband[s])
            setpoint = setpoint - deadband if limit in ("h", "hh") else setpoint + deadband
        events.append(
            AlarmEvent(
                alarm_id=alarm_id(place.sensor.id, limit),
                sensor=place.sensor.id,
                limit=limit,
                action="raise" if active else "clear",
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
