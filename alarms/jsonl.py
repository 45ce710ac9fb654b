"""A durable, append-only JSON-lines file: the one mechanism behind the alarm
journal (:mod:`alarms.journal`) and the hazard journal (:mod:`alarms.hazards`).

* An append is fsynced before it returns; the first one also fsyncs the
  directory, so the new file's entry survives a crash.
* An append that fails (disk full, I/O error) is cut back off the file before
  the error is raised, so a later append never lands after half a line.
* Reading drops a torn last line (a crash mid-append: its writer was never
  told it was saved) and truncates the file back to the last whole record; a
  bad line anywhere else is corruption, reported with the file and the offset.
* The file is created owner-only (0600) and a directory it creates 0700: the
  journals are the plant's audit trail.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["FILE_MODE", "JsonLines", "make_private_dir", "sync_dir", "write_all"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) owner-only; an existing one is left as it is."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode goes through the umask


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def sync_dir(path: Path) -> None:
    """fsync a directory, so a file created, renamed or replaced in it survives a crash."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class JsonLines:
    """Records (JSON objects) one per line in the file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        make_private_dir(self.path.parent)
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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        with os.fdopen(fd, "ab") as fh:
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
            sync_dir(self.path.parent)

    def read(
        self, check: Callable[[dict[str, Any]], None], what: str, fix: str, start: int = 0
    ) -> list[tuple[int, dict[str, Any]]]:
        """Every whole record from byte ``start`` (a record boundary) with its
        byte offset, oldest first.

        ``check`` raises ValueError, KeyError or TypeError for a record that
        is not one of ours; the error names the file, the offset, ``what``
        (e.g. "hazard record") and ``fix``.
        """
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
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
                    f"{self.path}: {what} at byte {start + pos} is corrupt ({exc}); {fix}"
                ) from exc
            records.append((start + pos, record))
            pos = nl + 1
        if pos < len(data):
            self.torn_records_dropped += 1
            self.truncate(start + pos)
        return records

    def last_line(self, end: int | None = None) -> bytes | None:
        """The last whole line ending at or before byte ``end`` (default: the file's end),
        without its newline; None if there is none. Reads only the tail."""
        if not self.path.exists():
            return None
        with open(self.path, "rb") as fh:
            stop = fh.seek(0, os.SEEK_END) if end is None else end
            chunk = 1 << 16
            while True:
                begin = max(0, stop - chunk)
                fh.seek(begin)
                data = fh.read(stop - begin)
                last_nl = data.rfind(b"\n")
                if last_nl < 0:
                    if begin == 0:
                        return None
                    chunk *= 4
                    continue
                prev_nl = data.rfind(b"\n", 0, last_nl)
                if prev_nl >= 0 or begin == 0:
                    return data[prev_nl + 1:last_nl]
                chunk *= 4

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
