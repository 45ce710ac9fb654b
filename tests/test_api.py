"""The HTTP API, through httpx.ASGITransport, a raw ASGI driver and a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable, MutableMapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import ClientDisconnect

from alarms.catalogue import AlarmCatalogue
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from alarms.records import ConditionRecord, action_record
from alarms.risk import DEFAULT_RISK_RULES
from alarms.system import AlarmSystem, Outcome
from api import ApiServices, EventHub, create_app
from api.auth import TokenStore
from api.sse import KEEPALIVE, alarm_stream, format_event
from api.timeparse import MAX_EPOCH_MS, TimeParamError, parse_duration_ms, parse_time_ms
from model.alarm_events import AlarmAction, AlarmEvent, alarm_id
from model.batch import ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable
from notify.base import Notifications
from notify.channels import SseChannel
from store.base import ReadingStore, SeriesPoint
from store.errors import StoreUnavailable

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
HOUR = 3_600_000

PLANT: dict[str, Any] = {
    "enterprise": {"id": "acme", "name": "Acme Chemicals"},
    "sites": [
        {
            "id": "north",
            "name": "North site",
            "workshops": [
                {
                    "id": "ws1",
                    "name": "Synthesis",
                    "teams": [
                        {
                            "id": "shift-a",
                            "name": "Shift A",
                            "posts": [
                                {"id": "p-reactor", "name": "Reactor operator"},
                                {"id": "p-tank", "name": "Tank farm operator"},
                            ],
                        }
                    ],
                    "areas": [
                        {
                            "id": "reactor",
                            "name": "Reactor hall",
                            "post": "p-reactor",
                            "risk": "red",
                            "gateway": "gw-r1",
                            "sensors": [
                                {
                                    "id": "TF-LEL-001",
                                    "kind": "combustible_lel",
                                    "range": [0, 100],
                                    "priority": "high",
                                    "description": "reactor R-101 flange",
                                },
                                {
                                    "id": "TF-H2S-001",
                                    "kind": "toxic_ppm",
                                    "gas": "H2S",
                                    "range": [0, 100],
                                },
                            ],
                        },
                        {
                            "id": "tankfarm",
                            "post": "p-tank",
                            "risk": "yellow",
                            "sensors": [
                                {
                                    "id": "TK-P-001",
                                    "kind": "pressure_kpa",
                                    "range": [0, 1000],
                                    "limits": {"h": 800, "hh": 900},
                                    "deadband": 5,
                                }
                            ],
                        },
                    ],
                }
            ],
        }
    ],
}


class FakeStore:
    """In-memory ReadingStore seam: records every query (and its order apart), returns
    canned points. It takes ``order`` as the stores will (see api.app._query_readings)."""

    def __init__(self) -> None:
        self.queries: list[tuple[int, int, int, int | None, int]] = []
        self.orders: list[str] = []
        self.points: list[SeriesPoint] = []
        self.error: Exception | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, batch: ReadingBatch) -> None:
        pass

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        pass

    async def query_readings(
        self,
        sensor: int,
        start_ms: int,
        end_ms: int,
        every_ms: int | None = None,
        limit: int = 10_000,
        order: str = "asc",
    ) -> list[SeriesPoint]:
        self.queries.append((sensor, start_ms, end_ms, every_ms, limit))
        self.orders.append(order)
        if self.error is not None:
            raise self.error
        return self.points

    async def count_readings(self, start_ms: int | None = None, end_ms: int | None = None) -> int:
        return 0

    async def ping(self) -> bool:
        return True


def make_event(
    table: SensorTable, sensor: str, limit: str, action: AlarmAction, ts: int, value: float
) -> AlarmEvent:
    place = table.places[table.index[sensor]]
    return AlarmEvent(
        alarm_id=alarm_id(sensor, limit),
        sensor=sensor,
        limit=limit,
        action=action,
        ts=ts,
        value=value,
        setpoint=float(table.limit(limit)[place.index]),
        priority=place.sensor.priority,
        site=place.site,
        workshop=place.workshop,
        area=place.area,
        team=place.team,
        post=place.post,
        kind=place.sensor.kind,
        unit=place.sensor.effective_unit(),
    )


@pytest.fixture
def api_plant() -> PlantConfig:
    """The API tests' own plant (``PLANT`` above), not the shipped config/plant.yaml."""
    return parse_plant(PLANT)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def health_report() -> dict[str, Any]:
    return {"status": "ok", "store": "up", "mqtt": "up"}


