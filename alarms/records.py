"""Journal records: the inputs that alarm state is a pure function of.

The alarm journal holds, in order:

* :class:`ConditionRecord` — a detector raised or cleared a condition (an
  :class:`~model.alarm_events.AlarmEvent`, with ``at``: the alarm time it was
  judged at);
* :class:`ActionRecord` — an operator action: ``ack``, ``shelve``,
  ``unshelve``, ``reset``, ``out_of_service`` with who (``by``, ``role``),
  when (``ts``) and why (``reason``);
* :class:`SuppressRecord` — a suppression rule's condition changed (judged
  on readings);
* :class:`SuppressionRecord` — an engineer enabled or disabled a suppression rule;
* :class:`TickRecord` — time passed and that changed something (a shelve
  expired, a re-alarm, a flood ended, an alarm went stale). Ticks that changed
  nothing are not journaled: time-driven changes are computed exactly from
  times, so replaying without them gives the same state.

Records are frozen dataclasses inside plantwatch; they become JSON objects
only at the edges, the journal file and the API (:func:`to_json`,
:func:`from_json`). The JSON shape is the journal's on-disk format and never
changes incompatibly: a condition is the event's fields with no ``type`` key
(so journals written before operator actions existed still load), every
other record has ``type``.

Replaying the records through a fresh :class:`~alarms.lifecycle.AlarmManager`
rebuilds the identical state; nothing is announced during a replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from model.alarm_events import AlarmEvent

__all__ = [
    "ACTIONS",
    "ActionName",
    "ActionRecord",
    "ConditionRecord",
    "EscalationRecord",
    "Record",
    "RecordKind",
    "SuppressRecord",
    "SuppressionRecord",
    "TickRecord",
    "UnknownRecord",
    "action_record",
    "from_json",
    "suppress_record",
    "suppression_record",
    "tick_record",
    "to_json",
]


class RecordKind(StrEnum):
    CONDITION = "condition"
    ACTION = "action"
    SUPPRESS = "suppress"
    SUPPRESSION = "suppression"
    TICK = "tick"
    ESCALATION = "escalation"
    UNKNOWN = "unknown"


class ActionName(StrEnum):
    """What an operator (or engineer) can do to one alarm point."""

    ACK = "ack"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    RESET = "reset"
    OUT_OF_SERVICE = "out_of_service"


ACTIONS: tuple[str, ...] = tuple(a.value for a in ActionName)


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    """A detector raised or cleared one condition."""

    kind: ClassVar[RecordKind] = RecordKind.CONDITION
    event: AlarmEvent
    at: int | None = None
    """Alarm time: the event time capped at the server clock when it was judged."""

    @property
    def ts(self) -> int:
        return self.event.ts

    @property
    def time(self) -> int:
        """When alarm time stood at this record (``at``, or the event time)."""
        return self.event.ts if self.at is None else self.at


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """An operator action on one alarm point (checked by the manager before journaling)."""

    kind: ClassVar[RecordKind] = RecordKind.ACTION
    action: ActionName
    alarm_id: str
    by: str
    ts: int
    role: str = ""
    reason: str = ""
    minutes: float | None = None
    oneshot: bool = False
    on: bool | None = None

    @property
    def time(self) -> int:
        return self.ts


@dataclass(frozen=True, slots=True)
class SuppressRecord:
    """A suppression rule's condition changed, judged on a reading of its state sensor."""

    kind: ClassVar[RecordKind] = RecordKind.SUPPRESS
    rule: str
    active: bool
    ts: int

    @property
    def time(self) -> int:
        return self.ts


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """An engineer enabled or disabled a suppression rule."""

    kind: ClassVar[RecordKind] = RecordKind.SUPPRESSION
    rule: str
    enabled: bool
    by: str
    ts: int
    role: str = ""
    reason: str = ""

    @property
    def time(self) -> int:
        return self.ts


@dataclass(frozen=True, slots=True)
class TickRecord:
    """Time passed to ``ts`` and that changed something."""

    kind: ClassVar[RecordKind] = RecordKind.TICK
    ts: int

    @property
    def time(self) -> int:
        return self.ts


