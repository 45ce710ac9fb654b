"""Spool, alarm journal and detector checkpoint: what survives a crash, and what not."""

from __future__ import annotations

import numpy as np
import pytest

from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from engine.snapshot import Snapshot, remap_state
from ingest.checkpoint import CheckpointFile
from ingest.spool import Spool
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch

SENSOR_IDS = ["S-0", "S-1", "S-2", "S-3", "S-4"]


def batch(n: int, start: int = 0) -> ReadingBatch:
    return ReadingBatch.from_columns(
        np.arange(n) % 5, np.arange(start, start + n), np.linspace(0, 1, n), np.arange(n) % 4
    )


def test_spool_round_trip_in_order(tmp_path) -> None:
    spool = Spool(tmp_path / "spool.bin", SENSOR_IDS)
    assert spool.empty
    spool.append(batch(10))
    spool.append(batch(5, start=100))
    assert spool.readings == 15
    chunk = spool.peek(max_readings=12)
    got = chunk.readings
    assert got.ts.tolist() == list(range(10)) + list(range(100, 105))  # whole records only
    np.testing.assert_array_equal(got.value[:10], batch(10).value)
    spool.commit(chunk.end, chunk.count)
    assert spool.empty and spool.readings == 0
    assert (tmp_path / "spool.bin").stat().st_size == 0
    spool.close()


def test_spool_partial_commit_then_reopen_replays_all(tmp_path) -> None:
    spool = Spool(tmp_path / "s.bin", SENSOR_IDS)
    spool.append(batch(3))
    spool.append(batch(4, start=10))
    first = spool.peek(max_readings=1)
    assert len(first.readings) == 3
    spool.commit(first.end, first.count)
    assert not spool.empty and spool.readings == 4
    spool.close()
    # after a crash: replay from the start (dupes overwrite)
    again = Spool(tmp_path / "s.bin", SENSOR_IDS)
    assert again.readings == 7
    everything = again.peek().readings
    assert everything.ts.tolist() == [0, 1, 2, 10, 11, 12, 13]
    again.close()


def test_spool_cuts_a_torn_record(tmp_path) -> None:
    path = tmp_path / "s.bin"
    spool = Spool(path, SENSOR_IDS)
    spool.append(batch(3))
    spool.close()
    whole = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"PWS1\x05\x00\x00\x00garbage")
    reopened = Spool(path, SENSOR_IDS)
    assert reopened.torn_bytes_dropped > 0
    assert path.stat().st_size == whole
    assert reopened.readings == 3
    reopened.close()


def event(action: str, ts: int, sensor: str = "LEL-1") -> AlarmEvent:
    return AlarmEvent(
        alarm_id=f"{sensor}:h", sensor=sensor, limit="h", action=action,  # type: ignore[arg-type]
        ts=ts, value=30.0, setpoint=25.0, priority="high", site="s", workshop="w", area="a",
        team="t", post="p", kind="combustible_lel", unit="%LEL",
    )


def test_journal_rebuilds_board_and_drops_torn_line(tmp_path) -> None:
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    journal.append([event("raise", 1), event("raise", 2, "LEL-2")])
    journal.append([event("clear", 3)])
    with open(journal.path, "ab") as fh:
        fh.write(b'{"alarm_id": "LEL-9:h", "sens')
    board = AlarmManager(lambda alarm_id: None)
    board.replay(journal.load_records())
    assert journal.torn_records_dropped == 1
    assert board.active_conditions() == [("LEL-2", "h")]
    assert board.get("LEL-1:h") is not None and board.get("LEL-1:h").cleared_ts == 3  # type: ignore[union-attr]
    assert journal.path.read_bytes().endswith(b"\n")


def test_a_journal_append_that_fails_leaves_no_half_line(tmp_path, monkeypatch) -> None:
    from alarms import jsonl

    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    journal.append([event("raise", 1)])
    before = journal.path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonl.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        journal.append([event("raise", 2, "LEL-2")])
    monkeypatch.undo()
    assert journal.path.read_bytes() == before
    journal.append([event("clear", 3)])
    assert [(e.sensor, e.action) for e in journal.load()] == [("LEL-1", "raise"),
                                                              ("LEL-1", "clear")]
    assert journal.torn_records_dropped == 0


def test_journal_truncate_to_checkpoint_offset(tmp_path) -> None:
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    journal.append([event("raise", 1)])
    offset = journal.size()
    journal.append([event("clear", 2)])
    assert journal.truncate(offset) > 0
    assert [e.action for e in journal.load()] == ["raise"]


