"""Journal compaction: a start-up from the snapshot equals a full replay; logical
offsets survive compaction; files are owner-only; the start-up benchmark."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.catalogue import AlarmCatalogue
from alarms.floods import FloodPolicy
from alarms.hazards import HazardJournal, HazardRules
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmActionError, AlarmManager, AlarmPolicy
from alarms.records import ConditionRecord, tick_record
from alarms.system import AlarmSystem
from tests.clock import T0
from tests.plants import small_plant
from tests.test_alarm_lifecycle import ENTRIES, RULES, _record, condition, step

ROOT = Path(__file__).resolve().parents[1]


def fresh(state: Path) -> AlarmSystem:
    manager = AlarmManager(
        AlarmCatalogue(small_plant(), ENTRIES, max_shelve_s=3600),
        AlarmPolicy(flood=FloodPolicy(start_above=3, end_below=2, window_ms=120_000)),
        RULES)
    return AlarmSystem(manager, AlarmJournal(state / "alarms.jsonl"),
                       hazard_journal=HazardJournal(state / "hazards.jsonl"),
                       hazard_rules=HazardRules(repeated_alarm_count=2,
                                                repeated_alarm_window_ms=600_000))


def drive(live: AlarmSystem, steps: list[Any], keep_ms: int) -> None:
    """The real commit path (as the property test of the lifecycle drives it), with
    a compaction wherever a step asks for one."""
    server = T0
    for ((kind, a, b), dt, lag), compact in steps:
        server += dt
        ts = server - lag if kind == "cond" else server
        record = _record(kind, a, b, ts)
        if isinstance(record, ConditionRecord):
            record = ConditionRecord(record.event, ts)
        if kind == "act":
            live.commit([tick_record(server)], server)
            try:
                live.check(record)
            except AlarmActionError:
                continue
        live.commit([record], server)
        if compact:
            live.compact(keep_ms)


def bounded(snapshot: dict[str, Any], keep_from: int) -> dict[str, Any]:
    """A manager snapshot without the history a compaction with ``keep_from`` leaves out."""
    return {**snapshot,
            "activations": [a for a in snapshot["activations"]
                            if a[1] >= keep_from or a[2] is None or a[2] >= keep_from],
            "floods": [f for f in snapshot["floods"] if f[2] is None or f[2] >= keep_from]}


def restored(state: Path, now: int, *, from_snapshot: bool) -> AlarmSystem:
    system = fresh(state)
    system.restore(now, from_snapshot=from_snapshot)
    return system


compacting_steps = st.lists(st.tuples(st.tuples(step, st.integers(0, 90_000),
                                                st.integers(0, 20_000)),
                                      st.booleans()), max_size=60)


@settings(max_examples=60, deadline=None)
@given(compacting_steps)
def test_restore_from_snapshot_equals_full_replay(steps: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        live = fresh(state)
        drive(live, steps, keep_ms=10**12)  # keep all history: snapshots are exact
        now = live.manager.now
        snap, full = (restored(state, now, from_snapshot=s) for s in (True, False))
        assert snap.manager.snapshot() == full.manager.snapshot() == live.manager.snapshot()
        # Counters agree but for ``records``: the live system also counted the
        # ticks that changed nothing, which are never journaled.
        for name in ("ignored_actions", "unknown_records", "by_change"):
            assert getattr(snap.manager.counters, name) == getattr(full.manager.counters, name)
        assert snap.manager.audit == full.manager.audit
        assert snap.manager.active_conditions() == full.manager.active_conditions()
        assert snap.hazards.list() == full.hazards.list() == live.hazards.list()
        assert snap._repeated.state() == full._repeated.state()
        assert snap.grades(now) == full.grades(now)
        if any(c for _, c in steps) and live.journal.size():
            assert "snapshot" in snap.restored_from
        # The full history is still there for KPIs and the audit trail.
        assert len(AlarmJournal(state / "alarms.jsonl").load_records()) == \
            full.manager.counters.records


@settings(max_examples=40, deadline=None)
@given(compacting_steps)
def test_bounded_history_keeps_the_state_and_the_recent_history(steps: list[Any]) -> None:
    keep_ms = 5 * 60_000
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        live = fresh(state)
        drive(live, steps, keep_ms=keep_ms)
        now = live.manager.now
        snap, full = (restored(state, now, from_snapshot=s) for s in (True, False))
        keep_from = now - keep_ms
        assert bounded(snap.manager.snapshot(), keep_from) == \
            bounded(full.manager.snapshot(), keep_from)
        assert snap.manager.snapshot()["points"] == full.manager.snapshot()["points"]
        assert [a for a in snap.manager.audit if a["ts"] >= keep_from] == \
            [a for a in full.manager.audit if a["ts"] >= keep_from]
        assert snap.hazards.list() == full.hazards.list()
        assert snap._repeated.state() == full._repeated.state()


def raise_clear(system: AlarmSystem, t: int) -> None:
    system.commit([condition("LEL-1:h", "raise", t)], t)
    system.commit([condition("LEL-1:h", "clear", t + 1000)], t + 1000)


def test_offsets_are_logical_across_segments(tmp_path: Path) -> None:
    live = fresh(tmp_path)
    raise_clear(live, T0)
    before = live.journal.size()
    assert live.compact()
    assert live.journal.size() == before  # closing moves no byte
    raise_clear(live, T0 + 10_000)
    checkpoint = live.journal.size()
    raise_clear(live, T0 + 20_000)
    # A crash after the checkpoint: the engine cuts back to it, in the open segment.
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    assert journal.truncate(checkpoint) > 0
    assert journal.size() == checkpoint
    assert len(journal.load_records()) == 4  # both segments, nothing after the cut
    with pytest.raises(ValueError, match="closed segments"):
        journal.truncate(before - 1)
    again = fresh(tmp_path)
    again.restore(T0 + 30_000)
    assert "snapshot" in again.restored_from
    assert again.manager.counters.records == 4


def test_snapshot_written_but_segment_not_yet_closed(tmp_path: Path) -> None:
    """A crash between writing the snapshot and renaming the segment."""
    live = fresh(tmp_path)
    raise_clear(live, T0)
    journal = live.journal
    assert isinstance(journal, AlarmJournal)
    journal.save_snapshot({"journal": journal.position().to_dict(),
                           "manager": live.manager.state(), "repeated": live._repeated.state(),
                           "hazard_journal": None, "hazards": None}, live.manager.now)
    raise_clear(live, T0 + 10_000)
    snap = restored(tmp_path, T0 + 20_000, from_snapshot=True)
    assert "snapshot" in snap.restored_from
    assert snap.manager.snapshot() == live.manager.snapshot()


def test_a_snapshot_ahead_of_the_journal_is_not_used(tmp_path: Path) -> None:
    live = fresh(tmp_path)
    raise_clear(live, T0)
    offset = live.journal.size()
    raise_clear(live, T0 + 10_000)
    journal = live.journal
    assert isinstance(journal, AlarmJournal)
    journal.save_snapshot({"journal": journal.position().to_dict(),
                           "manager": live.manager.state(), "repeated": live._repeated.state(),
                           "hazard_journal": None, "hazards": None}, live.manager.now)
    AlarmJournal(tmp_path / "alarms.jsonl").truncate(offset)  # engine cut after a crash
    snap = restored(tmp_path, T0 + 20_000, from_snapshot=True)
    assert "whole journal" in snap.restored_from and "holds" in snap.restored_from
    assert len(snap.manager.activations) == 1


def test_state_files_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    live = fresh(state)
    raise_clear(live, T0)
    live.create_hazard(title="leaking flange", by="op", ts=T0)
    live.compact()
    raise_clear(live, T0 + 10_000)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = sorted(p.name for p in state.iterdir())
    # The second raise makes a repeated-alarm hazard: a new open hazard segment.
    assert files == ["alarms-000000000000.jsonl", "alarms.jsonl", "alarms.snapshot.json",
                     "hazards-000000000000.jsonl", "hazards.jsonl"]
    for p in state.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_should_compact_counts_records_and_time(tmp_path: Path) -> None:
    live = fresh(tmp_path)
    journal = live.journal
    assert isinstance(journal, AlarmJournal)
    assert not journal.should_compact(T0, every_records=1, every_ms=1)  # nothing written
    raise_clear(live, T0)
    assert journal.should_compact(T0, every_records=2)
    assert not journal.should_compact(T0, every_records=3, every_ms=3_600_000)
    assert journal.should_compact(T0 + 3_600_000, every_records=3, every_ms=3_600_000)
    live.compact()
    assert not journal.should_compact(T0 + 3_600_000, every_records=1)


def test_benchmark_small() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "journal_startup.py"), "--small", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    result = json.loads(out.stdout)
    assert result["same_state"] is True
    assert result["compacted_s"] < result["full_replay_s"]
    assert result["compacted_s"] < 5.0
