"""InfluxStore: the production :class:`~store.base.ReadingStore`, over InfluxDB's v1 HTTP API.

Works with InfluxDB 1.x and with the v1-compatible endpoints of InfluxDB 2.x
and 3.x (pass ``token=`` and ``create_database=False``; there the database
and retention are a bucket made by the operator).

Readings go to ``/write`` as line protocol (:mod:`store.line_protocol`) in
chunks of at most ``lines_per_write`` lines; queries are InfluxQL on
``/query``. Every value put into InfluxQL is either an int we formatted or
a literal escaped by :func:`quote_string` / :func:`quote_ident`.

Errors are translated at this boundary: a connection failure, a timeout, a
5xx or an answer that says the store is not ready for us (401, 403, 404, 408,
429) raise :class:`~store.errors.StoreUnavailable`, so the writer keeps the
readings in its spool; other 4xx (bad data, too large) raise
:class:`~store.errors.StoreRejected`.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import logging
import re
import ssl
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import numpy as np

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from store.base import SeriesPoint, rows_outside_table
from store.errors import StoreRejected, StoreUnavailable
from store.line_protocol import (
    ALARM_EVENTS_MEASUREMENT,
    encode_alarm_events,
    encode_readings,
    series_prefixes,
)

__all__ = ["InfluxStore", "duration_seconds", "quote_ident", "quote_string", "series_chunks"]

log = logging.getLogger(__name__)

STORE_NAME = "influxdb"
# 401/403: credentials or grants are wrong; 404: the database is missing (it
# was dropped, or not created yet). The readings are fine: keep them spooled
# until an operator fixes the store, never throw them away.
_UNAVAILABLE_4XX = frozenset({401, 403, 404, 408, 429})
_DURATION = re.compile(r"^(?:INF|(?:\d+(?:ns|u|µ|ms|s|m|h|d|w))+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|u|µs|µ|ms|s|m|h|d|w)")
_UNIT_S = {
    "ns": 1e-9, "u": 1e-6, "us": 1e-6, "µ": 1e-6, "µs": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
}  # fmt: skip


def _check_quotable(text: str) -> None:
    # InfluxQL's scanner reads NUL as the end of the input and turns every
    # carriage return into a line feed, and has no escape for either.
    if "\x00" in text or "\r" in text:
        raise ValueError(f"{text!r} contains NUL or a carriage return, which InfluxQL cannot carry")


def quote_string(text: str) -> str:
    """An InfluxQL string literal: single-quoted, backslash, quote and line breaks escaped."""
    _check_quotable(text)
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def quote_ident(name: str) -> str:
    """An InfluxQL identifier: double-quoted, backslash, quote and line breaks escaped."""
    _check_quotable(name)
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _int(name: str, value: int) -> int:
    """``value`` as a plain int, so that it can only ever print as digits."""
    # bool is an int in Python, and NumPy integers are not.
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


def duration_seconds(text: str) -> float:
    """Seconds in an InfluxQL duration (``30d``, ``1w2d``) or a Go one (``720h0m0s``); INF → inf."""
    if text in ("INF", "0s", "0"):
        return float("inf")
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30d or 720h0m0s")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def series_chunks(batch: ReadingBatch, lines_per_write: int) -> list[ReadingBatch]:
    """``batch`` grouped by series (sensor, then time) and cut, at series
    boundaries only, into chunks of about ``lines_per_write`` lines.

    Why: InfluxDB's cost per point falls the more points of one series a write
    request carries next to each other (influxd CPU per point nearly halves
    from unsorted 10k-line requests to sorted 50k-line ones: docs/benchmarks.md,
    "Design measurements"). A series is never split over two requests, so each request holds
    all of a flush's points of its series. A chunk may pass ``lines_per_write``
    by one series' points.
    """
    n = len(batch)
    order = np.argsort(batch.sensor, kind="stable")
    sensor = batch.sensor[order]
    # Readings usually arrive in time order per sensor, so the stable sort by
    # sensor alone is enough; the two-key sort only when it is not.
    if n > 1 and not ((np.diff(batch.ts[order]) >= 0) | (np.diff(sensor) != 0)).all():
        order = np.lexsort((batch.ts, batch.sensor))
        sensor = batch.sensor[order]
    cuts = [0]
    for target in range(lines_per_write, n, lines_per_write):
        if target <= cuts[-1]:
            continue
        # just past the last point of the series that line ``target`` belongs to
        cut = int(np.searchsorted(sensor, sensor[target - 1], side="right"))
        if cut < n and cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(n)
    return [
        ReadingBatch(sensor[a:b], batch.ts[order[a:b]], batch.value[order[a:b]],
                     batch.quality[order[a:b]])
        for a, b in itertools.pairwise(cuts)
    ]


class InfluxStore:
    """Readings and alarm events in InfluxDB (v1 HTTP API).

    Parameters
    ----------
    url : base URL, e.g. ``http://127.0.0.1:8086``.
    database : the database (1.x) or the v1 name mapped to a bucket (2.x/3.x).
    table : the sensor table; row ``i`` of a batch's ``sensor`` column is ``table.ids[i]``.
    retention : how long readings are kept (InfluxQL duration, default ``30d``);
        :meth:`start` makes ``plantwatch_<retention>`` the database's default
        policy, and writes and queries name it explicitly.
    username, password : InfluxDB 1.x credentials, sent as HTTP Basic auth
        (1.x accepts it like ``u``/``p``; unlike them it never lands in a URL,
        a log line or an exception message).
    token : for InfluxDB 2.x/3.x, sent as ``Authorization: Token <token>``.
    create_database : create the database and retention policy in :meth:`start`
        (InfluxDB 1.x); with False, write to the server's default policy.
    timeout_s : per-request timeout, also how long to wait for a free connection.
    max_connections : connections kept to the server. InfluxDB 1.6 stalls under
        thousands of concurrent connections, so requests beyond this queue here.
    lines_per_write : about this many lines per ``/write`` request; bigger
        batches are split at series boundaries (:func:`series_chunks`).
    gzip : compress request bodies (helps over a slow link, costs CPU on loopback).
    """

    def __init__(
        self,
        url: str,
        database: str,
        table: SensorTable,
        *,
        retention: str = "30d",
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        create_database: bool = True,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        lines_per_write: int = 50_000,
        gzip: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not database:
            raise ValueError("database name must not be empty")
        if not _DURATION.match(retention):
            raise ValueError(f"retention {retention!r} is not an InfluxQL duration such as 30d")
        if token is not None and username is not None:
            raise ValueError("give either token (InfluxDB 2.x/3.x) or username/password, not both")
        if lines_per_write < 1 or max_connections < 1:
            raise ValueError("lines_per_write and max_connections must be at least 1")
        self.url = url.rstrip("/")
        self.database = database
        self.table = table
        self.retention = retention
        self.retention_policy: str | None = f"plantwatch_{retention}" if create_database else None
        self.create_database = create_database
        self.lines_per_write = lines_per_write
        self.gzip = gzip
        self._prefixes = series_prefixes(table)
        self._kinds = sorted({place.sensor.kind for place in table.places})
        self._connections = asyncio.Semaphore(max_connections)
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        # https:// with the plant's CA / a client certificate (settings influxdb.tls).
        self._verify: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._headers = {"Authorization": f"Token {token}"} if token is not None else {}
        self._auth = httpx.BasicAuth(username, password or "") if username is not None else None
        self._client = self._new_client()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers,
            auth=self._auth,
            verify=self._verify,
            timeout=httpx.Timeout(self._timeout_s),
            limits=httpx.Limits(max_connections=self._max_connections,
                                max_keepalive_connections=self._max_connections),
        )

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Check the server answers; create the database and retention policy if asked.

        A store that was closed may be started again (the ReadingStore contract)."""
        if self._client.is_closed:
            self._client = self._new_client()
        if not self.create_database:
            if not await self.ping():
                raise StoreUnavailable(f"InfluxDB at {self.url} does not answer /ping", STORE_NAME)
            return
        await self._query(f"CREATE DATABASE {quote_ident(self.database)}", post=True)
        await self._ensure_retention_policy()

    async def _ensure_retention_policy(self) -> None:
        assert self.retention_policy is not None
        rp, db = quote_ident(self.retention_policy), quote_ident(self.database)
        rows = await self._rows(f"SHOW RETENTION POLICIES ON {db}", db=None)
        existing = {str(row["name"]): row for row in rows}
        current = existing.get(self.retention_policy)
        if current is None:
            # If two processes race here, the loser's CREATE fails with
            # "retention policy already exists" only when the definitions differ.
            await self._query(
                f"CREATE RETENTION POLICY {rp} ON {db} DURATION {self.retention} "
                "REPLICATION 1 DEFAULT",
                post=True,
                tolerate="already exists",
            )
            return
        same = duration_seconds(str(current["duration"])) == duration_seconds(self.retention)
        if not same or not current.get("default"):
            log.info(
                "retention policy %s on %s: setting duration %s (was %s) and default",
                self.retention_policy,
                self.database,
                self.retention,
                current["duration"],
            )
            await self._query(
                f"ALTER RETENTION POLICY {rp} ON {db} DURATION {self.retention} DEFAULT", post=True
            )

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> bool:
        """True if the server answers ``/ping`` with 204."""
        try:
            response = await self._client.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    # -- writes ------------------------------------------------------------

    async def write(self, batch: ReadingBatch) -> None:
        """Write the readings; raises StoreUnavailable (retry later) or StoreRejected."""
        n = len(batch)
        if n == 0:
            return
        rows_outside_table(batch, len(self._prefixes), STORE_NAME)
        non_finite = n - int(np.count_nonzero(np.isfinite(batch.value)))
        if non_finite:
            # Validation upstream rejects these; one that slips through is left
            # out (line protocol has no NaN), and said so rather than hidden.
            log.warning("leaving out %d non-finite readings of %d", non_finite, n)
        bodies = [encode_readings(chunk, self._prefixes)
                  for chunk in series_chunks(batch, self.lines_per_write)]
        # Chunks go concurrently (bounded by max_connections) and all finish
        # before we decide: if any could not be written now, the whole batch is
        # unavailable and will be written again, which is harmless because
        # rewriting a point overwrites it.
        if len(bodies) == 1:
            await self._write_body(bodies[0])
            return
        results = await asyncio.gather(
            *(self._write_body(body) for body in bodies), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if isinstance(error, StoreUnavailable):
                raise error
        if errors:
            raise errors[0]

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        if events:
            await self._write_body(encode_alarm_events(events))

    async def _write_body(self, body: bytes) -> None:
        if not body:
            return
        params = {"db": self.database, "precision": "ms"}
        if self.retention_policy is not None:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        response = await self._request(
            "POST", "/write", params=params, content=body, headers=headers
        )
        if response.status_code != 204:
            self._raise_for(response, "write")

    # -- queries -----------------------------------------------------------

    def _from(self, measurement: str) -> str:
        if self.retention_policy is None:
            return quote_ident(measurement)
        return f"{quote_ident(self.retention_policy)}.{quote_ident(measurement)}"

    @staticmethod
    def _time_range(start_ms: int | None, end_ms: int | None) -> list[str]:
        out = []
        if start_ms is not None:
            out.append(f"time >= {_int('start_ms', start_ms)}ms")
        if end_ms is not None:
            out.append(f"time < {_int('end_ms', end_ms)}ms")
        return out

    async def query_readings(
        self,
        sensor: int,
        start_ms: int,
        end_ms: int,
        every_ms: int | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "asc",
    ) -> list[SeriesPoint]:
        """Readings of the sensor at row ``sensor`` in ``[start_ms, end_ms)``, oldest first.

        With ``every_ms``, one point per non-empty interval: mean as ``value``
        plus ``min``/``max``/``count``. Intervals are aligned to the epoch (as
        InfluxDB's ``GROUP BY time`` does), so the first may start before
        ``start_ms``; it only holds readings from ``start_ms`` on.
        """
        row = _int("sensor", sensor)
        if not 0 <= row < len(self.table):
            raise IndexError(f"sensor row {row} is not in the sensor table ({len(self.table)})")
        if _int("limit", limit) < 1:
            raise ValueError("limit must be at least 1")
        place = self.table.places[row]
        where = " AND ".join(
            [f'"sensor" = {quote_string(place.sensor.id)}', *self._time_range(start_ms, end_ms)]
        )
        source = self._from(place.sensor.kind)
        direction = "DESC" if order == "desc" else "ASC"
        if every_ms is None:
            rows = await self._rows(
                f'SELECT "value", "quality" FROM {source} WHERE {where} '
                f"ORDER BY time {direction} LIMIT {_int('limit', limit)}"
            )
            return [
                SeriesPoint(
                    ts=int(r["time"]), value=_float(r["value"]), quality=_opt_int(r["quality"])
                )
                for r in rows
            ]
        if _int("every_ms", every_ms) < 1:
            raise ValueError("every_ms must be at least 1")
        rows = await self._rows(
            f'SELECT mean("value"), min("value"), max("value"), count("value") FROM {source} '
            f"WHERE {where} GROUP BY time({_int('every_ms', every_ms)}ms) fill(none) "
            f"ORDER BY time {direction} LIMIT {_int('limit', limit)}"
        )
        return [
            SeriesPoint(
                ts=int(r["time"]),
                value=_float(r["mean"]),
                min=_float(r["min"]),
                max=_float(r["max"]),
                count=_opt_int(r["count"]),
            )
            for r in rows
        ]

    async def count_readings(self, start_ms: int | None = None, end_ms: int | None = None) -> int:
        """Readings stored over every sensor kind of the table (alarm events not counted)."""
        if not self._kinds:
            return 0
        sources = ", ".join(self._from(kind) for kind in self._kinds)
        where = " AND ".join(self._time_range(start_ms, end_ms))
        rows = await self._rows(
            f'SELECT count("value") FROM {sources}' + (f" WHERE {where}" if where else "")
        )
        return sum(int(r["count"]) for r in rows)

    async def query_alarm_events(
        self, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Alarm events in ``[start_ms, end_ms)``, oldest first, as flat dicts (``time`` in ms)."""
        where = " AND ".join(self._time_range(start_ms, end_ms))
        return await self._rows(
            f"SELECT * FROM {self._from(ALARM_EVENTS_MEASUREMENT)} WHERE {where} "
            f"ORDER BY time ASC LIMIT {_int('limit', limit)}"
        )

    async def _rows(self, q: str, db: str | None = "") -> list[dict[str, Any]]:
        """Rows of every series the statement returns, as dicts keyed by column."""
        result = await self._query(q, db=db)
        out: list[dict[str, Any]] = []
        for series in result.get("series", ()):
            columns = series["columns"]
            out.extend(dict(zip(columns, values, strict=True)) for values in series["values"])
        return out

    async def _query(
        self, q: str, *, post: bool = False, db: str | None = "", tolerate: str | None = None
    ) -> dict[str, Any]:
        """Run one InfluxQL statement; returns its result object.

        ``db=""`` means this store's database, None none. InfluxDB reports a
        failed statement with HTTP 200 and an ``error`` in the result, so both
        are checked; an error containing ``tolerate`` is not one.
        """
        params = {"epoch": "ms"}
        database = self.database if db == "" else db
        if database is not None:
            params["db"] = database
        # Statements that change the server must be POSTed (1.x refuses them on GET).
        if post:
            response = await self._request("POST", "/query", params=params, data={"q": q})
        else:
            response = await self._request("GET", "/query", params={**params, "q": q})
        if response.status_code != 200:
            self._raise_for(response, "query")
        try:
            body = response.json()
            result: dict[str, Any] = body["results"][0]
        except (ValueError, KeyError, IndexError) as exc:
            raise StoreUnavailable(
                f"InfluxDB answered a query with something that is not a result: "
                f"{response.text[:200]!r}",
                STORE_NAME,
                response.status_code,
            ) from exc
        error = result.get("error") or body.get("error")
        if error and not (tolerate and tolerate in error):
            raise StoreRejected(f"InfluxDB refused {q!r}: {error}", STORE_NAME, 200)
        return result

    # -- HTTP --------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # Waiting for a connection happens here, not in httpx's pool, whose
        # wait counts against the request timeout: a large batch split into
        # many chunks would otherwise time out while merely queued.
        try:
            async with self._connections:
                return await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(
                f"InfluxDB at {self.url} timed out on {path} ({type(exc).__name__})", STORE_NAME
            ) from exc
        except httpx.TransportError as exc:
            raise StoreUnavailable(
                f"cannot reach InfluxDB at {self.url} ({type(exc).__name__}: {exc})", STORE_NAME
            ) from exc

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        try:
            detail = str(response.json().get("error", response.text))
        except ValueError:
            detail = response.text
        message = f"InfluxDB {what} failed with HTTP {status}: {detail.strip()[:500]}"
        if status >= 500 or status in _UNAVAILABLE_4XX:
            raise StoreUnavailable(message, STORE_NAME, status)
        raise StoreRejected(message, STORE_NAME, status)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