@pytest.fixture
def services(api_plant: PlantConfig, store: FakeStore, health_report: dict[str, Any],
             tmp_path: Path, request: pytest.FixtureRequest) -> ApiServices:
    """The API's services; parametrize indirectly with True for a server whose reads
    need a token (``api.require_token_for_reads``)."""
    registry = CollectorRegistry()
    reading_store: ReadingStore = store
    alarms = AlarmSystem(
        AlarmManager(AlarmCatalogue(api_plant)), AlarmJournal(tmp_path / "alarms.jsonl"),
        inherent_risk={area.id: area.risk for _, area in api_plant.areas()},
        risk_rules=DEFAULT_RISK_RULES)
    hub = EventHub(queue_size=32, registry=registry)
    announce = Notifications([SseChannel(hub)])

    def commit(records: list[dict[str, Any]]) -> Outcome:
        outcome = alarms.commit(records, NOW)
        announce(outcome)
        return outcome

    return ApiServices(
        plant=api_plant,
        table=SensorTable.from_config(api_plant),
        store=reading_store,
        alarms=alarms,
        tokens=TokenStore(tmp_path / "tokens.json"),
        commit=commit,
        hub=hub,
        registry=registry,
        health=lambda: health_report,
        clock_ms=lambda: NOW,
        keepalive_s=0.2,
        require_token_for_reads=getattr(request, "param", False),
    )


@pytest.fixture
def app(services: ApiServices) -> FastAPI:
    return create_app(services)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plantwatch.test") as c:
        yield c


# ---- sensors ----------------------------------------------------------------


