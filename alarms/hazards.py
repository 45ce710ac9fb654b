"""Hazard investigation and rectification (隐患排查治理): tickets someone must close.

A hazard (隐患) is a found defect — a drifting sensor, a repeated leak, a chattering
alarm — with an owner who fixes it by a deadline (docs/domain.md §6)::

    reported ──> assigned ──> rectifying ──> verified ──> closed
       │            │             │   ^          │
       │            │             │   └──────────┘  verification failed (note)
       └────────────┴─────────────┴──────────────> closed early (note: duplicate, false)

Every change is a record, a JSON-ready dict. The registry is exactly what replaying
its records gives, and `HazardRegistry.apply` validates a record the same way whether
it is new or replayed, so the journal of records is the source of truth and a
restart changes nothing. Alarms and sensor-health detections raise hazards through
`HazardRegistry.raise_automatic`, at most one open ticket per (source, sensor).
"""

from __future__ import annotations

import builtins
from bisect import insort
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from alarms.segments import JournalPosition, SegmentedLog
from alarms.state_codec import decode, encode

__all__ = [
    "AUTOMATIC_SOURCES",
    "AUTO_REPORTER",
    "SOURCES",
    "STATUSES",
    "Hazard",
    "HazardChange",
    "HazardError",
    "HazardJournal",
    "HazardRecord",
    "HazardRegistry",
    "HazardRules",
    "HistoryEntry",
    "RepeatedAlarmCounter",
]

STATUSES = ("reported", "assigned", "rectifying", "verified", "closed")
SOURCES = ("manual", "chattering", "sensor_fault", "repeated_alarm")
AUTOMATIC_SOURCES = ("chattering", "sensor_fault", "repeated_alarm")
AUTO_REPORTER = "plantwatch"
"""The ``by`` of hazards the service raises itself."""

HazardRecord = dict[str, Any]
"""One journal record: ``{"type": "hazard_create", ...}`` or ``{"type": "hazard_update", ...}``."""

_DAY_MS = 86_400_000
_NEXT: dict[str, tuple[str, ...]] = {
    "reported": ("assigned", "closed"),
    "assigned": ("rectifying", "closed"),
    "rectifying": ("verified", "closed"),
    "verified": ("closed", "rectifying"),
    "closed": (),
}
_AUTO_TITLE = {
    "chattering": "Chattering alarm",
    "sensor_fault": "Sensor fault",
    "repeated_alarm": "Repeated alarm",
}


