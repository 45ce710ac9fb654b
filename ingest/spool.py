"""The local spool: readings made durable on disk while the store is away.

One append-only file of records. Each record carries its readings' sensor
**ids**, so that readings spooled before a restart go to the same sensors after
it even when ``plant.yaml`` was edited in between (sensors added, removed or
reordered change every row index)::

    PWS2 record: magic b"PWS2" | n uint32 | k uint32 | ids_len uint32 | crc32 uint32
                 | rows int32[k] | ids (ASCII, "\\n"-joined, ids_len bytes)
                 | sensor int32[n] | ts int64[n] | value float64[n] | quality uint8[n]

``rows``/``ids`` are the record's dictionary: the sensor-table rows its
readings use and the id of each, as they were when it was written. The CRC
covers ``n``, ``k``, ``ids_len`` and everything after the header. The
``sensor`` column stays the writer's row so that an append costs one pass over
the batch (a bincount of its rows), not a sort or a lookup per reading. A record
holds at most :data:`RECORD_READINGS` readings (a bigger batch is cut into
several records, written and fsynced together), which bounds what replay reads
at a time.

On replay each record's rows are translated through its dictionary to the rows
of the sensor table of today. A reading whose sensor id is no longer in the
table (removed from the plant config since it was spooled) is not stored: it
is handed back as :class:`RefusedReadings` (the writer dead-letters and counts
it), and the rest of the record goes on.

**Records of the previous release** (``PWS1``: rows only, no ids) are still
read, under one rule, applied once, when the spool is opened: they are taken
only if the sensor table is unchanged since they were written, that is if
``legacy_sensor_ids`` (the sensor ids the previous release ran with, which
its detector checkpoint recorded) equals the table of today, id for id and in
order. Then they are rewritten on the spot as ``PWS2`` records with today's
ids. Otherwise, or when those ids are not known, their rows cannot be tied to
sensors: they are moved, as they are, to ``<spool>.v1-unattributed`` (owner-only)
instead of being stored under the wrong sensors, and reported
(:attr:`Spool.set_aside`: the writer logs, counts and dead-letters it as
``old_format_table_changed``). To store them, stop, put that file back as the
spool, restore the previous ``plant.yaml``, start once and let the spool
drain. Deciding at open matters: once this release has checkpointed, the
checkpoint names today's table, and a ``PWS1`` record left in the file would
later pass for one written under it.

``append`` fsyncs before it returns, so a message may be acknowledged to the
broker as soon as its batch is in the spool. The file is **bounded**: an
append that would take it past ``max_bytes`` raises :class:`SpoolFull` and the
spool reports :attr:`Spool.full` until the drain frees the file (the writer
then holds the readings unacknowledged and the broker keeps the rest). An
empty spool takes any one batch, however large, so a cap below one batch
cannot block ingest for ever.

Records are replayed to the store in the order they were written, a bounded
chunk at a time (:meth:`Spool.peek`), so recovery never holds the file in
memory; when the whole file has been replayed it is truncated. After a crash
replay starts again from the first record: re-writing a reading the store
already has overwrites it with itself.

A torn record at the end (a crash in the middle of an append, before the
fsync returned, so before any ack) is cut off on open, in place. A damaged
record in the middle (the disk damaged it after its fsync, so its readings were
acknowledged) is dropped, the records after it are kept, and the loss is said:
logged with the bytes and readings, and handed to the writer
(:attr:`Spool.damaged`) to count and dead-letter as ``record_damaged``.
Opening checks every record's CRC reading the file a piece at a time.

The file is owner-only (mode 0600), whatever the umask, and so is a file
rewritten on open; an existing file of another mode is tightened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alarms.jsonl import make_private_dir, sync_dir, write_all
from model.batch import ReadingBatch
from store.errors import SpoolError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "RECORD_READINGS",
    "RefusedReadings",
    "Spool",
    "SpoolChunk",
    "SpoolFull",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
"""The default cap of the spool file (setting ``ingest.spool_max_bytes``)."""
RECORD_READINGS = 50_000
"""Most readings in one record: replay reads whole records, so this bounds it."""

_MAGIC_V1 = b"PWS1"
_MAGIC_V2 = b"PWS2"
_HEADER_V1 = struct.Struct("<4sII")  # magic, n, crc
_HEADER_V2 = struct.Struct("<4sIIII")  # magic, n, k, ids_len, crc
_COUNTS_V2 = struct.Struct("<III")  # n, k, ids_len: the part of the header the CRC covers
_BYTES_PER_READING = 4 + 8 + 8 + 1
_MAX_ID_BYTES = 64  # model.plant.ID_PATTERN: ASCII ids of at most 64 characters
_IO_PIECE = 1 << 20  # bytes read at a time when checking or copying the file

SENSOR_LEFT_CONFIG = "sensor_left_config"
OLD_FORMAT_TABLE_CHANGED = "old_format_table_changed"
RECORD_DAMAGED = "record_damaged"


class SpoolFull(SpoolError):
    """The spool is at its size cap; the readings were not appended."""


@dataclass(frozen=True, slots=True)
class RefusedReadings:
    """Spooled readings that cannot go to the store, and why.

    ``batch.sensor`` is -1 throughout: these readings have no row in today's
    sensor table. ``sensor_ids`` names the sensors they were spooled under,
    when known. ``batch`` is empty when the readings are not at hand (a damaged
    record, old-format readings set aside on open): ``readings`` counts them.
    """

    reason: str
    batch: ReadingBatch
    sensor_ids: tuple[str, ...]
    detail: str
    readings: int = -1
    """How many readings were refused: ``len(batch)`` unless given (a refusal
    that does not carry its readings)."""

    @property
    def count(self) -> int:
        return len(self.batch) if self.readings < 0 else self.readings


@dataclass(frozen=True, slots=True)
class SpoolChunk:
    """The next readings of the spool, ready for the store.

    ``readings`` are rows of today's sensor table, in spool order. Commit with
    ``Spool.commit(chunk.end, chunk.count)`` once they are stored (and the
    refused ones dead-lettered).
    """

    readings: ReadingBatch
    refused: list[RefusedReadings]
    end: int
    count: int


@dataclass(frozen=True, slots=True)
class _Record:
    start: int
    end: int
    n: int
    version: int


def _ids_bytes(ids: Sequence[str]) -> list[bytes]:
    out = []
    for sid in ids:
        b = sid.encode("ascii")
        if b"\n" in b or not b or len(b) > _MAX_ID_BYTES:
            raise ValueError(f"sensor id {sid!r} cannot be spooled: ids are 1 to "
                             f"{_MAX_ID_BYTES} ASCII characters without a newline "
                             f"(model.plant.ID_PATTERN)")
        out.append(b)
    return out


def _open_owner_only(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600; an existing file of another mode is tightened."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class Spool:
    """Append-only, fsynced, bounded spool file at ``path``.

    ``sensor_ids`` is today's sensor table (``SensorTable.ids``): the rows of
    appended batches index it, and replayed readings are given its rows.
    ``legacy_sensor_ids``: the table the previous release's records (``PWS1``)
    were written with, if known (see the module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        sensor_ids: Sequence[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        legacy_sensor_ids: Sequence[str] | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes} "
                             f"(setting ingest.spool_max_bytes)")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.sensor_ids = list(sensor_ids)
        self._index = {sid: row for row, sid in enumerate(self.sensor_ids)}
        self._id_bytes = _ids_bytes(self.sensor_ids)
        self.legacy_readable = (legacy_sensor_ids is not None
                                and list(legacy_sensor_ids) == self.sensor_ids)
        self._read_offset = 0
        self.torn_bytes_dropped = 0
        """Bytes dropped on open: a torn last append, and damaged records."""
        self.damaged_readings = 0
        """Readings in records found damaged on open (acknowledged, lost): a counter
        the writer reports as ``spool_readings_refused{reason="record_damaged"}``."""
        self.damaged_bytes = 0
        """Bytes of records found damaged on open (not the torn last append)."""
        self.damaged: RefusedReadings | None = None
        """The damage found on open, for the writer to count and dead-letter once."""
        self.legacy_readings = 0
        """Readings in records of the previous release's format found on open."""
        self.set_aside: RefusedReadings | None = None
        """Old-format readings moved out of the spool on open (see the module docstring)."""
        self._dict_cache: tuple[bytes, npt.NDArray[np.int32]] | None = None
        self._enc_cache: tuple[npt.NDArray[np.int32], bytes] | None = None
        try:
            make_private_dir(self.path.parent)
            self._fd = _open_owner_only(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc.strerror}; check that the "
                             f"state directory exists and is writable by this user") from exc
        self._size = os.fstat(self._fd).st_size
        self.readings = self._recover()
        self._full = self._size >= self.max_bytes

    # -- reading the file ---------------------------------------------------

    def _pread(self, n: int, pos: int) -> bytes:
        out = os.pread(self._fd, n, pos)
        while len(out) < n:
            more = os.pread(self._fd, n - len(out), pos + len(out))
            if not more:
                break
            out += more
        return out

    def _crc_of(self, pos: int, end: int, crc: int = 0) -> int:
        """CRC-32 of the file's bytes in ``[pos, end)``, read a piece at a time."""
        while pos < end:
            piece = self._pread(min(_IO_PIECE, end - pos), pos)
            if not piece:
                break
            crc = zlib.crc32(piece, crc)
            pos += len(piece)
        return crc

    def _record_at(self, pos: int, size: int) -> _Record | None:
        """The whole, intact record starting at ``pos``, or None."""
        head = self._pread(_HEADER_V2.size, pos)
        if len(head) < 4:
            return None
        magic = head[:4]
        if magic == _MAGIC_V2 and len(head) == _HEADER_V2.size:
            _, n, k, ids_len, crc = _HEADER_V2.unpack(head)
            if n == 0 or n > RECORD_READINGS or k > n or ids_len > k * (_MAX_ID_BYTES + 1):
                return None
            end = pos + _HEADER_V2.size + 4 * k + ids_len + n * _BYTES_PER_READING
            if end > size:
                return None
            got = self._crc_of(pos + _HEADER_V2.size, end, zlib.crc32(head[4:16]))
            return _Record(pos, end, n, 2) if got == crc else None
        if magic == _MAGIC_V1 and len(head) >= _HEADER_V1.size:
            _, n, crc = _HEADER_V1.unpack_from(head)
            end = pos + _HEADER_V1.size + n * _BYTES_PER_READING
            if end > size:
                return None
            got = self._crc_of(pos + _HEADER_V1.size, end)
            return _Record(pos, end, n, 1) if got == crc else None
        return None

    def _next_record(self, pos: int, size: int) -> _Record | None:
        """The first intact record at or after ``pos``, searching a piece at a time."""
        while pos < size:
            window = self._pread(min(_IO_PIECE + 3, size - pos), pos)
            i = 0
            while True:
                hits = [h for h in (window.find(_MAGIC_V1, i), window.find(_MAGIC_V2, i))
                        if h >= 0]
                if not hits:
                    break
                at = min(hits)
                rec = self._record_at(pos + at, size)
                if rec is not None:
                    return rec
                i = at + 1
            if len(window) < _IO_PIECE + 3:
                return None
            pos += _IO_PIECE
        return None

    def _scan(self, size: int, gaps: list[tuple[int, int]] | None = None
              ) -> Iterator[_Record]:
        """Every intact record in ``[0, size)``, in order; the byte ranges skipped
        between them go to ``gaps``."""
        pos = 0
        while pos < size:
            rec = self._record_at(pos, size)
            if rec is None:
                rec = self._next_record(pos + 1, size)
                if gaps is not None:
                    gaps.append((pos, size if rec is None else rec.start))
                if rec is None:
                    return
            yield rec
            pos = rec.end

    def _claimed(self, pos: int) -> tuple[int, int] | None:
        """``(readings, end)`` a record's header at ``pos`` claims, if plausible.

        A damaged magic is passed over (read as this format's header): the
        counts behind it still give the record's length."""
        head = self._pread(_HEADER_V2.size, pos)
        if len(head) >= _HEADER_V1.size and head[:4] == _MAGIC_V1:
            n = _HEADER_V1.unpack_from(head)[1]
            return (n, pos + _HEADER_V1.size + n * _BYTES_PER_READING) if n else None
        if len(head) < _HEADER_V2.size:
            return None
        _, n, k, ids_len, _ = _HEADER_V2.unpack(head)
        if n == 0 or n > RECORD_READINGS or k > n or ids_len > k * (_MAX_ID_BYTES + 1):
            return None
        return n, pos + _HEADER_V2.size + 4 * k + ids_len + n * _BYTES_PER_READING

    def _readings_in(self, start: int, end: int) -> tuple[int, bool]:
        """How many readings the damaged bytes ``[start, end)`` held, read from
        the headers of the records there. True when the headers account for
        every byte; else the count is a lower bound."""
        pos, readings = start, 0
        while pos < end:
            claimed = self._claimed(pos)
            if claimed is None or claimed[1] > end:
                break
            readings += claimed[0]
            pos = claimed[1]
        return readings, pos == end

    def _report_damage(self, gaps: list[tuple[int, int]]) -> None:
        """Damaged bytes between whole records: records that were fsynced, so
        their readings were acknowledged to the broker, and are lost. Said once
        (logged here, handed to the writer as :attr:`damaged` to count and
        dead-letter), with the bytes and the readings."""
        parts = []
        for lo, hi in gaps:
            n, exact = self._readings_in(lo, hi)
            self.damaged_readings += n
            self.damaged_bytes += hi - lo
            what = (f"{n} readings" if exact else
                    f"at least {n} readings (a damaged header hides how many more; "
                    f"at most {n + (hi - lo) // _BYTES_PER_READING})")
            parts.append(f"bytes {lo}..{hi} ({what})")
        detail = (f"spool {self.path}: damaged on disk after it was written, so already "
                  f"acknowledged to the broker, and dropped on open: {'; '.join(parts)}. The "
                  f"records around it are kept. A disk that damages files may be failing: "
                  f"check it (SMART, dmesg)")
        log.error("%s", detail)
        self.damaged = RefusedReadings(RECORD_DAMAGED, ReadingBatch.empty(), (), detail,
                                       self.damaged_readings)

    def _cut_torn_tail(self, start: int) -> None:
        """Cut a torn last append in place: the normal ``kill -9`` case, so no copy."""
        claimed = self._claimed(start)
        log.warning("spool %s: bytes %d..%d are an append cut by a crash before its fsync "
                    "returned (%s, never acknowledged: the broker redelivers them); cut off",
                    self.path, start, self._size,
                    "readings unknown" if claimed is None else f"{claimed[0]} readings")
        try:
            os.ftruncate(self._fd, start)
            os.fsync(self._fd)
        except OSError as exc:
            raise SpoolError(f"cannot cut the torn end of spool {self.path}: "
                             f"{exc.strerror}") from exc
        self._size = start

    def _recover(self) -> int:
        """Check every record; cut a torn last append off in place; rewrite the
        file without damaged records and without old-format ones (converted, or
        set aside). Returns the readings it holds.

        A damaged record at the end is a torn append (a crash before its fsync
        returned, so before any ack): it is cut off. A damaged record in the
        middle (disk corruption) is skipped up to the next whole record, so the
        acknowledged records after it are kept, and reported (:attr:`damaged`).
        Memory: one read piece, or one old-format record being converted.
        """
        total = 0
        gaps: list[tuple[int, int]] = []
        for rec in self._scan(self._size, gaps):
            total += rec.n
            if rec.version == 1:
                self.legacy_readings += rec.n
        self.torn_bytes_dropped = sum(hi - lo for lo, hi in gaps)
        if gaps and gaps[-1][1] == self._size:
            self._cut_torn_tail(gaps.pop()[0])
        if gaps:
            self._report_damage(gaps)
        if not gaps and not self.legacy_readings:
            return total
        tmp = self.path.with_name(self.path.name + ".tmp")
        aside_path = self.path.with_name(self.path.name + ".v1-unattributed")
        out = _open_owner_only(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        aside = -1
        kept = kept_readings = aside_readings = 0
        ts_lo, ts_hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        try:
            for rec in self._scan(self._size):
                if rec.version == 2:
                    kept += self._copy(rec, out)
                    kept_readings += rec.n
                    continue
                old = self._decode_v1(rec)
                rows_ok = (int(old.sensor.min()) >= 0
                           and int(old.sensor.max()) < len(self.sensor_ids))
                if self.legacy_readable and rows_ok:
                    data = self._encode(old)
                    write_all(out, data)
                    kept += len(data)
                    kept_readings += rec.n
                    continue
                if aside < 0:
                    aside = _open_owner_only(aside_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                self._copy(rec, aside)
                aside_readings += rec.n
                ts_lo, ts_hi = min(ts_lo, int(old.ts.min())), max(ts_hi, int(old.ts.max()))
            os.fsync(out)
            if aside >= 0:
                os.fsync(aside)
        finally:
            os.close(out)
            if aside >= 0:
                os.close(aside)
        os.replace(tmp, self.path)
        sync_dir(self.path.parent)
        os.close(self._fd)
        self._fd = _open_owner_only(self.path, os.O_RDWR)
        self._size = kept
        if aside_readings:
            detail = (f"{aside_readings} readings spooled by the previous release (sensor rows "
                      f"without ids; timestamps {ts_lo}..{ts_hi} ms) cannot be tied to "
                      f"sensors: the sensor table changed since, or the table they were "
                      f"written with is not known. They were moved to {aside_path}, not "
                      f"stored; to store them put that file back as {self.path.name}, "
                      f"restore the previous plant.yaml, start once and let the spool drain")
            log.error("%s", detail)
            self.set_aside = RefusedReadings(OLD_FORMAT_TABLE_CHANGED, ReadingBatch.empty(),
                                             (), detail, aside_readings)
        elif self.legacy_readings:
            log.info("spool %s: %d readings of the previous release's format rewritten with "
                     "their sensor ids (the sensor table is unchanged)", self.path,
                     self.legacy_readings)
        return kept_readings

    def _copy(self, rec: _Record, fd: int) -> int:
        pos = rec.start
        while pos < rec.end:
            piece = self._pread(min(_IO_PIECE, rec.end - pos), pos)
            write_all(fd, piece)
            pos += len(piece)
        return rec.end - rec.start

    def _decode_v1(self, rec: _Record) -> ReadingBatch:
        data = self._pread(rec.end - rec.start, rec.start)
        n, o = rec.n, _HEADER_V1.size
        sensor = np.frombuffer(data, "<i4", n, o).astype(np.int32)
        o += 4 * n
        ts = np.frombuffer(data, "<i8", n, o).astype(np.int64)
        o += 8 * n
        value = np.frombuffer(data, "<f8", n, o).astype(np.float64)
        o += 8 * n
        return ReadingBatch(sensor, ts, value, np.frombuffer(data, "u1", n, o).copy())

    # -- state --------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """True when every record has been replayed (or none was written)."""
        return self._read_offset >= self._size

    @property
    def full(self) -> bool:
        """True from an append refused for lack of room until the drain frees the file."""
        return self._full

    # -- writing ------------------------------------------------------------

    def _encode(self, batch: ReadingBatch) -> bytes:
        sensor = np.ascontiguousarray(batch.sensor, "<i4")
        m = len(self._id_bytes)
        if len(sensor) and (int(sensor.min()) < 0 or int(sensor.max()) >= m):
            raise ValueError(
                f"batch names sensor rows {int(sensor.min())}..{int(sensor.max())}, outside "
                f"the sensor table of {m} rows the spool was opened with; a decoder or the "
                f"service's wiring is wrong (the spool takes SensorTable.ids)")
        parts: list[bytes] = []
        for lo in range(0, len(batch), RECORD_READINGS):
            hi = min(lo + RECORD_READINGS, len(batch))
            rows_here = sensor[lo:hi]
            used = np.flatnonzero(np.bincount(rows_here, minlength=m)).astype("<i4")
            ids = self._ids_of(used)
            counts = _COUNTS_V2.pack(hi - lo, len(used), len(ids))
            body = (used.tobytes(), ids, rows_here.tobytes(),
                    np.ascontiguousarray(batch.ts[lo:hi], "<i8").tobytes(),
                    np.ascontiguousarray(batch.value[lo:hi], "<f8").tobytes(),
                    np.ascontiguousarray(batch.quality[lo:hi], "u1").tobytes())
            crc = zlib.crc32(counts)
            for b in body:
                crc = zlib.crc32(b, crc)
            parts.append(_MAGIC_V2 + counts + struct.pack("<I", crc))
            parts.extend(body)
        return b"".join(parts)

    def _ids_of(self, used: npt.NDArray[np.int32]) -> bytes:
        """The dictionary's ids for rows ``used``; the last one is kept, since
        successive flushes mostly carry the same sensors."""
        cached = self._enc_cache
        if cached is not None and np.array_equal(cached[0], used):
            return cached[1]
        ids = b"\n".join([self._id_bytes[r] for r in used.tolist()])
        self._enc_cache = (used, ids)
        return ids

    def append(self, batch: ReadingBatch) -> None:
        """Write the batch (one record per :data:`RECORD_READINGS`) and fsync;
        durable when this returns.

        Raises :class:`SpoolFull` when the file would pass ``max_bytes`` (and
        is not empty), :class:`SpoolError` when the disk refuses.
        """
        if len(batch) == 0:
            return
        if self._size and self._size + len(batch) * _BYTES_PER_READING > self.max_bytes:
            self._refuse(len(batch) * _BYTES_PER_READING)
        data = self._encode(batch)
        if self._size and self._size + len(data) > self.max_bytes:
            self._refuse(len(data))
        try:
            written = 0
            view = memoryview(data)
            while written < len(data):
                written += os.pwrite(self._fd, view[written:], self._size + written)
            os.fsync(self._fd)
        except OSError as exc:
            # Cut back what a failed append may have left, so the next one starts
            # on a record boundary (an uncut tail would be dropped on open anyway).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise SpoolError(f"cannot append to spool {self.path}: {exc.strerror}") from exc
        self._size += len(data)
        self.readings += len(batch)
        self._full = False

    def _refuse(self, needed: int) -> None:
        self._full = True
        raise SpoolFull(
            f"spool {self.path} is full: {self._size} bytes, {needed} more would pass the cap "
            f"of {self.max_bytes} (setting ingest.spool_max_bytes); it empties when the store "
            f"is back and the spool is drained")

    # -- replay -------------------------------------------------------------

    def _translation(self, rows: npt.NDArray[np.int32], ids: bytes
                     ) -> tuple[npt.NDArray[np.int32], list[str]]:
        """Old row → row of today (-1: the sensor left the config), and the record's ids."""
        names = ids.decode("ascii").split("\n") if ids else []
        if len(names) != len(rows):
            raise SpoolError(f"spool {self.path}: a record's dictionary has {len(rows)} rows "
                             f"and {len(names)} ids")
        size = int(rows.max()) + 1 if len(rows) else 0
        # The cache is keyed by the rows too: the same ids at other rows (records
        # spooled by two runs whose tables differed) need their own translation.
        key = ids + b"\0" + rows.tobytes()
        cached = self._dict_cache
        if cached is not None and cached[0] == key:
            return cached[1], names
        out = np.full(size, -1, np.int32)
        out[rows] = [self._index.get(name, -1) for name in names]
        self._dict_cache = (key, out)
        return out, names

    def _decode(self, rec: _Record) -> tuple[ReadingBatch, RefusedReadings | None]:
        data = self._pread(rec.end - rec.start, rec.start)
        n = rec.n
        _, _, k, ids_len, crc = _HEADER_V2.unpack_from(data)
        if zlib.crc32(data[_HEADER_V2.size:], zlib.crc32(data[4:16])) != crc:
            return ReadingBatch.empty(), self._damaged(rec)
        o = _HEADER_V2.size
        rows = np.frombuffer(data, "<i4", k, o)
        o += 4 * k
        ids = data[o:o + ids_len]
        o += ids_len
        sensor = np.frombuffer(data, "<i4", n, o)
        o += 4 * n
        ts = np.frombuffer(data, "<i8", n, o).astype(np.int64)
        o += 8 * n
        value = np.frombuffer(data, "<f8", n, o).astype(np.float64)
        o += 8 * n
        quality = np.frombuffer(data, "u1", n, o).copy()
        table, names = self._translation(rows, ids)
        if int(sensor.min()) < 0 or int(sensor.max()) >= len(table):
            return ReadingBatch.empty(), self._damaged(rec)
        mapped = table[sensor]
        left = mapped < 0
        if not left.any():
            return ReadingBatch(mapped, ts, value, quality), None
        kept = ~left
        # The dictionary holds exactly the rows the record uses (see _encode).
        gone_ids = sorted(names[i] for i in np.flatnonzero(table[rows] < 0).tolist())
        gone = ReadingBatch(np.full(int(left.sum()), -1, np.int32), ts[left], value[left],
                            quality[left])
        return (ReadingBatch(mapped[kept], ts[kept], value[kept], quality[kept]),
                RefusedReadings(SENSOR_LEFT_CONFIG, gone, tuple(gone_ids), ""))

    def _damaged(self, rec: _Record) -> RefusedReadings:
        log.error("spool %s: record at byte %d (%d readings) fails its CRC on replay; "
                  "it is skipped", self.path, rec.start, rec.n)
        return RefusedReadings(
            RECORD_DAMAGED, ReadingBatch.empty(), (),
            f"{rec.n} spooled readings at byte {rec.start} of {self.path} were damaged on "
            f"disk after they were written and cannot be read", rec.n)

    def peek(self, max_readings: int = RECORD_READINGS) -> SpoolChunk:
        """The next records (whole ones, up to about ``max_readings``; at least one).

        Reads only those records, so replay memory is bounded by the chunk, not
        the file. Call :meth:`commit` with ``chunk.end`` and ``chunk.count``
        once the readings are in the store.
        """
        pos = self._read_offset
        batches: list[ReadingBatch] = []
        refused: dict[str, list[RefusedReadings]] = {}
        total = 0
        while pos < self._size and (total == 0 or total < max_readings):
            head = self._pread(_HEADER_V2.size, pos)
            if head[:4] != _MAGIC_V2 or len(head) < _HEADER_V2.size:
                raise SpoolError(f"spool {self.path}: no record at byte {pos} (the file was "
                                 f"changed by something else while open)")
            _, n, k, ids_len, _ = _HEADER_V2.unpack(head)
            end = pos + _HEADER_V2.size + 4 * k + ids_len + n * _BYTES_PER_READING
            rec = _Record(pos, end, n, 2)
            batch, gone = self._decode(rec)
            if len(batch):
                batches.append(batch)
            if gone is not None:
                refused.setdefault(gone.reason, []).append(gone)
            total += rec.n
            pos = rec.end
        return SpoolChunk(ReadingBatch.concat(batches), [_merge(r) for r in refused.values()],
                          pos, total)

    def commit(self, offset: int, readings: int) -> None:
        """Mark everything before ``offset`` (``readings`` of them) as replayed.

        The file is truncated once everything in it is replayed; the spool is
        then no longer full.
        """
        self._read_offset = offset
        self.readings = max(0, self.readings - readings)
        if self._read_offset >= self._size:
            try:
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
            except OSError as exc:
                raise SpoolError(f"cannot truncate spool {self.path}: {exc.strerror}") from exc
            self._size = 0
            self._read_offset = 0
            self.readings = 0
            self._full = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # Last in the class: below it, ``bytes`` in an annotation would name this.
    @property
    def bytes(self) -> int:
        """Size of the spool file: what counts against ``max_bytes``."""
        return self._size


def _merge(parts: list[RefusedReadings]) -> RefusedReadings:
    """One refusal per reason and chunk: one dead letter, not one per record."""
    reason = parts[0].reason
    batch = ReadingBatch.concat([p.batch for p in parts])
    count = sum(p.count for p in parts)
    ids = tuple(sorted({i for p in parts for i in p.sensor_ids}))
    if reason == SENSOR_LEFT_CONFIG:
        named = ", ".join(repr(i) for i in ids[:20])
        more = f" and {len(ids) - 20} more" if len(ids) > 20 else ""
        detail = (f"{len(batch)} spooled readings of sensors that left the plant config since "
                  f"they were spooled ({named}{more}); not stored")
    else:
        detail = "; ".join(p.detail for p in parts[:3])
        if len(parts) > 3:
            detail += f"; and {len(parts) - 3} more records"
    return RefusedReadings(reason, batch, ids, detail, count)
