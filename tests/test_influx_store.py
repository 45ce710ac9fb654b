"""InfluxStore against a real influxd (the session's ``influxdb`` fixture)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devservers.localservers import InfluxD
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.plant import SensorConfig
from model.sensor_table import SensorTable
from store.errors import StoreRejected, StoreUnavailable
from store.influx import InfluxStore, duration_seconds, quote_ident, quote_string
from tests.conftest import InfluxStoreFactory
from tests.plants import small_plant

pytestmark = pytest.mark.servers

# Not tests.clock.T0: an hour ago, on a whole second, recent enough for the
# 30-day retention policy, and aligned so that GROUP BY time(1000ms) buckets start at T0.
T0 = (int(time.time()) - 3600) * 1000
HOSTILE = [
    "x' OR '1'='1",
    "back\\slash",
    "quote\\'s",
    'double"quote',
    "new\nline",
    '\' ; DROP DATABASE "x" ; --',
    "\\",
    "",
]


@pytest.fixture(scope="module")
def table() -> SensorTable:
    return SensorTable.from_config(small_plant())


def _batch(sensor: list[int], ts: list[int], value: list[float], quality: list[int] | None = None
           ) -> ReadingBatch:  # fmt: skip
    return ReadingBatch.from_columns(sensor, ts, value, quality)


async def test_count_equals_readings_written(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    # More than lines_per_write, so the batch goes as several concurrent requests.
    store = await influx_store(table, lines_per_write=1_000)
    n = 12_345
    rng = np.random.default_rng(7)
    batch = ReadingBatch.from_columns(
        rng.integers(0, len(table), n),
        T0 + np.arange(n),
        rng.normal(20, 5, n),
        rng.integers(0, 4, n),
    )
    await store.write(batch)
    assert await store.count_readings() == n
    assert await store.count_readings(T0, T0 + 100) == 100
    assert await store.count_readings(start_ms=T0 + n - 5) == 5
    assert await store.ping()


async def test_start_creates_a_default_30_day_retention_policy_and_restores_it(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    store = await influx_store(table)
    db = quote_ident(store.database)

    async def policy() -> dict[str, object]:
        rows = await store._rows(f"SHOW RETENTION POLICIES ON {db}")
        (row,) = [r for r in rows if r["name"] == "plantwatch_30d"]
        return row

    assert await policy() == {
        "name": "plantwatch_30d", "duration": "720h0m0s", "shardGroupDuration": "24h0m0s",
        "replicaN": 1, "default": True,
    }  # fmt: skip
    await store._query(f'ALTER RETENTION POLICY "plantwatch_30d" ON {db} DURATION 7d', post=True)
    await store._query(f'ALTER RETENTION POLICY "autogen" ON {db} DEFAULT', post=True)
    assert (await policy())["duration"] == "168h0m0s"
    await store.start()  # a restart puts back what the settings say
    row = await policy()
    assert (row["duration"], row["default"]) == ("720h0m0s", True)


async def test_writing_to_a_stopped_server_is_store_unavailable(
    tmp_path: Path, table: SensorTable
) -> None:
    server = InfluxD.start(tmp_path)
    store = InfluxStore(server.url, "gone", table, timeout_s=2.0)
    try:
        await store.start()
        await store.write(_batch([0], [T0], [1.0]))
        server.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.write(_batch([0], [T0 + 1], [1.0]))
        assert caught.value.status is None
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert "cannot reach InfluxDB" in str(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.count_readings()
        assert not await store.ping()
        await store.write(ReadingBatch.empty())  # no request, so no error
    finally:
        await store.close()
        server.stop()


async def test_a_missing_database_is_unavailable_not_rejected(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    # The readings are fine; an operator must create the database. Keep them.
    store = await influx_store(table, db="never_created", create_database=False)
    with pytest.raises(StoreUnavailable) as caught:
        await store.write(_batch([0], [T0], [1.0]))
    assert caught.value.status == 404
    assert "database not found" in str(caught.value)


async def test_data_influxdb_refuses_is_store_rejected(
    influx_store: InfluxStoreFactory, table: SensorTable, influxdb: InfluxD
) -> None:
    store = await influx_store(table)
    # Readings older than the retention period are refused (HTTP 400).
    with pytest.raises(StoreRejected) as caught:
        await store.write(_batch([0], [T0 - 40 * 86_400_000], [1.0]))
    assert caught.value.status == 400
    assert "beyond retention policy" in str(caught.value)
    # Someone else wrote `value` as a string: our float is a field type conflict.
    async with httpx.AsyncClient(base_url=influxdb.url) as client:
        response = await client.post(
            "/write",
            params={"db": store.database, "rp": "plantwatch_30d", "precision": "ms"},
            content=f'oxygen_pct,sensor=other value="high" {T0}'.encode(),
        )
        assert response.status_code == 204
    with pytest.raises(StoreRejected, match="field type conflict") as caught:
        await store.write(_batch([3], [T0 + 1], [20.9]))
    assert caught.value.status == 400
    # An InfluxQL error comes back inside an HTTP 200 answer.
    with pytest.raises(StoreRejected, match="error parsing query"):
        await store._query("SELEKT 1")


async def test_gzip_bodies_are_accepted(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    store = await influx_store(table, gzip=True)
    await store.write(_batch([0, 1, 2], [T0, T0, T0], [1.0, 2.0, 3.0]))
    assert await store.count_readings() == 3


def _event(action: str, ts: int, value: float) -> AlarmEvent:
    return AlarmEvent(
        alarm_id="LEL-1:hh", sensor="LEL-1", limit="hh", action=action,  # type: ignore[arg-type]
        ts=ts, value=value, setpoint=50.0, priority="highest", site="s1", workshop="tank-farm",
        area="tf-a", team="team-a", post="post-tf", kind="combustible_lel", unit="%LEL",
    )  # fmt: skip


async def test_alarm_events_are_written_and_queryable(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    store = await influx_store(table)
    await store.write_alarm_events([_event("raise", T0, 55.0), _event("clear", T0 + 60_000, 47.0)])
    await store.write_alarm_events([])
    rows = await store.query_alarm_events(T0, T0 + 120_000)
    assert rows == [
        {"time": T0, "action": "raise", "alarm_id": "LEL-1:hh", "area": "tf-a", "limit": "hh",
         "post": "post-tf", "priority": "highest", "sensor": "LEL-1", "setpoint": 50.0,
         "site": "s1", "value": 55.0, "workshop": "tank-farm"},
        {"time": T0 + 60_000, "action": "clear", "alarm_id": "LEL-1:hh", "area": "tf-a",
         "limit": "hh", "post": "post-tf", "priority": "highest", "sensor": "LEL-1",
         "setpoint": 50.0, "site": "s1", "value": 47.0, "workshop": "tank-farm"},
    ]  # fmt: skip
    assert await store.count_readings() == 0  # alarm events are not readings


@pytest.mark.parametrize(
    ("text", "literal", "ident"),
    [
        ("plain", "'plain'", '"plain"'),
        ("x' OR '1'='1", r"'x\' OR \'1\'=\'1'", "\"x' OR '1'='1\""),
        ("a\\b", r"'a\\b'", r'"a\\b"'),
        ("\\'", r"'\\\''", r'"\\' + "'" + '"'),
        ('say "x"', "'say \"x\"'", r'"say \"x\""'),
        ("new\nline", r"'new\nline'", r'"new\nline"'),
        ("", "''", '""'),
    ],
)
def test_influxql_quoting(text: str, literal: str, ident: str) -> None:
    assert quote_string(text) == literal
    assert quote_ident(text) == ident


@pytest.mark.parametrize("text", ["nul\x00", "carriage\rreturn"])
def test_influxql_quoting_refuses_what_influxql_cannot_carry(text: str) -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        quote_string(text)
    with pytest.raises(ValueError, match="cannot carry"):
        quote_ident(text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=20) | st.sampled_from(HOSTILE))
def test_any_quoted_string_parses_as_one_literal(influxdb: InfluxD, text: str) -> None:
    if "\x00" in text or "\r" in text:
        with pytest.raises(ValueError, match="cannot carry"):
            quote_string(text)
        return
    name = quote_ident(text or "x")  # an empty identifier is valid text but names nothing
    q = f"SELECT count(value) FROM {name} WHERE {name} = {quote_string(text)} AND time > 0"
    with httpx.Client(base_url=influxdb.url) as client:
        client.post("/query", data={"q": 'CREATE DATABASE "quoting"'}).raise_for_status()
        response = client.get("/query", params={"db": "quoting", "q": q})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert "error" not in result, (q, result)


async def test_hostile_sensor_ids_and_database_names_stay_literal(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    # Config forbids such ids; build them past validation to test the store's own escaping.
    hostile = ["x' OR '1'='1", "back\\slash'", 'x" OR ""="']
    places = [
        dataclasses.replace(
            table.places[0], index=i, sensor=SensorConfig.model_construct(
                **{**table.places[0].sensor.__dict__, "id": sensor_id}
            ),
        )
        for i, sensor_id in enumerate([*hostile, "LEL-9", "LEL-10"])
    ]  # fmt: skip
    evil = dataclasses.replace(
        table, ids=[p.sensor.id for p in places], places=places,
        index={p.sensor.id: p.index for p in places},
    )  # fmt: skip
    store = await influx_store(evil, db='db"; DROP DATABASE "x')
    await store.write(_batch([0, 1, 2, 3, 3], [T0, T0, T0, T0, T0 + 1], [1.0, 2.0, 3.0, 9.0, 9.5]))
    for row, expected in enumerate([1.0, 2.0, 3.0]):
        assert [p.value for p in await store.query_readings(row, T0, T0 + 10)] == [expected]
        aggregated = await store.query_readings(row, T0, T0 + 10, every_ms=10)
        assert [(p.value, p.count) for p in aggregated] == [(expected, 1)]
    assert await store.count_readings() == 5


def test_duration_seconds() -> None:
    assert duration_seconds("30d") == duration_seconds("720h0m0s") == 30 * 86400
    assert duration_seconds("1w2d") == 9 * 86400
    assert duration_seconds("INF") == duration_seconds("0s") == float("inf")
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("30 days")


@pytest.mark.parametrize(
    "kwargs",
    [{"retention": "30 days"}, {"retention": "30d; DROP"}, {"token": "t", "username": "u"}],
)
def test_bad_settings_are_refused_at_construction(
    table: SensorTable, kwargs: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        InfluxStore("http://127.0.0.1:1", "db", table, **kwargs)  # type: ignore[arg-type]


async def test_hostile_numbers_are_refused(
    influx_store: InfluxStoreFactory, table: SensorTable
) -> None:
    store = await influx_store(table)
    with pytest.raises(TypeError, match="start_ms must be an int"):
        await store.query_readings(0, "0 OR 1=1", T0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="every_ms must be an int"):
        await store.query_readings(0, T0, T0 + 1, every_ms=1.5)  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        await store.query_readings(len(table), T0, T0 + 1)
    assert await store.query_readings(np.int64(0), np.int64(T0), np.int64(T0 + 1)) == []  # type: ignore[arg-type]
