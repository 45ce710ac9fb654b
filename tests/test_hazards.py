"""Hazard tickets (隐患排查治理): lifecycle, automatic raising, journal and replay."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.config import parse_alarm_config
from alarms.hazards import (
    AUTO_REPORTER,
    AUTOMATIC_SOURCES,
    STATUSES,
    Hazard,
    HazardError,
    HazardJournal,
    HazardRecord,
    HazardRegistry,
    HazardRules,
    RepeatedAlarmCounter,
)
from alarms.journal import AlarmJournal
from alarms.system import AlarmSystem
from model.plant import parse_plant
from tests.clock import T0
from tests.plants import small_plant_data
from tests.test_alarm_lifecycle import condition

DAY = 86_400_000
HOUR = 3_600_000
ALLOWED = {
    ("reported", "assigned"),
    ("reported", "closed"),
    ("assigned", "rectifying"),
    ("assigned", "closed"),
    ("rectifying", "verified"),
    ("rectifying", "closed"),
    ("verified", "closed"),
    ("verified", "rectifying"),
}


def snapshot(registry: HazardRegistry, now_ts: int = T0) -> list[dict[str, Any]]:
    return [h.to_dict(now_ts) for h in registry.list()]


def new_hazard(registry: HazardRegistry, **kwargs: Any) -> Hazard:
    fields: dict[str, Any] = {"title": "Flange leak at P-101", "by": "zhang", "ts": T0}
    return registry.create(**(fields | kwargs)).hazard


def at_status(registry: HazardRegistry, status: str) -> Hazard:
    """A fresh hazard walked along the main path to ``status``."""
    hazard = new_hazard(registry)
    path = ["assigned", "rectifying", "verified", "closed"]
    for step, to in enumerate(path[: path.index(status) + 1] if status != "reported" else []):
        hazard = registry.update(
            hazard.id, by="lead", ts=T0 + step + 1, status=to, owner="wang" if step == 0 else None
        ).hazard
    assert hazard.status == status
    return hazard


def test_full_lifecycle_is_recorded_in_history() -> None:
    reg = HazardRegistry()
    created, record = reg.create(
        title="Flange leak at P-101",
        description="bubbles at the gasket",
        by="zhang",
        ts=T0,
        area="tank-farm-A",
        sensor="TF-A-LEL-01",
        post="tank-farm-operator",
    )
    assert created.id == "HZ-000001" and created.status == "reported"
    assert record["type"] == "hazard_create" and record["id"] == "HZ-000001"

    h = reg.update(
        created.id, by="lead", ts=T0 + 1, status="assigned", owner="wang", deadline_ts=T0 + 3 * DAY
    ).hazard
    assert (h.status, h.owner, h.deadline_ts) == ("assigned", "wang", T0 + 3 * DAY)
    h = reg.update(h.id, by="wang", ts=T0 + 2, status="rectifying").hazard
    h = reg.update(h.id, by="wang", ts=T0 + 3, status="verified", note="gasket replaced").hazard
    h, record = reg.update(h.id, by="safety", ts=T0 + 4, status="closed")
    assert record == {
        "type": "hazard_update",
        "id": "HZ-000001",
        "ts": T0 + 4,
        "by": "safety",
        "status": "closed",
        "owner": None,
        "deadline_ts": None,
        "note": None,
    }

    assert h.status == "closed" and h.updated_ts == T0 + 4 and h.created_ts == T0
    assert [(e.action, e.from_status, e.to_status, e.by) for e in h.history] == [
        ("reported", None, "reported", "zhang"),
        ("assigned", "reported", "assigned", "lead"),
        ("rectifying", "assigned", "rectifying", "wang"),
        ("verified", "rectifying", "verified", "wang"),
        ("closed", "verified", "closed", "safety"),
    ]
    assert h.history[1].changes == {
        "owner": {"from": None, "to": "wang"},
        "deadline_ts": {"from": None, "to": T0 + 3 * DAY},
    }
    assert h.history[3].note == "gasket replaced"
    assert reg.get("HZ-000001") == h
    assert new_hazard(reg).id == "HZ-000002"


@pytest.mark.parametrize(
    ("status", "to", "message"),
    [
        (
            "reported",
            "rectifying",
            "HZ-000001 is 'reported'; it can move to 'assigned' (needs an owner) or 'closed' "
            "(with a note)",
        ),
        (
            "reported",
            "verified",
            "HZ-000001 is 'reported'; it can move to 'assigned' (needs an owner) or 'closed'",
        ),
        (
            "assigned",
            "verified",
            "HZ-000001 is 'assigned'; it can move to 'rectifying' or 'closed'",
        ),
        (
            "assigned",
            "assigned",
            "HZ-000001 is 'assigned'; it can move to 'rectifying' or 'closed'",
        ),
        (
            "rectifying",
            "assigned",
            "HZ-000001 is 'rectifying'; it can move to 'verified' or 'closed'",
        ),
        (
            "verified",
            "assigned",
            "HZ-000001 is 'verified'; it can move to 'closed' or 'rectifying' (with a note on why",
        ),
        ("closed", "rectifying", "HZ-000001 is 'closed'; a closed hazard is final"),
        ("rectifying", "done", "HZ-000001 is 'rectifying'; 'done' is not a status"),
    ],
)
def test_invalid_transitions_name_the_status_and_change_nothing(
    status: str, to: str, message: str
) -> None:
    reg = HazardRegistry()
    hazard = at_status(reg, status)
    before = snapshot(reg)
    with pytest.raises(HazardError, match="^" + re.escape(message)):
        reg.update(hazard.id, by="x", ts=T0 + 99, status=to, note="why not")
    assert snapshot(reg) == before


def test_error_carries_the_hazard_and_its_status() -> None:
    reg = HazardRegistry()
    hazard = at_status(reg, "assigned")
    with pytest.raises(HazardError) as caught:
        reg.update(hazard.id, by="x", ts=T0 + 9, status="verified")
    assert (caught.value.hazard_id, caught.value.status) == ("HZ-000001", "assigned")


def test_closed_hazard_is_final_for_owner_deadline_and_notes() -> None:
    reg = HazardRegistry()
    hazard = at_status(reg, "closed")
    before = snapshot(reg)
    for change in ({"owner": "li"}, {"deadline_ts": T0 + DAY}, {"note": "reopen?"}):
        with pytest.raises(HazardError, match="is 'closed'; a closed hazard is final"):
            reg.update(hazard.id, by="x", ts=T0 + 9, **change)
    assert snapshot(reg) == before


def test_assigned_needs_an_owner_now_or_already_set() -> None:
    reg = HazardRegistry()
    bare = new_hazard(reg)
    with pytest.raises(HazardError, match="'assigned' needs an owner and none is set"):
        reg.update(bare.id, by="lead", ts=T0 + 1, status="assigned")
    with pytest.raises(HazardError, match="owner must be a non-blank string"):
        reg.update(bare.id, by="lead", ts=T0 + 1, status="assigned", owner="  ")
    assert reg.get(bare.id) == bare

    preset = new_hazard(reg, owner="li")
    assert preset.status == "reported" and preset.owner == "li"
    assigned = reg.update(preset.id, by="lead", ts=T0 + 1, status="assigned").hazard
    assert (assigned.status, assigned.owner, assigned.history[-1].changes) == ("assigned", "li", {})


def test_closing_early_and_failed_verification_need_a_note() -> None:
    reg = HazardRegistry()
    early = at_status(reg, "rectifying")
    with pytest.raises(HazardError, match="closing before verification needs a note"):
        reg.update(early.id, by="x", ts=T0 + 9, status="closed", note="   ")
    closed = reg.update(early.id, by="x", ts=T0 + 9, status="closed", note="duplicate of 2")
    assert closed.hazard.status == "closed" and closed.hazard.history[-1].note == "duplicate of 2"

    verified = at_status(reg, "verified")
    with pytest.raises(HazardError, match="needs a note on why verification failed"):
        reg.update(verified.id, by="safety", ts=T0 + 9, status="rectifying")
    back = reg.update(
        verified.id, by="safety", ts=T0 + 9, status="rectifying", note="still reads 12 %LEL"
    ).hazard
    assert back.status == "rectifying"
    last = back.history[-1]
    assert (last.action, last.from_status, last.to_status) == (
        "verification_failed",
        "verified",
        "rectifying",
    )
    assert reg.update(back.id, by="wang", ts=T0 + 10, status="verified").hazard.status == "verified"


def test_owner_and_deadline_change_at_any_open_status_and_are_recorded() -> None:
    reg = HazardRegistry()
    hazard = at_status(reg, "rectifying")
    edited = reg.update(hazard.id, by="lead", ts=T0 + 50, owner="li", deadline_ts=T0 + DAY).hazard
    assert (edited.status, edited.owner, edited.deadline_ts) == ("rectifying", "li", T0 + DAY)
    entry = edited.history[-1]
    assert (entry.action, entry.from_status, entry.to_status) == (
        "edited",
        "rectifying",
        "rectifying",
    )
    assert entry.changes == {
        "owner": {"from": "wang", "to": "li"},
        "deadline_ts": {"from": None, "to": T0 + DAY},
    }

    noted = reg.update(hazard.id, by="li", ts=T0 + 60, note="spare gasket ordered").hazard
    assert (noted.history[-1].action, noted.history[-1].changes) == ("noted", {})

    before = snapshot(reg)
    with pytest.raises(HazardError, match="nothing to change"):
        reg.update(hazard.id, by="li", ts=T0 + 70, owner="li")  # same owner: no change
    with pytest.raises(HazardError, match="before it was reported"):
        reg.update(hazard.id, by="li", ts=T0 + 70, deadline_ts=T0 - 1)
    with pytest.raises(HazardError, match="no hazard 'HZ-000042'"):
        reg.update("HZ-000042", by="li", ts=T0 + 70, note="?")
    assert snapshot(reg) == before


def test_create_validates_its_fields() -> None:
    reg = HazardRegistry()
    with pytest.raises(HazardError, match="title must be a non-blank string"):
        new_hazard(reg, title=" ")
    with pytest.raises(HazardError, match="source 'rumour' is not one of manual"):
        new_hazard(reg, source="rumour")
    with pytest.raises(HazardError, match=r"deadline \d+ is before the report time"):
        new_hazard(reg, deadline_ts=T0 - DAY)
    assert len(reg) == 0
    assert new_hazard(reg).id == "HZ-000001"


def test_overdue_only_while_open_and_past_the_deadline() -> None:
    reg = HazardRegistry()
    hazard = new_hazard(reg, deadline_ts=T0 + DAY)
    assert not hazard.overdue(T0 + DAY)
    assert hazard.overdue(T0 + DAY + 1)
    assert hazard.to_dict(T0 + DAY + 1)["overdue"] is True
    assert hazard.to_dict(T0)["overdue"] is False
    assert not new_hazard(reg).overdue(T0 + 1000 * DAY)  # no deadline, never overdue

    verified = at_status(reg, "verified")
    late = reg.update(verified.id, by="lead", ts=T0 + 9, deadline_ts=T0 + 10).hazard
    assert late.overdue(T0 + 11)  # verified is not closed yet
    closed = reg.update(late.id, by="safety", ts=T0 + 12, status="closed").hazard
    assert not closed.overdue(T0 + 1000 * DAY)


def test_list_filters() -> None:
    reg = HazardRegistry()
    a = new_hazard(reg, area="A")
    b = at_status(reg, "closed")
    c = new_hazard(reg, area="B", owner="li")
    reg.update(c.id, by="x", ts=T0 + 1, status="assigned")
    assert [h.id for h in reg.list()] == [a.id, b.id, c.id]
    assert [h.id for h in reg.list(open_only=True)] == [a.id, c.id]
    assert [h.id for h in reg.list(status="assigned")] == [c.id]
    assert [h.id for h in reg.list(area="A")] == [a.id]
    with pytest.raises(HazardError, match="'open' is not a status"):
        reg.list(status="open")


def test_automatic_raising_dedupes_while_open_and_reraises_after_close() -> None:
    reg = HazardRegistry()
    first = reg.raise_automatic(
        "chattering",
        sensor="TF-A-LEL-01",
        area="tank-farm-A",
        post="op-1",
        source_ref="TF-A-LEL-01:hh",
        ts=T0,
        detail="4 activations in 60 s",
    )
    assert first is not None
    h = first.hazard
    assert (h.source, h.sensor, h.source_ref, h.created_by) == (
        "chattering",
        "TF-A-LEL-01",
        "TF-A-LEL-01:hh",
        AUTO_REPORTER,
    )
    assert h.deadline_ts == T0 + 7 * DAY and h.description == "4 activations in 60 s"
    assert "TF-A-LEL-01:hh" in h.title and first.record["type"] == "hazard_create"

    for t in range(1, 20):  # more chatter: still one ticket
        assert reg.raise_automatic("chattering", sensor="TF-A-LEL-01", ts=T0 + t) is None
    reg.update(h.id, by="lead", ts=T0 + 30, status="assigned", owner="wang")
    assert reg.raise_automatic("chattering", sensor="TF-A-LEL-01", ts=T0 + 31) is None

    other_sensor = reg.raise_automatic("chattering", sensor="TF-A-LEL-02", ts=T0 + 32)
    fault = reg.raise_automatic("sensor_fault", sensor="TF-A-LEL-01", ts=T0 + 33)
    assert other_sensor is not None and fault is not None
    assert fault.hazard.deadline_ts == T0 + 33 + 3 * DAY

    reg.update(h.id, by="lead", ts=T0 + 40, status="closed", note="deadband widened")
    again = reg.raise_automatic("chattering", sensor="TF-A-LEL-01", ts=T0 + 41)
    assert again is not None and again.hazard.id == "HZ-000004"
    assert len(reg.list(open_only=True)) == 3

    with pytest.raises(HazardError, match="'manual' is not an automatic hazard source"):
        reg.raise_automatic("manual", sensor="X", ts=T0)


def test_rules_set_automatic_deadlines_and_reject_nonsense() -> None:
    reg = HazardRegistry(
        HazardRules(
            deadline_ms={"chattering": HOUR, "sensor_fault": 2 * HOUR, "repeated_alarm": 3 * HOUR}
        )
    )
    raised = reg.raise_automatic("repeated_alarm", sensor="S", ts=T0)
    assert raised is not None and raised.hazard.deadline_ts == T0 + 3 * HOUR
    with pytest.raises(ValueError, match="repeated_alarm_count: 0"):
        HazardRules(repeated_alarm_count=0)
    with pytest.raises(ValueError, match=r"deadline_ms\['sensor_fault'\]"):
        HazardRules(deadline_ms={"chattering": HOUR, "repeated_alarm": HOUR})


def test_repeated_alarm_counter_fires_once_per_crossing() -> None:
    counter = RepeatedAlarmCounter(
        HazardRules(repeated_alarm_count=3, repeated_alarm_window_ms=10 * HOUR)
    )
    fired = [counter.feed("S1", T0 + k * HOUR) for k in range(8)]  # steady: once
    assert fired == [False, False, True, False, False, False, False, False]
    assert counter.feed("S2", T0 + 8 * HOUR) is False  # sensors are counted apart

    # A long quiet spell: the next activation finds 1 in its window and re-arms.
    quiet = T0 + 100 * HOUR
    assert [counter.feed("S1", quiet + k * HOUR) for k in range(3)] == [False, False, True]


def test_repeated_alarm_counter_window_is_half_open() -> None:
    counter = RepeatedAlarmCounter(
        HazardRules(repeated_alarm_count=2, repeated_alarm_window_ms=HOUR)
    )
    assert counter.feed("S", T0) is False
    assert counter.feed("S", T0 + HOUR) is False  # exactly one window apart: not within
    assert counter.feed("S", T0 + HOUR + 1) is True
    # Spread wider than the window, activations never add up.
    wide = RepeatedAlarmCounter(HazardRules(repeated_alarm_count=2, repeated_alarm_window_ms=HOUR))
    assert not any(wide.feed("S", T0 + k * 2 * HOUR) for k in range(20))


def test_repeated_alarm_counter_takes_a_late_activation() -> None:
    counter = RepeatedAlarmCounter(
        HazardRules(repeated_alarm_count=3, repeated_alarm_window_ms=HOUR)
    )
    assert counter.feed("S", T0 + 30 * 60_000) is False
    assert counter.feed("S", T0 + 50 * 60_000) is False
    assert counter.feed("S", T0 + 40 * 60_000) is True  # arrives late, still within the hour


def busy_registry(journal: HazardJournal | None = None) -> HazardRegistry:
    reg = HazardRegistry()

    def keep(record: HazardRecord) -> None:
        if journal is not None:
            journal.append(record)

    keep(reg.create(title="泄漏: flange P-101", by="张工", ts=T0, area="A").record)
    keep(
        reg.update(
            "HZ-000001", by="lead", ts=T0 + 1, status="assigned", owner="wang", deadline_ts=T0 + DAY
        ).record
    )
    raised = reg.raise_automatic("sensor_fault", sensor="S1", ts=T0 + 2, detail="stuck at 0.0")
    assert raised is not None
    keep(raised.record)
    keep(reg.update("HZ-000002", by="lead", ts=T0 + 3, status="closed", note="false report").record)
    keep(reg.update("HZ-000001", by="wang", ts=T0 + 4, status="rectifying").record)
    return reg


def test_journal_rebuild_equals_the_live_registry(tmp_path: Path) -> None:
    journal = HazardJournal(tmp_path / "var" / "hazards.jsonl")
    live = busy_registry(journal)
    rebuilt = journal.rebuild()
    now = T0 + 2 * DAY
    assert snapshot(rebuilt, now) == snapshot(live, now)
    assert snapshot(rebuilt, now)[0]["overdue"] is True
    assert len(journal.load()) == 5
    # The next id continues the sequence after a restart.
    assert new_hazard(rebuilt).id == new_hazard(live).id == "HZ-000003"


def test_journal_drops_and_truncates_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "hazards.jsonl"
    journal = HazardJournal(path)
    live = busy_registry(journal)
    whole = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'{"type":"hazard_update","id":"HZ-0000')  # crash mid-append
    assert len(journal.load()) == 5
    assert journal.torn_records_dropped == 1
    assert path.stat().st_size == whole
    assert snapshot(journal.rebuild()) == snapshot(live)

    journal.append(live.update("HZ-000001", by="wang", ts=T0 + 5, status="verified").record)
    assert snapshot(HazardJournal(path).rebuild()) == snapshot(live)


def test_journal_corrupt_middle_line_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "hazards.jsonl"
    busy_registry(HazardJournal(path))
    lines = path.read_bytes().split(b"\n")
    offset = len(lines[0]) + 1
    lines[1] = b"{not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(
        ValueError, match=rf"hazards.jsonl: hazard record at byte {offset} is corrupt"
    ):
        HazardJournal(path).load()


def test_journal_rejects_a_record_that_cannot_be_replayed(tmp_path: Path) -> None:
    path = tmp_path / "hazards.jsonl"
    journal = HazardJournal(path)
    busy_registry(journal)
    size = path.stat().st_size
    journal.append(
        {
            "type": "hazard_update",
            "id": "HZ-000002",
            "ts": T0 + 9,
            "by": "x",
            "status": "rectifying",
        }
    )  # HZ-000002 is closed
    with pytest.raises(ValueError, match=rf"at byte {size} cannot be replayed .*is 'closed'"):
        journal.rebuild()


def test_apply_rejects_ids_out_of_sequence() -> None:
    source = busy_registry()
    first = source.get("HZ-000001")
    assert first is not None
    reg = HazardRegistry()
    record = {
        "type": "hazard_create",
        "id": "HZ-000002",
        "ts": T0,
        "by": "x",
        "title": "t",
        "source": "manual",
    }
    with pytest.raises(HazardError, match="'HZ-000002' is out of sequence; expected HZ-000001"):
        reg.apply(record)
    with pytest.raises(HazardError, match="unknown hazard record type 'hazard_delete'"):
        reg.apply({"type": "hazard_delete", "id": "HZ-000001"})
    assert len(reg) == 0


# -- property: any sequence of operations keeps the lifecycle valid and replayable --

OWNERS = st.none() | st.sampled_from(["wang", "li", " "])
NOTES = st.none() | st.sampled_from(["duplicate", "", "still leaking"])
CREATE = st.tuples(st.just("create"), OWNERS, st.none() | st.integers(-DAY, 10 * DAY))
UPDATE = st.tuples(
    st.just("update"),
    st.integers(1, 6),
    st.none() | st.sampled_from([*STATUSES, "lost"]),
    OWNERS,
    st.none() | st.integers(-DAY, 10 * DAY),
    NOTES,
)
AUTO = st.tuples(st.just("auto"), st.sampled_from(AUTOMATIC_SOURCES), st.sampled_from("AB"))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(CREATE, UPDATE, AUTO), max_size=40))
def test_any_operations_keep_the_lifecycle_valid_and_replayable(ops: list[tuple[Any, ...]]) -> None:
    reg = HazardRegistry()
    records: list[HazardRecord] = []
    snapshots = [snapshot(reg)]
    for step, op in enumerate(ops):
        ts = T0 + step * HOUR
        before = snapshot(reg)
        try:
            if op[0] == "create":
                deadline = None if op[2] is None else ts + op[2]
                change = reg.create(title="t", by="u", ts=ts, owner=op[1], deadline_ts=deadline)
            elif op[0] == "update":
                _, n, status, owner, deadline, note = op
                change = reg.update(
                    f"HZ-{n:06d}",
                    by="u",
                    ts=ts,
                    status=status,
                    owner=owner,
                    deadline_ts=None if deadline is None else T0 + deadline,
                    note=note,
                )
            else:
                maybe = reg.raise_automatic(op[1], sensor=op[2], ts=ts)
                if maybe is None:
                    assert snapshot(reg) == before
                    continue
                change = maybe
        except HazardError:
            assert snapshot(reg) == before  # a refused change changes nothing
            continue
        assert reg.get(change.hazard.id) == change.hazard
        records.append(json.loads(json.dumps(change.record)))  # as the journal stores it
        snapshots.append(snapshot(reg))

    open_auto: set[tuple[str, str | None]] = set()
    for h in reg.list():
        assert h.status in STATUSES
        assert h.status == h.history[-1].to_status
        if h.status in ("assigned", "rectifying", "verified"):
            assert h.owner is not None and h.owner.strip()
        for entry in h.history[1:]:
            assert entry.from_status == entry.to_status or (
                (entry.from_status, entry.to_status) in ALLOWED
            )
        if h.is_open and h.source != "manual":
            assert (h.source, h.sensor) not in open_auto  # never two open per (source, sensor)
            open_auto.add((h.source, h.sensor))

    for k in range(len(records) + 1):
        replayed = HazardRegistry()
        for record in records[:k]:
            replayed.apply(record)
        assert snapshot(replayed) == snapshots[k]


def test_a_journal_that_cannot_take_a_record_leaves_memory_and_disk_agreeing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alarms import jsonl
    from alarms.catalogue import AlarmCatalogue
    from alarms.journal import AlarmJournal
    from alarms.lifecycle import AlarmManager
    from alarms.system import AlarmSystem
    from tests.plants import small_plant

    system = AlarmSystem(AlarmManager(AlarmCatalogue(small_plant())),
                         AlarmJournal(tmp_path / "alarms.jsonl"),
                         hazard_journal=HazardJournal(tmp_path / "hazards.jsonl"))
    system.create_hazard(title="first", by="op", ts=1_000)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonl.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        system.create_hazard(title="second", by="op", ts=2_000)
    # the failed record is neither in memory nor on disk, and no half line is left
    assert len(system.hazards) == 1
    monkeypatch.undo()
    third = system.create_hazard(title="third", by="op", ts=3_000)
    rebuilt = HazardJournal(tmp_path / "hazards.jsonl").rebuild()
    assert [h.title for h in (rebuilt.get("HZ-000001"), rebuilt.get(third.id))] == [
        "first", "third"]
    assert len(rebuilt) == len(system.hazards) == 2


def test_a_ticket_opened_by_a_change_made_again_after_a_crash_is_announced_again(
        tmp_path: Path) -> None:
    """Crash after the hazard was journaled but before its notice was recorded: the
    alarm journal is cut back to the checkpoint, the redelivered readings make the
    same fault again, and the open ticket it made is announced again."""
    plant = parse_plant(small_plant_data())
    config = parse_alarm_config({}, plant)

    def system() -> AlarmSystem:
        return config.system(plant, AlarmJournal(tmp_path / "alarms.jsonl"),
                             HazardJournal(tmp_path / "hazards.jsonl"))

    first = system()
    checkpoint = first.journal.size()
    made = first.commit([condition("LEL-1:range", "raise", T0)], T0)
    [ticket] = made.hazards
    again = system()
    again.journal.truncate(checkpoint)  # what Engine.restore does after the crash
    again.restore(T0)
    out = again.commit([condition("LEL-1:range", "raise", T0)], T0)
    assert [h.id for h in out.hazards] == [ticket.id]
    assert len(again.hazards.list()) == 1  # announced again, not opened twice
    later = again.commit([condition("LEL-1:range", "clear", T0 + 1000),
                          condition("LEL-1:range", "raise", T0 + 2000)], T0 + 2000)
    assert later.hazards == []  # a new fault while the ticket is open: nothing new
