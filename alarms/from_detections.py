"""Turn decided condition transitions into alarm events, one per point change."""

from __future__ import annotations

import math
from collections.abc import Mapping

from alarms.events import CATEGORY_OF, AlarmEvent, alarm_id
from detectors.decide import CONDITIONS, Transitions
from detectors.sensor_table import SensorTable

__all__ = ["events_from_transitions"]


def events_from_transitions(
    table: SensorTable, transitions: Transitions,
    contributions: Mapping[int, dict[str, float]] | None = None,
) -> list[AlarmEvent]:
    """Alarm events for every change, in the order the changes happened.

    ``contributions`` (sensor row → shares, from the MSPC groups) is attached
    to ``mspc`` raises on that row.
    """
    events: list[AlarmEvent] = []
    for s, ts, value, cond, active, setpoint, score in zip(
        transitions.sensor.tolist(),
        transitions.ts.tolist(),
        transitions.value.tolist(),
        transitions.condition.tolist(),
        transitions.active.tolist(),
        transitions.setpoint.tolist(),
        transitions.score.tolist(),
        strict=True,
    ):
        place = table.places[s]
        name = CONDITIONS[cond]
        finite_score = score if math.isfinite(score) else None
        events.append(
            AlarmEvent(
                alarm_id=alarm_id(place.sensor.id, name),
                sensor=place.sensor.id,
                limit=name,
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
                category=CATEGORY_OF[name],
                score=finite_score,
                eta_s=finite_score if name == "trend" and active else None,
                contributions=(contributions or {}).get(s)
                if name == "mspc" and active else None,
            )
        )
    return events
