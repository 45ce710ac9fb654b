"""Turn decided condition transitions into alarm events, one per point change."""

from __future__ import annotations

import math
from collections.abc import Mapping

from alarms.records import ConditionRecord
from detectors.decide import CONDITIONS, Transitions
from detectors.registry import CATEGORY_OF
from model.alarm_events import AlarmEvent, alarm_id
from model.sensor_table import SensorTable

__all__ = ["condition_records", "events_from_transitions"]


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


def condition_records(
    table: SensorTable, transitions: Transitions, now_ms: int,
    contributions: Mapping[int, dict[str, float]] | None = None,
) -> list[ConditionRecord]:
    """Journal records of the detectors' transitions, stamped with alarm time.

    ``at`` is the event time capped at the server clock: alarm time (shelve
    expiry, re-alarm, flood end) must not run ahead with a gateway whose
    clock is fast (readings up to ``max_future_skew_s`` ahead are accepted).
    """
    if not len(transitions):
        return []
    return [ConditionRecord(e, min(e.ts, now_ms))
            for e in events_from_transitions(table, transitions, contributions)]