class HazardError(ValueError):
    """A change the lifecycle does not allow; nothing was changed."""

    def __init__(
        self, message: str, *, hazard_id: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(message)
        self.hazard_id = hazard_id
        self.status = status


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change of a hazard; ``changes`` maps a field to ``{"from": old, "to": new}``."""

    ts: int
    by: str
    action: str
    from_status: str | None
    to_status: str
    note: str | None
    changes: Mapping[str, Mapping[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "by": self.by,
            "action": self.action,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "note": self.note,
            "changes": {k: dict(v) for k, v in self.changes.items()},
        }


@dataclass(frozen=True, slots=True)
class Hazard:
    """A snapshot of one hazard ticket; times are ms since epoch (UTC)."""

    id: str
    title: str
    description: str
    source: str
    source_ref: str | None
    sensor: str | None
    area: str | None
    post: str | None
    owner: str | None
    deadline_ts: int | None
    status: str
    created_ts: int
    created_by: str
    updated_ts: int
    history: tuple[HistoryEntry, ...]

    @property
    def is_open(self) -> bool:
        return self.status != "closed"

    def overdue(self, now_ts: int) -> bool:
        """Still open after its deadline (a verified hazard counts until it is closed)."""
        return self.is_open and self.deadline_ts is not None and now_ts > self.deadline_ts

    def to_dict(self, now_ts: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "source": self.source,
            "source_ref": self.source_ref,
            "sensor": self.sensor,
            "area": self.area,
            "post": self.post,
            "owner": self.owner,
            "deadline_ts": self.deadline_ts,
            "status": self.status,
            "overdue": self.overdue(now_ts),
            "created_ts": self.created_ts,
            "created_by": self.created_by,
            "updated_ts": self.updated_ts,
            "history": [entry.to_dict() for entry in self.history],
        }


class HazardChange(NamedTuple):
    """The hazard after a change, and the record the caller must persist."""

    hazard: Hazard
    record: HazardRecord


def _default_deadlines() -> dict[str, int]:
    return {"chattering": 7 * _DAY_MS, "sensor_fault": 3 * _DAY_MS, "repeated_alarm": 7 * _DAY_MS}


@dataclass(frozen=True)
class HazardRules:
    """When the service raises hazards itself, and how long the owner gets to fix them."""

    repeated_alarm_count: int = 5
    repeated_alarm_window_ms: int = _DAY_MS
    deadline_ms: Mapping[str, int] = field(default_factory=_default_deadlines)

    def __post_init__(self) -> None:
        if self.repeated_alarm_count < 1:
            raise ValueError(f"repeated_alarm_count: {self.repeated_alarm_count} is below 1")
        if self.repeated_alarm_window_ms <= 0:
            raise ValueError(
                f"repeated_alarm_window_ms: {self.repeated_alarm_window_ms} is not positive"
            )
        for source in AUTOMATIC_SOURCES:
            value = self.deadline_ms.get(source)
            if value is None or value <= 0:
                raise ValueError(f"deadline_ms[{source!r}]: {value!r} is not a positive ms count")


def _hazard_id(number: int) -> str:
    return f"HZ-{number:06d}"


def _moves(status: str) -> str:
    """What ``status`` can move to, for error messages."""
    parts = []
    for to in _NEXT[status]:
        if to == "assigned":
            parts.append("'assigned' (needs an owner)")
        elif status == "verified" and to == "rectifying":
            parts.append("'rectifying' (with a note on why verification failed)")
        elif to == "closed" and status != "verified":
            parts.append("'closed' (with a note)")
        else:
            parts.append(f"'{to}'")
    return " or ".join(parts)


def _text(record: Mapping[str, Any], key: str, where: str, *, optional: bool) -> str | None:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        kind = "a non-blank string or null" if optional else "a non-blank string"
        raise HazardError(f"{where}: {key} must be {kind}, got {value!r}")
    return value


def _required_text(record: Mapping[str, Any], key: str, where: str) -> str:
    value = _text(record, key, where, optional=False)
    assert value is not None
    return value


def _ms(record: Mapping[str, Any], key: str, where: str, *, optional: bool) -> int | None:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise HazardError(f"{where}: {key} must be an integer ms timestamp, got {value!r}")
    return value


def _note(record: Mapping[str, Any], where: str) -> str | None:
    """A blank note is no note: a required note must say something."""
    value = record.get("note")
    if value is None:
        return None
    if not isinstance(value, str):
        raise HazardError(f"{where}: note must be a string or null, got {value!r}")
    return value if value.strip() else None


class HazardRegistry:
    """Every hazard, as built by applying records in order."""

    def __init__(self, rules: HazardRules | None = None) -> None:
        self.rules = rules if rules is not None else HazardRules()
        self._hazards: dict[str, Hazard] = {}

    def __len__(self) -> int:
        return len(self._hazards)

    def get(self, hazard_id: str) -> Hazard | None:
        return self._hazards.get(hazard_id)

    def create(
        self,
        *,
        title: str,
        by: str,
        ts: int,
        description: str = "",
        source: str = "manual",
        source_ref: str | None = None,
        sensor: str | None = None,
        area: str | None = None,
        post: str | None = None,
        owner: str | None = None,
        deadline_ts: int | None = None,
    ) -> HazardChange:
        """Report a new hazard (status ``reported``); raise `HazardError` if invalid."""
        record: HazardRecord = {
            "type": "hazard_create",
            "id": _hazard_id(len(self._hazards) + 1),
            "ts": ts,
            "by": by,
            "title": title,
            "description": description,
            "source": source,
            "source_ref": source_ref,
            "sensor": sensor,
            "area": area,
            "post": post,
            "owner": owner,
            "deadline_ts": deadline_ts,
        }
        return HazardChange(self.apply(record), record)

    def update(
        self,
        hazard_id: str,
        *,
        by: str,
        ts: int,
        status: str | None = None,
        owner: str | None = None,
        deadline_ts: int | None = None,
        note: str | None = None,
    ) -> HazardChange:
        """Move a hazard on, reassign it, move its deadline or add a note.

        ``None`` leaves a field as it is. Raises `HazardError` naming the current
        status and the allowed moves; nothing changes then.
        """
        record: HazardRecord = {
            "type": "hazard_update",
            "id": hazard_id,
            "ts": ts,
            "by": by,
            "status": status,
            "owner": owner,
            "deadline_ts": deadline_ts,
            "note": note,
        }
        return HazardChange(self.apply(record), record)

    def raise_automatic(
        self,
        source: str,
        *,
        sensor: str,
        ts: int,
        area: str | None = None,
        post: str | None = None,
        source_ref: str | None = None,
        detail: str = "",
    ) -> HazardChange | None:
        """Raise a hazard for ``sensor`` unless one from ``source`` is still open.

        So a chattering alarm yields one ticket, not one per chatter; once that
        ticket is closed, the next detection raises a new one.
        """
        if source not in AUTOMATIC_SOURCES:
            raise HazardError(
                f"{source!r} is not an automatic hazard source; use one of "
                + ", ".join(AUTOMATIC_SOURCES)
            )
        for hazard in self._hazards.values():
            if hazard.is_open and hazard.source == source and hazard.sensor == sensor:
                return None
        return self.create(
            title=f"{_AUTO_TITLE[source]}: {source_ref or sensor}",
            description=detail,
            source=source,
            source_ref=source_ref,
            sensor=sensor,
            area=area,
            post=post,
            by=AUTO_REPORTER,
            ts=ts,
            deadline_ts=ts + self.rules.deadline_ms[source],
        )

    def apply(self, record: Mapping[str, Any]) -> Hazard:
        """Apply one record (new or replayed) after validating it in full."""
        kind = record.get("type")
        if kind == "hazard_create":
            return self._apply_create(record)
        if kind == "hazard_update":
            return self._apply_update(record)
        raise HazardError(f"unknown hazard record type {kind!r}")

    def _apply_create(self, record: Mapping[str, Any]) -> Hazard:
        expected = _hazard_id(len(self._hazards) + 1)
        if record.get("id") != expected:
            # Ids are positional, so a replay reproduces them; a gap means a lost record.
            raise HazardError(
                f"hazard record id {record.get('id')!r} is out of sequence; expected {expected}"
            )
        where = f"new hazard {expected}"
        title = _required_text(record, "title", where)
        by = _required_text(record, "by", where)
        ts = _ms(record, "ts", where, optional=False)
        assert ts is not None
        description = record.get("description", "")
        if not isinstance(description, str):
            raise HazardError(f"{where}: description must be a string, got {description!r}")
        source = record.get("source")
        if source not in SOURCES:
            raise HazardError(f"{where}: source {source!r} is not one of " + ", ".join(SOURCES))
        owner = _text(record, "owner", where, optional=True)
        deadline_ts = _ms(record, "deadline_ts", where, optional=True)
        if deadline_ts is not None and deadline_ts < ts:
            raise HazardError(f"{where}: deadline {deadline_ts} is before the report time {ts}")
        changes = {
            key: {"from": None, "to": value}
            for key, value in (("owner", owner), ("deadline_ts", deadline_ts))
            if value is not None
        }
        hazard = Hazard(
            id=expected,
            title=title,
            description=description,
            source=source,
            source_ref=_text(record, "source_ref", where, optional=True),
            sensor=_text(record, "sensor", where, optional=True),
            area=_text(record, "area", where, optional=True),
            post=_text(record, "post", where, optional=True),
            owner=owner,
            deadline_ts=deadline_ts,
            status="reported",
            created_ts=ts,
            created_by=by,
            updated_ts=ts,
            history=(HistoryEntry(ts, by, "reported", None, "reported", None, changes),),
        )
        self._hazards[expected] = hazard
        return hazard

    def _apply_update(self, record: Mapping[str, Any]) -> Hazard:
        hazard_id = record.get("id")
        hazard = self._hazards.get(hazard_id) if isinstance(hazard_id, str) else None
        if hazard is None:
            raise HazardError(f"no hazard {hazard_id!r}", hazard_id=str(hazard_id))
        where, current = hazard.id, hazard.status
        by = _required_text(record, "by", where)
        ts = _ms(record, "ts", where, optional=False)
        assert ts is not None
        status = record.get("status")
        owner = _text(record, "owner", where, optional=True)
        deadline_ts = _ms(record, "deadline_ts", where, optional=True)
        note = _note(record, where)

        def refuse(why: str) -> HazardError:
            return HazardError(f"{where} is '{current}'; {why}", hazard_id=where, status=current)

        if current == "closed":
            raise refuse("a closed hazard is final (report a new one)")
        changes: dict[str, Mapping[str, Any]] = {}
        if owner is not None and owner != hazard.owner:
            changes["owner"] = {"from": hazard.owner, "to": owner}
        if deadline_ts is not None and deadline_ts != hazard.deadline_ts:
            if deadline_ts < hazard.created_ts:
                raise refuse(
                    f"deadline {deadline_ts} is before it was reported ({hazard.created_ts})"
                )
            changes["deadline_ts"] = {"from": hazard.deadline_ts, "to": deadline_ts}
        new_owner = owner if owner is not None else hazard.owner

        if status is not None:
            if status not in STATUSES:
                raise refuse(f"{status!r} is not a status; it can move to {_moves(current)}")
            if status not in _NEXT[current]:
                raise refuse(f"it can move to {_moves(current)}")
            if status == "assigned" and new_owner is None:
                raise refuse("moving to 'assigned' needs an owner and none is set")
            if status == "closed" and current != "verified" and note is None:
                raise refuse(
                    "closing before verification needs a note (e.g. duplicate or false report)"
                )
            if status == "rectifying" and current == "verified" and note is None:
                raise refuse(
                    "sending it back to 'rectifying' needs a note on why verification failed"
                )
            failed = current == "verified" and status == "rectifying"
            action = "verification_failed" if failed else status
        elif changes:
            action = "edited"
        elif note is not None:
            action = "noted"
        else:
            raise refuse("nothing to change: give a status, a new owner or deadline, or a note")

        entry = HistoryEntry(ts, by, action, current, status or current, note, changes)
        updated = replace(
            hazard,
            status=status or current,
            owner=new_owner,
            deadline_ts=deadline_ts if deadline_ts is not None else hazard.deadline_ts,
            updated_ts=ts,
            history=(*hazard.history, entry),
        )
        self._hazards[where] = updated
        return updated

    def state(self) -> builtins.list[dict[str, Any]]:
        """Every hazard, JSON-ready, for a journal compaction snapshot."""
        return [encode(h) for h in self._hazards.values()]

    def load_state(self, state: builtins.list[dict[str, Any]]) -> None:
        """Take the hazards of :meth:`state` (on a fresh registry)."""
        self._hazards = {h.id: h for h in (decode(Hazard, d) for d in state)}

    def list(
        self, status: str | None = None, open_only: bool = False, area: str | None = None
    ) -> builtins.list[Hazard]:
        """Hazards in the order they were reported, optionally filtered."""
        if status is not None and status not in STATUSES:
            raise HazardError(f"{status!r} is not a status; statuses are " + ", ".join(STATUSES))
        return [
            h
            for h in self._hazards.values()
            if (status is None or h.status == status)
            and (not open_only or h.is_open)
            and (area is None or h.area == area)
        ]


class RepeatedAlarmCounter:
    """Says when a sensor's alarm activations reach the repeated-alarm count.

    Counts the activations of each sensor within the last ``repeated_alarm_window_ms``
    (``ts - window < t <= ts``). `feed` returns True once, on the activation that
    reaches the count; it re-arms only when an activation finds fewer than that in its
    window, so a sensor that keeps alarming steadily is reported once. Only the last
    ``count`` activations per sensor are kept.
    """

    def __init__(self, rules: HazardRules | None = None) -> None:
        rules = rules if rules is not None else HazardRules()
        self.count = rules.repeated_alarm_count
        self.window_ms = rules.repeated_alarm_window_ms
        self._recent: dict[str, deque[int]] = {}
        self._reported: set[str] = set()

    def feed(self, sensor: str, raised_ts: int) -> bool:
        """Record one activation of ``sensor``; True if it makes the count."""
        recent = self._recent.setdefault(sensor, deque(maxlen=self.count))
        if recent and raised_ts < recent[-1]:
            ordered = builtins.list(recent)  # a late activation: keep the window sorted
            insort(ordered, raised_ts)
            recent = self._recent[sensor] = deque(ordered[-self.count :], maxlen=self.count)
        else:
            recent.append(raised_ts)
        start = recent[-1] - self.window_ms
        in_window = sum(1 for t in recent if t > start)
        if in_window < self.count:
            self._reported.discard(sensor)
            return False
        if sensor in self._reported:
            return False
        self._reported.add(sensor)
        return True

    def state(self) -> dict[str, Any]:
        """The recent activation times and the sensors already reported, for a
        journal compaction snapshot (restoring it is exact, unlike feeding a
        bounded history again)."""
        return {"recent": {s: builtins.list(d) for s, d in self._recent.items()},
                "reported": sorted(self._reported)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._recent = {s: deque(ts[-self.count:], maxlen=self.count)
                        for s, ts in state["recent"].items()}
        self._reported = set(state["reported"])


def _check_hazard_record(record: dict[str, Any]) -> None:
    if record.get("type") not in ("hazard_create", "hazard_update"):
        raise ValueError("not a hazard record")


class HazardJournal:
    """Append-only JSON-lines journal of hazard records, fsynced per append, in
    segments and hash-chained like the alarm journal (a
    :class:`~alarms.segments.SegmentedLog`: a torn last line is dropped on
    loading, a failed append is cut back off the file)."""

    def __init__(self, path: str | Path) -> None:
        self._file = SegmentedLog(path, check=_check_hazard_record, what="hazard record",
                                  fix="fix or remove that line before starting again")
        self.path = self._file.path

    @property
    def torn_records_dropped(self) -> int:
        return self._file.torn_records_dropped

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and fsync before returning (durable on return)."""
        self._file.append([record])

    def load(self) -> builtins.list[HazardRecord]:
        """Every whole record, every segment, oldest first."""
        return [record for _, record in self._file.read_from(0)]

    def rebuild(self, rules: HazardRules | None = None) -> HazardRegistry:
        """The registry the journal's records give."""
        return self.replay_onto(HazardRegistry(rules), 0)

    def replay_onto(self, registry: HazardRegistry, offset: int) -> HazardRegistry:
        """Apply the records from logical ``offset`` on to ``registry`` (restored
        from a compaction snapshot taken at that offset)."""
        for at, record in self._file.read_from(offset):
            try:
                registry.apply(record)
            except HazardError as exc:
                raise ValueError(
                    f"{self.path}: hazard record at byte {at} cannot be replayed ({exc})"
                ) from exc
        return registry

    def position(self) -> JournalPosition:
        return self._file.position()

    def size(self) -> int:
        return self._file.size()

    def hash_at(self, offset: int) -> str:
        return self._file.hash_before(offset)

    def segments(self) -> builtins.list[tuple[Path, int | None]]:
        return self._file.segments()

    def close_segment(self) -> Path | None:
        return self._file.close_segment()
