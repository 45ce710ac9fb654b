"""The journals' hash chain and ``plantwatch audit verify``: intact, tampered, cut, old."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import plantwatch.cli.audit  # noqa: F401  (registers ``audit`` on the root app)
from alarms.audit import GENESIS, NOT_CHAINED, record_hash, verify
from alarms.journal import AlarmJournal
from alarms.segments import segment_files
from plantwatch.cli.root import app
from tests.clock import T0
from tests.test_alarm_lifecycle import condition

runner = CliRunner()


def journal_in_segments(state: Path) -> AlarmJournal:
    """Nine records in three segments (two closed, one open)."""
    journal = AlarmJournal(state / "alarms.jsonl")
    for seg in range(3):
        for i in range(3):
            t = T0 + seg * 10_000 + i * 1000
            journal.append_records([condition("LEL-1:h", "raise" if i % 2 == 0 else "clear", t)])
        if seg < 2:
            journal.close_segment()
    return journal


def audit(state: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--state-dir", str(state)])
    return result.exit_code, result.output


def test_intact_journal_verifies_across_segments(tmp_path: Path) -> None:
    journal_in_segments(tmp_path)
    names = [p.name for p, _ in segment_files(tmp_path / "alarms.jsonl")]
    assert names == ["alarms-000000000000.jsonl", "alarms-000000000003.jsonl", "alarms.jsonl"]
    first_of_second = json.loads((tmp_path / names[1]).read_text().splitlines()[0])
    last_of_first = json.loads((tmp_path / names[0]).read_text().splitlines()[-1])
    assert first_of_second["prev"] == last_of_first["hash"]  # chained across segments
    code, out = audit(tmp_path)
    assert code == 0, out
    assert "intact" in out and "9 records checked in 3 segments" in out


def test_tampered_value_in_a_closed_segment_is_named(tmp_path: Path) -> None:
    journal_in_segments(tmp_path)
    seg = tmp_path / "alarms-000000000003.jsonl"
    lines = seg.read_text().splitlines()
    record = json.loads(lines[1])
    record["value"] = 3.0  # the operator "never saw" 30 %LEL
    lines[1] = json.dumps(record)
    seg.write_text("\n".join(lines) + "\n")
    code, out = audit(tmp_path)
    assert code == 1
    assert "alarms-000000000003.jsonl line 2 (record 4)" in out
    assert "changed" in out


def test_deleted_line_is_named(tmp_path: Path) -> None:
    journal_in_segments(tmp_path)
    seg = tmp_path / "alarms-000000000000.jsonl"
    lines = seg.read_text().splitlines()
    del lines[1]
    seg.write_text("\n".join(lines) + "\n")
    report = verify(segment_files(tmp_path / "alarms.jsonl"))
    assert report.broken is not None
    assert (report.broken.segment, report.broken.line, report.broken.seq) == (
        "alarms-000000000000.jsonl", 2, 1)
    assert report.broken.expected == json.loads(lines[0])["hash"]
    code, out = audit(tmp_path)
    assert code == 1 and "alarms-000000000000.jsonl line 2 (record 1)" in out


def test_a_missing_segment_is_named(tmp_path: Path) -> None:
    journal_in_segments(tmp_path)
    (tmp_path / "alarms-000000000003.jsonl").unlink()
    code, out = audit(tmp_path)
    assert code == 1 and "alarms.jsonl line 1 (record 3)" in out and "removed" in out
    first = tmp_path / "first"
    journal_in_segments(first)
    (first / "alarms-000000000000.jsonl").unlink()
    code, out = audit(first)
    assert code == 1 and "a segment is missing" in out


def test_old_unhashed_journal_loads_and_verifies_with_a_note(tmp_path: Path) -> None:
    old = [{**condition("LEL-1:h", a, T0 + i).event.to_dict()}
           for i, a in enumerate(["raise", "clear"])]
    path = tmp_path / "alarms.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    journal = AlarmJournal(path)
    journal.append_records([condition("LEL-1:h", "raise", T0 + 5)])
    assert [r.event.action for r in journal.load_records()] == [  # type: ignore[attr-defined]
        "raise", "clear", "raise"]
    # The first sealed record chains to the old records, hashed as they are.
    prev = record_hash(old[1], record_hash(old[0], GENESIS))
    assert json.loads(path.read_text().splitlines()[2])["prev"] == prev
    code, out = audit(tmp_path)
    assert code == 0, out
    assert f"2 records {NOT_CHAINED}" in out and "1 records checked" in out


def test_no_journal_is_exit_2(tmp_path: Path) -> None:
    assert audit(tmp_path)[0] == 2
