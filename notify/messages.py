"""What notifications say: the bodies every channel sends, shaped in one place.

* an **alarm** change: the point's current state plus ``change``, ``by``,
  ``reason``, ``annunciate``; ``action`` is ``raise``/``clear`` for raises
  and clears;
* a **flood** or alarm-**system** change (no point): the change itself;
* a **risk** colour change of an area, with its site;
* a **hazard** raised or updated;
* a **fire_control** notice (GB/T 50493 §5.1.2): second-level combustible gas
  alarms (by default) raised, cleared or re-alarmed, unless the point is out
  of service (a bump test must not call the fire brigade; shelved or
  suppressed alarms still go).
"""

from __future__ import annotations

from typing import Any

from alarms.config import FireControl
from alarms.hazards import Hazard
from alarms.lifecycle import AlarmChange
from alarms.risk import AreaRisk

__all__ = ["alarm_event_data", "alarm_topic", "fire_event", "hazard_data", "risk_data",
           "system_data"]


def alarm_topic(point: dict[str, Any]) -> str:
    """The retained MQTT topic of one alarm point's state."""
    return f"plantwatch/alarms/{point['site']}/{point['area']}/{point['sensor']}/{point['limit']}"


def alarm_event_data(change: AlarmChange) -> dict[str, Any]:
    """The SSE/webhook body of one alarm change: the point now, and what happened."""
    point = change.point or {}
    action = {"raised": "raise", "cleared": "clear"}.get(change.change, change.change)
    value = point.get("cleared_value") if change.change == "cleared" else point.get(
        "raised_value")
    return {
        **point,
        "type": "alarm",
        "change": change.change,
        "action": action,
        "ts": change.ts,
        "value": value,
        "by": change.by,
        "reason": change.reason,
        "annunciate": change.annunciate,
        "detail": change.detail,
    }


def system_data(change: AlarmChange) -> dict[str, Any]:
    """A change with no point: a post's flood starting or ending, or the alarm system's."""
    kind = "flood" if change.change.startswith("flood") else "alarm_system"
    return {"type": kind, **change.to_dict()}


def risk_data(area: AreaRisk, site: str, ts: int | None = None) -> dict[str, Any]:
    """An area's risk colour now; ``ts``: when it changed (so red, orange, red again
    are three notifications, not a repeat a receiver would drop)."""
    return {"type": "risk", "site": site, **area.to_dict(), "ts": ts}


def hazard_data(hazard: Hazard) -> dict[str, Any]:
    return {"type": "hazard", **hazard.to_dict(hazard.updated_ts)}


def fire_event(change: AlarmChange, fire_control: FireControl) -> dict[str, Any] | None:
    """The fire-control notice for ``change``, or None when it is not one."""
    point = change.point
    if point is None or change.change not in ("raised", "cleared", "realarm"):
        return None
    if point["kind"] not in fire_control.kinds or point["limit"] not in fire_control.limits:
        return None
    if point.get("out_of_service") is not None:
        return None
    return {**alarm_event_data(change), "type": "fire_control"}
