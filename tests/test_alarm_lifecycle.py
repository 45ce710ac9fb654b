"""The ISA-18.2 lifecycle: states, overlays, re-alarm, stale, chattering, floods, rebuild."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.catalogue import AlarmCatalogue, Rationalization
from alarms.floods import FloodPolicy
from alarms.journal import AlarmJournal
from alarms.kpi import compute_kpis
from alarms.lifecycle import AlarmActionError, AlarmChange, AlarmManager, AlarmPolicy
from alarms.records import (
    ConditionRecord,
    Record,
    action_record,
    suppress_record,
    suppression_record,
    tick_record,
)
from alarms.suppression import SuppressionRule
from alarms.system import AlarmSystem
from model.alarm_events import AlarmEvent
from model.plant import parse_plant
from tests.clock import T0
from tests.plants import small_plant, small_plant_data

MIN = 60_000


def condition(alarm_id: str, action: str, ts: int, value: float = 30.0) -> ConditionRecord:
    sensor, _, limit = alarm_id.rpartition(":")
    cat = {"trend": "warning", "drift": "warning", "nodata": "fault"}.get(limit, "alarm")
    return ConditionRecord(AlarmEvent(
        alarm_id=alarm_id, sensor=sensor, limit=limit, action=action,  # type: ignore[arg-type]
        ts=ts, value=value, setpoint=25.0, priority="medium", site="s1", workshop="tank-farm",
        area="tf-a", team="team-a", post="post-tf", kind="combustible_lel", unit="%LEL",
        category=cat,
    ))


def manager(entries: list[Rationalization] | None = None, *,
            rules: list[SuppressionRule] | None = None,
            policy: AlarmPolicy | None = None, realarm: dict[str, float] | None = None
            ) -> AlarmManager:
    catalogue = AlarmCatalogue(small_plant(), entries or [], realarm_s=realarm or {},
                               max_shelve_s=3600)
    return AlarmManager(catalogue, policy, rules or [])


def changes_of(changes: list[AlarmChange]) -> list[str]:
    return [c.change for c in changes]


def act(m: AlarmManager, record: dict[str, Any]) -> list[AlarmChange]:
    m.check(record)
    return m.apply(record)


def test_unack_ack_then_clear_to_normal() -> None:
    m = manager()
    c = m.apply(condition("LEL-1:h", "raise", T0))
    assert changes_of(c) == ["raised"] and c[0].annunciate
    p = m.get("LEL-1:h")
    assert p is not None and p.state == "unack"
    act(m, action_record("ack", "LEL-1:h", by="op1", ts=T0 + 1000))
    assert p.state == "ack"
    m.apply(condition("LEL-1:h", "clear", T0 + 5000))
    assert p.state == "normal" and m.standing() == []


def test_clear_before_ack_is_rtn_unack_then_ack_returns_to_normal() -> None:
    m = manager()
    m.apply(condition("LEL-1:h", "raise", T0))
    m.apply(condition("LEL-1:h", "clear", T0 + 5000))
    p = m.get("LEL-1:h")
    assert p is not None and p.state == "rtn_unack"
    assert [x.alarm_id for x in m.standing()] == ["LEL-1:h"]
    act(m, action_record("ack", "LEL-1:h", by="op1", ts=T0 + 6000))
    assert p.state == "normal"
    with pytest.raises(AlarmActionError, match="nothing to acknowledge"):
        m.check(action_record("ack", "LEL-1:h", by="op1", ts=T0 + 7000))


def test_latched_alarm_needs_a_reset_after_returning_to_normal() -> None:
    m = manager([Rationalization("LEL-*:hh", {"latched": True})])
    m.apply(condition("LEL-1:hh", "raise", T0, 55.0))
    act(m, action_record("ack", "LEL-1:hh", by="op1", ts=T0 + 1000))
    with pytest.raises(AlarmActionError, match="only a latched alarm"):
        m.check(action_record("reset", "LEL-1:hh", by="op1", ts=T0 + 1500))
    m.apply(condition("LEL-1:hh", "clear", T0 + 9000, 10.0))
    p = m.get("LEL-1:hh")
    assert p is not None and p.state == "latched" and p.standing
    c = act(m, action_record("reset", "LEL-1:hh", by="op1", ts=T0 + 10_000))
    assert changes_of(c) == ["reset"] and p.state == "normal"
    # A non-latched point refuses a reset.
    m.apply(condition("LEL-1:h", "raise", T0 + 20_000))
    m.apply(condition("LEL-1:h", "clear", T0 + 21_000))
    with pytest.raises(AlarmActionError):
        m.check(action_record("reset", "LEL-1:h", by="op1", ts=T0 + 22_000))


def test_timed_shelve_hides_then_expires_and_reannunciates() -> None:
    m = manager()
    act(m, action_record("shelve", "LEL-1:h", by="op1", ts=T0, reason="detector under test",
                         minutes=10))
    c = m.apply(condition("LEL-1:h", "raise", T0 + MIN))
    assert changes_of(c) == ["raised"] and not c[0].annunciate
    assert m.activations[-1].annunciable is False
    assert m.advance(T0 + 10 * MIN - 1) == []
    c = m.apply(tick_record(T0 + 10 * MIN))
    assert changes_of(c) == ["unshelved"] and c[0].by == "system"
    assert c[0].detail == {"reannunciated": True}
    p = m.get("LEL-1:h")
    assert p is not None and p.shelved is None and p.last_annunciated_ts == T0 + 10 * MIN


@pytest.mark.parametrize(("body", "match"), [
    ({"reason": "", "minutes": 5}, "needs a reason"),
    ({"reason": "x", "minutes": 61}, "at most 60"),
    ({"reason": "x", "minutes": 0}, "must be > 0"),
    ({"reason": "x", "minutes": 5, "oneshot": True}, "either minutes"),
    ({"reason": "x", "oneshot": True}, "one-shot shelving applies to an active alarm"),
])
def test_bad_shelves_are_refused_and_change_nothing(body: dict[str, Any], match: str) -> None:
    m = manager()
    before = m.snapshot()
    record = action_record("shelve", "LEL-1:h", by="op1", ts=T0, **body)
    with pytest.raises(AlarmActionError, match=match):
        m.check(record)
    assert m.snapshot() == before


def test_oneshot_shelve_ends_when_the_alarm_returns_to_normal() -> None:
    m = manager()
    m.apply(condition("LEL-1:h", "raise", T0))
    act(m, action_record("shelve", "LEL-1:h", by="op1", ts=T0 + 1, reason="known", oneshot=True))
    c = m.apply(condition("LEL-1:h", "clear", T0 + 5000))
    assert changes_of(c) == ["cleared", "unshelved"]
    p = m.get("LEL-1:h")
    assert p is not None and p.shelved is None


def test_out_of_service_records_but_does_not_annunciate() -> None:
    m = manager()
    act(m, action_record("out_of_service", "PT-1:h", by="eng", ts=T0, reason="calibration",
                         on=True))
    c = m.apply(condition("PT-1:h", "raise", T0 + 1000, 850.0))
    assert not c[0].annunciate
    c = act(m, action_record("out_of_service", "PT-1:h", by="eng", ts=T0 + 2000,
                             reason="back", on=False))
    assert changes_of(c) == ["in_service"] and c[0].detail == {"reannunciated": True}
    assert [a["action"] for a in m.audit] == ["out_of_service", "out_of_service"]
    assert m.audit[0]["by"] == "eng" and m.audit[0]["reason"] == "calibration"


def test_suppression_rule_silences_matching_points_while_in_force() -> None:
    rule = SuppressionRule(id="shutdown", when_sensor="PT-1", below=50.0, limits=("h", "hh"))
    m = manager(rules=[rule])
    c = m.apply(suppress_record("shutdown", True, T0))
    assert changes_of(c) == ["suppression_on"]
    c = m.apply(condition("LEL-1:h", "raise", T0 + 1000))
    assert not c[0].annunciate
    p = m.get("LEL-1:h")
    assert p is not None and p.suppressed_by == ("shutdown",)
    # An engineer disables the rule: the standing alarm comes back on the display.
    rec = suppression_record("shutdown", False, by="eng", ts=T0 + 2000, reason="state sensor bad")
    m.check(rec)
    c = m.apply(rec)
    assert changes_of(c) == ["suppression_off", "in_service"]
    assert p.suppressed_by == ()
    with pytest.raises(AlarmActionError, match="no suppression rule"):
        m.check(suppression_record("nope", True, by="eng", ts=T0))


def test_realarm_after_the_configured_time_until_acknowledged() -> None:
    m = manager(realarm={"high": 60.0})
    m.apply(condition("LEL-1:hh", "raise", T0, 55.0))  # hh of a medium sensor: high
    assert m.advance(T0 + 59_999) == []
    c = m.advance(T0 + 60_000)
    assert changes_of(c) == ["realarm"] and c[0].annunciate
    assert m.advance(T0 + 90_000) == []
    assert changes_of(m.advance(T0 + 120_000)) == ["realarm"]
    act(m, action_record("ack", "LEL-1:hh", by="op", ts=T0 + 121_000))
    assert m.advance(T0 + 300_000) == []


def test_stale_after_24_hours_active() -> None:
    m = manager()
    m.apply(condition("LEL-1:h", "raise", T0))
    assert m.advance(T0 + 86_400_000) == []
    c = m.advance(T0 + 86_400_001)
    assert changes_of(c) == ["stale"]
    p = m.get("LEL-1:h")
    assert p is not None and p.stale


def test_chattering_flagged_on_the_third_raise_in_60_s() -> None:
    m = manager()
    seen: list[str] = []
    for i in range(3):
        seen += changes_of(m.apply(condition("LEL-1:h", "raise", T0 + i * 20_000)))
        seen += changes_of(m.apply(condition("LEL-1:h", "clear", T0 + i * 20_000 + 2000)))
    assert seen.count("chattering") == 1
    # Three raises spread over more than 60 s are not chattering.
    m2 = manager()
    for i in range(3):
        m2.apply(condition("LEL-1:h", "raise", T0 + i * 31_000))
        m2.apply(condition("LEL-1:h", "clear", T0 + i * 31_000 + 2000))
    p = m2.get("LEL-1:h")
    assert p is not None and not p.chattering


def flood_plant_manager() -> tuple[AlarmManager, list[str]]:
    """A post with 40 sensors: 8 high-priority gas detectors and 32 medium pressures."""
    data = small_plant_data()
    area = data["sites"][0]["workshops"][0]["areas"][0]
    sensors = []
    for i in range(8):
        sensors.append({"id": f"G{i:02d}", "kind": "combustible_lel", "range": [0, 100],
                        "priority": "high"})
    for i in range(32):
        sensors.append({"id": f"P{i:02d}", "kind": "pressure_kpa", "range": [0, 1000],
                        "limits": {"l": 100, "h": 800}})
    area["sensors"] = sensors
    plant = parse_plant(data, "test")
    m = AlarmManager(AlarmCatalogue(plant))
    pressures = iter(range(32))
    ids = [f"G{i // 5:02d}:h" if i % 5 == 0 else f"P{next(pressures):02d}:l" for i in range(40)]
    return m, ids


def test_flood_after_power_dip_annunciates_highs_and_summarises_the_rest() -> None:
    m, ids = flood_plant_manager()
    times = [T0 + i * 3000 for i in range(40)]  # 40 alarms in 2 minutes
    all_changes: list[AlarmChange] = []
    for alarm_id, ts in zip(ids, times, strict=True):
        all_changes += m.apply(condition(alarm_id, "raise", ts))
    starts = [c for c in all_changes if c.change == "flood_start"]
    assert [c.ts for c in starts] == [times[10]]  # the 11th alarm in 10 minutes
    raised = {c.alarm_id: c for c in all_changes if c.change == "raised"}
    for i, alarm_id in enumerate(ids):
        high = alarm_id.startswith("G")
        expected = i < 10 or high
        assert raised[alarm_id].annunciate is expected, alarm_id
    held = [a for a in ids[10:] if not a.startswith("G")]
    summary = m.flood_summary()
    assert summary[0]["post"] == "post-tf" and summary[0]["held_back_total"] == len(held)
    assert sorted(summary[0]["held_back_standing"]) == sorted(held)
    # The flood ends when fewer than 5 remain in the trailing 10 minutes: when
    # the 36th alarm leaves the window, exactly, whenever the clock is read.
    end = times[35] + 10 * MIN
    assert changes_of(m.advance(end - 1)) == []
    c = m.advance(end + 45_000)
    assert c[0].change == "flood_end" and c[0].ts == end
    released = [x.alarm_id for x in c if x.change == "released"]
    assert sorted(released) == sorted(held)
    assert m.flood_history()[0].end_ts == end


# --------------------------------------------------------------------- properties
ALARM_IDS = ["LEL-1:h", "LEL-1:hh", "PT-1:l", "O2-1:nodata"]
ENTRIES = [Rationalization("LEL-1:hh", {"latched": True}),
           Rationalization("PT-1:*", {"realarm_s": 30.0})]
RULES = [SuppressionRule(id="down", when_sensor="PT-1", below=50.0, sensors=("LEL-1",))]

step = st.one_of(
    st.tuples(st.just("cond"), st.sampled_from(ALARM_IDS), st.sampled_from(["raise", "clear"])),
    st.tuples(st.just("act"), st.sampled_from(ALARM_IDS),
              st.sampled_from(["ack", "shelve", "shelve1", "unshelve", "reset", "oos_on",
                               "oos_off"])),
    st.tuples(st.just("rule"), st.sampled_from(["active", "enabled"]), st.booleans()),
    st.tuples(st.just("tick"), st.just(""), st.just("")),
)


def _record(kind: str, a: str, b: Any, ts: int) -> Record:
    if kind == "cond":
        return condition(a, b, ts)
    if kind == "rule":
        if a == "active":
            return suppress_record("down", bool(b), ts)
        return suppression_record("down", bool(b), by="eng", ts=ts, reason="r")
    if kind == "tick":
        return tick_record(ts)
    if b == "shelve":
        return action_record("shelve", a, by="op", ts=ts, reason="why", minutes=2)
    if b == "shelve1":
        return action_record("shelve", a, by="op", ts=ts, reason="why", oneshot=True)
    if b in ("oos_on", "oos_off"):
        return action_record("out_of_service", a, by="eng", ts=ts, reason="why",
                             on=b == "oos_on")
    return action_record(b, a, by="op", ts=ts, reason="")


def _check_invariants(m: AlarmManager) -> None:
    for p in m.points():
        assert p.state in ("normal", "unack", "ack", "rtn_unack", "latched")
        assert not (p.latched_hold and p.process_active)
        assert p.definition.latched or not p.latched_hold
        if p.shelved is not None and p.shelved.until_ts is not None:
            assert p.shelved.until_ts > m.now  # an expired shelve never survives
        if p.shelved is not None and p.shelved.oneshot:
            assert p.process_active or p.state != "normal"
        assert (p.state != "normal") == (p in m.standing())
        assert not (p.flood_held and p.state == "normal")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(step, st.integers(0, 90_000), st.integers(0, 20_000)), max_size=60))
def test_random_sequences_stay_valid_and_rebuild_identically(
    steps: list[tuple[tuple[str, str, Any], int, int]],
) -> None:
    """Drives the real commit path (AlarmSystem + journal file): the server clock
    moves forward, readings arrive up to 20 s late in event time, ticks that
    change nothing are not journaled; a rebuild from the file at every step
    equals the live state."""

    def fresh(journal_path: Path) -> AlarmSystem:
        manager = AlarmManager(
            AlarmCatalogue(small_plant(), ENTRIES, max_shelve_s=3600),
            AlarmPolicy(flood=FloodPolicy(start_above=3, end_below=2, window_ms=120_000)),
            RULES)
        return AlarmSystem(manager, AlarmJournal(journal_path))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alarms.jsonl"
        live = fresh(path)
        server = T0
        for (kind, a, b), dt, lag in steps:
            server += dt
            ts = server - lag if kind == "cond" else server
            record = _record(kind, a, b, ts)
            if isinstance(record, ConditionRecord):
                record = ConditionRecord(record.event, ts)
            if kind == "act":
                live.commit([tick_record(server)], server)  # as the API does
                try:
                    live.check(record)
                except AlarmActionError:
                    continue  # refused at the API: not journaled, nothing changed
            live.commit([record], server)
            _check_invariants(live.manager)
            rebuilt = fresh(Path(tmp) / "unused.jsonl")
            rebuilt.manager.replay(AlarmJournal(path).load_records())
            assert rebuilt.manager.snapshot() == live.manager.snapshot()
        # Shelving always expires: two minutes after the last step, no timed shelve is left.
        live.manager.advance(server + 2 * MIN)
        assert all(p.shelved is None or p.shelved.oneshot for p in live.manager.points())


def test_flood_kpis_match_hand_computed_values() -> None:
    m, ids = flood_plant_manager()
    times = [T0 + i * 3000 for i in range(40)]
    for alarm_id, ts in zip(ids, times, strict=True):
        m.apply(condition(alarm_id, "raise", ts))
    m.advance(T0 + 86_400_000)
    report = compute_kpis(m.activations, m.flood_history(), ["post-tf"], T0, T0 + 86_400_000)
    # 8 gas detectors (priority high, h → high), 32 pressures (medium, l → medium).
    assert report.alarms == 40
    assert report.flood_held == 24  # 30 alarms after the flood began, less 6 highs
    assert report.peak_10min.value == 40 and report.peak_10min.status == "over"
    flood_ms = (times[35] + 10 * MIN) - times[10]
    assert report.flood_time.value == pytest.approx(flood_ms / 86_400_000)
    assert report.per_day.value == 40 and report.per_day.status == "ok"
    mix = {p.priority: p.fraction for p in report.priority_mix}
    assert mix["high"] == pytest.approx(8 / 40) and mix["medium"] == pytest.approx(32 / 40)
    assert report.top10_share.value == pytest.approx(10 / 40)
