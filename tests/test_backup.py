"""plantwatch backup / restore: consistent copies of a state directory that is
being written, a manifest that catches a damaged backup, private modes."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alarms.journal import AlarmJournal
from api.auth import TokenStore
from model.alarm_events import AlarmEvent
from plantwatch.cli import app
from plantwatch.cli.backup import (
    MANIFEST,
    BackupError,
    kind_of,
    restore_backup,
    take_backup,
    verify_backup,
)

EMPTY_TOKENS = '{"version": 2, "tokens": []}'


def event(i: int) -> AlarmEvent:
    return AlarmEvent(
        alarm_id=f"LEL-{i % 7}:h", sensor=f"LEL-{i % 7}", limit="h",
        action="raise" if i % 2 == 0 else "clear", ts=i, value=30.0, setpoint=25.0,
        priority="high", site="s", workshop="w", area="a", team="t", post="p",
        kind="combustible_lel", unit="%LEL",
    )


def _replace_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


class _Writers:
    """The service's writers, busy: the alarm journal appending, a journal
    whose lines are written in two halves, a checkpoint replaced atomically."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.journal = AlarmJournal(state / "alarms.jsonl")
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._alarms, self._halves, self._checkpoint)]

    def _alarms(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.journal.append([event(i), event(i + 1)])
            i += 2

    def _halves(self) -> None:
        with open(self.state / "hazards.jsonl", "ab") as fh:
            i = 0
            while not self.stop.is_set():
                line = json.dumps({"n": i, "pad": "x" * 200}).encode() + b"\n"
                fh.write(line[:100])
                fh.flush()
                fh.write(line[100:])
                fh.flush()
                i += 1

    def _checkpoint(self) -> None:
        i = 0
        while not self.stop.is_set():
            _replace_atomically(self.state / "detectors.npz", bytes([i % 251]) * 65_536)
            i += 1

    def __enter__(self) -> _Writers:
        for t in self.threads:
            t.start()
        while not (self.journal.size() > 0 and (self.state / "detectors.npz").exists()
                   and (self.state / "hazards.jsonl").stat().st_size > 1000):
            self.stop.wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "mspc").mkdir(parents=True)
    (state / "tokens.json").write_text(EMPTY_TOKENS)
    (state / "mspc" / "rx-r101.npz").write_bytes(b"model")
    (state / "detectors.npz.tmp").write_bytes(b"a writer's temporary file")
    return state


