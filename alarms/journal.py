"""The durable alarm journal: an append-only JSON-lines file, fsynced per append.

It holds the records of :mod:`alarms.records` (detector conditions, operator
actions, suppression changes, ticks that changed something). Alarm state is
rebuilt from it at start-up, so a restart changes nothing and re-annunciates
nothing. A crash can leave a torn last line; loading drops
it (and truncates the file back to the last whole record) — the readings that
produced it were not acknowledged yet, so the broker redelivers them and the
event is produced again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from alarms.jsonl import JsonLines
from alarms.records import ConditionRecord, Record, from_json, to_json
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
    """Append-only alarm event journal at ``path`` (a :class:`~alarms.jsonl.JsonLines`)."""

    def __init__(self, path: str | Path) -> None:
        self._file = JsonLines(path)
        self.path = self._file.path

    @property
    def torn_records_dropped(self) -> int:
        return self._file.torn_records_dropped

    def load(self) -> list[AlarmEvent]:
        """The detector condition events in the journal, oldest first."""
        return [r.event for r in self.load_records() if isinstance(r, ConditionRecord)]

    def load_records(self) -> list[Record]:
        """Every whole record in the journal, oldest first."""
        return [from_json(r) for _, r in self._file.read(
            _check, "journal record",
            "move the file aside to start with an empty alarm history")]

    def size(self) -> int:
        """Bytes in the journal: the offset a checkpoint records."""
        return self._file.size()

    def truncate(self, offset: int) -> int:
        """Cut the journal back to ``offset`` bytes; return how many bytes went.

        Used at start-up when the journal ran ahead of the detector checkpoint
        (a crash between the two writes): the cut events came from readings
        that were never acknowledged, so the broker redelivers them and the
        same events are produced again, consistently with the detector state.
        """
        return self._file.truncate(offset)

    def append(self, events: list[AlarmEvent]) -> None:
        """Append condition events and fsync before returning (durable on return)."""
        self.append_records([ConditionRecord(e) for e in events])

    def append_records(self, records: list[Record]) -> None:
        """Append records and fsync before returning (durable on return)."""
        self._file.append([to_json(r) for r in records])
