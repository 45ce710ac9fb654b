"""The HTTP API: sensors, readings, alarms, the alarm event stream, health, metrics, dashboard.

:func:`create_app` builds a FastAPI app from an :class:`ApiServices`; there is
no module-level state, so tests and the composition root build as many apps as
they like. Query parameters are parsed into ints and literals here, at the
edge; the store only ever sees a sensor row and integer milliseconds.

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

from fastapi import FastAPI, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from alarms.records import Record
from alarms.system import AlarmSystem, Outcome
from api.alarm_routes import alarm_router
from api.auth import TokenStore
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
from api.sse import EventStreamResponse, alarm_stream
from api.timeparse import TimeParamError, parse_duration_ms, parse_time_ms
from model.plant import PlantConfig
from model.sensor_table import SensorTable
from notify.hub import EventHub
from store.base import ReadingStore
from store.errors import StoreError

__all__ = [
    "DEFAULT_WINDOW_MS",
    "MAX_LIMIT",
    "MIN_EVERY_MS",
    "STATIC_DIR",
    "ApiServices",
    "create_app",
    "wall_clock_ms",
]

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_WINDOW_MS = 3_600_000
MIN_EVERY_MS = 1_000
MAX_LIMIT = 100_000
_API = "/api/v1"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ApiServices:
    """Everything the API reads from; built by the composition root (or a test).

    ``health`` returns a JSON-able dict whose ``status`` is ``"ok"`` when all is
    well. ``commit`` applies operator-action records through the pipeline
    (journal, checkpoint, notifications), so API actions and readings share
    one ordered, durable path. ``clock_ms`` resolves ``now`` and relative times; ``keepalive_s`` is
    the idle time before the event stream sends a keep-alive comment.
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

    def sensor_row(sensor_id: str) -> int:
        row = services.table.index.get(sensor_id)
        if row is None:
            raise _not_found("sensor", sensor_id, "GET /api/v1/sensors lists the known sensors")
        return row

    @app.get(f"{_API}/sensors", tags=["sensors"], responses=_ERRORS)
    async def get_sensors(
        area: Annotated[
            str | None, Query(description="Only this area (its site and workshop kept).")
        ] = None,
    ) -> PlantOut:
        """The plant hierarchy: enterprise → sites → workshops (teams, posts) → areas → sensors."""
        if area is None:
            return plant_out
        if area not in area_ids:
            raise _not_found("area", area, f"known areas: {', '.join(area_ids)}")
        sites = []
        for site in plant_out.sites:
            workshops = []
            for ws in site.workshops:
                areas = [a for a in ws.areas if a.id == area]
                if areas:
                    workshops.append(ws.model_copy(update={"areas": areas}))
            if workshops:
                sites.append(site.model_copy(update={"workshops": workshops}))
        return plant_out.model_copy(update={"sites": sites})

    @app.get(f"{_API}/sensors/{{sensor_id}}", tags=["sensors"], responses=_ERRORS)
    async def get_sensor(sensor_id: str) -> SensorDetailOut:
        """One sensor with its effective limits and its place in the plant."""
        return sensor_out[services.table.ids[sensor_row(sensor_id)]]

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
    ) -> ReadingsOut:
        """A sensor's readings in `[start, end)`, oldest first."""
        row = sensor_row(sensor_id)
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
            points = await services.store.query_readings(row, start_ms, end_ms, every_ms, limit)
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
            points=[point_model(p) for p in points],
        )

    @app.get(f"{_API}/alarms", tags=["alarms"])
    async def get_alarms(
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
        """Alarm points, oldest raise first."""
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
                  and (area is None or p.area == area)]
        return [AlarmOut.model_validate(p.to_dict()) for p in points]

    @app.get(
        f"{_API}/alarms/stream",
        tags=["alarms"],
        response_class=EventStreamResponse,
        responses=_STREAM_DOC,
    )
    async def stream_alarms() -> EventStreamResponse:
        """Live alarm events as server-sent events (for `EventSource`)."""
        return EventStreamResponse(
            alarm_stream(
                services.hub,
                services.alarms.manager.standing,
                keepalive_s=services.keepalive_s,
                clock_ms=services.clock_ms,
            )
        )

    @app.get(
        "/healthz",
        tags=["operations"],
        response_model=None,
        responses={
            200: {"description": "Healthy: `status` is `ok`."},
            503: {"description": "Degraded or failing; the body says what."},
        },
    )
    async def healthz() -> JSONResponse:
        """The service's health report; HTTP 503 unless `status` is `ok`."""
        try:
            report = services.health()
        except Exception as exc:
            report = {"status": "error", "error": f"health check failed: {exc!r}"}
        code = 200 if report.get("status") == "ok" else 503
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
                                    services.commit, services.clock_ms))

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
