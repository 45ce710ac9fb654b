"""``plantwatch backup`` and ``plantwatch restore``: the service's state
directory (alarm journals and their snapshots, the detector checkpoint, API
tokens, MSPC models, the spool, a SQLite store) copied while the service runs,
with a ``MANIFEST.json`` of sizes and SHA-256 sums that ``restore`` checks.

Files are taken by kind, not from a fixed list, so that a file a later version
adds is backed up too:

- **append-only** (``*.jsonl`` journals, the spool ``spool*.bin``): opened
  first, its size read from the open file, and that many bytes copied, in
  chunks (a spool may be gigabytes); a journal is cut at its last whole line
  (a record being appended is not one yet). A file replaced meanwhile is read
  from the version that was opened.
- **SQLite** (``*.sqlite3``, ``*.sqlite``, ``*.db``): SQLite's online backup,
  a consistent copy while the store writes.
- **everything else** (checkpoints, snapshots, tokens, models): replaced
  atomically by their writers, so opening one reads one whole version.

The replaced files are copied *before* the journals' sizes are read: the
checkpoint names the journal offset it matches, and a journal that runs ahead
of its checkpoint is cut back at start (docs/architecture.md, "Delivery
guarantees"), while one that fell behind could not be. A restore is therefore
the state of a crash at the moment of the backup. Any change of the set of
append files between the first listing and the end of the journals (a
compaction renames ``alarms.jsonl`` to a closed segment and starts a new one,
beside a new snapshot) makes it start over, so a snapshot is never paired with
segments from the other side of a compaction. A SQLite store is copied last,
after the journals: its copy can take long, and between the checkpoint and
the journals it would only widen the window a compaction can fall into (the
store may run ahead of the checkpoint: readings are stored at least once).

A restore brings back the token file as it was: tokens revoked after the
backup work again until revoked anew; ``restore`` lists the tokens it brought
back and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import typer

from api.auth import TokenStore
from plantwatch.cli.common import console, settings_or_exit
from plantwatch.cli.options import SettingsOption, StateDirOption, settings_with_state_dir
from plantwatch.cli.root import app, plantwatch_version
from plantwatch.cli.token import token_summary

__all__ = ["BackupError", "backup", "restore", "restore_backup", "take_backup",
           "verify_backup"]

MANIFEST = "MANIFEST.json"
FORMAT = 1
_ATTEMPTS = 3
_CHUNK = 1 << 20

Kind = Literal["append", "sqlite", "file"]


class BackupError(RuntimeError):
    """A backup cannot be taken or restored; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str  # relative to the state directory, with /
    kind: Kind
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "bytes": self.bytes,
                "sha256": self.sha256}


def kind_of(path: Path) -> Kind | None:
    """How a state file is copied; None: not copied (a writer's temporary file,
    SQLite's own side files, anything that is not a regular file)."""
    name = path.name
    if ".tmp" in name or name.endswith(("-wal", "-shm", "-journal")) or not path.is_file():
        return None
    if name.endswith(".jsonl") or (name.startswith("spool") and name.endswith(".bin")):
        return "append"
    if name.endswith((".sqlite3", ".sqlite", ".db")) and _is_sqlite(path):
        return "sqlite"
    return "file"


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _state_files(state_dir: Path) -> dict[str, Kind]:
    out: dict[str, Kind] = {}
    for path in sorted(state_dir.rglob("*")):
        kind = kind_of(path)
        if kind is not None:
            out[path.relative_to(state_dir).as_posix()] = kind
    return out


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _write_private(dest: Path, chunks: Any) -> tuple[int, str]:
    """Write ``chunks`` to ``dest`` (0600, fsynced); its size and SHA-256."""
    _private_dir(dest.parent)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    dest.chmod(0o600)
    return size, digest.hexdigest()


