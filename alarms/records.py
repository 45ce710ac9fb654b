"""Journal records: the inputs that alarm state is a pure function of.

The alarm journal holds, in order:

* condition records — an :class:`~model.alarm_events.AlarmEvent` as a dict, with
  no ``type`` key (so journals written before operator actions existed still
  load): a detector raised or cleared a condition;
* ``{"type": "action", ...}`` — an operator action: ``ack``, ``shelve``,
  ``unshelve``, ``reset``, ``out_of_service`` with who (``by``, ``role``),
  when (``ts``) and why (``reason``);
* ``{"type": "suppress", "rule", "active", "ts"}`` — a suppression rule's
  condition changed (judged on readings);
* ``{"type": "suppression", "rule", "enabled", "by", "reason", "ts"}`` — an
  engineer enabled or disabled a suppression rule;
* ``{"type": "tick", "ts"}`` — time passed and that changed something
  (a shelve expired, a re-alarm, a flood ended, an alarm went stale). Ticks
  that changed nothing are not journaled: time-driven changes are computed
  exactly from times, so replaying without them gives the same state.

Replaying the records through a fresh :class:`~alarms.lifecycle.AlarmManager`
rebuilds the identical state; nothing is announced during a replay.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "ActionName",
    "action_record",
    "record_type",
    "suppress_record",
    "suppression_record",
    "tick_record",
]

ActionName = Literal["ack", "shelve", "unshelve", "reset", "out_of_service"]
ACTIONS: tuple[str, ...] = ("ack", "shelve", "unshelve", "reset", "out_of_service")


def record_type(record: dict[str, Any]) -> str:
    return str(record.get("type", "condition"))


def action_record(
    action: ActionName,
    alarm_id: str,
    *,
    by: str,
    ts: int,
    role: str = "",
    reason: str = "",
    minutes: float | None = None,
    oneshot: bool = False,
    on: bool | None = None,
) -> dict[str, Any]:
    """An operator action on one alarm point (validated by the manager before journaling)."""
    record: dict[str, Any] = {
        "type": "action", "action": action, "alarm_id": alarm_id, "by": by, "role": role,
        "ts": ts, "reason": reason,
    }
    if action == "shelve":
        record["minutes"] = minutes
        record["oneshot"] = oneshot
    if action == "out_of_service":
        record["on"] = bool(on)
    return record


def suppress_record(rule: str, active: bool, ts: int) -> dict[str, Any]:
    return {"type": "suppress", "rule": rule, "active": active, "ts": ts}


def suppression_record(rule: str, enabled: bool, *, by: str, ts: int, role: str = "",
                       reason: str = "") -> dict[str, Any]:
    return {"type": "suppression", "rule": rule, "enabled": enabled, "by": by, "role": role,
            "ts": ts, "reason": reason}


def tick_record(ts: int) -> dict[str, Any]:
    return {"type": "tick", "ts": ts}
