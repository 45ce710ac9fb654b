"""Alarm management over HTTP: who may do what, the audit trail, KPIs, risk, hazards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alarms.config import parse_alarm_config
from alarms.hazards import HazardJournal
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from alarms.periods import ImportantPeriod
from alarms.records import ConditionRecord
from alarms.system import AlarmSystem, Outcome
from api import ApiServices, EventHub, create_app
from api.auth import TokenStore
from model.alarm_events import AlarmEvent
from model.plant import ConfigError
from model.sensor_table import SensorTable
from store.sqlite import SQLiteStore
from tests.plants import small_plant

NOW = 1_780_000_000_000
PLANT = small_plant()


def raise_event(alarm_id: str, ts: int, action: str = "raise") -> ConditionRecord:
    sensor, _, limit = alarm_id.rpartition(":")
    place = next(p for p in PLANT.places() if p.sensor.id == sensor)
    return ConditionRecord(AlarmEvent(
        alarm_id=alarm_id, sensor=sensor, limit=limit, action=action,  # type: ignore[arg-type]
        ts=ts, value=60.0, setpoint=50.0, priority=place.sensor.priority, site=place.site,
        workshop=place.workshop, area=place.area, team=place.team, post=place.post,
        kind=place.sensor.kind, unit=place.sensor.effective_unit(),
    ))


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        config = parse_alarm_config({
            "rationalization": [{"match": "LEL-*:hh", "latched": True, "max_shelve_min": 30,
                                 "cause": "leak", "corrective_action": "isolate"}],
            "suppression": [{"id": "down", "when": {"sensor": "PT-1", "below": 60},
                             "limits": ["l", "ll"]}],
        }, PLANT, "test")
        manager = AlarmManager(config.catalogue(PLANT), config.policy(),
                               config.suppression_rules())
        self.alarms = AlarmSystem(
            manager, AlarmJournal(tmp_path / "alarms.jsonl"),
            hazard_journal=HazardJournal(tmp_path / "hazards.jsonl"),
            inherent_risk={"tf-a": "orange"}, risk_rules=config.rules_for_risk(),
            periods=[ImportantPeriod(id="hot-work", kind="hot_work", dates=["2026-06-01"],
                                     risk_floor="red")])
        self.tokens = TokenStore(tmp_path / "tokens.json")
        self.token = {role: self.tokens.create(role, role, NOW).get_secret_value()
                      for role in ("viewer", "operator", "engineer")}
        self.now = NOW
        registry = CollectorRegistry()
        table = SensorTable.from_config(PLANT)
        self.services = ApiServices(
            plant=PLANT, table=table, store=SQLiteStore(tmp_path / "db.sqlite3", table),
            alarms=self.alarms, hub=EventHub(registry=registry), registry=registry,
            health=lambda: {"status": "ok"}, tokens=self.tokens, commit=self.commit,
            clock_ms=lambda: self.now)

    def commit(self, records: list[dict[str, Any]]) -> Outcome:
        return self.alarms.commit(records, self.now)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token[role]}"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    r = Rig(tmp_path)
    transport = httpx.ASGITransport(app=create_app(r.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield r, client


async def test_writes_need_a_token_and_the_right_role(
        rig: tuple[Rig, httpx.AsyncClient]) -> None:
    r, client = rig
    r.commit([raise_event("LEL-1:h", NOW - 1000)])
    before = r.alarms.manager.snapshot()
    url = "/api/v1/alarms/LEL-1:h"
    attempts: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        ("ack", {}, {}, 401),
        ("ack", {}, {"Authorization": "Bearer pw_nope"}, 401),
        ("ack", {}, r.auth("viewer"), 403),
        ("shelve", {"reason": "x", "minutes": 5}, r.auth("viewer"), 403),
        ("out-of-service", {"reason": "x", "on": True}, r.auth("operator"), 403),
        ("reset", {}, {}, 401),
    ]
    for action, body, headers, status in attempts:
        resp = await client.post(f"{url}/{action}", json=body, headers=headers)
        assert resp.status_code == status, (action, headers, resp.text)
    resp = await client.post("/api/v1/suppressions/down",
                             json={"enabled": False, "reason": "x"}, headers=r.auth("operator"))
    assert resp.status_code == 403
    resp = await client.post("/api/v1/hazards", json={"title": "x"})
    assert resp.status_code == 401
    assert r.alarms.manager.snapshot() == before
    assert (await client.get("/api/v1/audit")).json() == []


async def test_accepted_actions_change_state_and_are_audited(
        rig: tuple[Rig, httpx.AsyncClient]) -> None:
    r, client = rig
    r.commit([raise_event("LEL-1:hh", NOW - 5000)])
    url = "/api/v1/alarms/LEL-1:hh"
    op, eng = r.auth("operator"), r.auth("engineer")

    resp = await client.post(f"{url}/shelve", json={"reason": "sensor test", "minutes": 45},
                             headers=op)
    assert resp.status_code == 422 and "at most 30" in resp.json()["detail"]
    resp = await client.post(f"{url}/shelve", json={"reason": "sensor test", "minutes": 20},
                             headers=op)
    assert resp.status_code == 200 and resp.json()["shelved"]["until_ts"] == NOW + 20 * 60_000
    assert resp.json()["annunciated"] is False
    shelved = (await client.get("/api/v1/alarms", params={"state": "shelved"})).json()
    assert [a["alarm_id"] for a in shelved] == ["LEL-1:hh"]
    for key, value, n in (("post", "post-tf", 1), ("team", "team-a", 1),
                          ("workshop", "tank-farm", 1), ("area", "tf-a", 1), ("post", "x", 0)):
        listed = (await client.get("/api/v1/alarms", params={key: value})).json()
        assert len(listed) == n, (key, value)
    resp = await client.post(f"{url}/unshelve", headers=op)
    assert resp.status_code == 200 and resp.json()["shelved"] is None
    resp = await client.post(f"{url}/ack", json={"reason": "seen"}, headers=op)
    assert resp.json()["state"] == "ack"
    r.commit([raise_event("LEL-1:hh", NOW - 1000, "clear")])
    assert (await client.get(url)).json()["state"] == "latched"
    resp = await client.post(f"{url}/reset", headers=eng)  # an engineer may do it too
    assert resp.status_code == 200 and resp.json()["state"] == "normal"
    resp = await client.post(f"{url}/reset", headers=op)
    assert resp.status_code == 409 and "latched" in resp.json()["detail"]
    resp = await client.post(f"{url}/out-of-service", json={"reason": "recalibration",
                                                            "on": True}, headers=eng)
    assert resp.status_code == 200 and resp.json()["out_of_service"]["by"] == "engineer"
    resp = await client.post("/api/v1/alarms/NOPE-1:h/ack", headers=op)
    assert resp.status_code == 404

    audit = (await client.get("/api/v1/audit", params={"alarm_id": "LEL-1:hh"})).json()
    assert [(a["action"], a["by"], a["role"]) for a in audit] == [
        ("shelve", "operator", "operator"), ("unshelve", "operator", "operator"),
        ("ack", "operator", "operator"), ("reset", "engineer", "engineer"),
        ("out_of_service", "engineer", "engineer")]
    assert audit[0]["reason"] == "sensor test" and audit[-1]["state_after"] == "normal"
    # The journal holds every action with who, when and why: a rebuild reproduces it.
    rebuilt = AlarmManager(r.alarms.manager._factory, r.alarms.manager.policy,
                           r.alarms.manager.rule_definitions())
    rebuilt.replay(r.alarms.journal.load_records())
    assert rebuilt.snapshot() == r.alarms.manager.snapshot()
    assert rebuilt.audit == r.alarms.manager.audit


async def test_suppression_rule_toggled_by_an_engineer(
        rig: tuple[Rig, httpx.AsyncClient]) -> None:
    r, client = rig
    rules = (await client.get("/api/v1/suppressions")).json()
    assert rules[0]["id"] == "down" and rules[0]["enabled"] and not rules[0]["in_force"]
    resp = await client.post("/api/v1/suppressions/down", json={"enabled": False,
                             "reason": "state sensor faulty"}, headers=r.auth("engineer"))
    assert resp.status_code == 200 and resp.json()["enabled"] is False
    resp = await client.post("/api/v1/suppressions/nope", json={"enabled": False,
                             "reason": "x"}, headers=r.auth("engineer"))
    assert resp.status_code == 404


async def test_risk_kpi_floods_and_periods(rig: tuple[Rig, httpx.AsyncClient]) -> None:
    r, client = rig
    risk = (await client.get("/api/v1/risk")).json()
    assert risk["areas"] == [{"area": "tf-a", "colour": "orange", "inherent": "orange",
                              "reasons": ["inherent risk orange"]}]
    out = r.commit([raise_event("LEL-1:hh", NOW - 1000)])
    assert [(a.area, a.colour) for a in out.risk] == [("tf-a", "red")]
    risk = (await client.get("/api/v1/risk")).json()
    assert risk["areas"][0]["colour"] == "red"
    assert any("LEL-1:hh" in reason for reason in risk["areas"][0]["reasons"])

    kpi = (await client.get("/api/v1/kpi", params={"scope": "post:post-tf", "start": "-1h"}))
    assert kpi.status_code == 200, kpi.text
    assert kpi.json()["counts"]["alarms"] == 1
    bad = await client.get("/api/v1/kpi", params={"scope": "post:nope"})
    assert bad.status_code == 422 and "nope" in bad.json()["detail"]
    assert (await client.get("/api/v1/kpi", params={"scope": "shift:1"})).status_code == 422

    floods = (await client.get("/api/v1/floods")).json()
    assert floods == {"open": [], "history": []}
    periods = (await client.get("/api/v1/periods")).json()
    assert [(p["id"], p["in_force"]) for p in periods] == [("hot-work", False)]


async def test_hazards_by_hand_and_from_a_sensor_fault(
        rig: tuple[Rig, httpx.AsyncClient]) -> None:
    r, client = rig
    op = r.auth("operator")
    resp = await client.post("/api/v1/hazards", json={
        "title": "Corroded bolts on T-101 manifold", "area": "tf-a", "deadline": "+7d"},
        headers=op)
    assert resp.status_code == 201, resp.text
    hz = resp.json()
    assert hz["status"] == "reported" and hz["deadline_ts"] == NOW + 7 * 86_400_000
    resp = await client.patch(f"/api/v1/hazards/{hz['id']}", json={"status": "rectifying"},
                              headers=op)
    assert resp.status_code == 409 and "assigned" in resp.json()["detail"]
    resp = await client.patch(f"/api/v1/hazards/{hz['id']}",
                              json={"status": "assigned", "owner": "li"}, headers=op)
    assert resp.status_code == 200 and resp.json()["owner"] == "li"
    r.now = NOW + 8 * 86_400_000
    assert (await client.get(f"/api/v1/hazards/{hz['id']}")).json()["overdue"] is True

    # A sensor fault raises a ticket by itself, once while it is open.
    out = r.commit([raise_event("O2-1:nodata", NOW)])
    assert [h.source for h in out.hazards] == ["sensor_fault"]
    r.commit([raise_event("O2-1:nodata", NOW + 1, "clear"), raise_event("O2-1:nodata", NOW + 2)])
    listed = (await client.get("/api/v1/hazards", params={"open_only": True})).json()
    assert [h["source"] for h in listed] == ["manual", "sensor_fault"]
    # Rebuilt from its journal, the registry is the same.
    rebuilt = r.alarms.hazard_journal.rebuild() if r.alarms.hazard_journal else None
    assert rebuilt is not None and len(rebuilt) == 2


def test_alarm_config_errors_name_the_file_and_key_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_alarm_config({"suppression": [{"id": "x", "when": {"sensor": "NOPE", "below": 1},
                                             "areas": ["mars"]}]}, PLANT, "config/alarms.yaml")
    text = str(err.value)
    assert "config/alarms.yaml: suppression[0].when.sensor: 'NOPE' is not a sensor" in text
    assert "suppression[0].areas[0]: 'mars' is not an area" in text
    with pytest.raises(ConfigError, match=r"floods: .*end_below \(12\) must not exceed"):
        parse_alarm_config({"floods": {"end_below": 12}}, PLANT, "config/alarms.yaml")
    with pytest.raises(ConfigError, match=r"f: rationalization\[0\]\.priority: Input should be"):
        parse_alarm_config({"rationalization": [{"match": "*:h", "priority": "urgent"}]},
                           PLANT, "f")
    with pytest.raises(ConfigError, match=r"periods\[0\].*unknown|periods"):
        parse_alarm_config({"periods": [{"id": "p", "dates": ["2026-10-01"],
                                         "areas": ["mars"]}]}, PLANT, "f")
