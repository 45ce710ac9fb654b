"""The ISA-18.2 alarm lifecycle: every alarm point's state, as a fold over journal records.

:class:`AlarmManager` is pure: it is given records (detector conditions,
operator actions, suppression changes, clock ticks; see :mod:`alarms.records`)
and returns the changes each one made. Its state is a deterministic function
of the records it has seen, so rebuilding from the journal at start-up gives
the state the service had, and re-annunciates nothing.

What it does, per record:

* **raise / clear** a point: state ``unack``/``rtn_unack``/``latched``;
  priority from the point's rationalization, raised by important periods;
  chattering (≥ 3 raises in 60 s) flagged; flood counting per post, and
  during a flood only ``high``/``highest`` priority alarms are annunciated
  (the rest are recorded, counted in the flood summary, and shown as held);
* **operator actions**, validated (:class:`AlarmActionError` names what is
  wrong and what is allowed): ack, shelve (reason; timed up to the point's
  maximum, or one-shot until it returns to normal), unshelve, reset (latched
  points), out of service on/off;
* **time** (every record first advances the clock): timed shelves expire and
  the point is re-annunciated if still standing unacknowledged; re-alarm of
  points left active and unacknowledged; stale (active > 24 h); floods end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from alarms.floods import FloodPolicy, FloodTracker
from alarms.history import Activation, FloodInterval
from alarms.points import AlarmDefinition, AlarmPoint, Escalation, OutOfService, Shelve
from alarms.records import (
    ActionRecord,
    ConditionRecord,
    EscalationRecord,
    Record,
    SuppressionRecord,
    SuppressRecord,
    UnknownRecord,
    to_json,
)
from alarms.state_codec import decode, encode
from alarms.suppression import SuppressionRule
from model.alarm_events import AlarmEvent

__all__ = [
    "ActionInvalid",
    "ActionRefused",
    "AlarmActionError",
    "AlarmChange",
    "AlarmManager",
    "AlarmPolicy",
    "ChangeKind",
    "PointFactory",
    "UnknownTarget",
]

PointFactory = Callable[[str], AlarmPoint | None]
PriorityAt = Callable[[str, str, int], str]  # (priority, area, ts) -> effective priority


class AlarmActionError(ValueError):
    """An operator action that cannot be applied (a domain error: ``api/`` maps each
    kind to its HTTP status)."""

    def __init__(self, alarm_id: str, action: str, message: str) -> None:
        self.alarm_id = alarm_id
        self.action = action
        super().__init__(message)


class UnknownTarget(AlarmActionError):
    """The action names an alarm point or suppression rule that does not exist."""


class ActionInvalid(AlarmActionError):
    """The action itself is malformed (no reason, shelve minutes out of range, ...)."""


class ActionRefused(AlarmActionError):
    """A well-formed action that the point's current state does not allow
    (acknowledging what is acknowledged, unshelving what is not shelved, ...)."""


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """The alarm philosophy's numbers (EEMUA 191 / ISA-18.2 defaults)."""

    flood: FloodPolicy = field(default_factory=FloodPolicy)
    chatter_count: int = 3
    chatter_window_ms: int = 60_000
    stale_ms: int = 86_400_000
    fleeting_ms: int = 5_000  # for KPIs: cleared within this after raising
    annunciate_in_flood: tuple[str, ...] = ("high", "highest")


