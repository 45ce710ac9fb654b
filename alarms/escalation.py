"""Escalation: an alarm nobody acknowledges goes up the plant's hierarchy.

ISA-18.2 rationalization gives each alarm a maximum time to respond
(``max_response_s`` in ``alarms.yaml``). An alarm still unacknowledged that
long after it was raised is escalated: first to the post's team (its team
leader, 班组长), then, every ``repeat_min``, to the workshop, then to the
enterprise's safety management, and then repeated at the top level every
``repeat_min`` until someone acknowledges it. The levels and the interval
are the alarm philosophy's (``escalation:`` in ``alarms.yaml``).

Only an alarm that is active, unacknowledged and annunciated escalates: a
shelved, suppressed, out-of-service or flood-held point is not shown to the
operator, so nobody is failing to respond to it; an alarm that returned to
normal unacknowledged has stopped asking for a response. Each escalation is
an :class:`~alarms.records.EscalationRecord` in the journal (the audit trail
keeps who was told and when), an ``escalated`` change on every notification
channel, and the point's ``escalation`` field on the API.

The clock is the alarm's raise time (the reading's time). For a reading that
arrives late, the first escalation may therefore follow its raise at once:
nobody responded, whoever's fault that was, and telling someone is the safe
side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from alarms.points import AlarmPoint
from alarms.records import EscalationRecord

__all__ = ["LEVELS", "EscalationPolicy", "Level", "due"]

Level = Literal["team", "workshop", "enterprise"]
LEVELS: tuple[Level, ...] = ("team", "workshop", "enterprise")


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Who is told, in order, and how often (``repeat_ms``)."""

    levels: tuple[Level, ...] = LEVELS
    repeat_ms: int = 300_000
    enterprise: str = ""

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("escalation needs at least one level (team, workshop, enterprise)")
        if self.repeat_ms <= 0:
            raise ValueError(f"escalation repeat must be > 0 ms, got {self.repeat_ms}")

    def target(self, level: Level, point: AlarmPoint) -> str:
        if level == "team":
            return point.team
        if level == "workshop":
            return point.workshop
        return self.enterprise


def due(points: Iterable[AlarmPoint], now_ms: int, policy: EscalationPolicy) -> list[
        EscalationRecord]:
    """The escalations due at ``now_ms`` (at most one per point; ordered by alarm id)."""
    out: list[EscalationRecord] = []
    for p in points:
        max_response_s = p.definition.max_response_s
        if (max_response_s is None or not p.process_active or p.acked or not p.annunciable
                or p.flood_held or p.raised_ts is None):
            continue
        current = p.current_escalation()
        if current is None:
            level, when = 1, p.raised_ts + int(max_response_s * 1000)
        else:
            level, when = current.level + 1, current.ts + policy.repeat_ms
        if now_ms < when:
            continue
        to = policy.levels[min(level, len(policy.levels)) - 1]
        out.append(EscalationRecord(p.alarm_id, level, to, policy.target(to, p), p.raised_ts,
                                    now_ms))
    out.sort(key=lambda r: r.alarm_id)
    return out
