"""What every reading store offers: batched writes and the queries the API needs.

Two implementations: :class:`store.influx.InfluxStore` (InfluxDB over the v1
HTTP API, the production store) and :class:`store.sqlite.SQLiteStore`
(an embedded file, for the no-setup demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from store.errors import StoreRejected

__all__ = ["ReadingStore", "SeriesPoint", "rows_outside_table"]


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One point of a sensor's history.

    Raw points have ``value`` and ``quality``; aggregated points (a query with
    ``every_ms``) have ``value`` = mean and ``min``/``max``/``count`` over the
    interval starting at ``ts``.
    """

    ts: int
    value: float | None
    quality: int | None = None
    min: float | None = None
    max: float | None = None
    count: int | None = None


class ReadingStore(Protocol):
    """A time-series store for readings and alarm events.

    ``write`` raises :class:`store.errors.StoreUnavailable` when the store
    cannot take the batch right now (the writer then retries or spools) and
    :class:`store.errors.StoreRejected` when it never will (bad data).
    Writing the same sensor and timestamp twice overwrites: duplicates after a
    crash are harmless.
    """

    async def start(self) -> None:
        """Connect; create the database/tables and retention policy if missing."""

    async def close(self) -> None: ...

    async def write(self, batch: ReadingBatch) -> None: ...

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None: ...

    async def query_readings(
        self,
        sensor: int,
        start_ms: int,
        end_ms: int,
        every_ms: int | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "asc",
    ) -> list[SeriesPoint]:
        """Readings of the sensor at row ``sensor`` in ``[start_ms, end_ms)``: the
        ``limit`` oldest, oldest first (``order="asc"``), or the ``limit`` newest,
        newest first (``"desc"``)."""
        ...

    async def count_readings(self, start_ms: int | None = None, end_ms: int | None = None) -> int:
        """How many readings are stored (all sensors), for checks and tests."""
        ...

    async def ping(self) -> bool: ...


def rows_outside_table(batch: ReadingBatch, rows: int, store: str) -> None:
    """Refuse a batch naming sensor rows the table does not have (a spool written
    under another plant config, say): :class:`StoreRejected`, so the writer
    dead-letters it instead of retrying for ever or stopping."""
    if len(batch) and (int(batch.sensor.min()) < 0 or int(batch.sensor.max()) >= rows):
        raise StoreRejected(
            f"sensor rows {int(batch.sensor.min())}..{int(batch.sensor.max())} are outside "
            f"the sensor table of {rows} rows; the batch was not stored", store)
