"""Alarm events: what the alarm layer records and what notifiers announce.

An alarm point is one condition of one sensor (``TF-LEL-001:hh``), as ISA-18.2
counts alarms. Each event raises or clears one point at the event time of the
reading that caused it. ``limit`` names the condition:

* ``ll``, ``l``, ``h``, ``hh`` — limit alarms (报警), category ``alarm``;
* ``rate`` — rate of change beyond the sensor's maximum, category ``alarm``;
* ``trend`` — a predicted limit crossing within the horizon (超前预警), and
  ``drift`` — a slow shift away from the baseline, category ``warning``;
* ``stuck``, ``range``, ``spike``, ``nodata`` — sensor faults, category ``fault``.

Each condition's category is declared with its detector
(``detectors.registry.CATEGORY_OF``).
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
    reading that caused it; ``setpoint`` the threshold crossed (raise) or the
    one passed back through (clear): for limits the limit, less the deadband on
    clearing; for ``trend`` the limit being approached. ``score`` is the
    detector's score at that reading (``eta_s`` for a trend warning: seconds
    until the limit is expected to be reached).
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
    category: str = "alarm"
    score: float | None = None
    eta_s: float | None = None
    contributions: dict[str, float] | None = None
    """``mspc`` raises: each group sensor's share of the out-of-control statistic."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlarmEvent:
        """Read a journal record; fields added later fall back to their defaults."""
        fields = cls.__dataclass_fields__
        return cls(**{k: data[k] for k in fields if k in data})
