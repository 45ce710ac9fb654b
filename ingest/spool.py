"""The local spool: readings made durable on disk while the store is away.

One append-only file of records, each the four columns of a
:class:`ReadingBatch` behind a small header with a CRC::

    magic b"PWS1" | n uint32 | crc32 uint32 | sensor int32[n] | ts int64[n]
                  | value float64[n] | quality uint8[n]

``append`` fsyncs before it returns, so a message may be acknowledged to the
broker as soon as its batch is in the spool. Records are replayed to the
store in the order they were written; when the whole file has been replayed it
is truncated. After a crash replay starts again from the first record:
re-writing a reading the store already has overwrites it with itself.

A torn record at the end (a crash in the middle of an append, before the
fsync returned, so before any ack) is cut off on open.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from model.batch import ReadingBatch
from store.errors import SpoolError

__all__ = ["Spool"]

_MAGIC = b"PWS1"
_HEADER = struct.Struct("<4sII")
_BYTES_PER_READING = 4 + 8 + 8 + 1


def _record_end(data: bytes, pos: int) -> int | None:
    """End of the whole, intact record starting at ``pos``, or None."""
    if pos + _HEADER.size > len(data):
        return None
    magic, n, crc = _HEADER.unpack_from(data, pos)
    end: int = pos + _HEADER.size + n * _BYTES_PER_READING
    if magic != _MAGIC or end > len(data) or zlib.crc32(data[pos + _HEADER.size : end]) != crc:
        return None
    return end


class Spool:
    """Append-only, fsynced spool file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read_offset = 0
        self.torn_bytes_dropped = 0
        try:
            self._fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the spool's life
        except OSError as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc.strerror}") from exc
        self._size = self._recover()
        self.readings = self._count_readings()

    def _recover(self) -> int:
        """Check every record; rewrite the file without damaged ones.

        A damaged record at the end is a torn append (a crash before its fsync
        returned, so before any ack): it is cut off. A damaged record in the
        middle (disk corruption) is skipped up to the next whole record, so the
        acknowledged records after it are kept.
        """
        self._fh.seek(0)
        data = self._fh.read()
        good: list[bytes] = []
        pos = 0
        while pos < len(data):
            end = _record_end(data, pos)
            if end is None:
                nxt = data.find(_MAGIC, pos + 1)
                while nxt >= 0 and _record_end(data, nxt) is None:
                    nxt = data.find(_MAGIC, nxt + 1)
                skip_to = len(data) if nxt < 0 else nxt
                self.torn_bytes_dropped += skip_to - pos
                pos = skip_to
                continue
            good.append(data[pos:end])
            pos = end
        if self.torn_bytes_dropped:
            kept = b"".join(good)
            self._fh.seek(0)
            self._fh.truncate(0)
            self._fh.write(kept)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            return len(kept)
        return len(data)

    def _count_readings(self) -> int:
        total = 0
        self._fh.seek(0)
        pos = 0
        while pos < self._size:
            self._fh.seek(pos)
            _, n, _ = _HEADER.unpack(self._fh.read(_HEADER.size))
            total += n
            pos += _HEADER.size + n * _BYTES_PER_READING
        return total

    @property
    def empty(self) -> bool:
        """True when every record has been replayed (or none was written)."""
        return self._read_offset >= self._size

    def append(self, batch: ReadingBatch) -> None:
        """Write one record and fsync; durable when this returns."""
        if len(batch) == 0:
            return
        body = b"".join(
            (
                np.ascontiguousarray(batch.sensor, "<i4").tobytes(),
                np.ascontiguousarray(batch.ts, "<i8").tobytes(),
                np.ascontiguousarray(batch.value, "<f8").tobytes(),
                np.ascontiguousarray(batch.quality, "u1").tobytes(),
            )
        )
        record = _HEADER.pack(_MAGIC, len(batch), zlib.crc32(body)) + body
        try:
            self._fh.seek(0, os.SEEK_END)
            self._fh.write(record)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise SpoolError(f"cannot append to spool {self.path}: {exc.strerror}") from exc
        self._size += len(record)
        self.readings += len(batch)

    def peek(self, max_readings: int = 50_000) -> tuple[ReadingBatch, int]:
        """The next records (whole ones, up to about ``max_readings``) and where they end.

        Call :meth:`commit` with the returned offset once they are in the store.
        """
        pos = self._read_offset
        batches: list[ReadingBatch] = []
        total = 0
        while pos < self._size and (total == 0 or total < max_readings):
            self._fh.seek(pos)
            header = self._fh.read(_HEADER.size)
            _, n, crc = _HEADER.unpack(header)
            body = self._fh.read(n * _BYTES_PER_READING)
            if zlib.crc32(body) != crc:
                raise SpoolError(f"spool {self.path}: record at byte {pos} fails its CRC")
            o = 0
            sensor = np.frombuffer(body, "<i4", n, o)
            o += 4 * n
            ts = np.frombuffer(body, "<i8", n, o)
            o += 8 * n
            value = np.frombuffer(body, "<f8", n, o)
            o += 8 * n
            quality = np.frombuffer(body, "u1", n, o)
            batches.append(
                ReadingBatch(
                    sensor.astype(np.int32), ts.astype(np.int64), value.astype(np.float64),
                    quality.copy(),
                )
            )
            total += n
            pos += _HEADER.size + n * _BYTES_PER_READING
        return ReadingBatch.concat(batches), pos

    def commit(self, offset: int, readings: int) -> None:
        """Mark everything before ``offset`` (``readings`` of them) as stored.

        The file is truncated once everything in it is stored.
        """
        self._read_offset = offset
        self.readings = max(0, self.readings - readings)
        if self._read_offset >= self._size:
            self._fh.truncate(0)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._size = 0
            self._read_offset = 0
            self.readings = 0

    def close(self) -> None:
        self._fh.close()
