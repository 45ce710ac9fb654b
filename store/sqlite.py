"""An embedded SQLite reading store, for ``plantwatch demo`` and small sites.

Same contract as the InfluxDB store: a write of the same sensor and timestamp
overwrites; a write is durable when it returns (WAL with ``synchronous=FULL``).
SQLite calls run in a worker thread so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from store.base import SeriesPoint, rows_outside_table
from store.errors import StoreRejected, StoreUnavailable

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (sensor, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarm_events (
    id INTEGER PRIMARY KEY,
    alarm_id TEXT NOT NULL,
    sensor TEXT NOT NULL,
    limit_name TEXT NOT NULL,
    action TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL,
    setpoint REAL NOT NULL,
    priority TEXT NOT NULL,
    site TEXT NOT NULL,
    area TEXT NOT NULL,
    post TEXT NOT NULL
);
"""


def _allow_events_without_value(db: sqlite3.Connection) -> None:
    """Files written before 2026-12-06 declared ``alarm_events.value`` NOT NULL, so a
    no-data fault (no reading: value NaN, stored as NULL) could never be written and
    held back every alarm event after it. Rebuild such a table without the constraint."""
    columns = db.execute("PRAGMA table_info(alarm_events)").fetchall()
    if not any(name == "value" and notnull for _, name, _, notnull, _, _ in columns):
        return
    db.executescript("""
        BEGIN;
        ALTER TABLE alarm_events RENAME TO alarm_events_old;
        CREATE TABLE alarm_events (
            id INTEGER PRIMARY KEY, alarm_id TEXT NOT NULL, sensor TEXT NOT NULL,
            limit_name TEXT NOT NULL, action TEXT NOT NULL, ts INTEGER NOT NULL, value REAL,
            setpoint REAL NOT NULL, priority TEXT NOT NULL, site TEXT NOT NULL,
            area TEXT NOT NULL, post TEXT NOT NULL);
        INSERT INTO alarm_events SELECT * FROM alarm_events_old;
        DROP TABLE alarm_events_old;
        COMMIT;
    """)


class SQLiteStore:
    """Readings and alarm events in one SQLite file at ``path``."""

    def __init__(self, path: str | Path, table: SensorTable, retention_days: float = 30.0) -> None:
        self.path = Path(path)
        self.table = table
        self.retention_ms = int(retention_days * 86_400_000)
        self._ids = np.array(table.ids, dtype=object)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(f"SQLite store {self.path} is not open", store="sqlite")
        return self._db

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        _allow_events_without_value(db)
        self._db = db

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._open)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}",
                                   store="sqlite") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with self._lock:
                db.close()

    def _write(self, batch: ReadingBatch) -> None:
        rows_outside_table(batch, len(self._ids), "sqlite")
        rows = zip(
            self._ids[batch.sensor].tolist(),
            batch.ts.tolist(),
            batch.value.tolist(),
            batch.quality.tolist(),
            strict=True,
        )
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO readings (sensor, ts, value, quality) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def write(self, batch: ReadingBatch) -> None:
        if len(batch) == 0:
            return
        try:
            await asyncio.to_thread(self._write, batch)
        except sqlite3.IntegrityError as exc:
            raise StoreRejected(f"SQLite refused the batch: {exc}", store="sqlite") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}", store="sqlite") from exc

    def _write_events(self, events: list[AlarmEvent]) -> None:
        with self._lock:
            self._conn().executemany(
                "INSERT INTO alarm_events (alarm_id, sensor, limit_name, action, ts, value, "
                "setpoint, priority, site, area, post) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (e.alarm_id, e.sensor, e.limit, e.action, e.ts,
                     e.value if math.isfinite(e.value) else None, e.setpoint,
                     e.priority, e.site, e.area, e.post)
                    for e in events
                ],
            )

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        if not events:
            return
        try:
            await asyncio.to_thread(self._write_events, events)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}", store="sqlite") from exc

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    async def query_readings(
        self,
        sensor: int,
        start_ms: int,
        end_ms: int,
        every_ms: int | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "asc",
    ) -> list[SeriesPoint]:
        if not 0 <= sensor < len(self._ids):
            raise IndexError(f"sensor row {sensor} is outside the sensor table of "
                             f"{len(self._ids)} rows")
        sid = self.table.ids[sensor]
        direction = "DESC" if order == "desc" else "ASC"
        try:
            if every_ms is None:
                rows = await asyncio.to_thread(
                    self._query,
                    "SELECT ts, value, quality FROM readings WHERE sensor = ? AND ts >= ? "
                    f"AND ts < ? ORDER BY ts {direction} LIMIT ?",
                    (sid, int(start_ms), int(end_ms), int(limit)),
                )
                return [SeriesPoint(int(t), float(v), int(q)) for t, v, q in rows]
            rows = await asyncio.to_thread(
                self._query,
                "SELECT (ts / ?) * ? AS bucket, avg(value), min(value), max(value), count(*) "
                "FROM readings WHERE sensor = ? AND ts >= ? AND ts < ? "
                f"GROUP BY bucket ORDER BY bucket {direction} LIMIT ?",
                (int(every_ms), int(every_ms), sid, int(start_ms), int(end_ms), int(limit)),
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite query failed: {exc}", store="sqlite") from exc
        return [
            SeriesPoint(int(b), float(m), None, float(lo), float(hi), int(n))
            for b, m, lo, hi, n in rows
        ]

    async def count_readings(self, start_ms: int | None = None, end_ms: int | None = None) -> int:
        lo = -(2**63) if start_ms is None else int(start_ms)
        hi = 2**63 - 1 if end_ms is None else int(end_ms)
        rows = await asyncio.to_thread(
            self._query, "SELECT count(*) FROM readings WHERE ts >= ? AND ts < ?", (lo, hi)
        )
        return int(rows[0][0])

    async def ping(self) -> bool:
        return self._db is not None
