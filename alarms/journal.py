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

import json
import os
from pathlib import Path
from typing import Any

from alarms.events import AlarmEvent
from alarms.records import record_type

__all__ = ["AlarmJournal"]


class AlarmJournal:
    """Append-only alarm event journal at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn_records_dropped = 0

    def load(self) -> list[AlarmEvent]:
        """The detector condition events in the journal, oldest first."""
        return [AlarmEvent.from_dict(r) for r in self.load_records()
                if record_type(r) == "condition"]

    def load_records(self) -> list[dict[str, Any]]:
        """Every whole record in the journal, oldest first."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        events: list[dict[str, Any]] = []
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line: no newline was written
            line = data[pos:nl]
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "ts" not in record:
                    raise ValueError("not a journal record (a JSON object with 'ts')")
                if record_type(record) == "condition":
                    AlarmEvent.from_dict(record)
                events.append(record)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{self.path}: journal record at byte {pos} is corrupt ({exc}); "
                    "move the file aside to start with an empty alarm history"
                ) from exc
            pos = nl + 1
            good_end = pos
        if good_end < len(data):
            self.torn_records_dropped += 1
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return events

    def size(self) -> int:
        """Bytes in the journal: the offset a checkpoint records."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, offset: int) -> int:
        """Cut the journal back to ``offset`` bytes; return how many bytes went.

        Used at start-up when the journal ran ahead of the detector checkpoint
        (a crash between the two writes): the cut events came from readings
        that were never acknowledged, so the broker redelivers them and the
        same events are produced again, consistently with the detector state.
        """
        size = self.size()
        if offset >= size:
            return 0
        with open(self.path, "r+b") as fh:
            fh.truncate(offset)
            fh.flush()
            os.fsync(fh.fileno())
        return size - offset

    def append(self, events: list[AlarmEvent]) -> None:
        """Append condition events and fsync before returning (durable on return)."""
        self.append_records([e.to_dict() for e in events])

    def append_records(self, records: list[dict[str, Any]]) -> None:
        """Append records and fsync before returning (durable on return)."""
        if not records:
            return
        payload = "".join(
            json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n"
            for r in records
        ).encode("utf-8")
        with open(self.path, "ab") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
