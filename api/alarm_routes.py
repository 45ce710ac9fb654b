"""Alarm management over HTTP: operator actions, audit trail, floods, KPIs, risk, hazards.

Reads are open unless ``api.require_token_for_reads`` is set (then they need
a viewer token or higher); a read that comes with a token is filtered to the
token's scope (:mod:`api.scopes`). Every write needs a bearer token
(:mod:`api.auth`) whose scope covers its target (403 naming the target and the
scope otherwise): operators
acknowledge, shelve (with a reason), unshelve, reset and report or progress
hazards; engineers also take alarms out of service and enable or disable
suppression rules. Each accepted action is journaled with who, when and why
before the response is sent, and is in ``GET /api/v1/audit``.
"""

# No ``from __future__ import annotations``: the routes' dependency types are
# local to alarm_router, and FastAPI resolves string annotations in module
# globals only.
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from alarms.hazards import HazardError
from alarms.kpi import compute_kpis, parse_scope, posts_in_scope
from alarms.lifecycle import ActionInvalid, AlarmActionError, UnknownTarget
from alarms.records import ActionName, Record, action_record, suppression_record, tick_record
from alarms.system import AlarmSystem, Outcome
from api.auth import Principal, TokenStore, optional_reader, require_role
from api.models import AlarmOut
from api.scopes import PlantPlaces, ScopeView
from api.timeparse import TimeParamError, parse_duration_ms, parse_time_ms
from model.plant import PlantConfig

__all__ = ["alarm_router"]

Commit = Callable[[list[Record]], Outcome]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionBody(_Body):
    reason: str = Field("", max_length=500)


class ShelveBody(_Body):
    reason: str = Field(min_length=1, max_length=500,
                        description="Why the alarm is shelved (required).")
    minutes: float | None = Field(None, gt=0, description="Timed shelve length.")
    oneshot: bool = Field(False, description="Shelve until the alarm returns to normal.")


class OutOfServiceBody(_Body):
    reason: str = Field(min_length=1, max_length=500)
    on: bool = Field(description="true: take out of service; false: return to service.")


class SuppressionBody(_Body):
    enabled: bool
    reason: str = Field(min_length=1, max_length=500)


class HazardCreateBody(_Body):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    sensor: str | None = None
    area: str | None = None
    post: str | None = None
    owner: str | None = None
    deadline: str | None = Field(None, description="ISO-8601, epoch ms or relative (`+7d`).")


class HazardPatchBody(_Body):
    status: Literal["reported", "assigned", "rectifying", "verified", "closed"] | None = None
    owner: str | None = None
    deadline: str | None = None
    note: str | None = Field(None, max_length=5000)


