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
operator, so nobody is failing to respond to it, and once it is shown again
the operator has its full response time anew; an alarm that returned to
normal unacknowledged has stopped asking for a response until it is raised
again. The clock starts when the alarm became unacknowledged and keeps
running through raises and clears until someone acknowledges it, so an alarm
that flaps without anyone acknowledging it escalates too. Areas and sensors
being commissioned do not escalate. Each escalation is
an :class:`~alarms.records.EscalationRecord` in the journal (the audit trail
keeps who was told and when), an ``escalated`` change on every notification
channel, and the point's ``escalation`` field on the API.

The clock is alarm time (the readings' times). For a reading that arrives
late, the first escalation may therefore follow its raise at once: nobody
responded, whoever's fault that was, and telling someone is the safe side.
Each escalation carries the time it fell due, so one made again after a
crash is the same record with the same notification id.
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
    quiet_areas: frozenset[str] = frozenset()
    """Areas being commissioned: their alarms do not escalate (alarms.yaml commissioning)."""
    quiet_sensors: frozenset[str] = frozenset()

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
        since, shown = p.unacked_since_ts, p.shown_since_ts
        if (max_response_s is None or not p.process_active or p.acked or since is None
                or shown is None or not p.annunciable or p.flood_held
                or p.area in policy.quiet_areas or p.sensor in policy.quiet_sensors):
            continue
        current = p.current_escalation()
        response_ms = int(max_response_s * 1000)
        if current is None:
            # The operator has had max_response_s since both the alarm stood
            # unacknowledged and it was shown (after a shelve or a flood, anew).
            first, anchor = 1, max(since, shown) + response_ms
        else:
            first, anchor = current.level + 1, max(current.ts + policy.repeat_ms,
                                                   shown + response_ms)
        if now_ms < anchor:
            continue
        # One record for the level due now: an alarm that has stood unacknowledged
        # for an hour (readings that arrived late, a service that was down) goes
        # straight to the level an hour earns, not one level a tick.
        steps = (now_ms - anchor) // policy.repeat_ms
        level, when = first + steps, anchor + steps * policy.repeat_ms
        to = policy.levels[min(level, len(policy.levels)) - 1]
        out.append(EscalationRecord(p.alarm_id, level, to, policy.target(to, p), since, when))
    out.sort(key=lambda r: r.alarm_id)
    return out
