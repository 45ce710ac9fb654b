"""Alarm events: what the alarm layer records and what notifiers announce.

An alarm point is one limit of one sensor (``TF-LEL-001:hh``), as ISA-18.2
counts alarms. Each event raises or clears one alarm point at the event time of
the reading that caused it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["AlarmAction", "AlarmEvent", "alarm_id"]

AlarmAction = Literal["raise", "clear"]


def alarm_id(sensor: str, limit: str) -> str:
    """The id of the alarm point for ``limit`` (ll, l, h, hh) of ``sensor``."""
    return f"{sensor}:{limit}"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One raise or clear of one alarm point.

    ``ts`` is the reading's event time (ms since epoch, UTC); ``value`` the
    reading that caused it; ``setpoint`` the limit crossed (raise) or the limit
    the value fell back through less the deadband (clear).
    """

    alarm_id: str
    sensor: str
    limit: str
    action: AlarmAction
    ts: int
    value: float
    setpoint: float
    priority: str
    site: str
    workshop: str
    area: str
    team: str
    post: str
    kind: str
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlarmEvent:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