class ChangeKind(StrEnum):
    """What happened to an alarm point, a post's flood or a suppression rule."""

    ACKED = "acked"
    CHATTERING = "chattering"
    CLEARED = "cleared"
    ESCALATED = "escalated"
    FLOOD_END = "flood_end"
    FLOOD_START = "flood_start"
    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"
    RAISED = "raised"
    REALARM = "realarm"
    RELEASED = "released"
    RESET = "reset"
    SHELVED = "shelved"
    STALE = "stale"
    SUPPRESSED = "suppressed"
    SUPPRESSION_OFF = "suppression_off"
    SUPPRESSION_ON = "suppression_on"
    UNSHELVED = "unshelved"


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One change of alarm state, for notifiers (MQTT, SSE, webhooks) and the audit trail.

    ``annunciate`` says whether the operator's alarm display shows it: false
    for points under an overlay and for alarms a flood holds back.
    """

    change: ChangeKind
    ts: int
    alarm_id: str | None
    post: str | None
    annunciate: bool
    point: dict[str, Any] | None = None
    by: str | None = None
    reason: str | None = None
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "change": self.change.value, "ts": self.ts, "alarm_id": self.alarm_id,
            "post": self.post,
            "annunciate": self.annunciate, "point": self.point, "by": self.by,
            "reason": self.reason, "detail": self.detail,
        }


def _keep_priority(priority: str, area: str, ts: int) -> str:
    return priority


@dataclass(slots=True)
class _Rule:
    rule: SuppressionRule
    active: bool = False
    enabled: bool = True

    @property
    def in_force(self) -> bool:
        return self.active and self.enabled


@dataclass(slots=True)
class _Counters:
    records: int = 0
    ignored_actions: int = 0
    unknown_records: int = 0
    by_change: dict[str, int] = field(default_factory=dict)


class AlarmManager:
    """Every alarm point of the plant, its ISA-18.2 state, overlays, floods and history."""

    def __init__(
        self,
        points: PointFactory,
        policy: AlarmPolicy | None = None,
        rules: Sequence[SuppressionRule] = (),
        priority_at: PriorityAt = _keep_priority,
    ) -> None:
        self._factory = points
        self.policy = policy = policy or AlarmPolicy()
        self._rules = {r.id: _Rule(r) for r in rules}
        self._priority_at = priority_at
        self._points: dict[str, AlarmPoint] = {}
        self._standing: set[str] = set()
        self._shelved: set[str] = set()
        self._open: dict[str, Activation] = {}
        self.floods = FloodTracker(policy.flood)
        self.activations: list[Activation] = []
        self.audit: list[dict[str, Any]] = []
        self.now = 0
        self.counters = _Counters()

    # ------------------------------------------------------------------ queries
    def get(self, alarm_id: str) -> AlarmPoint | None:
        return self._points.get(alarm_id)

    def points(self) -> list[AlarmPoint]:
        return sorted(self._points.values(), key=lambda p: (p.raised_ts or 0, p.alarm_id))

    def standing(self) -> list[AlarmPoint]:
        """Points not in state normal (the operator's alarm list, overlays included)."""
        return sorted((self._points[i] for i in self._standing),
                      key=lambda p: (p.raised_ts or 0, p.alarm_id))

    def active_conditions(self) -> list[tuple[str, str]]:
        """(sensor, condition) of every point whose process condition is active."""
        return sorted((p.sensor, p.limit) for p in self._points.values() if p.process_active)

    def rule_definitions(self) -> list[SuppressionRule]:
        return [r.rule for r in self._rules.values()]

    def rule_active(self, rule_id: str) -> bool:
        """Whether the rule's plant-state condition holds (enabled or not)."""
        return self._rules[rule_id].active

    def rules(self) -> list[dict[str, Any]]:
        return [
            {**r.rule.to_dict(), "active": r.active, "enabled": r.enabled, "in_force": r.in_force}
            for r in self._rules.values()
        ]

    def flood_summary(self) -> list[dict[str, Any]]:
        """Open floods with the alarms they hold back (shown instead of each alarm)."""
        out = []
        for flood in self.floods.open_floods():
            held = [p.alarm_id for p in self.standing() if p.post == flood.post and p.flood_held]
            out.append({"post": flood.post, "start_ts": flood.start_ts,
                        "held_back_total": flood.held_back, "held_back_standing": held,
                        "alarms_in_window": self.floods.count(flood.post, self.now)})
        return out

    def flood_history(self) -> list[FloodInterval]:
        return list(self.floods.history)

    def snapshot(self) -> dict[str, Any]:
        """Comparable picture of the whole state (a rebuild must give the same one)."""
        return {
            "points": {k: v.to_dict() for k, v in sorted(self._points.items())},
            "floods": [(f.post, f.start_ts, f.end_ts, f.held_back) for f in self.floods.history],
            "rules": self.rules(),
            "activations": [(a.alarm_id, a.raised_ts, a.cleared_ts, a.annunciable, a.flood_held)
                            for a in self.activations],
        }

    # ------------------------------------------------------------------ state
    def state(self, keep_from_ts: int | None = None) -> dict[str, Any]:
        """The whole state, JSON-ready, for a journal compaction snapshot.

        Points are saved field by field (every field of :class:`AlarmPoint`,
        whatever it has). History is bounded: activations, floods and audit
        entries older than ``keep_from_ts`` are left out (they stay in the
        closed journal segments), except what is still open. ``None`` keeps all.
        """
        def kept(a: Activation) -> bool:
            return (keep_from_ts is None or a.raised_ts >= keep_from_ts
                    or a.cleared_ts is None or a.cleared_ts >= keep_from_ts)

        open_ids = {id(a) for a in self._open.values()}
        activations = [a for a in self.activations if kept(a) or id(a) in open_ids]
        index = {id(a): i for i, a in enumerate(activations)}
        return {
            "now": self.now,
            "counters": encode(self.counters),
            "points": [encode(p) for p in self._points.values()],
            "standing": sorted(self._standing),
            "shelved": sorted(self._shelved),
            "rules": {rid: {"active": r.active, "enabled": r.enabled}
                      for rid, r in self._rules.items()},
            "floods": self.floods.state(keep_from_ts),
            "activations": [encode(a) for a in activations],
            "open": {alarm_id: index[id(a)] for alarm_id, a in self._open.items()},
            "audit": [dict(a) for a in self.audit
                      if keep_from_ts is None or int(a["ts"]) >= keep_from_ts],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state` (on a manager just built from the current config).

        Rules the config no longer has are dropped; each point takes its
        rationalization (priority, latching, shelve limit) from the current
        catalogue, as a replay would, while what happened to it (effective
        priority at its last raise, times, overlays) is as saved.
        """
        self.now = int(state["now"])
        self.counters = decode(_Counters, state["counters"])
        points = (decode(AlarmPoint, d) for d in state["points"])
        self._points = {p.alarm_id: p for p in points}
        for p in self._points.values():
            fresh = self._factory(p.alarm_id)
            if fresh is not None:
                p.definition = fresh.definition
        self._standing = set(state["standing"])
        self._shelved = set(state["shelved"])
        for rid, saved in state["rules"].items():
            rule = self._rules.get(rid)
            if rule is not None:
                rule.active, rule.enabled = bool(saved["active"]), bool(saved["enabled"])
        self.floods.load_state(state["floods"])
        self.activations = [decode(Activation, a) for a in state["activations"]]
        self._open = {alarm_id: self.activations[int(i)] for alarm_id, i in state["open"].items()}
        self.audit = [dict(a) for a in state["audit"]]

    # ------------------------------------------------------------------ records
    def replay(self, records: Iterable[Record]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, record: Record) -> list[AlarmChange]:
        """Apply one journal record; return what changed (empty: nothing did)."""
        self.counters.records += 1
        # Alarm time (shelve expiry, re-alarm, stale, flood ends) follows the
        # server's clock; a condition record carries it as ``at`` (its event
        # time, capped at the server time it was judged), so a gateway whose
        # clock runs ahead cannot expire shelves early.
        changes = self.advance(record.time)
        if isinstance(record, ConditionRecord):
            changes += self._condition(record.event)
        elif isinstance(record, ActionRecord):
            try:
                changes += self._action(record)
            except AlarmActionError:
                # Checked before it was journaled; it can only fail on replay when
                # the journal tail it depended on was cut after a crash.
                self.counters.ignored_actions += 1
        elif isinstance(record, SuppressRecord):
            changes += self._rule_change(record, active=record.active)
        elif isinstance(record, SuppressionRecord):
            changes += self._rule_change(record, enabled=record.enabled)
        elif isinstance(record, EscalationRecord):
            changes += self._escalate(record)
        elif isinstance(record, UnknownRecord):
            self.counters.unknown_records += 1
        for c in changes:
            self.counters.by_change[c.change] = self.counters.by_change.get(c.change, 0) + 1
        return changes

    def check(self, record: Record) -> None:
        """Raise :class:`AlarmActionError` if an action record would not apply now."""
        if isinstance(record, SuppressionRecord):
            if record.rule not in self._rules:
                raise UnknownTarget(
                    "", "suppression",
                    f"no suppression rule {record.rule!r} (known: "
                    f"{', '.join(sorted(self._rules)) or 'none'})")
            return
        if not isinstance(record, ActionRecord):
            return
        point = self._points.get(record.alarm_id) or self._factory(record.alarm_id)
        if point is None:
            raise UnknownTarget(record.alarm_id, record.action,
                                f"no alarm point {record.alarm_id!r}")
        self._validate(point, record)

    # ------------------------------------------------------------------ time
    def advance(self, ts: int) -> list[AlarmChange]:
        """Let time pass up to ``ts``: floods end, shelves expire, re-alarms, stale."""
        if ts <= self.now:
            return []
        self.now = ts
        changes: list[AlarmChange] = []
        for flood in self.floods.advance(ts):
            changes.append(AlarmChange(
                ChangeKind.FLOOD_END, flood.end_ts or ts, None, flood.post, True,
                detail={"start_ts": flood.start_ts, "end_ts": flood.end_ts,
                        "held_back": flood.held_back}))
            for alarm_id in sorted(self._standing):
                p = self._points[alarm_id]
                if p.post == flood.post and p.flood_held:
                    # The flood is over: what it held back and still stands is shown
                    # now; it sounds only if nobody acknowledged it meanwhile.
                    p.flood_held = False
                    sounds = p.annunciable and not p.acked
                    if sounds:
                        p.last_annunciated_ts = ts
                    changes.append(self._change(ChangeKind.RELEASED, p, p.annunciable, ts,
                                                detail={"reannunciated": sounds}))
        for alarm_id in sorted(self._shelved):
            p = self._points[alarm_id]
            assert p.shelved is not None
            if p.shelved.until_ts is not None and p.shelved.until_ts <= ts:
                p.shelved = None
                self._shelved.discard(alarm_id)
                changes.append(self._unshelved(p, ts, by="system", reason="shelve expired"))
        stale_ms = self.policy.stale_ms
        for alarm_id in sorted(self._standing):
            p = self._points[alarm_id]
            if (p.process_active and not p.stale and p.raised_ts is not None
                    and ts - p.raised_ts > stale_ms):
                p.stale = True
                changes.append(self._change(ChangeKind.STALE, p, False, ts))
            realarm_ms = int(p.definition.realarm_s * 1000)
            if (realarm_ms > 0 and p.process_active and not p.acked and p.annunciable
                    and not p.flood_held and p.last_annunciated_ts is not None
                    and ts - p.last_annunciated_ts >= realarm_ms):
                p.last_annunciated_ts = ts
                changes.append(self._change(ChangeKind.REALARM, p, True, ts))
        return changes

    # ------------------------------------------------------------------ conditions
    def _point_for_event(self, ev: AlarmEvent) -> AlarmPoint:
        p = self._points.get(ev.alarm_id)
        if p is None:
            p = self._factory(ev.alarm_id) or AlarmPoint(
                alarm_id=ev.alarm_id, sensor=ev.sensor, limit=ev.limit, category=ev.category,
                kind=ev.kind, unit=ev.unit, site=ev.site, workshop=ev.workshop, area=ev.area,
                team=ev.team, post=ev.post, definition=AlarmDefinition(priority=ev.priority),
                priority=ev.priority,
            )
            p.suppressed_by = self._suppressing(p)
            self._points[ev.alarm_id] = p
        return p

    def _condition(self, ev: AlarmEvent) -> list[AlarmChange]:
        if ev.action != "raise" and ev.alarm_id not in self._points:
            return []  # clearing a point never raised: nothing to record
        p = self._point_for_event(ev)
        if ev.action == "raise":
            return self._raise(p, ev)
        return self._clear(p, ev)

    def _raise(self, p: AlarmPoint, ev: AlarmEvent) -> list[AlarmChange]:
        if p.process_active:
            return []
        ts = ev.ts
        p.process_active = True
        if p.acked or p.unacked_since_ts is None:
            p.unacked_since_ts = ts
        p.acked = False
        p.latched_hold = False
        p.raised_ts, p.raised_value, p.setpoint = ts, ev.value, ev.setpoint
        p.cleared_ts = p.cleared_value = None
        p.eta_s = ev.eta_s
        p.contributions = ev.contributions
        p.raise_count += 1
        p.stale = False
        p.priority = self._priority_at(p.definition.priority, p.area, ts)
        window = [t for t in p.recent_raises if t > ts - self.policy.chatter_window_ms]
        window.append(ts)
        p.recent_raises = window
        was_chattering = p.chattering
        p.chattering = len(window) >= self.policy.chatter_count
        self._standing.add(p.alarm_id)

        changes: list[AlarmChange] = []
        started = None
        if p.annunciable and p.category != "warning":
            started = self.floods.add(p.post, ts)
        if started is not None:
            changes.append(AlarmChange(ChangeKind.FLOOD_START, ts, None, p.post, True,
                                       detail={"start_ts": ts, "alarms_in_window":
                                               self.floods.count(p.post, ts)}))
        flood = self.floods.flooding(p.post)
        p.flood_held = bool(
            p.annunciable and flood is not None
            and p.priority not in self.policy.annunciate_in_flood
        )
        if p.flood_held and flood is not None:
            flood.held_back += 1
        activation = Activation(
            alarm_id=p.alarm_id, sensor=p.sensor, limit=p.limit, category=p.category,
            priority=p.priority, site=p.site, workshop=p.workshop, team=p.team, post=p.post,
            area=p.area, raised_ts=ts, annunciable=p.annunciable, flood_held=p.flood_held,
        )
        self.activations.append(activation)
        self._open[p.alarm_id] = activation
        annunciate = p.annunciable and not p.flood_held
        if annunciate:
            p.last_annunciated_ts = ts
        changes.append(self._change(ChangeKind.RAISED, p, annunciate, ts))
        if p.chattering and not was_chattering:
            changes.append(self._change(ChangeKind.CHATTERING, p, False, ts))
        return changes

    def _clear(self, p: AlarmPoint, ev: AlarmEvent) -> list[AlarmChange]:
        if not p.process_active:
            return []
        ts = ev.ts
        p.process_active = False
        p.cleared_ts, p.cleared_value = ts, ev.value
        p.eta_s = None
        p.contributions = None
        p.stale = False
        activation = self._open.pop(p.alarm_id, None)
        if activation is not None:
            activation.cleared_ts = ts
        if p.definition.latched:
            p.latched_hold = True
        changes = [self._change(ChangeKind.CLEARED, p, p.annunciable and not p.flood_held, ts)]
        if p.shelved is not None and p.shelved.oneshot:
            p.shelved = None
            self._shelved.discard(p.alarm_id)
            changes.append(self._change(ChangeKind.UNSHELVED, p, False, ts, by="system",
                                        reason="returned to normal (one-shot shelve)"))
        self._settle(p)
        return changes

    def _escalate(self, record: EscalationRecord) -> list[AlarmChange]:
        """Record an escalation on its point; nothing if the point was acknowledged or
        raised again meanwhile (a replayed record after a journal cut, say)."""
        p = self._points.get(record.alarm_id)
        if (p is None or p.acked or not p.process_active
                or p.unacked_since_ts != record.since):
            return []
        p.escalation = Escalation(record.level, record.to, record.target, record.since,
                                  record.ts)
        self.audit.append({**to_json(record), "action": "escalate", "by": "system",
                           "role": "system", "state_after": p.state,
                           "reason": f"unacknowledged past its response time: level "
                                     f"{record.level}, to {record.to} {record.target}"})
        return [self._change(ChangeKind.ESCALATED, p, True, record.ts,
                             detail={"level": record.level, "to": record.to,
                                     "target": record.target})]

    # ------------------------------------------------------------------ actions
    def _validate(self, p: AlarmPoint, record: ActionRecord) -> None:
        action = record.action
        state = p.state

        def refuse(message: str, error: type[AlarmActionError] = ActionRefused) -> None:
            raise error(p.alarm_id, action, f"{p.alarm_id}: {message}")

        reason = record.reason.strip()
        if action == "ack":
            if p.acked:
                refuse(f"nothing to acknowledge (state {state!r})")
        elif action == "shelve":
            if not reason:
                refuse("shelving needs a reason", ActionInvalid)
            minutes, oneshot = record.minutes, record.oneshot
            if oneshot == (minutes is not None):
                refuse("give either minutes (timed shelve) or oneshot: true, not both",
                       ActionInvalid)
            if oneshot and not p.process_active:
                refuse(f"one-shot shelving applies to an active alarm (state {state!r}); "
                       "use a timed shelve")
            if minutes is not None:
                max_min = p.definition.max_shelve_s / 60
                if not 0 < float(minutes) <= max_min:
                    refuse(f"shelve minutes must be > 0 and at most {max_min:g} "
                           f"(this alarm's maximum); got {minutes:g}", ActionInvalid)
        elif action == "unshelve":
            if p.shelved is None:
                refuse("is not shelved")
        elif action == "reset":
            if not p.latched_hold:
                refuse(f"only a latched alarm that returned to normal needs a reset "
                       f"(state {state!r}, latched: {p.definition.latched})")
        elif action == "out_of_service":
            on = bool(record.on)
            if not reason:
                refuse("out-of-service changes need a reason", ActionInvalid)
            if on and p.out_of_service is not None:
                refuse("is already out of service")
            if not on and p.out_of_service is None:
                refuse("is not out of service")
        else:
            refuse(f"unknown action {action!r}", ActionInvalid)

    def _action(self, record: ActionRecord) -> list[AlarmChange]:
        alarm_id = record.alarm_id
        p = self._points.get(alarm_id)
        if p is None:
            p = self._factory(alarm_id)
            if p is None:
                raise UnknownTarget(alarm_id, record.action, f"no alarm point {alarm_id!r}")
            p.suppressed_by = self._suppressing(p)
            self._validate(p, record)  # a refused action leaves no trace
            self._points[alarm_id] = p
        self._validate(p, record)
        action, ts = record.action, record.ts
        by, reason = record.by, record.reason
        changes: list[AlarmChange] = []
        if action == "ack":
            p.acked = True
            p.unacked_since_ts = None
            changes.append(self._change(ChangeKind.ACKED, p, p.annunciable, ts, by=by,
                                        reason=reason))
        elif action == "shelve":
            minutes = record.minutes
            until = None if minutes is None else ts + int(float(minutes) * 60_000)
            p.shelved = Shelve(by=by, reason=reason, ts=ts, until_ts=until,
                               oneshot=record.oneshot)
            self._shelved.add(alarm_id)
            changes.append(self._change(ChangeKind.SHELVED, p, True, ts, by=by, reason=reason))
        elif action == "unshelve":
            p.shelved = None
            self._shelved.discard(alarm_id)
            changes.append(self._unshelved(p, ts, by=by, reason=reason))
        elif action == "reset":
            p.latched_hold = False
            p.acked = True
            changes.append(self._change(ChangeKind.RESET, p, p.annunciable, ts, by=by,
                                        reason=reason))
        else:  # out_of_service
            if record.on:
                p.out_of_service = OutOfService(by=by, reason=reason, ts=ts)
                changes.append(self._change(ChangeKind.OUT_OF_SERVICE, p, True, ts, by=by,
                                            reason=reason))
            else:
                p.out_of_service = None
                changes.append(self._returned_to_service(p, ts, by, reason))
        self._settle(p)
        self.audit.append({**to_json(record), "state_after": p.state})
        return changes

    def _hold_if_flooding(self, p: AlarmPoint) -> None:
        """A point coming back on the display during a flood of its post is held like a raise."""
        p.flood_held = bool(
            p.annunciable and p.standing and self.floods.flooding(p.post) is not None
            and p.priority not in self.policy.annunciate_in_flood
        ) or (p.flood_held and p.standing)

    def _unshelved(self, p: AlarmPoint, ts: int, *, by: str, reason: str) -> AlarmChange:
        """Back on the display; a standing unacknowledged alarm sounds again."""
        self._hold_if_flooding(p)
        sounds = p.annunciable and p.standing and not p.acked and not p.flood_held
        if sounds:
            p.last_annunciated_ts = ts
        return self._change(ChangeKind.UNSHELVED, p, p.annunciable, ts, by=by, reason=reason,
                            detail={"reannunciated": sounds})

    def _returned_to_service(self, p: AlarmPoint, ts: int, by: str, reason: str) -> AlarmChange:
        self._hold_if_flooding(p)
        sounds = p.annunciable and p.standing and not p.acked and not p.flood_held
        if sounds:
            p.last_annunciated_ts = ts
        return self._change(ChangeKind.IN_SERVICE, p, True, ts, by=by, reason=reason,
                            detail={"reannunciated": sounds})

    # ------------------------------------------------------------------ suppression
    def _suppressing(self, p: AlarmPoint) -> tuple[str, ...]:
        return tuple(sorted(r.rule.id for r in self._rules.values()
                            if r.in_force and r.rule.matches(p)))

    def _rule_change(self, record: SuppressRecord | SuppressionRecord, *,
                     active: bool | None = None,
                     enabled: bool | None = None) -> list[AlarmChange]:
        rule = self._rules.get(record.rule)
        if rule is None:
            self.counters.unknown_records += 1
            return []
        ts = record.ts
        before = rule.in_force
        if active is not None:
            rule.active = active
        if enabled is not None:
            rule.enabled = enabled
            self.audit.append(to_json(record))
        if rule.in_force == before:
            return []
        changes = [AlarmChange(
            ChangeKind.SUPPRESSION_ON if rule.in_force else ChangeKind.SUPPRESSION_OFF,
            ts, None, None, True,
            by=getattr(record, "by", None), reason=getattr(record, "reason", None),
            detail={"rule": rule.rule.id, "active": rule.active, "enabled": rule.enabled})]
        for alarm_id in sorted(self._points):
            p = self._points[alarm_id]
            new = self._suppressing(p)
            if new == p.suppressed_by:
                continue
            p.suppressed_by = new
            if p.standing:
                if new:
                    changes.append(self._change(ChangeKind.SUPPRESSED, p, True, ts))
                else:
                    changes.append(self._returned_to_service(p, ts, "system",
                                                             f"rule {rule.rule.id} lifted"))
        return changes

    # ------------------------------------------------------------------ helpers
    def _settle(self, p: AlarmPoint) -> None:
        if p.standing:
            self._standing.add(p.alarm_id)
        else:
            self._standing.discard(p.alarm_id)
            p.flood_held = False

    def _change(self, change: ChangeKind, p: AlarmPoint, annunciate: bool, ts: int, *,
                by: str | None = None, reason: str | None = None,
                detail: dict[str, Any] | None = None) -> AlarmChange:
        # Every change passes here after its mutation: keep the time since which the
        # operator has been shown the point (escalation counts from it).
        if not p.annunciable or p.flood_held:
            p.shown_since_ts = None
        elif p.shown_since_ts is None:
            p.shown_since_ts = ts
        return AlarmChange(change, ts, p.alarm_id, p.post, annunciate, p.to_dict(), by=by,
                           reason=reason, detail=detail)