async def test_sensor_hierarchy(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/sensors")
    assert response.status_code == 200
    body = response.json()
    assert body["enterprise"] == {"id": "acme", "name": "Acme Chemicals"}
    (site,) = body["sites"]
    assert site["id"] == "north"
    (ws,) = site["workshops"]
    assert ws["teams"] == [
        {
            "id": "shift-a",
            "name": "Shift A",
            "posts": [
                {"id": "p-reactor", "name": "Reactor operator"},
                {"id": "p-tank", "name": "Tank farm operator"},
            ],
        }
    ]
    reactor, tankfarm = ws["areas"]
    assert {k: reactor[k] for k in ("id", "name", "post", "team", "risk", "gateway")} == {
        "id": "reactor",
        "name": "Reactor hall",
        "post": "p-reactor",
        "team": "shift-a",
        "risk": "red",
        "gateway": "gw-r1",
    }
    assert tankfarm["gateway"] == "gw-tankfarm"  # the same default the sensor table uses
    lel, h2s = reactor["sensors"]
    assert lel == {
        "id": "TF-LEL-001",
        "kind": "combustible_lel",
        "gas": None,
        "unit": "%LEL",
        "range": [0.0, 100.0],
        "limits": {"ll": None, "l": None, "h": 25.0, "hh": 50.0},  # GB/T 50493 preset
        "deadband": 1.0,
        "on_delay_s": 0.0,
        "off_delay_s": 0.0,
        "priority": "high",
        "trend_horizon_s": 300.0,
        "description": "reactor R-101 flange",
    }
    assert h2s["limits"] == {"ll": None, "l": None, "h": 7.1, "hh": 14.1}
    (pressure,) = tankfarm["sensors"]
    assert pressure["limits"]["hh"] == 900.0
    assert pressure["deadband"] == 5.0


async def test_sensor_hierarchy_filtered_by_area(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/sensors", params={"area": "tankfarm"})).json()
    areas = [a for s in body["sites"] for w in s["workshops"] for a in w["areas"]]
    assert [a["id"] for a in areas] == ["tankfarm"]
    assert [s["id"] for s in areas[0]["sensors"]] == ["TK-P-001"]

    response = await client.get("/api/v1/sensors", params={"area": "nowhere"})
    assert response.status_code == 404
    assert "'nowhere'" in response.json()["detail"]
    assert "reactor" in response.json()["detail"]


async def test_one_sensor_and_unknown_sensor(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/sensors/TF-LEL-001")).json()
    assert body["id"] == "TF-LEL-001"
    assert (body["site"], body["workshop"], body["area"]) == ("north", "ws1", "reactor")
    assert (body["team"], body["post"], body["gateway"], body["risk"]) == (
        "shift-a",
        "p-reactor",
        "gw-r1",
        "red",
    )

    response = await client.get("/api/v1/sensors/NO-SUCH-1")
    assert response.status_code == 404
    assert "'NO-SUCH-1'" in response.json()["detail"]


# ---- readings ---------------------------------------------------------------


async def test_readings_default_to_the_last_hour(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    store.points = [SeriesPoint(ts=NOW - 1000, value=3.5, quality=0)]
    response = await client.get("/api/v1/sensors/TF-H2S-001/readings")
    assert response.status_code == 200
    assert store.queries == [(1, NOW - HOUR, NOW, None, 10_000)]
    assert store.orders == ["desc"]
    assert response.json() == {
        "sensor": "TF-H2S-001",
        "unit": "ppm",
        "start": NOW - HOUR,
        "end": NOW,
        "every_ms": None,
        "limit": 10_000,
        "order": "desc",
        "points": [
            {"ts": NOW - 1000, "value": 3.5, "quality": 0, "min": None, "max": None, "count": None}
        ],
    }


@pytest.mark.parametrize(
    ("params", "expected_start", "expected_end"),
    [
        ({"start": "2024-05-01T09:00:00Z"}, NOW - HOUR, NOW),
        ({"start": "2024-05-01T09:00:00.250Z"}, NOW - HOUR + 250, NOW),
        ({"start": "2024-05-01T17:00:00+08:00"}, NOW - HOUR, NOW),
        ({"start": str(NOW - 2 * HOUR), "end": str(NOW - HOUR)}, NOW - 2 * HOUR, NOW - HOUR),
        ({"start": "-15m"}, NOW - 15 * 60_000, NOW),
        ({"start": "now-2h", "end": "now"}, NOW - 2 * HOUR, NOW),
        ({"start": "-1d", "end": "-12h"}, NOW - 24 * HOUR, NOW - 12 * HOUR),
        ({"end": "-30s"}, NOW - 30_000 - HOUR, NOW - 30_000),
        ({"start": "-1500ms"}, NOW - 1500, NOW),
    ],
)
async def test_readings_time_forms(
    client: httpx.AsyncClient,
    store: FakeStore,
    params: dict[str, str],
    expected_start: int,
    expected_end: int,
) -> None:
    response = await client.get("/api/v1/sensors/TF-LEL-001/readings", params=params)
    assert response.status_code == 200, response.text
    ((row, start, end, every, limit),) = store.queries
    assert (row, start, end, every, limit) == (0, expected_start, expected_end, None, 10_000)
    assert all(type(v) is int for v in (row, start, end, limit))
    assert (response.json()["start"], response.json()["end"]) == (expected_start, expected_end)


@pytest.mark.parametrize(
    ("every", "every_ms"),
    [
        ("1s", 1000),
        ("1500ms", 1500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", HOUR),
        ("1d", 24 * HOUR),
    ],
)
async def test_readings_every(
    client: httpx.AsyncClient, store: FakeStore, every: str, every_ms: int
) -> None:
    store.points = [SeriesPoint(ts=NOW - HOUR, value=2.0, min=1.0, max=3.0, count=60)]
    response = await client.get(
        "/api/v1/sensors/TK-P-001/readings", params={"every": every, "limit": "500"}
    )
    assert response.status_code == 200, response.text
    assert store.queries == [(2, NOW - HOUR, NOW, every_ms, 500)]
    body = response.json()
    assert body["every_ms"] == every_ms
    assert body["points"][0] == {
        "ts": NOW - HOUR,
        "value": 2.0,
        "quality": None,
        "min": 1.0,
        "max": 3.0,
        "count": 60,
    }


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("start", "' OR 1=1"),
        ("start", "'; DROP MEASUREMENT combustible_lel; --"),
        ("start", "yesterday"),
        ("start", "2024-05-01T10:00:00"),  # no zone: refused, never guessed
        ("start", "2024-13-01T00:00:00Z"),
        ("start", "1e12"),
        ("start", "-1x"),
        ("start", "-1h OR 1=1"),
        ("start", "99999999999999999999"),
        ("start", ""),
        ("end", "now()"),
        ("end", "2024-05-01T10:00:00Z\n"),
        ("every", "1m;DROP"),
        ("every", "1m; DROP DATABASE plantwatch"),
        ("every", "500ms"),  # below the 1 s minimum
        ("every", "0s"),
        ("every", "5 m"),
        ("every", "1w"),
        ("every", "-1m"),
        ("every", "1.5m"),
        ("every", ""),
    ],
)
async def test_readings_malformed_parameters_are_422_naming_them(
    client: httpx.AsyncClient, store: FakeStore, param: str, value: str
) -> None:
    response = await client.get("/api/v1/sensors/TF-LEL-001/readings", params={param: value})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", param]
    assert error["input"] == value
    assert error["msg"].startswith(f"{param}: {value!r}"[:60])
    assert store.queries == []  # nothing malformed ever reaches the store


async def test_readings_report_every_bad_parameter_at_once(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    response = await client.get(
        "/api/v1/sensors/TF-LEL-001/readings",
        params={"start": "' OR 1=1", "end": "later", "every": "1m;DROP"},
    )
    assert response.status_code == 422
    assert sorted(e["loc"][1] for e in response.json()["detail"]) == ["end", "every", "start"]
    assert store.queries == []


async def test_readings_start_must_precede_end(client: httpx.AsyncClient, store: FakeStore) -> None:
    response = await client.get(
        "/api/v1/sensors/TF-LEL-001/readings", params={"start": "-1h", "end": "-2h"}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "start"]
    assert "'-1h'" in error["msg"] and "'-2h'" in error["msg"]
    assert store.queries == []


@pytest.mark.parametrize("limit", ["0", "100001", "-5", "ten", "1;DROP"])
async def test_readings_limit_bounds(
    client: httpx.AsyncClient, store: FakeStore, limit: str
) -> None:
    response = await client.get("/api/v1/sensors/TF-LEL-001/readings", params={"limit": limit})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "limit"]
    assert error["input"] == limit
    assert store.queries == []


async def test_readings_limit_extremes_accepted(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    for limit in (1, 100_000):
        response = await client.get(
            "/api/v1/sensors/TF-LEL-001/readings", params={"limit": str(limit)}
        )
        assert response.status_code == 200
    assert [q[4] for q in store.queries] == [1, 100_000]


async def test_readings_unknown_sensor_is_404(client: httpx.AsyncClient, store: FakeStore) -> None:
    for sensor in ("NO-SUCH-1", 'x";DROP MEASUREMENT x', "TF-LEL-001 OR 1=1"):
        response = await client.get(f"/api/v1/sensors/{sensor}/readings")
        assert response.status_code == 404
        assert repr(sensor) in response.json()["detail"]
    assert store.queries == []


async def test_readings_store_error_is_503(client: httpx.AsyncClient, store: FakeStore) -> None:
    store.error = StoreUnavailable("connection refused", store="influx", status=None)
    response = await client.get("/api/v1/sensors/TF-LEL-001/readings")
    assert response.status_code == 503
    assert response.json()["detail"] == "reading store unavailable (influx): connection refused"


def test_time_parsing_units() -> None:
    assert parse_time_ms("now", now_ms=NOW, param="end") == NOW
    assert parse_time_ms("0", now_ms=NOW, param="start") == 0
    assert parse_time_ms("2024-05-01T10:00:00+00:00", now_ms=0, param="start") == NOW
    assert parse_time_ms("2024-05-01 18:00:00+08:00", now_ms=0, param="start") == NOW
    # An unencoded "+" in a query string arrives as a space.
    assert parse_time_ms("2024-05-01T18:00:00 08:00", now_ms=0, param="start") == NOW
    with pytest.raises(TimeParamError) as info:
        parse_time_ms("-2d", now_ms=HOUR, param="start")
    assert info.value.param == "start"
    assert "before 1970" in str(info.value)
    with pytest.raises(TimeParamError, match="has no time zone"):
        parse_time_ms("2024-05-01", now_ms=NOW, param="start")
    assert parse_duration_ms("250ms") == 250
    with pytest.raises(TimeParamError, match="minimum"):
        parse_duration_ms("250ms", min_ms=1000)
    long_value = "x" * 500
    with pytest.raises(TimeParamError) as info:
        parse_time_ms(long_value, now_ms=NOW, param="start")
    assert len(str(info.value)) < 300  # a hostile value is not echoed in full


@given(st.integers(0, MAX_EPOCH_MS))
def test_epoch_ms_round_trips(ms: int) -> None:
    assert parse_time_ms(str(ms), now_ms=NOW, param="start") == ms


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(-14 * 60, 14 * 60),
)
def test_iso_times_with_any_offset_parse_to_the_same_instant(
    moment: datetime, offset_min: int
) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    assert parse_time_ms(local.isoformat(), now_ms=NOW, param="start") == expected


@given(st.text(max_size=40))
def test_any_text_parses_to_an_int_or_raises_time_param_error(text: str) -> None:
    try:
        ms = parse_time_ms(text, now_ms=NOW, param="start")
    except TimeParamError as exc:
        assert exc.param == "start"
        assert exc.value == text
    else:
        assert type(ms) is int
        assert 0 <= ms <= MAX_EPOCH_MS


# ---- alarms -------------------------------------------------------------------


def feed_alarms(services: ApiServices) -> None:
    t = services.table
    for event in (
        make_event(t, "TF-LEL-001", "h", "raise", NOW - 60_000, 27.0),
        make_event(t, "TF-LEL-001", "hh", "raise", NOW - 30_000, 55.0),
        make_event(t, "TK-P-001", "h", "raise", NOW - 20_000, 820.0),
        make_event(t, "TK-P-001", "h", "clear", NOW - 10_000, 780.0),
    ):
        services.alarms.manager.apply(ConditionRecord(event))


async def test_alarms_active_and_all(client: httpx.AsyncClient, services: ApiServices) -> None:
    feed_alarms(services)
    # Returned to normal but unacknowledged still stands on the operator's list.
    active = (await client.get("/api/v1/alarms")).json()
    assert [(a["alarm_id"], a["state"]) for a in active] == [
        ("TF-LEL-001:h", "unack"), ("TF-LEL-001:hh", "unack"), ("TK-P-001:h", "rtn_unack")]
    point = services.alarms.manager.get("TF-LEL-001:hh")
    assert point is not None and active[1] == point.to_dict()
    assert (await client.get("/api/v1/alarms", params={"state": "active"})).json() == active
    assert active[2]["cleared_ts"] == NOW - 10_000 and active[2]["active"] is False

    services.alarms.manager.apply(
        action_record("ack", "TK-P-001:h", by="op", ts=NOW))
    active = (await client.get("/api/v1/alarms")).json()
    assert [a["alarm_id"] for a in active] == ["TF-LEL-001:h", "TF-LEL-001:hh"]
    everything = (await client.get("/api/v1/alarms", params={"state": "all"})).json()
    assert [(a["alarm_id"], a["state"]) for a in everything] == [
        ("TF-LEL-001:h", "unack"),
        ("TF-LEL-001:hh", "unack"),
        ("TK-P-001:h", "normal"),
    ]

    assert (await client.get("/api/v1/alarms", params={"state": "shelved"})).json() == []
    response = await client.get("/api/v1/alarms", params={"state": "silenced"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "state"]


# ---- SSE ------------------------------------------------------------------------


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    """Messages of an event-stream chunk: (event, data) or ("comment", text)."""
    out: list[tuple[str, Any]] = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        event, data = "message", None
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        if data is not None:
            out.append((event, data))
    return out


def test_format_event_is_one_json_line() -> None:
    raw = format_event("alarm", {"sensor": "TF-LEL-001", "text": "two\nlines", "v": float("nan")})
    assert raw == b'event: alarm\ndata: {"sensor":"TF-LEL-001","text":"two\\nlines","v":null}\n\n'
    with pytest.raises(ValueError, match="single line"):
        format_event("bad\nname", {})


async def test_alarm_stream_generator(services: ApiServices) -> None:
    feed_alarms(services)
    hub = services.hub
    stream = alarm_stream(
        hub, services.alarms.manager.standing, keepalive_s=0.05, clock_ms=lambda: NOW)
    first = await anext(stream)
    assert first.startswith(b"retry: ")
    ((event, data),) = parse_sse(first)
    assert event == "snapshot"
    assert data["ts"] == NOW
    assert [a["alarm_id"] for a in data["alarms"]] == [
        "TF-LEL-001:h", "TF-LEL-001:hh", "TK-P-001:h"]
    assert hub.subscriber_count == 1

    raised = make_event(services.table, "TF-H2S-001", "hh", "raise", NOW, 20.0)
    hub.publish("alarm", raised.to_dict())
    assert parse_sse(await anext(stream)) == [("alarm", raised.to_dict())]
    assert await asyncio.wait_for(anext(stream), 5) == KEEPALIVE

    await stream.aclose()  # what a disconnect does to the generator
    assert hub.subscriber_count == 0


async def test_alarm_stream_ends_on_overflow_and_on_close(services: ApiServices) -> None:
    hub = EventHub(queue_size=2)
    stream = alarm_stream(hub, services.alarms.manager.standing, keepalive_s=5)
    await anext(stream)
    for i in range(3):
        hub.publish("alarm", {"n": i})
    assert parse_sse(await anext(stream))[0][0] == "overflow"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)

    hub2 = EventHub()
    stream2 = alarm_stream(hub2, services.alarms.manager.standing, keepalive_s=5)
    await anext(stream2)
    hub2.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream2), 5)


class AsgiStream:
    """Drive the app's ASGI callable by hand to read a streaming response live.

    httpx.ASGITransport collects the whole body before returning, which never
    happens for an endless event stream.
    """

    def __init__(self, app: FastAPI, path: str, spec_version: str) -> None:
        self.messages: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()
        self._requested = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"plantwatch.test"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 50000),
            "server": ("plantwatch.test", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if self.gone.is_set():
            raise OSError("client went away")  # what an ASGI 2.4 server does
        await self.messages.put(message)

    async def next(self) -> MutableMapping[str, Any]:
        return await asyncio.wait_for(self.messages.get(), 5)


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_stream_endpoint_live_and_cleans_up_on_disconnect(
    app: FastAPI, services: ApiServices, spec_version: str
) -> None:
    feed_alarms(services)
    conn = AsgiStream(app, "/api/v1/alarms/stream", spec_version)
    start = await conn.next()
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache"
    ((event, data),) = parse_sse((await conn.next())["body"])
    assert event == "snapshot"
    assert len(data["alarms"]) == 3

    raised = make_event(services.table, "TK-P-001", "hh", "raise", NOW, 950.0)
    services.alarms.manager.apply(ConditionRecord(raised))
    services.hub.publish("alarm", raised.to_dict())
    assert parse_sse((await conn.next())["body"]) == [("alarm", raised.to_dict())]
    assert parse_sse((await conn.next())["body"]) == [("comment", "keepalive")]
    assert services.hub.subscriber_count == 1

    conn.gone.set()
    if spec_version == "2.3":
        await asyncio.wait_for(conn.task, 5)  # the server's disconnect cancels the stream
    else:
        # ASGI 2.4: the next write fails (at the latest on the next keep-alive).
        with pytest.raises(ClientDisconnect):
            await asyncio.wait_for(conn.task, 5)
    assert services.hub.subscriber_count == 0


async def _free_port_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def live_server(app: FastAPI, services: ApiServices) -> AsyncIterator[str]:
    """The app on a real uvicorn server on a free loopback port."""
    sock = await _free_port_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", ws="none", http="h11", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        services.hub.close()  # ends open streams, so uvicorn can shut down
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def _next_message(lines: AsyncIterator[str]) -> list[str]:
    block: list[str] = []
    async for line in lines:
        if line == "":
            if block:
                return block
            continue
        block.append(line)
    return block


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_stream_over_real_uvicorn(live_server: str, services: ApiServices) -> None:
    feed_alarms(services)
    async with (
        httpx.AsyncClient(base_url=live_server, timeout=5) as client,
        client.stream("GET", "/api/v1/alarms/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        snapshot = await _next_message(lines)
        assert snapshot[0].startswith("retry: ")
        assert snapshot[1] == "event: snapshot"
        assert len(json.loads(snapshot[2].removeprefix("data: "))["alarms"]) == 3

        raised = make_event(services.table, "TF-H2S-001", "h", "raise", NOW, 9.0)
        services.hub.publish("alarm", raised.to_dict())
        event_line, data_line = await _next_message(lines)
        assert event_line == "event: alarm"
        assert json.loads(data_line.removeprefix("data: ")) == raised.to_dict()
        assert await _next_message(lines) == [": keepalive"]
        assert services.hub.subscriber_count == 1
    # The client hung up: the server notices and the subscription goes away.
    await _wait_for(lambda: services.hub.subscriber_count == 0)

    async with httpx.AsyncClient(base_url=live_server, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200


# ---- health, metrics, dashboard, docs ----------------------------------------------


async def test_healthz(client: httpx.AsyncClient, health_report: dict[str, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == health_report

    # Working, impaired (the store is down, the spool takes the readings): 200, so
    # nothing restarts a service that is doing its job; the body says what is wrong.
    health_report["status"] = "degraded"
    health_report["store"] = "down: connection refused"
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["store"] == "down: connection refused"
    health_report["status"] = "error"
    response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error"


async def test_healthz_when_the_check_itself_fails(services: ApiServices) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    services.health = broken
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert "boom" in response.json()["error"]


async def test_metrics(client: httpx.AsyncClient, services: ApiServices) -> None:
    readings = Counter(
        "plantwatch_readings", "Readings ingested.", ["site"], registry=services.registry
    )
    readings.labels(site="north").inc(42)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'plantwatch_readings_total{site="north"} 42.0' in response.text
    assert "plantwatch_sse_subscribers 0.0" in response.text


async def test_dashboard_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>plantwatch</title>" in response.text
    for asset, kind in (("/static/dashboard.js", "javascript"), ("/static/dashboard.css", "css")):
        response = await client.get(asset)
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    js = (await client.get("/static/dashboard.js")).text
    assert "/alarms/stream" in js and "innerHTML" not in js
    # The CSP allows no inline script or style: the page has none.
    page = (await client.get("/")).text
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert 'setAttribute("style"' not in js
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "")  # no CDN, works offline


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/sensors",
        "/api/v1/sensors/{sensor_id}",
        "/api/v1/sensors/{sensor_id}/readings",
        "/api/v1/alarms",
        "/api/v1/alarms/stream",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path
    readings = paths["/api/v1/sensors/{sensor_id}/readings"]["get"]
    assert {p["name"] for p in readings["parameters"]} == {
        "sensor_id",
        "start",
        "end",
        "every",
        "limit",
        "order",
    }
    assert readings["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ReadingsOut"
    )
    assert "503" in readings["responses"]
    assert (
        "text/event-stream" in paths["/api/v1/alarms/stream"]["get"]["responses"]["200"]["content"]
    )
    assert "AlarmOut" in spec["components"]["schemas"]
    assert "PlantOut" in spec["components"]["schemas"]


async def test_apps_share_nothing(services: ApiServices, api_plant: PlantConfig,
                                  tmp_path: Path) -> None:
    other_store = FakeStore()
    other_alarms = AlarmSystem(AlarmManager(AlarmCatalogue(api_plant)),
                               AlarmJournal(tmp_path / "other.jsonl"))
    other = ApiServices(
        plant=api_plant,
        table=SensorTable.from_config(api_plant),
        store=other_store,
        alarms=other_alarms,
        tokens=TokenStore(tmp_path / "other-tokens.json"),
        commit=lambda records: other_alarms.commit(records, NOW),
        hub=EventHub(),
        registry=CollectorRegistry(),
        health=lambda: {"status": "ok"},
        clock_ms=lambda: NOW + HOUR,
    )
    feed_alarms(services)
    first, second = create_app(services), create_app(other)
    for app, expected in ((first, 3), (second, 0)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert len((await client.get("/api/v1/alarms")).json()) == expected
    create_app(services)  # building again on the same registry registers nothing twice


# ---- the dashboard in a real headless browser ---------------------------------------


class Browser:
    """Just enough of the Chrome DevTools protocol to drive one page."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next_id = 0
        self.errors: list[Any] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
            if message.get("method") == "Runtime.exceptionThrown":
                self.errors.append(message["params"]["exceptionDetails"])
            if message.get("id") == call_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def eval(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if await self.eval(expression):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"still false after {timeout_s} s: {expression}")


def _devtools_port(profile: Any) -> int | None:
    port_file = profile / "DevToolsActivePort"
    if not port_file.exists():
        return None
    words = port_file.read_text().split()
    return int(words[0]) if words else None  # chromium may not have written it yet


@pytest.mark.slow
@pytest.mark.parametrize("services", [False, True], indirect=True,
                         ids=["open-reads", "reads-need-a-token"])
async def test_dashboard_in_headless_chromium(
    live_server: str, services: ApiServices, store: FakeStore, tmp_path: Any
) -> None:
    """The dashboard works in a real browser under its Content-Security-Policy (no
    violation is reported), open or behind a token it asks for."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the dashboard test needs Debian's chromium: `apt-get install chromium` "
                    "(make test installs it)", pytrace=False)
    import websockets
    feed_alarms(services)
    store.points = [
        SeriesPoint(ts=NOW - 900_000 + i * 10_000, value=10.0 + i * 0.5, quality=0)
        for i in range(90)
    ]
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--remote-debugging-port=0",
        f"--user-data-dir={tmp_path}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = None
        for _ in range(200):
            port = _devtools_port(tmp_path)
            if port is not None:
                break
            await asyncio.sleep(0.05)
        assert port is not None, "chromium did not open its DevTools port"
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            browser = Browser(ws)
            await browser.call("Runtime.enable")
            await browser.call("Page.enable")
            # Record every CSP violation the page reports (DevTools' script is exempt).
            await browser.call(
                "Page.addScriptToEvaluateOnNewDocument",
                source="window.cspViolations = [];"
                "document.addEventListener('securitypolicyviolation', (e) => "
                "window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")
            operator_token = services.tokens.create("dash-op", "operator", NOW).get_secret_value()
            await browser.call("Page.navigate", url=f"{live_server}/")
            if services.require_token_for_reads:
                # Reads need a token: the page asks for one, then loads.
                await browser.wait_for("document.getElementById('login')?.hidden === false")
                note = await browser.eval("document.getElementById('login-note').textContent")
                assert "needs a token for reads" in note
                assert await browser.eval("document.querySelectorAll('.area').length") == 0
                await browser.eval(
                    f"document.getElementById('token-input').value = '{operator_token}';"
                    "document.querySelector('#login button[type=submit]').click()")
                await browser.wait_for("document.getElementById('login').hidden")
            await browser.wait_for("document.getElementById('link')?.textContent === 'live'")
            rows = "document.querySelectorAll('#alarm-rows tr').length"
            await browser.wait_for(f"{rows} === 3")  # two unacknowledged, one returned
            assert await browser.eval("document.title") == "plantwatch"
            area = "document.querySelector('[data-area=\"north/ws1/{}\"]').className"
            risk = "document.querySelector('[data-area=\"north/ws1/{}\"]').dataset.risk"
            assert "state-2" in await browser.eval(area.format("reactor"))  # an HH alarm
            assert "state-" not in await browser.eval(area.format("tankfarm"))
            await browser.wait_for(f"{risk.format('tankfarm')} === 'yellow'")  # inherent

            raised = make_event(services.table, "TK-P-001", "hh", "raise", NOW, 930.0)
            services.commit([ConditionRecord(raised)])
            await browser.wait_for(f"{rows} === 4")
            assert "state-2" in await browser.eval(area.format("tankfarm"))
            # The live risk colour rises with the HH alarm (a risk event on the stream).
            await browser.wait_for(f"{risk.format('tankfarm')} === 'orange'")

            cleared = make_event(services.table, "TF-LEL-001", "hh", "clear", NOW, 30.0)
            services.commit([ConditionRecord(cleared)])
            reactor = area.format("reactor")
            await browser.wait_for(f"!{reactor}.includes('state-2')")
            assert "state-1" in await browser.eval(reactor)  # only its H is active
            assert await browser.eval(rows) == 4  # returned, unacknowledged: still listed

            # The operator acknowledges it from the dashboard, with a token.
            await browser.eval(f"sessionStorage.setItem('plantwatch-token', '{operator_token}')")
            await browser.eval(
                "[...document.querySelectorAll('#alarm-rows tr')]"
                ".find((tr) => tr.title.startsWith('TF-LEL-001:hh '))"
                ".querySelector('button.act').click()")
            await browser.wait_for(f"{rows} === 3")
            assert services.alarms.manager.audit[-1]["by"] == "dash-op"
            point = services.alarms.manager.get("TF-LEL-001:hh")
            assert point is not None and point.state == "normal"

            await browser.eval("document.querySelector('[data-sensor=\"TF-LEL-001\"]').click()")
            await browser.wait_for("document.querySelector('#chart svg path.line') !== null")
            assert (0, NOW - 900_000, NOW, None, 5000) in store.queries
            assert browser.errors == []
            assert await browser.eval("window.cspViolations") == []
            # The policy is in force: an inline style attribute is refused and reported.
            await browser.eval("document.body.setAttribute('style', 'color: red')")
            await browser.wait_for("window.cspViolations.length === 1")
            assert (await browser.eval("window.cspViolations"))[0].startswith("style-src")
    finally:
        proc.terminate()
        await proc.wait()


def test_exported_members() -> None:
    import api

    assert sorted(api.__all__) == sorted(
        name
        for name in vars(api)
        if not name.startswith("_")
            and name not in {"app", "hub", "models", "sse", "timeparse", "alarm_routes", "auth",
                             "headers", "scopes"}
    )


async def test_docs_page_works_offline(app: FastAPI) -> None:
    """/docs must not depend on a CDN: every script and stylesheet it loads is ours."""
    import re

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        page = (await client.get("/docs")).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
        assert assets, page[:500]
        for url in assets:
            assert not url.startswith(("http://", "https://", "//")), url
            r = await client.get(url)
            assert r.status_code == 200 and len(r.content) > 1000, url
