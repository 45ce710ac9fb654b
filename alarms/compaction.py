"""Journal compaction: the state snapshot a start-up begins from, and when to take one.

Replaying a year of journal at every start-up takes minutes. A compaction
(:meth:`alarms.system.AlarmSystem.compact`) writes the alarm system's state
to ``alarms.snapshot.json`` with the journal positions it matches, then
closes the open journal segments (:mod:`alarms.segments`). A start-up loads
the snapshot and replays only the records after it; the closed segments stay
untouched as the full audit trail (``load_records`` still reads them all).

What the snapshot keeps of the history is bounded: activations, floods and
operator actions from the last ``keep_ms`` of alarm time (default 35 days:
the KPI reports look at a day to a month, and the repeated-alarm hazard rule
saves its own counter state, so it needs none of them), plus everything
still open. Older history lives in the closed segments only.

The file is written atomically (temporary file 0600, fsync, rename, fsync of
the directory): after a crash it is the old snapshot or the new one, never
half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from alarms.jsonl import FILE_MODE, sync_dir

__all__ = [
    "DEFAULT_KEEP_MS",
    "SNAPSHOT_VERSION",
    "CompactionClock",
    "read_snapshot",
    "snapshot_path",
    "write_snapshot",
]

DAY_MS = 86_400_000
DEFAULT_KEEP_MS = 35 * DAY_MS
SNAPSHOT_VERSION = 1


def snapshot_path(journal_path: Path) -> Path:
    """``alarms.jsonl`` → ``alarms.snapshot.json`` beside it."""
    return journal_path.with_name(journal_path.stem + ".snapshot.json")


def write_snapshot(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically and durably, owner-only."""
    payload = json.dumps({"version": SNAPSHOT_VERSION, **state},
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot at ``path``, or None if there is none.

    A snapshot that cannot be read is not an error: the journal is the source
    of truth, so the caller replays it in full instead (and says why).
    """
    if not path.exists():
        return None
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(
            f"{path}: not a version {SNAPSHOT_VERSION} journal snapshot "
            f"(version {data.get('version') if isinstance(data, dict) else None!r}); "
            "it is ignored and the journal replayed in full (delete it to silence this)")
    return data


class CompactionClock:
    """When a journal last compacted, for a cheap ``should_compact`` test.

    ``since_ms`` is the alarm time of the last compaction (from the snapshot),
    or, if there was none, the first time anyone asked.
    """

    def __init__(self, since_ms: int | None = None) -> None:
        self.since_ms = since_ms

    def due(self, now_ms: int, records: int, *, every_records: int | None,
            every_ms: int | None) -> bool:
        if records == 0:
            return False
        if every_records is not None and records >= every_records:
            return True
        if every_ms is None:
            return False
        if self.since_ms is None:
            self.since_ms = now_ms
        return now_ms - self.since_ms >= every_ms