def _time(value: str | None, now_ms: int, param: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    try:
        if text.startswith(("+", "now+")):
            return now_ms + parse_duration_ms(text.removeprefix("now").lstrip("+"), param=param)
        return parse_time_ms(text, now_ms=now_ms, param=param)
    except TimeParamError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


def action_error_status(exc: AlarmActionError) -> int:
    """The HTTP status of a refused action: the domain says what went wrong, the API
    says it in HTTP (404 no such point or rule, 422 a malformed action, 409 the
    point's state does not allow it)."""
    if isinstance(exc, UnknownTarget):
        return 404
    if isinstance(exc, ActionInvalid):
        return 422
    return 409


def out_of_scope(view: ScopeView, what: str) -> HTTPException:
    """The 403 of a target outside the caller's scope, naming both."""
    return HTTPException(status_code=403, detail=f"{what} is outside the scope of this "
                         f"token: {view.describe()}; ask an admin for a token that covers it")


def alarm_router(
    plant: PlantConfig,
    alarms: AlarmSystem,
    tokens: TokenStore,
    commit: Commit,
    clock_ms: Callable[[], int],
    *,
    reads_need_token: bool = False,
) -> APIRouter:
    """The alarm-management routes, bound to the running alarm system."""
    router = APIRouter(prefix="/api/v1")
    places = PlantPlaces.of(plant)
    operator = Annotated[Principal, Depends(require_role(tokens, "operator", clock_ms))]
    engineer = Annotated[Principal, Depends(require_role(tokens, "engineer", clock_ms))]
    reader = Annotated[Principal | None,
                       Depends(optional_reader(tokens, reads_need_token, clock_ms))]
    manager = alarms.manager

    def view_of(who: Principal | None) -> ScopeView:
        return ScopeView(places, who, rules=manager.rules)

    def check_alarm(view: ScopeView, alarm_id: str) -> None:
        """403 unless the alarm (or, before it is first seen, its sensor) is in scope."""
        if view.everything:
            return
        point = manager.get(alarm_id)
        if point is not None:
            if not view.covers_point(point):
                raise out_of_scope(view, f"alarm {alarm_id!r} (workshop {point.workshop!r}, "
                                         f"post {point.post!r})")
        elif not view.covers_sensor(alarm_id.rpartition(":")[0]):
            raise out_of_scope(view, f"alarm {alarm_id!r}")

    def check_hazard(view: ScopeView, hazard: Any, what: str, *, whole: bool) -> None:
        """403 unless the hazard is in scope: ``whole`` (to act on it) every
        sensor, area and post it names; else (to read it) one of them."""
        if view.covers_hazard(hazard) if whole else view.touches_hazard(hazard):
            return
        get = hazard.get if isinstance(hazard, dict) else (lambda k: getattr(hazard, k))
        named = [f"{k} {get(k)!r}" for k in ("sensor", "area", "post") if get(k)]
        where = ", ".join(named)
        outside = view.hazard_outside(hazard)
        if whole and 0 < len(outside) < len(named):
            where += f"; not covered: {', '.join(outside)}"
        raise out_of_scope(view, f"{what} ({where or 'plant-wide: no sensor, area or post'})")

    def point_out(alarm_id: str) -> AlarmOut:
        point = manager.get(alarm_id)
        if point is None:
            raise HTTPException(status_code=404, detail=f"no alarm point {alarm_id!r} yet")
        return AlarmOut.model_validate(point.to_dict())

    def run_action(action: ActionName, alarm_id: str, who: Principal,
                   **fields: Any) -> AlarmOut:
        check_alarm(view_of(who), alarm_id)
        now = clock_ms()
        # Let alarm time catch up first (a shelve that just expired, a flood that
        # just ended), so the action is judged on the state it will meet.
        commit([tick_record(now)])
        record = action_record(action, alarm_id, by=who.name, role=who.role, ts=now,
                               **fields)
        try:
            alarms.check(record)
        except AlarmActionError as exc:
            raise HTTPException(status_code=action_error_status(exc), detail=str(exc)) from exc
        commit([record])
        return point_out(alarm_id)

    @router.get("/alarms/{alarm_id}", tags=["alarms"])
    async def get_alarm(alarm_id: str, who: reader) -> AlarmOut:
        """One alarm point with its state, overlays and rationalization."""
        check_alarm(view_of(who), alarm_id)
        return point_out(alarm_id)

    @router.post("/alarms/{alarm_id}/ack", tags=["alarm actions"])
    async def ack(alarm_id: str, who: operator, body: ActionBody | None = None) -> AlarmOut:
        """Acknowledge (operator)."""
        return run_action(ActionName.ACK, alarm_id, who, reason=(body or ActionBody()).reason)

    @router.post("/alarms/{alarm_id}/shelve", tags=["alarm actions"])
    async def shelve(alarm_id: str, body: ShelveBody, who: operator) -> AlarmOut:
        """Shelve for `minutes` (up to the alarm's maximum) or one-shot (operator; reason
        required). A shelved alarm is still evaluated and recorded, not annunciated."""
        return run_action(ActionName.SHELVE, alarm_id, who, reason=body.reason,
                          minutes=body.minutes, oneshot=body.oneshot)

    @router.post("/alarms/{alarm_id}/unshelve", tags=["alarm actions"])
    async def unshelve(alarm_id: str, who: operator, body: ActionBody | None = None
                       ) -> AlarmOut:
        """Unshelve (operator); a standing unacknowledged alarm sounds again."""
        return run_action(ActionName.UNSHELVE, alarm_id, who, reason=(body or ActionBody()).reason)

    @router.post("/alarms/{alarm_id}/reset", tags=["alarm actions"])
    async def reset(alarm_id: str, who: operator, body: ActionBody | None = None) -> AlarmOut:
        """Reset a latched alarm that returned to normal (operator)."""
        return run_action(ActionName.RESET, alarm_id, who, reason=(body or ActionBody()).reason)

    @router.post("/alarms/{alarm_id}/out-of-service", tags=["alarm actions"])
    async def out_of_service(alarm_id: str, body: OutOfServiceBody, who: engineer
                             ) -> AlarmOut:
        """Take out of service for maintenance, or return to service (engineer)."""
        return run_action(ActionName.OUT_OF_SERVICE, alarm_id, who, reason=body.reason, on=body.on)

    @router.get("/audit", tags=["alarm actions"])
    async def audit(
        who: reader,
        alarm_id: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """Operator and engineer actions (who, when, why, state after) and escalations
        (``type: escalation``: level, to whom), newest last."""
        now = clock_ms()
        lo = _time(start, now, "start") or 0
        hi = _time(end, now, "end") or now + 1
        view = view_of(who)
        rules = {r["id"]: r for r in manager.rules()}

        def in_scope(row: dict[str, Any]) -> bool:
            if view.everything:
                return True
            if row.get("alarm_id"):
                point = manager.get(str(row["alarm_id"]))
                return (view.covers_point(point) if point is not None
                        else view.covers_sensor(str(row["alarm_id"]).rpartition(":")[0]))
            # Suppression toggles are journaled with the rule's id under "rule".
            rule = rules.get(str(row.get("rule")))
            return rule is not None and view.touches_rule(rule)

        rows = [r for r in manager.audit
                if lo <= int(r["ts"]) < hi and (alarm_id is None or r.get("alarm_id") == alarm_id)
                and in_scope(r)]
        return rows[-limit:]

    @router.get("/suppressions", tags=["alarm actions"])
    async def suppressions(who: reader) -> list[dict[str, Any]]:
        """Suppression-by-design rules: their condition, and whether each is in force."""
        view = view_of(who)
        return [r for r in manager.rules() if view.touches_rule(r)]

    @router.post("/suppressions/{rule_id}", tags=["alarm actions"])
    async def set_suppression(rule_id: str, body: SuppressionBody, who: engineer
                              ) -> dict[str, Any]:
        """Enable or disable a suppression rule (engineer; reason required). A token
        limited to some workshops or posts may toggle only a rule whose every area
        and sensor is in its scope (a rule naming none acts plant-wide)."""
        view = view_of(who)
        rule = next((r for r in manager.rules() if r["id"] == rule_id), None)
        if rule is not None and not view.covers_rule(rule):
            places_named = ", ".join([*rule.get("areas", []), *rule.get("sensors", [])])
            raise out_of_scope(view, f"suppression rule {rule_id!r} "
                                     f"({places_named or 'plant-wide'})")
        record = suppression_record(rule_id, body.enabled, by=who.name, role=who.role,
                                    ts=clock_ms(), reason=body.reason)
        try:
            alarms.check(record)
        except AlarmActionError as exc:
            raise HTTPException(status_code=action_error_status(exc), detail=str(exc)) from exc
        commit([record])
        return next(r for r in manager.rules() if r["id"] == rule_id)

    @router.get("/floods", tags=["kpi"])
    async def floods(who: reader) -> dict[str, Any]:
        """Posts in flood now (with the alarms held back), and every flood so far; a
        token limited to some workshops or posts sees only its posts' floods."""
        view = view_of(who)
        return {
            "open": [f for f in manager.flood_summary() if view.covers_post(f["post"])],
            "history": [{"post": f.post, "start_ts": f.start_ts, "end_ts": f.end_ts,
                         "held_back": f.held_back} for f in manager.flood_history()
                        if view.covers_post(f.post)],
        }

    @router.get("/kpi", tags=["kpi"])
    async def kpi(
        who: reader,
        scope: Annotated[str, Query(description="post:<id>, team:<id>, workshop:<id> or "
                                    "enterprise")] = "enterprise",
        start: Annotated[str, Query(description="Default: 24 h before end.")] = "-24h",
        end: str = "now",
    ) -> dict[str, Any]:
        """Alarm KPIs of a scope beside the EEMUA 191 / ISA-18.2 targets. A token
        limited to some workshops or posts gets its own posts of the scope asked for
        (`enterprise`: all of its posts); a scope with none of them is refused (403)."""
        now = clock_ms()
        try:
            posts = posts_in_scope(plant, parse_scope(scope))
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        view = view_of(who)
        if not view.everything:
            posts = [p for p in posts if view.covers_post(p)]
            if not posts:
                raise out_of_scope(view, f"KPI scope {scope!r}")
        end_ms = _time(end, now, "end")
        start_ms = _time(start, now, "start")
        assert start_ms is not None and end_ms is not None
        if start_ms >= end_ms:
            raise HTTPException(status_code=422, detail=f"start {start!r} is not before end "
                                f"{end!r}")
        policy = manager.policy
        report = compute_kpis(
            manager.activations, manager.flood_history(), posts, start_ms, end_ms,
            chatter_count=policy.chatter_count, chatter_window_ms=policy.chatter_window_ms,
            stale_ms=policy.stale_ms, fleeting_ms=policy.fleeting_ms,
        )
        shown = scope if view.everything else f"{scope} within {view.scope.describe()}"
        return {"scope": shown, "posts": posts, **report.to_dict()}

    @router.get("/risk", tags=["risk"])
    async def risk(who: reader) -> dict[str, Any]:
        """Every area's live risk colour (red > orange > yellow > blue) with the reasons."""
        now = clock_ms()
        view = view_of(who)
        grades = alarms.grades(now)
        return {
            "ts": now,
            "areas": [g.to_dict() for g in grades.values() if view.covers_area(g.area)],
            "periods_in_force": [p.id for p in alarms.periods_in_force(now)
                                 if not p.areas or any(view.covers_area(a) for a in p.areas)],
        }

    @router.get("/periods", tags=["risk"])
    async def periods(who: reader) -> list[dict[str, Any]]:
        """Important periods (重要时段) from config, and which are in force now
        (those of the whole plant and those of the caller's areas)."""
        now = clock_ms()
        view = view_of(who)
        in_force = {p.id for p in alarms.periods_in_force(now)}
        return [{**p.model_dump(mode="json"), "in_force": p.id in in_force}
                for p in alarms.periods
                if not p.areas or any(view.covers_area(a) for a in p.areas)]

    @router.get("/hazards", tags=["hazards"])
    async def list_hazards(
        who: reader,
        status: Literal["reported", "assigned", "rectifying", "verified", "closed"] | None = None,
        open_only: bool = False,
        area: str | None = None,
    ) -> list[dict[str, Any]]:
        """Hazard tickets (隐患), with the overdue flag as of now."""
        now = clock_ms()
        view = view_of(who)
        return [h.to_dict(now) for h in alarms.hazards.list(status=status, open_only=open_only,
                                                            area=area)
                if view.touches_hazard(h)]

    @router.get("/hazards/{hazard_id}", tags=["hazards"])
    async def get_hazard(hazard_id: str, who: reader) -> dict[str, Any]:
        hazard = alarms.hazards.get(hazard_id)
        if hazard is None:
            raise HTTPException(status_code=404, detail=f"no hazard {hazard_id!r}")
        check_hazard(view_of(who), hazard, f"hazard {hazard_id!r}", whole=False)
        return hazard.to_dict(clock_ms())

    @router.post("/hazards", tags=["hazards"], status_code=201)
    async def create_hazard(body: HazardCreateBody, who: operator) -> dict[str, Any]:
        """Report a hazard by hand (operator). Every sensor, area and post it names
        must be in the token's scope (403) and be one place of the plant: the
        sensor in that area, answered by that post (422)."""
        check_hazard(view_of(who), body.model_dump(), "the new hazard", whole=True)
        problems = places.hazard_problems(body.sensor, body.area, body.post)
        if problems:
            raise HTTPException(status_code=422, detail="; ".join(problems))
        now = clock_ms()
        try:
            hazard = alarms.create_hazard(
                title=body.title, description=body.description, sensor=body.sensor,
                area=body.area, post=body.post, owner=body.owner, by=who.name, ts=now,
                deadline_ts=_time(body.deadline, now, "deadline"))
        except HazardError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return hazard.to_dict(now)

    @router.patch("/hazards/{hazard_id}", tags=["hazards"])
    async def patch_hazard(hazard_id: str, body: HazardPatchBody, who: operator
                           ) -> dict[str, Any]:
        """Move a hazard on (reported → assigned → rectifying → verified → closed),
        reassign it, move its deadline or add a note (operator; every sensor, area and
        post the hazard names in the token's scope)."""
        now = clock_ms()
        current = alarms.hazards.get(hazard_id)
        if current is None:
            raise HTTPException(status_code=404, detail=f"no hazard {hazard_id!r}")
        check_hazard(view_of(who), current, f"hazard {hazard_id!r}", whole=True)
        try:
            hazard = alarms.update_hazard(
                hazard_id, by=who.name, ts=now, status=body.status, owner=body.owner,
                deadline_ts=_time(body.deadline, now, "deadline"), note=body.note)
        except HazardError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return hazard.to_dict(now)

    return router
