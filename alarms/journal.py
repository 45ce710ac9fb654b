"""The durable alarm journal: append-only JSON-lines segments, fsynced per append.

It holds the records of :mod:`alarms.records` (detector conditions, operator
actions, suppression changes, ticks that changed something). Alarm state is
rebuilt from it at start-up, so a restart changes nothing and re-annunciates
nothing. A crash can leave a torn last line; loading drops
it (and truncates the file back to the last whole record) — the readings that
produced it were not acknowledged yet, so the broker redelivers them and the
event is produced again.

The journal is segmented (:mod:`alarms.segments`): ``alarms.jsonl`` is the
open segment, and each compaction closes it as ``alarms-<first record>.jsonl``
after writing a state snapshot (:mod:`alarms.compaction`). Offsets are
logical (bytes of every segment so far), so a detector checkpoint's offset
means the same thing across compactions. Every record is sealed into a hash
chain (:mod:`alarms.audit`); ``plantwatch audit verify`` checks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from alarms.compaction import CompactionClock, read_snapshot, snapshot_path, write_snapshot
from alarms.records import ConditionRecord, Record, from_json, to_json
from alarms.segments import JournalPosition, SegmentedLog
from model.alarm_events import AlarmEvent

__all__ = ["AlarmJournal", "Journal", "MemoryJournal"]


def _check(record: dict[str, Any]) -> None:
    from_json(record)


class Journal(Protocol):
    """What the alarm system needs of a journal: the file one, or a backtest's in memory."""

    def load_records(self) -> list[Record]: ...

    def size(self) -> int: ...

    def truncate(self, offset: int) -> int: ...

    def append_records(self, records: list[Record]) -> None: ...


class MemoryJournal:
    """A journal kept in a list, for backtests: the same records, nothing on disk.

    Its size is the number of records (a snapshot's offset counts records here).
    """

    def __init__(self) -> None:
        self.records: list[Record] = []

    def load_records(self) -> list[Record]:
        return list(self.records)

    def size(self) -> int:
        return len(self.records)

    def truncate(self, offset: int) -> int:
        cut = max(0, len(self.records) - offset)
        del self.records[offset:]
        return cut

    def append_records(self, records: list[Record]) -> None:
        self.records.extend(records)


class AlarmJournal:
    """Append-only alarm event journal at ``path`` (the open segment; closed ones beside it)."""

    def __init__(self, path: str | Path) -> None:
        self._log = SegmentedLog(
            path, check=_check, what="journal record",
            fix="move the file aside to start with an empty alarm history")
        self.path = self._log.path
        self.snapshot_path = snapshot_path(self.path)
        self._clock = CompactionClock()

    @property
    def torn_records_dropped(self) -> int:
        return self._log.torn_records_dropped

    def load(self) -> list[AlarmEvent]:
        """The detector condition events in the journal, oldest first."""
        return [r.event for r in self.load_records() if isinstance(r, ConditionRecord)]

    def load_records(self) -> list[Record]:
        """Every whole record in the journal, every segment, oldest first (the full history)."""
        return self.records_after(0)

    def records_after(self, offset: int) -> list[Record]:
        """The records from logical ``offset`` (a record boundary) on."""
        return [from_json(r) for _, r in self._log.read_from(offset)]

    def size(self) -> int:
        """Logical bytes in the journal (every segment): the offset a checkpoint records."""
        return self._log.size()

    def truncate(self, offset: int) -> int:
        """Cut the journal back to ``offset`` bytes; return how many bytes went.

        Used at start-up when the journal ran ahead of the detector checkpoint
        (a crash between the two writes): the cut events came from readings
        that were never acknowledged, so the broker redelivers them and the
        same events are produced again, consistently with the detector state.
        Only the open segment can be cut (see :mod:`alarms.segments`).
        """
        return self._log.truncate(offset)

    def append(self, events: list[AlarmEvent]) -> None:
        """Append condition events and fsync before returning (durable on return)."""
        self.append_records([ConditionRecord(e) for e in events])

    def append_records(self, records: list[Record]) -> None:
        """Append records and fsync before returning (durable on return)."""
        self._log.append([to_json(r) for r in records])

    # ------------------------------------------------------------------ compaction
    def position(self) -> JournalPosition:
        """Where the journal ends now (offset, record count, chain hash)."""
        return self._log.position()

    def hash_at(self, offset: int) -> str:
        """The chain's hash after the record ending at logical ``offset``."""
        return self._log.hash_before(offset)

    def segments(self) -> list[tuple[Path, int | None]]:
        """(file, first record number; None for the open one) of every segment."""
        return self._log.segments()

    def close_segment(self) -> Path | None:
        """Close the open segment; the next append starts a new one."""
        return self._log.close_segment()

    def save_snapshot(self, state: dict[str, Any], at_ms: int) -> None:
        """Write a compaction snapshot (atomic) taken at alarm time ``at_ms``."""
        write_snapshot(self.snapshot_path, {**state, "at_ms": at_ms})
        self._clock.since_ms = at_ms

    def load_snapshot(self) -> dict[str, Any] | None:
        """The latest compaction snapshot, or None."""
        saved = read_snapshot(self.snapshot_path)
        if saved is not None and self._clock.since_ms is None:
            self._clock.since_ms = int(saved.get("at_ms", 0)) or None
        return saved

    def should_compact(self, now_ms: int, *, every_records: int | None = None,
                       every_ms: int | None = None) -> bool:
        """Whether ``every_records`` records or ``every_ms`` of alarm time went by since
        the last compaction (and anything was written). Cheap: no file is read
        after the first call."""
        return self._clock.due(now_ms, self._log.open_records(),
                               every_records=every_records, every_ms=every_ms)