def test_journal_corrupt_middle_names_the_file(tmp_path) -> None:
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    journal.path.write_bytes(b"{bad}\n")
    with pytest.raises(ValueError, match=r"alarms\.jsonl"):
        journal.load()


def test_checkpoint_round_trip_and_remap(tmp_path) -> None:
    cp = CheckpointFile(tmp_path / "det.npz")
    assert cp.load() is None
    state = {"level": np.array([1, 2, 0], np.int8), "last_ts": np.array([5, 6, 7], np.int64)}
    cp.save(Snapshot(state, ["a", "b", "c"], 123))
    loaded = cp.load()
    assert loaded is not None and loaded.journal_offset == 123
    assert loaded.sensor_ids == ["a", "b", "c"]
    fresh = {"level": np.zeros(3, np.int8), "last_ts": np.full(3, -1, np.int64)}
    remapped = remap_state(loaded.state, loaded.sensor_ids, fresh, ["c", "x", "a"])
    assert remapped["level"].tolist() == [0, 0, 1]
    assert remapped["last_ts"].tolist() == [7, -1, 5]


def test_checkpoint_of_the_whole_suite_survives_a_config_change(tmp_path) -> None:
    """Adding, removing and reordering sensors keeps the state of those kept."""
    from detectors.suite import DetectorSuite
    from model.batch import ReadingBatch as Batch
    from model.plant import parse_plant
    from model.sensor_table import SensorTable
    from tests.plants import small_plant_data

    data = small_plant_data()
    table = SensorTable.from_config(parse_plant(data))
    suite = DetectorSuite(table)
    suite.tick(1_000)
    lel = table.index["LEL-1"]
    suite.update(Batch.from_columns([lel, lel], [1_000, 2_000], [30.0, 60.0]))
    cp = CheckpointFile(tmp_path / "det.npz")
    cp.save(Snapshot(suite.get_state(), table.ids, 0))

    sensors = data["sites"][0]["workshops"][0]["areas"][0]["sensors"]
    sensors.reverse()
    sensors.pop(0)  # drop one sensor (PT-1)
    sensors.append({"id": "NEW-1", "kind": "combustible_lel", "range": [0, 100]})
    table2 = SensorTable.from_config(parse_plant(data))
    suite2 = DetectorSuite(table2)
    loaded = cp.load()
    assert loaded is not None
    suite2.set_state(remap_state(loaded.state, loaded.sensor_ids, suite2.get_state(), table2.ids))
    row = table2.index["LEL-1"]
    assert suite2.limits.active[row].tolist() == [False, False, True, True]
    assert int(suite2.first_tick_ms) == 1_000
    assert not suite2.limits.active[table2.index["NEW-1"]].any()
    # and the restored alarm still clears
    suite2.update(Batch.from_columns([row], [3_000], [1.0]))
    assert not suite2.limits.active[row].any()


def test_alarms_restored_without_checkpoint_clear_normally() -> None:
    from detectors.suite import DetectorSuite
    from model.batch import ReadingBatch as Batch
    from model.sensor_table import SensorTable
    from tests.plants import small_plant

    table = SensorTable.from_config(small_plant())
    suite = DetectorSuite(table)
    suite.restore_active([("LEL-1", "h"), ("LEL-1", "trend"), ("NOPE", "h"), ("O2-1", "nodata")])
    lel = table.index["LEL-1"]
    assert suite.limits.active[lel].tolist() == [False, False, True, False]
    suite.update(Batch.from_columns([lel], [1_000], [1.0]))
    cleared = {(int(s), int(c)) for s, c, a in zip(suite.transitions.sensor,
               suite.transitions.condition, suite.transitions.active, strict=True) if not a}
    assert (lel, 2) in cleared  # h cleared on the first normal reading


def test_spool_skips_a_corrupt_record_in_the_middle(tmp_path) -> None:
    path = tmp_path / "s.bin"
    spool = Spool(path, SENSOR_IDS)
    spool.append(batch(3))
    first_end = path.stat().st_size
    spool.append(batch(4, start=10))
    spool.append(batch(2, start=20))
    spool.close()
    raw = bytearray(path.read_bytes())
    raw[first_end + 20] ^= 0xFF  # damage the second record's body
    path.write_bytes(bytes(raw))
    reopened = Spool(path, SENSOR_IDS)
    assert reopened.torn_bytes_dropped > 0
    assert reopened.readings == 5
    kept = reopened.peek().readings
    assert kept.ts.tolist() == [0, 1, 2, 20, 21]  # the records after the damage survive
    reopened.close()
