"""The alarm system: lifecycle, journal, hazards and risk colours, kept consistent.

The pipeline and the API never touch the parts one by one. They hand records
to :meth:`AlarmSystem.commit` (conditions, ticks, suppression changes) or an
operator action to :meth:`AlarmSystem.act`, and get back one
:class:`Outcome`: the alarm changes, the hazards raised automatically, and
the areas whose risk colour changed, for the notifiers to announce.

Durability: a record is journaled (fsync) before ``commit`` returns, and only
if it changed something or is an operator's action (which the audit trail
keeps even when it is a no-op on replay). Hazard records go to their own
journal. Risk colours are derived, never stored: they are recomputed from the
alarm state and the important periods in force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alarms.compaction import DEFAULT_KEEP_MS
from alarms.escalation import EscalationPolicy, due
from alarms.hazards import Hazard, HazardJournal, HazardRegistry, HazardRules, RepeatedAlarmCounter
from alarms.journal import AlarmJournal, Journal
from alarms.lifecycle import AlarmChange, AlarmManager
from alarms.periods import ImportantPeriod, active_periods, raised_priority, risk_floors
from alarms.records import ConditionRecord, EscalationRecord, Record, RecordKind
from alarms.risk import ActivePoint, AreaRisk, RiskRule, RiskTracker, grade_areas
from model.alarm_events import AlarmEvent
from model.plant import RiskColour

__all__ = ["AlarmSystem", "Outcome", "period_priority"]

# Categories whose raise counts towards the repeated-alarm hazard rule.
_REPEATED_CATEGORIES = ("alarm",)
_ALWAYS_KEPT = (RecordKind.ACTION, RecordKind.SUPPRESSION, RecordKind.SUPPRESS)


@dataclass(slots=True)
class Outcome:
    """What one commit changed."""

    changes: list[AlarmChange] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)  # condition events that took effect
    hazards: list[Hazard] = field(default_factory=list)
    risk: list[AreaRisk] = field(default_factory=list)
    journaled: list[Record] = field(default_factory=list)
    """The records this commit appended to the journal."""
    ts: int | None = None
    """The alarm system's time of the commit (risk colour changes carry it)."""

    def __bool__(self) -> bool:
        return bool(self.changes or self.hazards or self.risk)


def period_priority(periods: Sequence[ImportantPeriod]) -> Callable[[str, str, int], str]:
    """The manager's ``priority_at``: a priority raised by the periods in force at ``ts``."""

    def priority_at(priority: str, area: str, ts: int) -> str:
        if not periods:
            return priority
        return raised_priority(priority, area, active_periods(periods, ts))  # type: ignore[arg-type]

    return priority_at


