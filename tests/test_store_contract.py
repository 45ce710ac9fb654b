"""The ReadingStore contract (store/base.py), run over SQLiteStore and InfluxStore alike.

Every test runs once per store: ``sqlite`` on a file in the test's tmp_path,
``influxdb`` on a database of the test's own in the session's real influxd
(conftest.py's ``influx_store``; a missing influxd fails, never skips). What is
asserted is what the protocol offers: ``write``, ``write_alarm_events``,
``query_readings`` (raw and aggregated), ``count_readings``, ``ping``, ``start``
and ``close``. The protocol writes alarm events but has no query for them, so
they are read back the way each store keeps them (``Backend.alarm_events``).

When it was written the contract found three gaps, since fixed: SQLite could
not store a no-data event (NaN value into a NOT NULL column; the writer
retried it for ever, holding back every later event), SQLite took row -1 as
the last sensor, and a closed InfluxStore could not be started again.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from store.base import ReadingStore, SeriesPoint
from store.errors import StoreRejected
from store.influx import InfluxStore
from store.sqlite import SQLiteStore
from tests.conftest import InfluxStoreFactory
from tests.plants import small_plant

pytestmark = pytest.mark.servers

# Not tests.clock.T0: an hour ago, on a whole second, so that InfluxDB's 30-day
# retention policy takes the readings and 1000 ms intervals start at T0.
T0 = (int(time.time()) - 3600) * 1000
DAY = 86_400_000
TABLE = SensorTable.from_config(small_plant())  # rows: LEL-1, LEL-2, H2S-1, O2-1, PT-1
LEL_1, LEL_2, H2S_1, O2_1, PT_1 = range(5)
# Floats whose text form is easy to get wrong: shortest repr, subnormal, extremes.
AWKWARD_FLOATS = [
    0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, 1e16, 1e-5, 2.0**53 + 2, -7.25,
]

# An alarm event as every store can give it back:
# (ts, alarm_id, sensor, limit, action, value, setpoint, priority, site, area, post)
EventRow = tuple[int, str, str, str, str, float | None, float | None, str, str, str, str]


@dataclass
class Backend:
    """One store implementation: how to open it over this test's storage, and read
    back its alarm events."""

    name: str
    make: Callable[[], Awaitable[ReadingStore]]
    read_events: Callable[[ReadingStore], Awaitable[list[EventRow]]]
    made: list[ReadingStore] = field(default_factory=list)

    async def open(self) -> ReadingStore:
        """A started store; every one opened in a test holds the same data."""
        store = await self.make()
        self.made.append(store)
        return store

    async def alarm_events(self, store: ReadingStore) -> list[EventRow]:
        """The stored alarm events, by time, then alarm id and action."""
        return sorted(await self.read_events(store), key=lambda e: (e[0], e[1], e[4]))

    async def close_all(self) -> None:
        for store in self.made:
            await store.close()


def _number(value: Any) -> float | None:
    """A stored float, None where the store kept none (NULL, a left-out field, NaN)."""
    if value is None or math.isnan(float(value)):
        return None
    return float(value)


async def _sqlite_events(store: ReadingStore) -> list[EventRow]:
    assert isinstance(store, SQLiteStore)
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        rows = db.execute(
            "SELECT ts, alarm_id, sensor, limit_name, action, value, setpoint, priority, site, "
            "area, post FROM alarm_events"
        ).fetchall()
    return [(t, a, s, lim, act, _number(v), _number(sp), pr, si, ar, po)
            for t, a, s, lim, act, v, sp, pr, si, ar, po in rows]


async def _influx_events(store: ReadingStore) -> list[EventRow]:
    assert isinstance(store, InfluxStore)
    rows = await store.query_alarm_events(0, T0 + DAY)
    # A field no event of the database has is not a column at all: .get, not [].
    return [(r["time"], r["alarm_id"], r["sensor"], r["limit"], r["action"],
             _number(r.get("value")), _number(r.get("setpoint")), r["priority"], r["site"],
             r["area"], r["post"])
            for r in rows]


@pytest.fixture(params=["sqlite", "influxdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "readings.sqlite3"

        async def make_sqlite() -> ReadingStore:
            store = SQLiteStore(path, TABLE)
            await store.start()
            return store

        return Backend("sqlite", make_sqlite, _sqlite_events)
    # Asked for only here, so the sqlite half needs no server.
    influx_store: InfluxStoreFactory = request.getfixturevalue("influx_store")

    async def make_influx() -> ReadingStore:
        return await influx_store(TABLE)  # the same database every time within a test

    return Backend("influxdb", make_influx, _influx_events)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[ReadingStore]:
    """A started, empty store."""
    yield await backend.open()
    await backend.close_all()


def batch(sensor: list[int], ts: list[int], value: list[float],
          quality: list[int] | None = None) -> ReadingBatch:  # fmt: skip
    return ReadingBatch.from_columns(sensor, ts, value, quality)


def raw(points: list[SeriesPoint]) -> list[tuple[int, float | None, int | None]]:
    assert all(p.min is None and p.max is None and p.count is None for p in points)
    return [(p.ts, p.value, p.quality) for p in points]


def event(action: str, ts: int, value: float, limit: str = "hh", setpoint: float = 50.0,
          category: str = "alarm") -> AlarmEvent:  # fmt: skip
    return AlarmEvent(
        alarm_id=f"LEL-1:{limit}", sensor="LEL-1", limit=limit, action=action,  # type: ignore[arg-type]
        ts=ts, value=value, setpoint=setpoint, priority="highest", site="s1",
        workshop="tank-farm", area="tf-a", team="team-a", post="post-tf",
        kind="combustible_lel", unit="%LEL", category=category,
    )  # fmt: skip


# LEL-1 at several times, interleaved with LEL-2 (the same kind, so the same
# InfluxDB measurement) and PT-1; two readings in the second interval of 1000 ms.
SPREAD = batch(
    [LEL_1, LEL_2, LEL_1, LEL_1, PT_1, LEL_1, LEL_1, LEL_2],
    [T0, T0, T0 + 250, T0 + 999, T0 + 500, T0 + 1000, T0 + 2500, T0 + 2500],
    [1.0, 99.0, 3.0, 2.0, 500.0, 10.0, -4.0, 98.0],
    [0, 0, 1, 2, 0, 3, 0, 0],
)
SPREAD_LEL_1 = [
    (T0, 1.0, 0), (T0 + 250, 3.0, 1), (T0 + 999, 2.0, 2), (T0 + 1000, 10.0, 3),
    (T0 + 2500, -4.0, 0),
]  # fmt: skip


async def test_readings_read_back_exactly(store: ReadingStore) -> None:
    n = len(AWKWARD_FLOATS)
    # Written newest first, with other sensors at the same instants: read back oldest
    # first, each sensor its own, every value, millisecond and quality as written.
    await store.write(batch(
        [LEL_1] * n + [LEL_2, O2_1, PT_1],
        [T0 + k for k in reversed(range(n))] + [T0, T0 + 3, T0 + 1],
        [*reversed(AWKWARD_FLOATS), 99.0, 20.9, 500.0],
        [k % 4 for k in reversed(range(n))] + [3, 1, 2],
    ))  # fmt: skip
    assert raw(await store.query_readings(LEL_1, T0, T0 + n)) == [
        (T0 + k, v, k % 4) for k, v in enumerate(AWKWARD_FLOATS)
    ]
    assert raw(await store.query_readings(LEL_2, T0, T0 + n)) == [(T0, 99.0, 3)]
    assert raw(await store.query_readings(O2_1, T0, T0 + n)) == [(T0 + 3, 20.9, 1)]
    assert raw(await store.query_readings(PT_1, T0, T0 + n)) == [(T0 + 1, 500.0, 2)]
    assert await store.query_readings(H2S_1, T0, T0 + n) == []  # never written
    assert await store.count_readings() == n + 3
    assert await store.ping()


async def test_a_time_range_holds_its_start_and_not_its_end(store: ReadingStore) -> None:
    await store.write(SPREAD)
    assert raw(await store.query_readings(LEL_1, T0, T0 + 3000)) == SPREAD_LEL_1
    assert [p.ts for p in await store.query_readings(LEL_1, T0 + 250, T0 + 2500)] == [
        T0 + 250, T0 + 999, T0 + 1000,
    ]  # fmt: skip
    assert [p.ts for p in await store.query_readings(LEL_1, T0 + 2500, T0 + 2501)] == [T0 + 2500]
    assert await store.query_readings(LEL_1, T0 + 250, T0 + 250) == []
    assert await store.query_readings(LEL_1, T0 + 251, T0 + 999) == []
    # count_readings: the same half-open range over every sensor; a bound left out is open.
    assert await store.count_readings() == 8
    assert await store.count_readings(T0, T0 + 1000) == 5
    assert await store.count_readings(T0 + 1000, T0 + 2500) == 1
    assert await store.count_readings(start_ms=T0 + 2500) == 2
    assert await store.count_readings(end_ms=T0) == 0
    assert await store.count_readings(end_ms=T0 + 1) == 2


async def test_limit_keeps_the_oldest(store: ReadingStore) -> None:
    await store.write(SPREAD)
    assert [p.ts for p in await store.query_readings(LEL_1, T0, T0 + 3000, limit=2)] == [
        T0, T0 + 250,
    ]  # fmt: skip
    aggregated = await store.query_readings(LEL_1, T0, T0 + 3000, every_ms=1000, limit=2)
    assert [p.ts for p in aggregated] == [T0, T0 + 1000]


async def test_order_desc_keeps_the_newest_newest_first(store: ReadingStore) -> None:
    await store.write(SPREAD)
    every = [p.ts for p in await store.query_readings(LEL_1, T0, T0 + 3000)]
    newest = await store.query_readings(LEL_1, T0, T0 + 3000, limit=2, order="desc")
    assert [p.ts for p in newest] == every[::-1][:2]
    assert raw(newest) == raw(await store.query_readings(LEL_1, T0, T0 + 3000))[::-1][:2]
    aggregated = await store.query_readings(LEL_1, T0, T0 + 3000, every_ms=1000, limit=2,
                                            order="desc")
    asc = await store.query_readings(LEL_1, T0, T0 + 3000, every_ms=1000)
    assert aggregated == asc[::-1][:2]


async def test_aggregates_are_per_interval_aligned_to_the_epoch(store: ReadingStore) -> None:
    await store.write(SPREAD)
    assert await store.query_readings(LEL_1, T0, T0 + 3000, every_ms=1000) == [
        SeriesPoint(T0, 2.0, None, 1.0, 3.0, 3),
        SeriesPoint(T0 + 1000, 10.0, None, 10.0, 10.0, 1),
        SeriesPoint(T0 + 2000, -4.0, None, -4.0, -4.0, 1),
    ]
    # The first interval starts before start_ms and holds only the readings from it on;
    # empty intervals are left out.
    assert await store.query_readings(LEL_1, T0 + 250, T0 + 2600, every_ms=1000) == [
        SeriesPoint(T0, 2.5, None, 2.0, 3.0, 2),
        SeriesPoint(T0 + 1000, 10.0, None, 10.0, 10.0, 1),
        SeriesPoint(T0 + 2000, -4.0, None, -4.0, -4.0, 1),
    ]
    assert await store.query_readings(LEL_1, T0 + 1001, T0 + 2500, every_ms=1000) == []
    assert await store.query_readings(LEL_2, T0, T0 + 3000, every_ms=500) == [
        SeriesPoint(T0, 99.0, None, 99.0, 99.0, 1),
        SeriesPoint(T0 + 2500, 98.0, None, 98.0, 98.0, 1),
    ]
    assert await store.query_readings(H2S_1, T0, T0 + 3000, every_ms=1000) == []


async def test_writing_the_same_batch_twice_stores_it_once(store: ReadingStore) -> None:
    await store.write(SPREAD)
    await store.write(SPREAD)
    assert await store.count_readings() == 8
    assert raw(await store.query_readings(LEL_1, T0, T0 + 3000)) == SPREAD_LEL_1
    assert (await store.query_readings(LEL_1, T0, T0 + 3000, every_ms=1000))[0].count == 3


async def test_a_rewritten_reading_takes_the_new_value_and_quality(store: ReadingStore) -> None:
    await store.write(batch([LEL_1, LEL_2, O2_1], [T0, T0, T0 + 5], [1.0, 2.0, 20.9]))
    await store.write(batch([LEL_1, LEL_2, O2_1], [T0, T0, T0 + 5], [1.5, 2.0, 20.8], [2, 0, 1]))
    assert await store.count_readings() == 3
    assert raw(await store.query_readings(LEL_1, T0, T0 + 1)) == [(T0, 1.5, 2)]
    assert raw(await store.query_readings(LEL_2, T0, T0 + 1)) == [(T0, 2.0, 0)]
    assert raw(await store.query_readings(O2_1, T0, T0 + 10)) == [(T0 + 5, 20.8, 1)]


async def test_within_one_batch_the_later_of_two_readings_wins(store: ReadingStore) -> None:
    await store.write(batch(
        [LEL_1, LEL_1, LEL_2, LEL_1, LEL_1],
        [T0 + 5, T0, T0, T0 + 5, T0 + 1],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [0, 1, 2, 3, 0],
    ))  # fmt: skip
    assert raw(await store.query_readings(LEL_1, T0, T0 + 10)) == [
        (T0, 2.0, 1), (T0 + 1, 5.0, 0), (T0 + 5, 4.0, 3),
    ]  # fmt: skip
    assert await store.count_readings() == 4


async def test_empty_writes_change_nothing(store: ReadingStore, backend: Backend) -> None:
    await store.write(ReadingBatch.empty())
    await store.write_alarm_events([])
    assert await store.count_readings() == 0
    assert await store.query_readings(LEL_1, 0, T0 + DAY) == []
    assert await backend.alarm_events(store) == []
    await store.write(batch([LEL_1], [T0], [1.0]))
    await store.write(ReadingBatch.empty())
    assert raw(await store.query_readings(LEL_1, 0, T0 + DAY)) == [(T0, 1.0, 0)]


@pytest.mark.parametrize("row", [len(TABLE), -1], ids=["past-the-end", "negative"])
async def test_a_sensor_row_outside_the_table_is_refused(
    store: ReadingStore, backend: Backend, row: int
) -> None:
    await store.write(batch([LEL_1], [T0], [1.0]))
    # Refused (a spool written under a larger plant config, say), so the writer
    # dead-letters the batch rather than retrying it for ever.
    with pytest.raises(StoreRejected):
        await store.write(batch([LEL_1, row], [T0 + 1, T0 + 1], [2.0, 3.0]))
    assert await store.count_readings() == 1  # no reading of the refused batch
    with pytest.raises(IndexError):
        await store.query_readings(row, T0, T0 + 10)


async def test_alarm_events_are_stored_apart_from_readings(
    store: ReadingStore, backend: Backend
) -> None:
    await store.write_alarm_events([event("raise", T0, 55.0), event("clear", T0 + 60_000, 47.0)])
    assert await backend.alarm_events(store) == [
        (T0, "LEL-1:hh", "LEL-1", "hh", "raise", 55.0, 50.0, "highest", "s1", "tf-a", "post-tf"),
        (T0 + 60_000, "LEL-1:hh", "LEL-1", "hh", "clear", 47.0, 50.0, "highest", "s1", "tf-a",
         "post-tf"),
    ]  # fmt: skip
    assert await store.count_readings() == 0
    assert await store.query_readings(LEL_1, T0, T0 + DAY) == []


async def test_a_no_data_fault_event_is_stored_without_a_value(
    store: ReadingStore, backend: Backend
) -> None:
    # A no-data fault has no reading: its value is NaN (detectors/suite.py).
    fault = event("raise", T0, math.nan, limit="nodata", setpoint=120.0, category="fault")
    await store.write_alarm_events([fault])
    assert await backend.alarm_events(store) == [
        (T0, "LEL-1:nodata", "LEL-1", "nodata", "raise", None, 120.0, "highest", "s1", "tf-a",
         "post-tf"),
    ]  # fmt: skip


async def test_a_store_opened_again_over_the_same_storage_has_the_data(
    store: ReadingStore, backend: Backend
) -> None:
    await store.write(SPREAD)
    await store.write_alarm_events([event("raise", T0, 55.0)])
    events = await backend.alarm_events(store)
    await store.close()
    again = await backend.open()  # as a restarted service does: a new store, the same file/db
    assert raw(await again.query_readings(LEL_1, T0, T0 + 3000)) == SPREAD_LEL_1
    assert await again.count_readings() == 8
    assert await backend.alarm_events(again) == events
    await again.write(batch([H2S_1], [T0 + 7], [4.5]))
    assert await again.count_readings() == 9


async def test_close_then_start_again_keeps_the_data(
    store: ReadingStore, backend: Backend
) -> None:
    await store.write(SPREAD)
    await store.close()
    await store.start()
    assert raw(await store.query_readings(LEL_1, T0, T0 + 3000)) == SPREAD_LEL_1
    assert await store.count_readings() == 8
    assert await store.ping()


async def test_an_old_sqlite_file_takes_events_without_a_value(tmp_path: Path) -> None:
    """Files written before no-data events could be stored declared alarm_events.value
    NOT NULL; opening one rebuilds the table without the constraint, keeping its rows."""
    path = tmp_path / "old.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE alarm_events (id INTEGER PRIMARY KEY, alarm_id TEXT NOT NULL,
              sensor TEXT NOT NULL, limit_name TEXT NOT NULL, action TEXT NOT NULL,
              ts INTEGER NOT NULL, value REAL NOT NULL, setpoint REAL NOT NULL,
              priority TEXT NOT NULL, site TEXT NOT NULL, area TEXT NOT NULL,
              post TEXT NOT NULL);
            INSERT INTO alarm_events VALUES (1, 'LEL-1:hh', 'LEL-1', 'hh', 'raise', 1, 55.0,
              50.0, 'highest', 's1', 'tf-a', 'post-tf');
        """)
    store = SQLiteStore(path, TABLE)
    await store.start()
    try:
        await store.write_alarm_events([event("raise", T0, math.nan, limit="nodata",
                                              setpoint=120.0, category="fault")])
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT alarm_id, value FROM alarm_events ORDER BY id").fetchall()
        assert rows == [("LEL-1:hh", 55.0), ("LEL-1:nodata", None)]
    finally:
        await store.close()
