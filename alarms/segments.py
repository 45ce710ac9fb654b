"""A journal in segments: closed files that never change, and the open one.

The open segment is the journal's own path (``alarms.jsonl``), so a journal
that was never compacted is exactly the single file earlier releases wrote.
Closing it renames it ``alarms-<first record number>.jsonl`` (12 digits, so
the names sort) and the next append starts a new ``alarms.jsonl``. The
closed segments together are the full audit trail.

Positions are *logical*: the total bytes of every segment before, plus the
offset in its file. They only grow, so an engine checkpoint that recorded
``size()`` before a compaction still names the same instant after it, and
``truncate(offset)`` cuts the same records. Only the open segment can be
cut: closed segments are never modified (compaction runs right after a
checkpoint, so a checkpoint never points inside a closed segment).

Every record is sealed into the hash chain of :mod:`alarms.audit` as it is
appended, across segments.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarms.audit import GENESIS, next_hash, seal, unsealed
from alarms.jsonl import JsonLines, sync_dir

__all__ = ["JournalPosition", "SegmentedLog", "segment_files"]

Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class JournalPosition:
    """A point in a segmented journal: what a compaction snapshot follows."""

    offset: int  # logical bytes before it
    seq: int  # records before it
    hash: str  # the chain's hash after the record before it

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "seq": self.seq, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalPosition:
        return cls(int(data["offset"]), int(data["seq"]), str(data["hash"]))


def _pattern(path: Path) -> re.Pattern[str]:
    return re.compile(re.escape(path.stem) + r"-(\d+)" + re.escape(path.suffix))


def segment_files(path: Path) -> list[tuple[Path, int | None]]:
    """Every segment of the journal at ``path``, oldest first: (file, first record
    number; None for the open segment, whose name does not say)."""
    pattern = _pattern(path)
    closed = []
    if path.parent.exists():
        for entry in path.parent.iterdir():
            m = pattern.fullmatch(entry.name)
            if m is not None and entry.is_file():
                closed.append((entry, int(m.group(1))))
    closed.sort(key=lambda c: c[1])
    out: list[tuple[Path, int | None]] = list(closed)
    if path.exists():
        out.append((path, None))
    return out


class SegmentedLog:
    """The segments of one journal, appended to and read as one sequence of records."""

    def __init__(self, path: str | Path, *, check: Check, what: str, fix: str) -> None:
        self._open = JsonLines(path)
        self.path = self._open.path
        self._check, self._what, self._fix = check, what, fix
        self._closed: list[tuple[Path, int, int]] = []  # (file, first seq, bytes)
        for file, first in segment_files(self.path):
            if first is not None:
                self._closed.append((file, first, file.stat().st_size))
        self._closed_bytes = sum(size for _, _, size in self._closed)
        self._closed_records: int | None = None
        self._open_records: int | None = None
        self._head: str | None = None
        self.torn_records_dropped = 0

    # ------------------------------------------------------------------ positions
    @property
    def open_start(self) -> int:
        """Logical offset where the open segment starts."""
        return self._closed_bytes

    def size(self) -> int:
        """Logical bytes: every closed segment plus the open one."""
        return self._closed_bytes + self._open.size()

    def closed_records(self) -> int:
        if self._closed_records is None:
            if not self._closed:
                self._closed_records = 0
            else:
                file, first, _ = self._closed[-1]
                self._closed_records = first + file.read_bytes().count(b"\n")
        return self._closed_records

    def open_records(self) -> int:
        """Whole records in the open segment (appended since the last close)."""
        if self._open_records is None:
            data = self.path.read_bytes() if self.path.exists() else b""
            self._open_records = data.count(b"\n")
        return self._open_records

    def records(self) -> int:
        return self.closed_records() + self.open_records()

    def head(self) -> str:
        """The chain's hash after the last whole record."""
        if self._head is None:
            self._head = self.hash_before(self.size())
        return self._head

    def position(self) -> JournalPosition:
        return JournalPosition(self.size(), self.records(), self.head())

    def segments(self) -> list[tuple[Path, int | None]]:
        """(file, first record number or None) of every segment, oldest first."""
        out: list[tuple[Path, int | None]] = [(f, first) for f, first, _ in self._closed]
        if self.path.exists():
            out.append((self.path, None))
        return out

    def hash_before(self, offset: int) -> str:
        """The chain's hash after the record that ends at logical ``offset``.

        Reads only that record when it is sealed; an old unsealed tail (a
        journal from before 0.2) is hashed from the start, once.
        """
        if offset <= 0:
            return GENESIS
        start = 0
        for file, _, size in self._closed:
            if offset <= start + size:
                line = JsonLines(file).last_line(offset - start)
                break
            start += size
        else:
            line = self._open.last_line(offset - start)
        if line is not None:
            stored = _json_hash(line)
            if stored is not None:
                return stored
        prev = GENESIS
        for _, record in self._read_range(0, offset, raw=True):
            prev = next_hash(record, prev)
        return prev

    # ------------------------------------------------------------------ reading
    def read_from(self, offset: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """Every whole record at or after logical ``offset`` (a record boundary), with
        its logical offset, as its writer gave it (without ``prev``/``hash``)."""
        return self._read_range(offset, None, raw=False)

    def _read_range(self, begin: int, end: int | None, *, raw: bool
                    ) -> list[tuple[int, dict[str, Any]]]:
        out: list[tuple[int, dict[str, Any]]] = []
        start = 0
        files = [(f, size) for f, _, size in self._closed] + [(self.path, None)]
        for file, size in files:
            length = size if size is not None else self._open.size()
            if begin < start + length and (end is None or start < end):
                lines = self._open if file == self.path else JsonLines(file)
                got = lines.read(self._check, self._what, self._fix, max(0, begin - start))
                if file == self.path and lines.torn_records_dropped:
                    self.torn_records_dropped += lines.torn_records_dropped
                    lines.torn_records_dropped = 0
                    self._open_records = None
                for at, record in got:
                    if end is not None and start + at >= end:
                        break
                    out.append((start + at, record if raw else unsealed(record)))
            start += length
        return out

    # ------------------------------------------------------------------ writing
    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Seal the records into the chain, append them and fsync (durable on return)."""
        sealed, head = seal(records, self.head())
        if not sealed:
            return
        self._open.append(sealed)
        self._head = head
        if self._open_records is not None:
            self._open_records += len(sealed)

    def truncate(self, offset: int) -> int:
        """Cut the journal back to logical ``offset``; return how many bytes went."""
        if offset < self._closed_bytes:
            last = self._closed[-1][0].name if self._closed else "?"
            raise ValueError(
                f"{self.path}: cannot cut back to byte {offset}: it lies in the closed "
                f"segments (up to {last}, {self._closed_bytes} bytes), which are never "
                "changed. A checkpoint older than the last compaction: move the detector "
                "checkpoint aside to rebuild from the journal as it is")
        cut = self._open.truncate(offset - self._closed_bytes)
        if cut:
            self._open_records = None
            self._head = None
        return cut

    def close_segment(self) -> Path | None:
        """Close the open segment (rename it to its first record number; fsync the
        directory). The next append starts a new one. None if it was empty."""
        if self._open.size() == 0:
            return None
        first = self.closed_records()
        count = self.open_records()
        head = self.head()
        closed = self.path.with_name(f"{self.path.stem}-{first:012d}{self.path.suffix}")
        if closed.exists():
            raise ValueError(f"{closed} already exists; cannot close {self.path} onto it. "
                             "Move the stray segment aside")
        size = self._open.size()
        os.rename(self.path, closed)
        sync_dir(self.path.parent)
        self._closed.append((closed, first, size))
        self._closed_bytes += size
        self._closed_records = first + count
        self._open_records = 0
        self._head = head
        return closed


def _json_hash(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    stored = record.get("hash") if isinstance(record, dict) else None
    return stored if isinstance(stored, str) else None
