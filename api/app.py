"""The HTTP API: sensors, readings, alarms, the alarm event stream, health, metrics, dashboard.

:func:`create_app` builds a FastAPI app from an :class:`ApiServices`; there is
no module-level state, so tests and the composition root build as many apps as
they like. Query parameters are parsed into ints and literals here, at the
edge; the store only ever sees a sensor row and integer milliseconds.

Access: writes need a token (:mod:`api.auth`); reads need one only when
``require_token_for_reads`` is set (production should set it: the default
keeps the demo open). A read that comes with a token is filtered to the
token's scope (:mod:`api.scopes`). ``/livez``, ``/readyz``, ``/healthz`` and
``/metrics`` stay open whatever the setting: probes and Prometheus carry no
tokens, and they say nothing about single alarms. Every response carries the
security headers of :mod:`api.headers`.

Shutdown: open ``/api/v1/alarms/stream`` responses end when the hub is closed.
Call ``services.hub.close()`` before asking uvicorn to exit, or uvicorn waits
for those connections (up to ``timeout_graceful_shutdown``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from alarms.records import Record
from alarms.system import AlarmSystem, Outcome
from api.alarm_routes import alarm_router
from api.auth import Principal, TokenStore, optional_reader, stream_guard
from api.headers import SecurityHeaders
from api.models import (
    AlarmOut,
    ErrorOut,
    PlantOut,
    ReadingsOut,
    SensorDetailOut,
    plant_model,
    point_model,
    sensor_detail_model,
)
from api.scopes import PlantPlaces, ScopeView
from api.sse import EventStreamResponse, alarm_stream
from api.timeparse import TimeParamError, parse_duration_ms, parse_time_ms
from model.plant import PlantConfig
from model.sensor_table import SensorTable
from notify.hub import EventHub
from store.base import ReadingStore, SeriesPoint
from store.errors import StoreError

__all__ = [
    "DEFAULT_WINDOW_MS",
    "MAX_LIMIT",
    "MIN_EVERY_MS",
    "STATIC_DIR",
    "ApiServices",
    "create_app",
    "ready_from_health",
    "wall_clock_ms",
]

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_WINDOW_MS = 3_600_000
MIN_EVERY_MS = 1_000
MAX_LIMIT = 100_000
_API = "/api/v1"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def ready_from_health(report: dict[str, Any]) -> dict[str, Any]:
    """Readiness judged from the health report, for services that give no
    ``readiness`` callable: not ready while the broker is not connected
    (``mqtt_connected`` false), the spool is full (``spool_full`` true), the
    notification outbox is older than allowed (``outbox_oldest_s`` above
    ``outbox_max_age_s``), or the report's ``status`` is ``error``. Keys a
    report does not have are not judged."""
    reasons = []
    if report.get("mqtt_connected") is False:
        reasons.append("the MQTT broker is not connected")
    if report.get("spool_full") is True:
        reasons.append("the spool is full: readings cannot be taken while the store is down")
    oldest, max_age = report.get("outbox_oldest_s"), report.get("outbox_max_age_s")
    if isinstance(oldest, int | float) and isinstance(max_age, int | float) and oldest > max_age:
        reasons.append(f"the notification outbox's oldest entry is {oldest:.0f} s old "
                       f"(at most {max_age:.0f} s)")
    if report.get("status") == "error":
        reasons.append(f"health status is error: {report.get('error') or report}")
    return {"ready": not reasons, "reasons": reasons}


@dataclass
class ApiServices:
    """Everything the API reads from; built by the composition root (or a test).

    ``health`` returns a JSON-able dict whose ``status`` is ``"ok"`` when all is
    well. ``commit`` applies operator-action records through the pipeline
    (journal, checkpoint, notifications), so API actions and readings share
    one ordered, durable path. ``clock_ms`` resolves ``now`` and relative times; ``keepalive_s`` is
    the idle time before the event stream sends a keep-alive comment.

    ``require_token_for_reads`` (``api.require_token_for_reads``) makes every
    read route and the event stream need a viewer token or higher.
    ``readiness`` returns ``{"ready": bool, "reasons": [str]}`` for
    ``/readyz``; None judges readiness from ``health`` (:func:`ready_from_health`).
    """

    plant: PlantConfig
    table: SensorTable
    store: ReadingStore
    alarms: AlarmSystem
    hub: EventHub
    registry: CollectorRegistry
    health: Callable[[], dict[str, Any]]
    tokens: TokenStore
    commit: Callable[[list[Record]], Outcome]
    clock_ms: Callable[[], int] = wall_clock_ms
    keepalive_s: float = 15.0
    require_token_for_reads: bool = False
    readiness: Callable[[], dict[str, Any]] | None = None


def _not_found(what: str, value: str, hint: str) -> HTTPException:
    shown = value if len(value) <= 80 else value[:80] + "…"
    return HTTPException(status_code=404, detail=f"unknown {what} {shown!r}; {hint}")


def _invalid(errors: list[TimeParamError]) -> RequestValidationError:
    """The same 422 shape FastAPI uses for its own validation errors."""
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", e.param),
                "msg": str(e),
                "input": e.value,
            }
            for e in errors
        ]
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown sensor or area."},
}

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-sent events. First `snapshot` (data: `{alarms: [Alarm…], ts}` with the "
            "active alarms), then `alarm` events (data: an AlarmEvent: alarm_id, sensor, "
            "limit, action raise|clear, ts, value, setpoint, priority, site, workshop, area, "
            "team, post, kind, unit). `overflow` means the client fell behind and the stream "
            "ends: reconnect for a fresh snapshot. `: keepalive` comments keep proxies awake."
        ),
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'event: alarm\ndata: {"alarm_id":"TF-LEL-001:hh","action":"raise"}\n\n',
            }
        },
    }
}


async def _query_readings(
    store: ReadingStore, row: int, start_ms: int, end_ms: int, every_ms: int | None,
    limit: int, order: Literal["desc", "asc"],
) -> list[SeriesPoint]:
    """The store's points of ``row`` in the window, ``limit`` of them from the end
    ``order`` names, in that order."""
    return await store.query_readings(row, start_ms, end_ms, every_ms, limit, order=order)


def _without_names(report: dict[str, Any]) -> dict[str, Any]:
    """The health report for anyone, when reads need a token: counts instead of the
    plant's names (which posts are in flood, which sensors are stale)."""
    out = dict(report)
    if isinstance(out.get("posts_in_flood"), list):
        out["posts_in_flood"] = len(out["posts_in_flood"])
    sparkplug = out.get("sparkplug")
    if isinstance(sparkplug, dict):
        out["sparkplug"] = {k: len(v) if isinstance(v, list) else v
                            for k, v in sparkplug.items()}
    return out