@dataclass(frozen=True, slots=True)
class EscalationRecord:
    """An alarm left unacknowledged past its maximum response time was escalated.

    ``level`` counts from 1 (the first escalation); ``to`` is the level of the
    plant hierarchy it went to (``team``, ``workshop``, ``enterprise``) and
    ``target`` that team's, workshop's or enterprise's id. ``since`` names the
    unacknowledged alarm it belongs to (the point's ``unacked_since_ts``: after
    an acknowledgement, a new raise starts again at level 1). ``ts`` is when it
    fell due, so the same escalation made again after a crash is the same record.
    """

    kind: ClassVar[RecordKind] = RecordKind.ESCALATION
    alarm_id: str
    level: int
    to: str
    target: str
    since: int
    ts: int

    @property
    def time(self) -> int:
        return self.ts


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A journal line of a kind this version does not know (a newer version wrote it):
    kept and counted, never applied."""

    kind: ClassVar[RecordKind] = RecordKind.UNKNOWN
    data: Mapping[str, Any]
    ts: int

    @property
    def time(self) -> int:
        return self.ts


Record = (ConditionRecord | ActionRecord | SuppressRecord | SuppressionRecord | TickRecord
          | EscalationRecord | UnknownRecord)


def action_record(
    action: ActionName | str,
    alarm_id: str,
    *,
    by: str,
    ts: int,
    role: str = "",
    reason: str = "",
    minutes: float | None = None,
    oneshot: bool = False,
    on: bool | None = None,
) -> ActionRecord:
    """An operator action on one alarm point (validated by the manager before journaling).

    Raises :class:`ValueError` naming the action if it is not one of :data:`ACTIONS`.
    """
    name = ActionName(action)
    return ActionRecord(
        name, alarm_id, by, ts, role, reason,
        minutes=minutes if name is ActionName.SHELVE else None,
        oneshot=oneshot if name is ActionName.SHELVE else False,
        on=bool(on) if name is ActionName.OUT_OF_SERVICE else None,
    )


def suppress_record(rule: str, active: bool, ts: int) -> SuppressRecord:
    return SuppressRecord(rule, active, ts)


def suppression_record(rule: str, enabled: bool, *, by: str, ts: int, role: str = "",
                       reason: str = "") -> SuppressionRecord:
    return SuppressionRecord(rule, enabled, by, ts, role, reason)


def tick_record(ts: int) -> TickRecord:
    return TickRecord(ts)


def to_json(record: Record) -> dict[str, Any]:
    """The record as the journal file and the API hold it."""
    if isinstance(record, ConditionRecord):
        out = record.event.to_dict()
        if record.at is not None:
            out["at"] = record.at
        return out
    if isinstance(record, ActionRecord):
        data: dict[str, Any] = {
            "type": "action", "action": record.action.value, "alarm_id": record.alarm_id,
            "by": record.by, "role": record.role, "ts": record.ts, "reason": record.reason,
        }
        if record.action is ActionName.SHELVE:
            data["minutes"] = record.minutes
            data["oneshot"] = record.oneshot
        if record.action is ActionName.OUT_OF_SERVICE:
            data["on"] = bool(record.on)
        return data
    if isinstance(record, SuppressRecord):
        return {"type": "suppress", "rule": record.rule, "active": record.active,
                "ts": record.ts}
    if isinstance(record, SuppressionRecord):
        return {"type": "suppression", "rule": record.rule, "enabled": record.enabled,
                "by": record.by, "role": record.role, "ts": record.ts,
                "reason": record.reason}
    if isinstance(record, TickRecord):
        return {"type": "tick", "ts": record.ts}
    if isinstance(record, EscalationRecord):
        return {"type": "escalation", "alarm_id": record.alarm_id, "level": record.level,
                "to": record.to, "target": record.target, "since": record.since,
                "ts": record.ts}
    return dict(record.data)


def from_json(data: Mapping[str, Any]) -> Record:
    """Read one journal (or API) record; raises :class:`ValueError` (or ``KeyError``,
    ``TypeError``) naming what is wrong when it is not a record at all."""
    if "ts" not in data:
        raise ValueError("not a journal record (a JSON object with 'ts')")
    kind = str(data.get("type", "condition"))
    ts = int(data["ts"])
    if kind == "condition":
        at = data.get("at")
        return ConditionRecord(AlarmEvent.from_dict(dict(data)), None if at is None else int(at))
    if kind == "action":
        try:
            name = ActionName(str(data["action"]))
        except ValueError:
            return UnknownRecord(dict(data), ts)
        minutes = data.get("minutes")
        on = data.get("on")
        return ActionRecord(name, str(data["alarm_id"]), str(data.get("by", "")), ts,
                            str(data.get("role") or ""), str(data.get("reason") or ""),
                            None if minutes is None else float(minutes),
                            bool(data.get("oneshot")), None if on is None else bool(on))
    if kind == "suppress":
        return SuppressRecord(str(data["rule"]), bool(data["active"]), ts)
    if kind == "suppression":
        return SuppressionRecord(str(data["rule"]), bool(data["enabled"]),
                                 str(data.get("by", "")), ts, str(data.get("role") or ""),
                                 str(data.get("reason") or ""))
    if kind == "tick":
        return TickRecord(ts)
    if kind == "escalation":
        return EscalationRecord(str(data["alarm_id"]), int(data["level"]), str(data["to"]),
                                str(data["target"]), int(data["since"]), ts)
    return UnknownRecord(dict(data), ts)