class AlarmSystem:
    """Alarm lifecycle + journal + hazards + risk, behind one commit."""

    def __init__(
        self,
        manager: AlarmManager,
        journal: Journal,
        *,
        hazard_journal: HazardJournal | None = None,
        hazard_rules: HazardRules | None = None,
        inherent_risk: Mapping[str, RiskColour] | None = None,
        risk_rules: Sequence[RiskRule] = (),
        periods: Sequence[ImportantPeriod] = (),
        escalation: EscalationPolicy | None = None,
        commissioning: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset()),
    ) -> None:
        self.manager = manager
        self.escalation = escalation
        self.commissioning_areas, self.commissioning_sensors = commissioning
        self.journal = journal
        self.hazard_journal = hazard_journal
        self.hazard_rules = hazard_rules or HazardRules()
        self.hazards = HazardRegistry(self.hazard_rules)
        self._repeated = RepeatedAlarmCounter(self.hazard_rules)
        self.inherent_risk = dict(inherent_risk or {})
        self.risk_rules = list(risk_rules)
        self.periods = list(periods)
        self._risk = RiskTracker()

    # ------------------------------------------------------------------ start-up
    restored_from: str = "nothing yet"
    """How the last :meth:`restore` rebuilt the state (for the service's log)."""

    def restore(self, now_ms: int, *, from_snapshot: bool = True) -> None:
        """Rebuild from the journals; announce nothing.

        From the latest compaction snapshot and the records after it when there
        is a usable one (``from_snapshot``), else by replaying every segment.
        Either way the state is the same (``tests/test_journal_compaction.py``).
        """
        saved, why = self._usable_snapshot() if from_snapshot else (None, "not asked")
        if saved is None:
            self.manager.replay(self.journal.load_records())
            if self.hazard_journal is not None:
                self.hazards = self.hazard_journal.rebuild(self.hazard_rules)
            fed = 0
            self.restored_from = f"the whole journal ({why})"
        else:
            assert isinstance(self.journal, AlarmJournal)
            self.manager.load_state(saved["manager"])
            self._repeated.load_state(saved["repeated"])
            fed = len(self.manager.activations)
            after = self.journal.records_after(int(saved["journal"]["offset"]))
            self.manager.replay(after)
            if self.hazard_journal is not None:
                registry = HazardRegistry(self.hazard_rules)
                offset = 0
                if saved.get("hazards") is not None:
                    registry.load_state(saved["hazards"])
                    offset = int(saved["hazard_journal"]["offset"])
                self.hazards = self.hazard_journal.replay_onto(registry, offset)
            self.restored_from = (f"the snapshot after record {saved['journal']['seq']} and "
                                  f"{len(after)} records after it")
        for a in self.manager.activations[fed:]:
            if a.category in _REPEATED_CATEGORIES:
                self._repeated.feed(a.sensor, a.raised_ts)
        self._risk = RiskTracker(
            {a: r.colour for a, r in self.grades(now_ms).items()})

    def _usable_snapshot(self) -> tuple[dict[str, Any] | None, str]:
        """The latest snapshot if the journals still hold what it follows; else why not."""
        journal = self.journal
        if not isinstance(journal, AlarmJournal):
            return None, "an in-memory journal keeps no snapshot"
        try:
            saved = journal.load_snapshot()
        except ValueError as exc:
            return None, str(exc)
        if saved is None:
            return None, "no snapshot"
        checks: list[tuple[AlarmJournal | HazardJournal, dict[str, Any], str]] = [
            (journal, saved["journal"], "alarm journal")]
        if self.hazard_journal is not None and saved.get("hazards") is not None:
            checks.append((self.hazard_journal, saved["hazard_journal"], "hazard journal"))
        for log, pos, what in checks:
            offset = int(pos["offset"])
            if offset > log.size():
                return None, (f"the snapshot follows byte {offset} of the {what}, which now "
                              f"holds {log.size()}")
            if log.hash_at(offset) != pos["hash"]:
                return None, f"the {what} before the snapshot's position is not what it followed"
        return saved, ""

    def compact(self, keep_ms: int = DEFAULT_KEEP_MS) -> bool:
        """Snapshot the state, then close the open journal segments (call it right
        after a checkpoint, between steps). Start-up then replays only what
        follows. History older than ``keep_ms`` of alarm time stays in the
        closed segments only (see :mod:`alarms.compaction`). False for an
        in-memory journal, which keeps everything anyway."""
        journal = self.journal
        if not isinstance(journal, AlarmJournal):
            return False
        keep_from = self.manager.now - keep_ms
        hazards = self.hazard_journal
        state: dict[str, Any] = {
            "journal": journal.position().to_dict(),
            "manager": self.manager.state(keep_from),
            "repeated": self._repeated.state(),
            "hazard_journal": None if hazards is None else hazards.position().to_dict(),
            "hazards": None if hazards is None else self.hazards.state(),
            "keep_from_ts": keep_from,
        }
        journal.save_snapshot(state, self.manager.now)
        journal.close_segment()
        if hazards is not None:
            hazards.close_segment()
        return True

    # ------------------------------------------------------------------ commits
    def commit(self, records: Iterable[Record], now_ms: int) -> Outcome:
        """Apply records, journal the ones that mattered (fsync), derive hazards and risk."""
        out = Outcome(ts=now_ms)
        keep: list[Record] = []
        for record in records:
            changes = self.manager.apply(record)
            # Actions and rule changes are always kept: the audit trail wants
            # them, and a rule's condition matters later even when a disabled
            # rule made it change nothing now.
            if changes or record.kind in _ALWAYS_KEPT:
                keep.append(record)
            if isinstance(record, ConditionRecord) and any(
                    c.alarm_id == record.event.alarm_id and c.change in ("raised", "cleared")
                    for c in changes):
                out.events.append(record.event)
            out.changes += changes
        self.journal.append_records(keep)
        out.journaled = keep
        out.hazards = self._automatic_hazards(out.changes)
        if out.changes:
            out.risk = self._risk.update(self.grades(now_ms))
        return out

    def escalations_due(self, now_ms: int) -> list[EscalationRecord]:
        """Alarms unacknowledged past their maximum response time (:mod:`alarms.escalation`)."""
        if self.escalation is None:
            return []
        return due(self.manager.standing(), now_ms, self.escalation)

    def check(self, record: Record) -> None:
        """Raise :class:`~alarms.lifecycle.AlarmActionError` if the action would not apply."""
        self.manager.check(record)

    def risk_tick(self, now_ms: int) -> list[AreaRisk]:
        """Colour changes from time alone (an important period starting or ending)."""
        return self._risk.update(self.grades(now_ms))

    # ------------------------------------------------------------------ risk
    def active_points(self) -> list[ActivePoint]:
        """Active conditions that count for risk: shelved ones do (the gas is really
        there); out-of-service and suppressed-by-design ones do not (their readings
        are known not to mean what they normally mean)."""
        return [
            ActivePoint(alarm_id=p.alarm_id, sensor=p.sensor, area=p.area,
                        kind=p.kind, limit=p.limit, category=p.category,  # type: ignore[arg-type]
                        priority=p.priority)  # type: ignore[arg-type]
            for p in self.manager.standing()
            if p.process_active and p.out_of_service is None and not p.suppressed_by
        ]

    def periods_in_force(self, now_ms: int) -> list[ImportantPeriod]:
        return active_periods(self.periods, now_ms)

    def grades(self, now_ms: int) -> dict[str, AreaRisk]:
        floors = risk_floors(self.periods_in_force(now_ms), self.inherent_risk)
        return grade_areas(self.inherent_risk, self.active_points(), self.risk_rules,
                           floors=floors)

    # ------------------------------------------------------------------ hazards
    def _automatic_hazards(self, changes: list[AlarmChange]) -> list[Hazard]:
        raised: list[Hazard] = []
        for c in changes:
            point = c.point
            if point is None or point["area"] in self.commissioning_areas \
                    or point["sensor"] in self.commissioning_sensors:
                continue  # being commissioned: recorded and shown, no ticket
            source: str | None = None
            if c.change == "chattering":
                source, detail = "chattering", (
                    f"{c.alarm_id} raised {self.manager.policy.chatter_count} or more times "
                    f"within {self.manager.policy.chatter_window_ms // 1000} s")
            elif c.change == "raised" and point["category"] == "fault":
                source, detail = "sensor_fault", f"{c.alarm_id}: sensor fault ({point['limit']})"
            elif (c.change == "raised" and point["category"] in _REPEATED_CATEGORIES
                  and self._repeated.feed(point["sensor"], c.ts)):
                source, detail = "repeated_alarm", (
                    f"{point['sensor']} alarmed {self.hazard_rules.repeated_alarm_count} times "
                    f"within {self.hazard_rules.repeated_alarm_window_ms // 3_600_000} h")
            if source is None:
                continue
            made = self.hazards.raise_automatic(
                source, sensor=point["sensor"], ts=c.ts, area=point["area"],
                post=point["post"], source_ref=c.alarm_id, detail=detail)
            if made is not None:
                self._journal_hazard(made.record)
                raised.append(made.hazard)
            else:
                # The very change that opened a ticket, made again from redelivered
                # readings after a crash (the alarm journal was cut back, the hazard
                # journal was not): announce that ticket again, its notice may not
                # have been recorded before the crash.
                again = self._opened_by(source, point["sensor"], c.alarm_id, c.ts)
                if again is not None:
                    raised.append(again)
        return raised

    def _opened_by(self, source: str, sensor: str, alarm_id: str | None, ts: int
                   ) -> Hazard | None:
        for hazard in self.hazards.list():
            if (hazard.is_open and hazard.source == source and hazard.sensor == sensor
                    and hazard.source_ref == alarm_id and hazard.created_ts == ts):
                return hazard
        return None

    def _journal_hazard(self, record: Mapping[str, Any]) -> None:
        """Journal a record the registry has just applied; if the journal cannot
        take it, the registry is rebuilt from the journal (so memory never holds
        a change the disk does not) and the error is raised."""
        if self.hazard_journal is None:
            return
        try:
            self.hazard_journal.append(record)
        except OSError:
            self.hazards = self.hazard_journal.rebuild(self.hazard_rules)
            raise

    def create_hazard(self, **fields: Any) -> Hazard:
        made = self.hazards.create(**fields)
        self._journal_hazard(made.record)
        return made.hazard

    def update_hazard(self, hazard_id: str, **fields: Any) -> Hazard:
        made = self.hazards.update(hazard_id, **fields)
        self._journal_hazard(made.record)
        return made.hazard