def create_app(services: ApiServices) -> FastAPI:
    """A FastAPI app serving ``services``."""
    # FastAPIOffline serves Swagger UI and ReDoc from its own package files:
    # plant networks are often cut off from the internet, and FastAPI's default
    # /docs page loads its JavaScript from a CDN (blank page offline).
    app: FastAPI = FastAPIOffline(
        title="plantwatch",
        summary="Safety sensors, readings and alarms of a chemical plant.",
        version="1",
    )
    app.add_middleware(SecurityHeaders)
    places = PlantPlaces.of(services.plant)
    # A default, not an Annotated alias: with the future import FastAPI would look
    # a local alias up in the module's globals and take it for a query parameter.
    read_access: Any = Depends(optional_reader(services.tokens,
                                               services.require_token_for_reads,
                                               services.clock_ms))
    stream_access: Any = Depends(stream_guard(services.tokens, services.clock_ms))
    plant_out = plant_model(services.plant)
    risk_of = {
        (site.id, ws.id, area.id): area.risk
        for site in services.plant.sites
        for ws in site.workshops
        for area in ws.areas
    }
    sensor_out: dict[str, SensorDetailOut] = {
        place.sensor.id: sensor_detail_model(
            place, risk_of[(place.site, place.workshop, place.area)]
        )
        for place in services.table.places
    }
    area_ids = sorted({area_id for (_, _, area_id) in risk_of})

    def sensor_row(sensor_id: str, view: ScopeView) -> int:
        row = services.table.index.get(sensor_id)
        if row is None:
            raise _not_found("sensor", sensor_id, "GET /api/v1/sensors lists the known sensors")
        if not view.covers_sensor(sensor_id):
            raise HTTPException(
                status_code=403,
                detail=f"sensor {sensor_id!r} (area {places.area_of_sensor[sensor_id]!r}) is "
                f"outside the scope of this token: {view.describe()}; GET /api/v1/sensors "
                "lists the sensors it covers")
        return row

    def plant_in(keep: Callable[[str, str], bool]) -> PlantOut:
        """The plant with only the areas ``keep(site, area)`` admits."""
        sites = []
        for site in plant_out.sites:
            workshops = []
            for ws in site.workshops:
                areas = [a for a in ws.areas if keep(site.id, a.id)]
                if areas:
                    workshops.append(ws.model_copy(update={"areas": areas}))
            if workshops:
                sites.append(site.model_copy(update={"workshops": workshops}))
        return plant_out.model_copy(update={"sites": sites})

    @app.get(f"{_API}/sensors", tags=["sensors"], responses=_ERRORS)
    async def get_sensors(
        who: Principal | None = read_access,
        area: Annotated[
            str | None, Query(description="Only this area (its site and workshop kept).")
        ] = None,
    ) -> PlantOut:
        """The plant hierarchy: enterprise → sites → workshops (teams, posts) → areas →
        sensors; with a token limited to some workshops or posts, only its areas."""
        view = ScopeView(places, who)
        if area is None:
            return plant_out if view.everything else plant_in(
                lambda s, a: view.covers_area(a, s))
        if area not in area_ids:
            raise _not_found("area", area, f"known areas: {', '.join(area_ids)}")
        return plant_in(lambda s, a: a == area and view.covers_area(a, s))

    @app.get(f"{_API}/sensors/{{sensor_id}}", tags=["sensors"], responses=_ERRORS)
    async def get_sensor(sensor_id: str, who: Principal | None = read_access) -> SensorDetailOut:
        """One sensor with its effective limits and its place in the plant."""
        return sensor_out[services.table.ids[sensor_row(sensor_id, ScopeView(places, who))]]

    @app.get(
        f"{_API}/sensors/{{sensor_id}}/readings",
        tags=["sensors"],
        responses={
            **_ERRORS,
            503: {"model": ErrorOut, "description": "The reading store cannot answer now."},
        },
    )
    async def get_readings(
        sensor_id: str,
        who: Principal | None = read_access,
        start: Annotated[
            str | None,
            Query(
                description="ISO-8601 with Z or offset, epoch ms, `now`, or relative "
                "(`-15m`, `now-1h`). Default: `end` - 1 h.",
                examples=["-15m"],
            ),
        ] = None,
        end: Annotated[
            str | None,
            Query(description="Same forms as `start`. Default: now.", examples=["now"]),
        ] = None,
        every: Annotated[
            str | None,
            Query(
                description="Aggregate into intervals of this length (`30s`, `5m`, `1h`, "
                "`1d`; at least 1s): mean, min, max, count. Default: raw points.",
                examples=["1m"],
            ),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="At most this many points.")
        ] = 10_000,
        order: Annotated[
            Literal["desc", "asc"],
            Query(description="`desc` (default): the newest `limit` points of the window, "
                  "newest first; `asc`: the oldest `limit` points, oldest first."),
        ] = "desc",
    ) -> ReadingsOut:
        """A sensor's readings in `[start, end)`: the newest first unless `order=asc`."""
        row = sensor_row(sensor_id, ScopeView(places, who))
        now_ms = services.clock_ms()
        errors: list[TimeParamError] = []
        end_ms = now_ms
        start_ms: int | None = None
        every_ms: int | None = None
        if end is not None:
            try:
                end_ms = parse_time_ms(end, now_ms=now_ms, param="end")
            except TimeParamError as exc:
                errors.append(exc)
        if start is not None:
            try:
                start_ms = parse_time_ms(start, now_ms=now_ms, param="start")
            except TimeParamError as exc:
                errors.append(exc)
        if every is not None:
            try:
                every_ms = parse_duration_ms(every, param="every", min_ms=MIN_EVERY_MS)
            except TimeParamError as exc:
                errors.append(exc)
        if errors:
            raise _invalid(errors)
        if start_ms is None:
            start_ms = max(0, end_ms - DEFAULT_WINDOW_MS)
        if start_ms >= end_ms:
            raise _invalid(
                [
                    TimeParamError(
                        "start",
                        start or str(start_ms),
                        f"({start_ms} ms) is not before end {end or 'now'!r} ({end_ms} ms)",
                    )
                ]
            )
        try:
            points = await _query_readings(services.store, row, start_ms, end_ms, every_ms,
                                           limit, order)
        except StoreError as exc:
            where = f" ({exc.store})" if exc.store else ""
            raise HTTPException(
                status_code=503, detail=f"reading store unavailable{where}: {exc}"
            ) from exc
        sensor = services.table.places[row].sensor
        return ReadingsOut(
            sensor=sensor.id,
            unit=sensor.effective_unit(),
            start=start_ms,
            end=end_ms,
            every_ms=every_ms,
            limit=limit,
            order=order,
            points=[point_model(p) for p in points],
        )

    @app.get(f"{_API}/alarms", tags=["alarms"])
    async def get_alarms(
        who: Principal | None = read_access,
        state: Annotated[
            Literal["active", "all", "shelved", "suppressed", "out_of_service"],
            Query(description="`active`: every alarm not in state normal (unacknowledged, "
                  "acknowledged, returned unacknowledged, latched), overlays included; "
                  "`all`: every alarm point seen; `shelved`, `suppressed`, "
                  "`out_of_service`: points under that overlay."),
        ] = "active",
        post: Annotated[str | None, Query(description="Only this post's alarms.")] = None,
        team: str | None = None,
        workshop: str | None = None,
        area: str | None = None,
    ) -> list[AlarmOut]:
        """Alarm points, oldest raise first (with a token limited to some workshops or
        posts, only theirs)."""
        view = ScopeView(places, who)
        manager = services.alarms.manager
        points = manager.standing() if state == "active" else manager.points()
        if state == "shelved":
            points = [p for p in points if p.shelved is not None]
        elif state == "suppressed":
            points = [p for p in points if p.suppressed_by]
        elif state == "out_of_service":
            points = [p for p in points if p.out_of_service is not None]
        points = [p for p in points if (post is None or p.post == post)
                  and (team is None or p.team == team)
                  and (workshop is None or p.workshop == workshop)
                  and (area is None or p.area == area)
                  and view.covers_point(p)]
        return [AlarmOut.model_validate(p.to_dict()) for p in points]

    @app.get(
        f"{_API}/alarms/stream",
        tags=["alarms"],
        response_class=EventStreamResponse,
        responses=_STREAM_DOC,
    )
    async def stream_alarms(who: Principal | None = read_access,
                            still_valid: Any = stream_access) -> EventStreamResponse:
        """Live alarm events as server-sent events. When the server needs a token for
        reads, send it as `Authorization: Bearer` (the dashboard reads the stream with
        `fetch`, as a browser's `EventSource` cannot send headers); a token limited to
        some workshops or posts gets only their events. The stream ends when its token
        is revoked, expires or is rotated away."""
        manager = services.alarms.manager
        view = ScopeView(places, who, rules=manager.rules)

        def standing() -> list[Any]:
            return [p for p in manager.standing() if view.covers_point(p)]

        return EventStreamResponse(
            alarm_stream(
                services.hub,
                standing,
                keepalive_s=services.keepalive_s,
                clock_ms=services.clock_ms,
                accept=None if view.everything else view.covers_event,
                still_valid=still_valid,
            )
        )

    @app.get("/livez", tags=["operations"])
    async def livez() -> dict[str, str]:
        """Liveness: 200 while the process's event loop answers. It checks nothing
        else on purpose: a probe that restarts the service must not do it for a
        broker or store that is down (a restart cures neither)."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=None,
        responses={
            200: {"description": "Ready: `ready` is true."},
            503: {"description": "Not ready; `reasons` say why."},
        },
    )
    async def readyz() -> JSONResponse:
        """Readiness: 503 while the service cannot do its job (broker not connected,
        spool full, notification outbox too old), so a load balancer sends no one."""
        try:
            if services.readiness is not None:
                report = services.readiness()
            else:
                report = ready_from_health(services.health())
        except Exception as exc:
            report = {"ready": False, "reasons": [f"readiness check failed: {exc!r}"]}
        code = 200 if report.get("ready") is True else 503
        return JSONResponse(jsonable_encoder(report), status_code=code)

    @app.get(
        "/healthz",
        tags=["operations"],
        response_model=None,
        responses={
            200: {"description": "Working: `status` is `ok`, or `degraded` (working, "
                  "impaired: e.g. the store is down and the spool takes the readings)."},
            503: {"description": "Failing (`status` `error`); the body says what."},
        },
    )
    async def healthz() -> JSONResponse:
        """The service's detailed health report; HTTP 503 unless `status` is `ok` or
        `degraded`. For probes use `/livez` and `/readyz`."""
        try:
            report = services.health()
        except Exception as exc:
            report = {"status": "error", "error": f"health check failed: {exc!r}"}
        code = 200 if report.get("status") in ("ok", "degraded") else 503
        if services.require_token_for_reads:
            report = _without_names(report)
        return JSONResponse(jsonable_encoder(report), status_code=code)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(alarm_router(services.plant, services.alarms, services.tokens,
                                    services.commit, services.clock_ms,
                                    reads_need_token=services.require_token_for_reads))

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