def _last_line_end(fh: BinaryIO, size: int, chunk: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes; 0 if none.
    Read backwards a chunk at a time: a torn tail costs one chunk, not the file."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        fh.seek(start)
        block = fh.read(end - start)
        at = block.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _read_prefix(src: Path, whole_lines: bool, chunk: int = _CHUNK) -> Iterator[bytes]:
    """The bytes of ``src`` up to the size it had when opened, ``chunk`` at a time;
    cut after the last newline when ``whole_lines``."""
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if whole_lines:
            size = _last_line_end(fh, size, chunk)
        fh.seek(0)
        left = size
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break  # cut shorter meanwhile (a spool emptied): what was there
            left -= len(data)
            yield data


def _read_whole(src: Path, chunk: int = _CHUNK) -> Iterator[bytes]:
    with open(src, "rb") as fh:
        while data := fh.read(chunk):
            yield data


def _copy_sqlite(src: Path, dest: Path, chunk: int) -> tuple[int, str]:
    _private_dir(dest.parent)
    tmp = dest.with_name(dest.name + ".partial")
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    size, digest = _write_private(dest, _read_whole(tmp, chunk))
    tmp.unlink()
    return size, digest


def _copy(state_dir: Path, rel: str, kind: Kind, to: Path, chunk: int) -> _Entry:
    src, dest = state_dir / rel, to / rel
    if kind == "sqlite":
        size, digest = _copy_sqlite(src, dest, chunk)
    elif kind == "append":
        size, digest = _write_private(dest, _read_prefix(src, rel.endswith(".jsonl"), chunk))
    else:
        size, digest = _write_private(dest, _read_whole(src, chunk))
    return _Entry(rel, kind, size, digest)


class _StartOver(Exception):
    """The append files changed while the backup ran (a compaction): take it again."""


def _appends(files: dict[str, Kind]) -> frozenset[str]:
    return frozenset(rel for rel, kind in files.items() if kind == "append")


def _take_once(state_dir: Path, to: Path, chunk: int) -> list[_Entry]:
    before = _state_files(state_dir)
    entries: list[_Entry] = []
    # 1. Files replaced whole (checkpoint, snapshots, tokens, models).
    for rel, kind in before.items():
        if kind != "file":
            continue
        try:
            entries.append(_copy(state_dir, rel, kind, to, chunk))
        except FileNotFoundError:
            continue  # replaced by a newer name, or removed: not state any more
    # 2. The journals and the spool, if they are still the same files.
    now = _state_files(state_dir)
    if _appends(now) != _appends(before):
        raise _StartOver
    for rel in sorted(_appends(now)):
        try:
            entries.append(_copy(state_dir, rel, "append", to, chunk))
        except FileNotFoundError as exc:
            raise _StartOver from exc
    if _appends(_state_files(state_dir)) != _appends(now):
        raise _StartOver  # a segment closed (renamed) while the journals were copied
    # 3. The SQLite store, last: it may run ahead of the checkpoint.
    for rel, kind in now.items():
        if kind != "sqlite":
            continue
        try:
            entries.append(_copy(state_dir, rel, kind, to, chunk))
        except FileNotFoundError:
            continue
    return sorted(entries, key=lambda e: e.path)


def take_backup(state_dir: Path, to: Path, *, chunk_bytes: int = _CHUNK) -> dict[str, Any]:
    """Back up ``state_dir`` into the new or empty directory ``to``; the manifest.

    Files are copied ``chunk_bytes`` at a time, so memory stays a few chunks
    whatever their size. ``MANIFEST.json`` is written last: a backup
    directory without one is not a backup (an interrupted one)."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes {chunk_bytes} must be positive")
    if not state_dir.is_dir():
        raise BackupError(f"state directory {state_dir} does not exist: give the service's "
                          "with --state-dir or --settings")
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"{to} is not empty: back up into a new directory")
    if to.resolve().is_relative_to(state_dir.resolve()):
        raise BackupError(f"{to} is inside the state directory {state_dir}: choose a "
                          "directory outside it")
    for attempt in range(_ATTEMPTS):
        _private_dir(to)
        try:
            entries = _take_once(state_dir, to, chunk_bytes)
            break
        except _StartOver:
            shutil.rmtree(to)
            if attempt == _ATTEMPTS - 1:
                raise BackupError(f"the journals in {state_dir} were compacted during each "
                                  f"of {_ATTEMPTS} attempts: try again") from None
    manifest = {
        "format": FORMAT,
        "plantwatch_version": plantwatch_version(),
        "created_ms": int(time.time() * 1000),
        "state_dir": str(state_dir.resolve()),
        "files": [e.to_dict() for e in entries],
    }
    _write_private(to / MANIFEST, [json.dumps(manifest, indent=1).encode() + b"\n"])
    return manifest


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in _read_whole(path):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise BackupError(f"{path} does not exist: {source} is not a complete plantwatch "
                          "backup") from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read as JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{path} is not a format-{FORMAT} plantwatch manifest")
    return manifest


def verify_backup(source: Path) -> list[str]:
    """Every file of the manifest, present with its size and SHA-256; the problems."""
    manifest = read_manifest(source)
    problems: list[str] = []
    for item in manifest["files"]:
        rel = str(item.get("path", ""))
        path = source / rel
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"{source / MANIFEST}: file path {rel!r} is not inside the backup")
            continue
        if not path.is_file():
            problems.append(f"{path}: missing (the manifest lists it)")
            continue
        size, digest = _sha256(path)
        if size != item.get("bytes") or digest != item.get("sha256"):
            problems.append(f"{path}: {size} bytes, SHA-256 {digest[:12]}…; the manifest "
                            f"says {item.get('bytes')} bytes, {str(item.get('sha256'))[:12]}…")
    return problems


def restore_backup(source: Path, state_dir: Path, force: bool = False) -> dict[str, Any]:
    """Restore the backup in ``source`` as ``state_dir`` (0700 directories,
    0600 files); the manifest.

    A non-empty state directory is refused unless ``force``; then it is kept
    beside, renamed ``<state_dir>.before-restore-<epoch s>``. The files are
    checked against the manifest first and copied into a directory beside the
    state directory, which is then renamed into place: a failed restore leaves
    no half-restored state behind. Stop the service before restoring."""
    manifest = read_manifest(source)
    problems = verify_backup(source)
    if problems:
        raise BackupError("the backup does not match its manifest: " + "; ".join(problems))
    if state_dir.exists() and not state_dir.is_dir():
        raise BackupError(f"{state_dir} is not a directory")
    occupied = state_dir.is_dir() and any(state_dir.iterdir())
    if occupied and not force:
        raise BackupError(f"state directory {state_dir} is not empty: restore into an empty "
                          "one, or add --force to keep it aside and restore in its place")
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = state_dir.with_name(f".{state_dir.name}.restoring-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    _private_dir(staging)
    for item in manifest["files"]:
        _write_private(staging / item["path"], _read_whole(source / item["path"]))
    if occupied:
        aside = state_dir.with_name(f"{state_dir.name}.before-restore-{int(time.time())}")
        state_dir.rename(aside)
        manifest["kept_aside"] = str(aside)
    elif state_dir.is_dir():
        state_dir.rmdir()
    staging.rename(state_dir)
    return manifest


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="new or empty directory for the backup")],
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Back up the state directory while the service runs, with a manifest.

    Journals, snapshots, the checkpoint, tokens, MSPC models, the spool and a
    SQLite store, with their sizes and SHA-256 sums in MANIFEST.json."""
    settings = settings_or_exit(lambda: settings_with_state_dir(settings_file, state_dir))
    try:
        manifest = take_backup(settings.state_dir, to)
    except (BackupError, OSError, sqlite3.Error) as exc:
        console.print(f"[red]backup failed:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    total = sum(f["bytes"] for f in manifest["files"])
    console.print(f"backed up {len(manifest['files'])} files ({total:,} bytes) of "
                  f"{settings.state_dir} to {to}")
    if settings.api.tokens_file is not None and not settings.api.tokens_file.resolve() \
            .is_relative_to(settings.state_dir.resolve()):
        console.print(f"[yellow]the tokens file {settings.api.tokens_file} is outside the "
                      "state directory: back it up with the settings[/yellow]")


@app.command()
def restore(
    source: Annotated[Path, typer.Option("--from", help="a directory plantwatch backup wrote")],
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
    force: Annotated[
        bool, typer.Option(help="restore over a non-empty state directory (kept aside, "
                                "renamed .before-restore-TIME)")
    ] = False,
) -> None:
    """Restore a backup as the state directory (stop the service first)."""
    settings = settings_or_exit(lambda: settings_with_state_dir(settings_file, state_dir))
    try:
        manifest = restore_backup(source, settings.state_dir, force=force)
    except (BackupError, OSError) as exc:
        console.print(f"[red]restore failed:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(f"restored {len(manifest['files'])} files (backup of plantwatch "
                  f"{manifest.get('plantwatch_version')}) into {settings.state_dir}"
                  + (f"; the previous state is in {manifest['kept_aside']}"
                     if "kept_aside" in manifest else ""))
    _report_tokens(settings.api.tokens_file, settings.state_dir)


def _report_tokens(tokens_file: Path | None, state_dir: Path) -> None:
    """Say which API tokens the restore brought back: the token file is the
    backup's, so a token revoked since then works again until revoked anew."""
    path = tokens_file or state_dir / "tokens.json"
    if not path.resolve().is_relative_to(state_dir.resolve()):
        console.print(f"the tokens file {path} is outside the state directory: not "
                      "restored, its tokens are as they were", soft_wrap=True)
        return
    if not path.is_file():
        console.print("no API tokens restored (the backup has no tokens file)")
        return
    try:
        rows = TokenStore(path).list()
    except ValueError as exc:
        console.print(f"[yellow]the restored tokens file cannot be read:[/yellow] {exc}",
                      soft_wrap=True)
        return
    console.print(f"[yellow]{len(rows)} API tokens restored, as they were at the backup: a "
                  "token revoked after the backup works again until revoked anew "
                  "(`plantwatch token revoke NAME`); check them:[/yellow]", soft_wrap=True)
    for row in rows:
        typer.echo(f"  {token_summary(row)}")
