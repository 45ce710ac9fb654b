"""Alarm points and their ISA-18.2 states.

An alarm point is one condition of one sensor (``TF-A-LEL-01:hh``). Its state
is derived from three facts: whether the process condition is active, whether
the operator has acknowledged the latest activation, and (for latched points)
whether it is waiting for a reset::

    normal ──raise──▶ unack ──ack──▶ ack ──clear──▶ normal
                        │                     (latched: ──clear──▶ latched ──reset──▶ normal)
                        └──clear──▶ rtn_unack ──ack──▶ normal
                                        (latched: rtn_unack is shown as ``latched``)

Three overlays sit on top of the state and never change it: **shelved** (by
an operator, with a reason, timed or one-shot), **suppressed** by design (a
config rule is in force) and **out of service** (maintenance). A point under
an overlay is still evaluated and recorded, just not annunciated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "PRIORITIES",
    "PRIORITY_COLOUR",
    "AlarmDefinition",
    "AlarmPoint",
    "AlarmState",
    "Escalation",
    "OutOfService",
    "Shelve",
    "priority_rank",
]

AlarmState = Literal["normal", "unack", "ack", "rtn_unack", "latched"]

# Lowest first. The colours are the operator display convention the plant's
# four-colour risk map uses too (docs/domain.md §5).
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "highest")
PRIORITY_COLOUR: dict[str, str] = {
    "highest": "red", "high": "orange", "medium": "yellow", "low": "blue",
}


def priority_rank(priority: str) -> int:
    """0 for low … 3 for highest; an unknown priority is a programming error."""
    return PRIORITIES.index(priority)


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """What rationalization decided for one alarm point (the master alarm database row)."""

    priority: str = "medium"
    latched: bool = False
    realarm_s: float = 0.0  # 0: no re-alarm
    max_shelve_s: float = 8 * 3600.0
    cause: str = ""
    consequence: str = ""
    corrective_action: str = ""
    max_response_s: float | None = None
    alarm_class: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "latched": self.latched,
            "realarm_s": self.realarm_s,
            "max_shelve_s": self.max_shelve_s,
            "cause": self.cause,
            "consequence": self.consequence,
            "corrective_action": self.corrective_action,
            "max_response_s": self.max_response_s,
            "class": self.alarm_class,
        }


@dataclass(frozen=True, slots=True)
class Shelve:
    """An operator's shelve: timed (``until_ts``) or one-shot (until the point clears)."""

    by: str
    reason: str
    ts: int
    until_ts: int | None
    oneshot: bool

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "ts": self.ts,
                "until_ts": self.until_ts, "oneshot": self.oneshot}


@dataclass(frozen=True, slots=True)
class OutOfService:
    by: str
    reason: str
    ts: int

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "reason": self.reason, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class Escalation:
    """The latest escalation of an unacknowledged alarm (see :mod:`alarms.escalation`)."""

    level: int
    to: str  # team, workshop or enterprise
    target: str  # that team's, workshop's or enterprise's id
    since: int  # the point's unacked_since_ts: the unacknowledged alarm it belongs to
    ts: int

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "to": self.to, "target": self.target, "ts": self.ts}


@dataclass(slots=True)
class AlarmPoint:
    """Everything known about one alarm point now."""

    alarm_id: str
    sensor: str
    limit: str
    category: str
    kind: str
    unit: str
    site: str
    workshop: str
    area: str
    team: str
    post: str
    definition: AlarmDefinition
    priority: str  # effective at the latest raise (important periods may raise it)
    process_active: bool = False
    acked: bool = True  # nothing to acknowledge
    latched_hold: bool = False  # returned to normal, waiting for a reset
    raised_ts: int | None = None
    raised_value: float | None = None
    setpoint: float | None = None
    cleared_ts: int | None = None
    cleared_value: float | None = None
    eta_s: float | None = None
    contributions: dict[str, float] | None = None
    raise_count: int = 0
    last_annunciated_ts: int | None = None
    shelved: Shelve | None = None
    out_of_service: OutOfService | None = None
    suppressed_by: tuple[str, ...] = ()
    flood_held: bool = False
    chattering: bool = False
    stale: bool = False
    recent_raises: list[int] = field(default_factory=list)
    escalation: Escalation | None = None
    unacked_since_ts: int | None = None
    """When the point last went from acknowledged to not (a raise after an ack);
    cleared by the acknowledgement. A flapping alarm nobody acknowledges keeps it."""
    shown_since_ts: int | None = None
    """Since when the operator has been shown the point (not shelved, suppressed, out
    of service or held back by a flood); None while hidden."""

    @property
    def state(self) -> AlarmState:
        if self.latched_hold:
            return "latched"
        if self.process_active:
            return "ack" if self.acked else "unack"
        return "normal" if self.acked else "rtn_unack"

    @property
    def annunciable(self) -> bool:
        """False while an overlay (shelved, suppressed, out of service) hides the point."""
        return self.shelved is None and self.out_of_service is None and not self.suppressed_by

    def current_escalation(self) -> Escalation | None:
        """The escalation of the alarm nobody has acknowledged yet, if any."""
        e = self.escalation
        if e is None or self.acked or e.since != self.unacked_since_ts:
            return None
        return e

    @property
    def standing(self) -> bool:
        """Not normal: on the operator's alarm list (if annunciable)."""
        return self.state != "normal"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm_id,
            "sensor": self.sensor,
            "limit": self.limit,
            "category": self.category,
            "state": self.state,
            "active": self.process_active,
            "acked": self.acked,
            "priority": self.priority,
            "colour": PRIORITY_COLOUR[self.priority],
            "raised_ts": self.raised_ts,
            "raised_value": self.raised_value,
            "setpoint": self.setpoint,
            "cleared_ts": self.cleared_ts,
            "cleared_value": self.cleared_value,
            "eta_s": self.eta_s,
            "contributions": self.contributions,
            "raise_count": self.raise_count,
            "annunciated": self.annunciable and not self.flood_held,
            "shelved": self.shelved.to_dict() if self.shelved else None,
            "out_of_service": self.out_of_service.to_dict() if self.out_of_service else None,
            "suppressed_by": list(self.suppressed_by),
            "flood_held": self.flood_held,
            "chattering": self.chattering,
            "stale": self.stale,
            "escalation": None if (e := self.current_escalation()) is None else e.to_dict(),
            "site": self.site,
            "workshop": self.workshop,
            "area": self.area,
            "team": self.team,
            "post": self.post,
            "kind": self.kind,
            "unit": self.unit,
            "rationalization": self.definition.to_dict(),
        }
