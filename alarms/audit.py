"""The journals' hash chain: sealing records as they are written, and checking them.

Every record the alarm and hazard journals write carries ``prev`` (the hash of
the record before it) and ``hash``: SHA-256 over the record's canonical bytes
(keys sorted, no spaces, UTF-8; ``hash`` itself left out, ``prev`` included)
followed by ``prev``. The chain runs across segment files: a new segment's
first record chains to the last record of the segment before it. Changing,
removing or reordering any record therefore breaks the link after it, and
:func:`verify` names the first place that happens.

Journals written before 0.2 have no hashes. Their records are hashed the same
way in memory (as if ``prev`` and ``hash`` had been written), so the first
sealed record's ``prev`` also covers the old records before it; on their own
they are reported as "not chained (written before 0.2)", never as broken.

Pure logic: it reads the files it is given and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS",
    "NOT_CHAINED",
    "ChainBreak",
    "VerifyReport",
    "canonical_bytes",
    "next_hash",
    "record_hash",
    "seal",
    "unsealed",
    "verify",
]

GENESIS = "0" * 64
"""The ``prev`` of the very first record of a journal."""

NOT_CHAINED = "not chained (written before 0.2)"

_SEAL_KEYS = ("prev", "hash")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: one fixed JSON form, whatever order it was written in."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def record_hash(body: Mapping[str, Any], prev: str) -> str:
    """SHA-256 (hex) of ``body`` (a record without ``hash``) followed by ``prev``."""
    return hashlib.sha256(canonical_bytes(body) + prev.encode("ascii")).hexdigest()


def next_hash(record: Mapping[str, Any], prev: str) -> str:
    """The chain's hash after ``record``: the stored one, or for an old unsealed
    record the one it would have had."""
    stored = record.get("hash")
    if isinstance(stored, str):
        return stored
    return record_hash(record, prev)


def seal(records: Iterable[Mapping[str, Any]], prev: str) -> tuple[list[dict[str, Any]], str]:
    """The records with ``prev`` and ``hash`` added, chained after ``prev``; and the last hash."""
    out: list[dict[str, Any]] = []
    for record in records:
        body = {k: v for k, v in record.items() if k not in _SEAL_KEYS}
        body["prev"] = prev
        prev = record_hash(body, prev)
        body["hash"] = prev
        out.append(body)
    return out, prev


def unsealed(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as its writer gave it (without ``prev`` and ``hash``)."""
    return {k: v for k, v in record.items() if k not in _SEAL_KEYS}


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place the chain does not hold."""

    segment: str  # file name
    line: int  # 1-based line in that file
    seq: int  # 0-based record number across all segments
    why: str
    expected: str | None = None
    found: str | None = None

    def describe(self) -> str:
        text = f"{self.segment} line {self.line} (record {self.seq}): {self.why}"
        if self.expected is not None:
            text += f"; expected {self.expected}, found {self.found}"
        return text


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` found."""

    segments: int = 0
    checked: int = 0  # records whose hash link was checked
    not_chained: int = 0  # records before the first sealed one (written before 0.2)
    head: str = GENESIS  # the chain's hash after the last record read
    broken: ChainBreak | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None


def _break(report: VerifyReport, where: Path, line: int, seq: int, why: str,
           expected: str | None = None, found: str | None = None) -> VerifyReport:
    report.broken = ChainBreak(where.name, line, seq, why, expected, found)
    return report


def verify(segments: Sequence[tuple[Path, int | None]],
           marks: Mapping[int, str] | None = None) -> VerifyReport:
    """Walk the segment files in order and check every link of the chain.

    ``segments`` are (file, first record number or None if the name does not
    say). ``marks`` maps a record count to the hash the chain must have after
    that many records (what a compaction snapshot recorded). A torn last line
    in the last file (a crash mid-append) is a note, not a break: its writer was
    never told it was saved, and the next start drops it.
    """
    report = VerifyReport()
    marks = dict(marks or {})
    prev, seq = GENESIS, 0
    sealed_seen = False
    for n, (path, first_seq) in enumerate(segments):
        report.segments += 1
        if first_seq is not None and first_seq != seq:
            return _break(report, path, 1, seq,
                          f"segment starts at record {first_seq} but {seq} records come "
                          "before it (a segment is missing or was cut)",
                          str(seq), str(first_seq))
        data = path.read_bytes()
        pos, line = 0, 0
        while pos < len(data):
            line += 1
            nl = data.find(b"\n", pos)
            if nl < 0:
                if n == len(segments) - 1:
                    report.notes.append(f"{path.name} line {line}: torn last line (a crash "
                                        "mid-append; it is dropped at the next start)")
                    break
                return _break(report, path, line, seq, "line has no end (not a whole record)")
            raw = data[pos:nl]
            pos = nl + 1
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                return _break(report, path, line, seq, f"not a JSON record ({exc})")
            stored = record.get("hash")
            if stored is None:
                if sealed_seen:
                    return _break(report, path, line, seq,
                                  "record has no hash after the chain started (inserted?)")
                report.not_chained += 1
                prev = record_hash(record, prev)
            else:
                sealed_seen = True
                if record.get("prev") != prev:
                    return _break(report, path, line, seq,
                                  "prev does not match the record before it (a record "
                                  "before was changed, removed or inserted)",
                                  prev, str(record.get("prev")))
                body = {k: v for k, v in record.items() if k != "hash"}
                actual = record_hash(body, prev)
                if actual != stored:
                    return _break(report, path, line, seq,
                                  "hash does not match the record's content (changed)",
                                  actual, str(stored))
                report.checked += 1
                prev = actual
            seq += 1
            want = marks.pop(seq, None)
            if want is not None and want != prev:
                return _break(report, path, line, seq - 1,
                              "the compaction snapshot recorded another hash after this record",
                              want, prev)
    for count in sorted(marks):
        if count > seq:
            report.notes.append(f"the snapshot follows record {count} but the journal "
                                f"holds {seq}; it will not be used at start-up")
    if report.not_chained:
        report.notes.insert(0, f"{report.not_chained} records {NOT_CHAINED}")
    report.head = prev
    return report
