"""A durable, append-only JSON-lines file: the one mechanism behind the alarm
journal (:mod:`alarms.journal`) and the hazard journal (:mod:`alarms.hazards`).

* An append is fsynced before it returns; the first one also fsyncs the
  directory, so the new file's entry survives a crash.
* An append that fails (disk full, I/O error) is cut back off the file before
  the error is raised, so a later append never lands after half a line.
* Reading drops a torn last line (a crash mid-append: its writer was never
  told it was saved) and truncates the file back to the last whole record; a
  bad line anywhere else is corruption, reported with the file and the offset.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonLines"]


class JsonLines:
    """Records (JSON objects) one per line in the file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn_records_dropped = 0

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append the records and fsync before returning (durable on return)."""
        payload = "".join(
            json.dumps(dict(r), separators=(",", ":"), ensure_ascii=False) + "\n"
            for r in records
        ).encode("utf-8")
        if not payload:
            return
        created = not self.path.exists()
        with open(self.path, "ab") as fh:
            size = fh.tell()
            try:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(size)
                raise
        if created:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def read(
        self, check: Callable[[dict[str, Any]], None], what: str, fix: str
    ) -> list[tuple[int, dict[str, Any]]]:
        """Every whole record with its byte offset, oldest first.

        ``check`` raises ValueError, KeyError or TypeError for a record that
        is not one of ours; the error names the file, the offset, ``what``
        (e.g. "hazard record") and ``fix``.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[tuple[int, dict[str, Any]]] = []
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # torn last line: its newline was never written
            try:
                record = json.loads(data[pos:nl])
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                check(record)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{self.path}: {what} at byte {pos} is corrupt ({exc}); {fix}"
                ) from exc
            records.append((pos, record))
            pos = nl + 1
        if pos < len(data):
            self.torn_records_dropped += 1
            self.truncate(pos)
        return records

    def size(self) -> int:
        """Bytes in the file."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, offset: int) -> int:
        """Cut the file back to ``offset`` bytes (fsynced); return how many bytes went."""
        size = self.size()
        if offset >= size:
            return 0
        with open(self.path, "r+b") as fh:
            fh.truncate(offset)
            fh.flush()
            os.fsync(fh.fileno())
        return size - offset