def test_a_backup_taken_while_the_journals_grow_is_whole_and_verifies(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    with _Writers(state):
        manifest = take_backup(state, tmp_path / "backup")
        final_alarms = (state / "alarms.jsonl").read_bytes()
    backup = tmp_path / "backup"
    assert verify_backup(backup) == []
    files = {f["path"]: f for f in manifest["files"]}
    assert set(files) == {"alarms.jsonl", "hazards.jsonl", "detectors.npz", "tokens.json",
                          "mspc/rx-r101.npz"}
    assert files["alarms.jsonl"]["kind"] == "append"
    assert files["detectors.npz"]["kind"] == "file"
    assert manifest["plantwatch_version"]
    for name in ("alarms.jsonl", "hazards.jsonl"):
        copied = (backup / name).read_bytes()
        assert copied and copied.endswith(b"\n"), name  # cut at the last whole line
        assert (state / name).read_bytes().startswith(copied), name
    assert final_alarms.startswith((backup / "alarms.jsonl").read_bytes())
    for line in (backup / "hazards.jsonl").read_bytes().splitlines():
        assert json.loads(line)["pad"] == "x" * 200
    checkpoint = (backup / "detectors.npz").read_bytes()
    assert len(checkpoint) == 65_536 and len(set(checkpoint)) == 1  # one whole version
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert stat.S_IMODE((backup / "alarms.jsonl").stat().st_mode) == 0o600

    restored = tmp_path / "restored"
    restore_backup(backup, restored)
    journal = AlarmJournal(restored / "alarms.jsonl")
    records = journal.load_records()
    assert len(records) == (backup / "alarms.jsonl").read_bytes().count(b"\n") > 0
    assert journal.torn_records_dropped == 0
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    assert stat.S_IMODE((restored / "mspc").stat().st_mode) == 0o700
    for path in restored.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not (restored / "detectors.npz.tmp").exists()


def test_restore_refuses_a_damaged_backup_and_a_busy_state_dir(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    AlarmJournal(state / "alarms.jsonl").append([event(0), event(1)])
    backup = tmp_path / "backup"
    take_backup(state, backup)

    with pytest.raises(BackupError, match="not empty"):
        restore_backup(backup, state)
    manifest = restore_backup(backup, state, force=True)
    aside = Path(manifest["kept_aside"])
    assert (aside / "detectors.npz.tmp").exists()  # the old state, kept whole
    assert (state / "tokens.json").read_text() == EMPTY_TOKENS

    with open(backup / "alarms.jsonl", "ab") as fh:
        fh.write(b"{}\n")
    problems = verify_backup(backup)
    assert len(problems) == 1 and "alarms.jsonl" in problems[0] and "manifest says" in problems[0]
    with pytest.raises(BackupError, match="does not match its manifest"):
        restore_backup(backup, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()

    (backup / MANIFEST).unlink()
    with pytest.raises(BackupError, match="not a complete plantwatch backup"):
        restore_backup(backup, tmp_path / "elsewhere")
    with pytest.raises(BackupError, match="not empty"):
        take_backup(state, backup)


def test_files_are_taken_by_kind(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "plantwatch.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    for name in ("alarms-000000001024.jsonl", "spool.bin", "alarms.snapshot.json",
                 "plantwatch.sqlite3-wal", "x.tmp.npz"):
        (tmp_path / name).write_bytes(b"")
    assert kind_of(tmp_path / "alarms-000000001024.jsonl") == "append"
    assert kind_of(tmp_path / "spool.bin") == "append"
    assert kind_of(tmp_path / "alarms.snapshot.json") == "file"
    assert kind_of(db) == "sqlite"
    assert kind_of(tmp_path / "plantwatch.sqlite3-wal") is None
    assert kind_of(tmp_path / "x.tmp.npz") is None


def test_the_commands_back_up_and_restore_a_state_dir(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    AlarmJournal(state / "alarms.jsonl").append([event(0)])
    runner = CliRunner()
    done = runner.invoke(app, ["backup", "--to", str(tmp_path / "b"), "--state-dir", str(state)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "b" / MANIFEST).is_file()
    again = runner.invoke(app, ["restore", "--from", str(tmp_path / "b"),
                                "--state-dir", str(state)])
    assert again.exit_code == 1 and "--force" in again.output
    fresh = runner.invoke(app, ["restore", "--from", str(tmp_path / "b"),
                                "--state-dir", str(tmp_path / "new")])
    assert fresh.exit_code == 0, fresh.output
    assert len(AlarmJournal(tmp_path / "new" / "alarms.jsonl").load_records()) == 1


def test_a_compaction_during_the_backup_never_pairs_old_state_with_new_segments(
        tmp_path: Path) -> None:
    """A compaction writes its snapshot, renames alarms.jsonl to a closed segment and
    starts a new alarms.jsonl. A backup is one moment of the state directory: its
    snapshot and its segments come from the same side of the compaction."""
    state = _state_dir(tmp_path)
    journal = AlarmJournal(state / "alarms.jsonl")
    journal.append([event(i) for i in range(10)])
    journal.save_snapshot({"compaction": 0}, at_ms=1)
    store = state / "zz-store.sqlite3"
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE readings (x)")
    backup = tmp_path / "backup"
    locked = threading.Event()

    def compact_while_the_store_is_busy() -> None:
        # The store is busy (locked) when the backup starts: its copy waits.
        conn = sqlite3.connect(store, isolation_level=None, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        deadline = time.monotonic() + 10
        while not (backup / "alarms.snapshot.json").exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        journal.save_snapshot({"compaction": 1}, at_ms=2)
        journal.close_segment()
        journal.append([event(100)])
        conn.execute("COMMIT")
        conn.close()

    compactor = threading.Thread(target=compact_while_the_store_is_busy)
    compactor.start()
    assert locked.wait(10)
    manifest = take_backup(state, backup)
    compactor.join(10)
    files = {f["path"] for f in manifest["files"]}
    assert "zz-store.sqlite3" in files and verify_backup(backup) == []
    closed = sorted(f for f in files if f.startswith("alarms-"))
    snapshot = json.loads((backup / "alarms.snapshot.json").read_bytes())
    if closed:  # taken after the compaction: its snapshot and both segments
        assert snapshot["compaction"] == 1
        assert len(AlarmJournal(backup / "alarms.jsonl").load_records()) == 11
    else:  # taken before it: the old snapshot and the whole old journal
        assert snapshot["compaction"] == 0
        assert len(AlarmJournal(backup / "alarms.jsonl").load_records()) == 10


def test_append_files_are_copied_in_bounded_memory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    line = json.dumps({"pad": "x" * 90}).encode() + b"\n"
    journal = line * 40_000  # ~4 MB
    (state / "alarms.jsonl").write_bytes(journal + b'{"torn": "reco')
    (state / "spool.bin").write_bytes(os.urandom(3 << 20))
    # A journal whose last whole line ends long before the end (a torn tail
    # longer than a chunk).
    (state / "hazards.jsonl").write_bytes(line * 3 + b"y" * 200_000)
    chunk = 64 << 10
    tracemalloc.start()
    try:
        take_backup(state, tmp_path / "backup", chunk_bytes=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # a few chunks, never a whole file
    backup = tmp_path / "backup"
    assert (backup / "alarms.jsonl").read_bytes() == journal  # cut at the last newline
    assert (backup / "spool.bin").read_bytes() == (state / "spool.bin").read_bytes()
    assert (backup / "hazards.jsonl").read_bytes() == line * 3
    assert verify_backup(backup) == []


def test_restore_lists_the_tokens_it_brought_back(tmp_path: Path) -> None:
    state = _state_dir(tmp_path)
    tokens = TokenStore(state / "tokens.json")
    now = time.time_ns() // 1_000_000
    tokens.create("li", "operator", now)
    tokens.create("wall", "viewer", now, lifetime_ms=None)
    runner = CliRunner()
    done = runner.invoke(app, ["backup", "--to", str(tmp_path / "b"), "--state-dir", str(state)])
    assert done.exit_code == 0, done.output
    tokens.revoke("li")  # after the backup: the restore brings it back
    restored = runner.invoke(app, ["restore", "--from", str(tmp_path / "b"),
                                   "--state-dir", str(tmp_path / "new")])
    assert restored.exit_code == 0, restored.output
    out = " ".join(restored.output.split())
    assert "li operator expires 20" in out and "wall viewer never expires" in out
    assert "revoked after the backup" in out and "plantwatch token revoke" in out
    assert TokenStore(tmp_path / "new" / "tokens.json").list()[0]["name"] == "li"
