"""An alarm nobody acknowledges within its max_response_s goes up the hierarchy."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from alarms.config import parse_alarm_config
from alarms.journal import AlarmJournal, MemoryJournal
from alarms.records import EscalationRecord, action_record, from_json, tick_record, to_json
from alarms.system import AlarmSystem
from api import create_app
from model.plant import ConfigError, parse_plant
from notify.base import Notifications
from notify.channels import MqttStateChannel, SseChannel, WebhookChannel, outbox_publish
from notify.hub import EventHub
from notify.outbox import Outbox
from notify.webhooks import WebhookNotifier, WebhookTarget
from tests.clock import T0
from tests.plants import small_plant_data
from tests.test_alarm_api import NOW, Rig, raise_event
from tests.test_alarm_lifecycle import condition

S = 1000
PHILOSOPHY = {
    "rationalization": [{"match": "LEL-*:hh", "priority": "highest", "max_response_s": 60},
                        {"match": "LEL-*:h", "max_response_s": 300}],
    "escalation": {"levels": ["team", "workshop", "enterprise"], "repeat_min": 2},
}


def system(journal: AlarmJournal | MemoryJournal | None = None,
           philosophy: dict[str, object] | None = None) -> AlarmSystem:
    plant = parse_plant(small_plant_data())
    config = parse_alarm_config(philosophy or PHILOSOPHY, plant)
    return config.system(plant, journal if journal is not None else MemoryJournal())


def tick(s: AlarmSystem, ts: int) -> list[EscalationRecord]:
    due = s.escalations_due(ts)
    s.commit([tick_record(ts), *due], ts)
    return due


def test_unacknowledged_alarm_climbs_the_hierarchy_then_repeats_until_acked() -> None:
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    assert tick(s, T0 + 59 * S) == []  # within its 60 s to respond
    [first] = tick(s, T0 + 60 * S)
    assert (first.level, first.to, first.target) == (1, "team", "team-a")
    assert tick(s, T0 + 60 * S + 119 * S) == []  # 2 min to the next level
    [second] = tick(s, T0 + 180 * S)
    assert (second.level, second.to, second.target) == (2, "workshop", "tank-farm")
    [third] = tick(s, T0 + 300 * S)
    assert (third.level, third.to, third.target) == (3, "enterprise", "acme")
    [fourth] = tick(s, T0 + 420 * S)  # repeated at the top, level counting on
    assert (fourth.level, fourth.to) == (4, "enterprise")
    point = s.manager.get("LEL-1:hh")
    assert point is not None
    assert point.to_dict()["escalation"] == {"level": 4, "to": "enterprise", "target": "acme",
                                             "ts": T0 + 420 * S}

    audit = [(a["action"], a["level"], a["to"]) for a in s.manager.audit]
    assert audit == [("escalate", 1, "team"), ("escalate", 2, "workshop"),
                     ("escalate", 3, "enterprise"), ("escalate", 4, "enterprise")]
    ack = action_record("ack", "LEL-1:hh", by="li", role="operator", ts=T0 + 430 * S)
    s.commit([ack], T0 + 430 * S)
    assert tick(s, T0 + 3600 * S) == []  # stopped by the acknowledgement
    assert s.manager.get("LEL-1:hh").to_dict()["escalation"] is None  # type: ignore[union-attr]


def test_a_new_activation_starts_again_at_the_team() -> None:
    s = system()
    s.commit([condition("LEL-1:h", "raise", T0)], T0)
    tick(s, T0 + 300 * S)
    s.commit([action_record("ack", "LEL-1:h", by="li", ts=T0 + 301 * S),
              condition("LEL-1:h", "clear", T0 + 302 * S)], T0 + 302 * S)
    s.commit([condition("LEL-1:h", "raise", T0 + 400 * S)], T0 + 400 * S)
    assert tick(s, T0 + 699 * S) == []
    [again] = tick(s, T0 + 700 * S)
    assert (again.level, again.to) == (1, "team")


@pytest.mark.parametrize("hide", ["shelve", "out_of_service"])
def test_a_hidden_alarm_does_not_escalate(hide: str) -> None:
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    extra = {"minutes": 30} if hide == "shelve" else {"on": True}
    s.commit([action_record(hide, "LEL-1:hh", by="li", role="engineer", reason="calibration",
                            ts=T0 + S, **extra)], T0 + S)  # type: ignore[arg-type]
    assert tick(s, T0 + 600 * S) == []


def test_an_alarm_that_flaps_without_an_acknowledgement_escalates() -> None:
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    s.commit([condition("LEL-1:hh", "clear", T0 + 40 * S)], T0 + 40 * S)
    s.commit([condition("LEL-1:hh", "raise", T0 + 80 * S)], T0 + 80 * S)
    [first] = tick(s, T0 + 81 * S)  # unacknowledged since T0: 60 s are long gone
    assert (first.level, first.since, first.ts) == (1, T0, T0 + 60 * S)


def test_an_alarm_shown_again_after_a_shelve_gets_its_full_response_time() -> None:
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    s.commit([action_record("shelve", "LEL-1:hh", by="li", reason="calibration", minutes=10,
                            ts=T0 + S)], T0 + S)
    back = T0 + S + 600 * S
    assert tick(s, back) == []  # the shelve expires at this tick
    assert tick(s, back + 59 * S) == []  # shown again: 60 s from now, not from the raise
    [first] = tick(s, back + 60 * S)
    assert first.level == 1


def test_commissioning_areas_do_not_escalate() -> None:
    s = system(philosophy={**PHILOSOPHY, "commissioning": {"areas": ["tf-a"]}})
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    assert tick(s, T0 + 3600 * S) == []


def test_an_alarm_that_returned_to_normal_or_has_no_response_time_does_not_escalate() -> None:
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0), condition("LEL-1:hh", "clear", T0 + S),
              condition("H2S-1:h", "raise", T0)], T0 + S)  # H2S-1:h: no max_response_s
    assert tick(s, T0 + 3600 * S) == []


def test_escalations_are_journaled_and_a_restart_rebuilds_them(tmp_path: Path) -> None:
    path = tmp_path / "alarms.jsonl"
    s = system(AlarmJournal(path))
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    tick(s, T0 + 60 * S)
    tick(s, T0 + 180 * S)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    escalations = [line for line in lines if line.get("type") == "escalation"]
    assert [(e["level"], e["to"]) for e in escalations] == [(1, "team"), (2, "workshop")]

    again = system(AlarmJournal(path))
    again.restore(T0 + 181 * S)
    assert again.manager.snapshot() == s.manager.snapshot()
    assert tick(again, T0 + 299 * S) == []  # nothing repeated by the restart
    assert [r.level for r in tick(again, T0 + 300 * S)] == [3]


def test_record_round_trips() -> None:
    r = EscalationRecord("LEL-1:hh", 2, "workshop", "tank-farm", T0, T0 + 5)
    assert from_json(orjson.loads(orjson.dumps(to_json(r)))) == r


def test_escalation_goes_out_on_every_channel() -> None:
    s = system()
    hub = EventHub()
    events: list[tuple[str, dict[str, object]]] = []
    hub.publish = lambda kind, data: events.append((kind, data))  # type: ignore[method-assign]
    outbox = Outbox(None)
    webhooks = WebhookNotifier([WebhookTarget("pager", "http://127.0.0.1:9/x")], outbox=outbox)
    fire_control = parse_alarm_config({}, parse_plant(small_plant_data())).fire_control
    announce = Notifications([SseChannel(hub), MqttStateChannel(outbox_publish(outbox)),
                              WebhookChannel(webhooks, fire_control)])
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    due = s.escalations_due(T0 + 60 * S)
    outcome = s.commit([tick_record(T0 + 60 * S), *due], T0 + 60 * S)
    announce(outcome)
    outbox.sync()
    assert [d["change"] for k, d in events if k == "alarm"] == ["escalated"]
    sent = {d.lane: orjson.loads(d.body) for d in outbox.pending()}
    assert sent["webhook:pager"]["change"] == "escalated"
    assert sent["webhook:pager"]["detail"] == {"level": 1, "to": "team", "target": "team-a"}
    assert sent["mqtt"]["escalation"]["to"] == "team"  # the retained state shows it


def test_levels_must_go_up_the_hierarchy() -> None:
    plant = parse_plant(small_plant_data())
    with pytest.raises(ConfigError, match=r"escalation\.levels.*team, workshop, enterprise"):
        parse_alarm_config({"escalation": {"levels": ["workshop", "team"]}}, plant)
    with pytest.raises(ConfigError, match=r"escalation\.levels\[0\]: Input should be .team."):
        parse_alarm_config({"escalation": {"levels": ["manager"]}}, plant)
    disabled = parse_alarm_config({"escalation": {"enabled": False}}, plant)
    assert disabled.escalation_policy(plant) is None


async def test_the_api_shows_the_escalation_and_audits_it(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.commit([raise_event("LEL-1:hh", NOW - 5000),
              EscalationRecord("LEL-1:hh", 1, "team", "team-a", NOW - 5000, NOW)])
    transport = httpx.ASGITransport(app=create_app(r.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        point = (await client.get("/api/v1/alarms/LEL-1:hh")).json()
        assert point["escalation"] == {"level": 1, "to": "team", "target": "team-a", "ts": NOW}
        [row] = (await client.get("/api/v1/audit", params={"alarm_id": "LEL-1:hh"})).json()
        assert (row["action"], row["by"], row["to"]) == ("escalate", "system", "team")
        await client.post("/api/v1/alarms/LEL-1:hh/ack", headers=r.auth("operator"))
        assert (await client.get("/api/v1/alarms/LEL-1:hh")).json()["escalation"] is None


@pytest.mark.parametrize("bad", [
    {"rationalization": [{"match": "LEL-*:hh", "max_response_s": float("inf")}]},
    {"defaults": {"realarm_s": {"high": float("inf")}}},
    {"escalation": {"repeat_min": 0.0001}},
    {"fire_control": {"mqtt_topic": "fire/{site}"}},
])
def test_values_that_would_stop_the_service_are_refused_at_load(
        bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_alarm_config(bad, parse_plant(small_plant_data()))


def test_an_alarm_unacknowledged_for_long_goes_straight_to_the_level_it_earned() -> None:
    """Readings that arrive an hour late (or a service that was down): one escalation
    to the level due now, not one level per tick."""
    s = system()
    s.commit([condition("LEL-1:hh", "raise", T0)], T0)
    [late] = tick(s, T0 + 3600 * S)  # due at 60 s, then every 120 s
    assert (late.level, late.to, late.ts) == (30, "enterprise", T0 + 60 * S + 29 * 120 * S)
    assert tick(s, T0 + 3601 * S) == []  # nothing more until the next repeat
