"""Who sees and does what through the API: token scopes over two workshops of the
shipped plant (config/plant.yaml: tank-farm and reactor-unit), reads behind a
token, the security headers, the probes, reading order, and the token CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from alarms.catalogue import AlarmCatalogue
from alarms.hazards import HazardJournal
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from alarms.records import ConditionRecord
from alarms.risk import DEFAULT_RISK_RULES
from alarms.suppression import SuppressionRule
from alarms.system import AlarmSystem, Outcome
from api import ApiServices, EventHub, create_app
from api.auth import TokenScope, TokenStore
from api.headers import API_CSP, DASHBOARD_CSP
from api.scopes import PlantPlaces, ScopeView, check_scope
from api.sse import alarm_stream
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable
from plantwatch.cli import app as cli
from store.sqlite import SQLiteStore
from tests.plants import PLANT_YAML

NOW = 1_780_000_000_000
TANK = "TF-A-LEL-01"  # workshop tank-farm, post tf-board
REACTOR = "RX-LEL-101"  # workshop reactor-unit, post rx-board


def condition(plant: PlantConfig, sensor: str, limit: str = "h", ts: int = NOW - 1000,
              action: str = "raise") -> ConditionRecord:
    place = next(p for p in plant.places() if p.sensor.id == sensor)
    return ConditionRecord(AlarmEvent(
        alarm_id=f"{sensor}:{limit}", sensor=sensor, limit=limit,
        action=action,  # type: ignore[arg-type]
        ts=ts, value=60.0, setpoint=25.0, priority=place.sensor.priority, site=place.site,
        workshop=place.workshop, area=place.area, team=place.team, post=place.post,
        kind=place.sensor.kind, unit=place.sensor.effective_unit()))


class Rig:
    def __init__(self, plant: PlantConfig, tmp_path: Path, reads_need_token: bool,
                 rules: tuple[SuppressionRule, ...] = ()) -> None:
        self.plant = plant
        self.alarms = AlarmSystem(
            AlarmManager(AlarmCatalogue(plant), rules=rules),
            AlarmJournal(tmp_path / "alarms.jsonl"),
            hazard_journal=HazardJournal(tmp_path / "hazards.jsonl"),
            inherent_risk={a.id: a.risk for _, a in plant.areas()},
            risk_rules=DEFAULT_RISK_RULES)
        self.tokens = TokenStore(tmp_path / "tokens.json")
        self.table = SensorTable.from_config(plant)
        self.store = SQLiteStore(tmp_path / "db.sqlite3", self.table)
        self.health: dict[str, Any] = {"status": "ok", "mqtt_connected": True}
        registry = CollectorRegistry()
        self.hub = EventHub(registry=registry)
        self.services = ApiServices(
            plant=plant, table=self.table, store=self.store, alarms=self.alarms, hub=self.hub,
            registry=registry, health=lambda: self.health, tokens=self.tokens,
            commit=self.commit, clock_ms=lambda: NOW,
            require_token_for_reads=reads_need_token)

    def commit(self, records: list[Any]) -> Outcome:
        return self.alarms.commit(records, NOW)

    def token(self, name: str, role: str, workshops: list[str] = [],  # noqa: B006
              posts: list[str] = []) -> dict[str, str]:  # noqa: B006
        secret = self.tokens.create(name, role, NOW - 1000,
                                    scope=TokenScope.of(workshops, posts))
        return {"Authorization": f"Bearer {secret.get_secret_value()}"}


async def client_for(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(rig.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


@pytest.fixture
async def open_rig(plant: PlantConfig, tmp_path: Path
                   ) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    rig = Rig(plant, tmp_path, reads_need_token=False)
    await rig.store.start()
    async for client in client_for(rig):
        yield rig, client
    await rig.store.close()


@pytest.fixture
async def locked_rig(plant: PlantConfig, tmp_path: Path
                     ) -> AsyncIterator[tuple[Rig, httpx.AsyncClient]]:
    rig = Rig(plant, tmp_path, reads_need_token=True)
    await rig.store.start()
    async for client in client_for(rig):
        yield rig, client
    await rig.store.close()


# ---- scopes --------------------------------------------------------------------------


async def test_an_operator_acts_only_in_their_workshop(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    rig.commit([condition(rig.plant, TANK), condition(rig.plant, REACTOR)])
    tank_op = rig.token("li", "operator", workshops=["tank-farm"])
    before = rig.alarms.manager.get(f"{REACTOR}:h")
    r = await client.post(f"/api/v1/alarms/{REACTOR}:h/ack", headers=tank_op)
    assert r.status_code == 403
    detail = r.json()["detail"]
    assert f"alarm '{REACTOR}:h'" in detail and "'reactor-unit'" in detail
    assert "token 'li' is limited to workshops tank-farm" in detail
    assert rig.alarms.manager.get(f"{REACTOR}:h") == before  # nothing changed
    for action, body in (("shelve", {"reason": "x", "minutes": 5}), ("unshelve", {}),
                         ("reset", {})):
        r = await client.post(f"/api/v1/alarms/{REACTOR}:h/{action}", json=body,
                              headers=tank_op)
        assert r.status_code == 403, action
    # A point not seen yet is judged by its sensor's place.
    r = await client.post(f"/api/v1/alarms/{REACTOR}:hh/ack", headers=tank_op)
    assert r.status_code == 403
    r = await client.post(f"/api/v1/alarms/{TANK}:h/ack", headers=tank_op)
    assert r.status_code == 200 and r.json()["state"] == "ack"
    # A post scope: the reactor board operator, and an engineer of the tank farm.
    rx_board = rig.token("wu", "operator", posts=["rx-board"])
    assert (await client.post(f"/api/v1/alarms/{REACTOR}:h/ack",
                              headers=rx_board)).status_code == 200
    tank_eng = rig.token("zhao", "engineer", workshops=["tank-farm"])
    r = await client.post(f"/api/v1/alarms/{REACTOR}:h/out-of-service",
                          json={"reason": "calibration", "on": True}, headers=tank_eng)
    assert r.status_code == 403
    audit = (await client.get("/api/v1/audit")).json()
    assert [(a["alarm_id"], a["by"]) for a in audit] == [(f"{TANK}:h", "li"),
                                                         (f"{REACTOR}:h", "wu")]


async def test_reads_are_filtered_to_the_scope(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    rig.commit([condition(rig.plant, TANK, "hh"), condition(rig.plant, REACTOR, "hh")])
    tank = rig.token("viewer-tf", "viewer", workshops=["tank-farm"])
    alarms = (await client.get("/api/v1/alarms", headers=tank)).json()
    assert [a["alarm_id"] for a in alarms] == [f"{TANK}:hh"]
    assert len((await client.get("/api/v1/alarms")).json()) == 2  # open read: everything
    r = await client.get(f"/api/v1/alarms/{REACTOR}:hh", headers=tank)
    assert r.status_code == 403
    plant = (await client.get("/api/v1/sensors", headers=tank)).json()
    workshops = [ws["id"] for site in plant["sites"] for ws in site["workshops"]]
    assert workshops == ["tank-farm"]
    assert (await client.get(f"/api/v1/sensors/{REACTOR}", headers=tank)).status_code == 403
    r = await client.get(f"/api/v1/sensors/{REACTOR}/readings", headers=tank)
    assert r.status_code == 403 and "rx-r101" in r.json()["detail"]
    assert (await client.get(f"/api/v1/sensors/{TANK}/readings", headers=tank)
            ).status_code == 200
    risk = (await client.get("/api/v1/risk", headers=tank)).json()
    tank_areas = {a.id for s in rig.plant.sites for ws in s.workshops if ws.id == "tank-farm"
                  for a in ws.areas}
    assert {a["area"] for a in risk["areas"]} == tank_areas
    kpi = (await client.get("/api/v1/kpi", headers=tank)).json()
    assert set(kpi["posts"]) == {"tf-board", "tf-field", "tf-loading"}
    r = await client.get("/api/v1/kpi", params={"scope": "workshop:reactor-unit"},
                         headers=tank)
    assert r.status_code == 403 and "KPI scope 'workshop:reactor-unit'" in r.json()["detail"]


async def test_hazards_and_their_scope(open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    tank_op = rig.token("li", "operator", workshops=["tank-farm"])
    rx_op = rig.token("wu", "operator", workshops=["reactor-unit"])
    r = await client.post("/api/v1/hazards", json={"title": "bolts", "sensor": REACTOR},
                          headers=tank_op)
    assert r.status_code == 403 and f"sensor '{REACTOR}'" in r.json()["detail"]
    r = await client.post("/api/v1/hazards", json={"title": "plant-wide"}, headers=tank_op)
    assert r.status_code == 403 and "plant-wide" in r.json()["detail"]
    r = await client.post("/api/v1/hazards", json={"title": "leak", "sensor": REACTOR},
                          headers=rx_op)
    assert r.status_code == 201
    hazard = r.json()["id"]
    r = await client.patch(f"/api/v1/hazards/{hazard}", json={"note": "x"}, headers=tank_op)
    assert r.status_code == 403
    assert (await client.get("/api/v1/hazards", headers=tank_op)).json() == []
    assert len((await client.get("/api/v1/hazards", headers=rx_op)).json()) == 1
    assert (await client.get(f"/api/v1/hazards/{hazard}", headers=tank_op)).status_code == 403


async def test_the_event_stream_carries_only_the_scope(plant: PlantConfig,
                                                       tmp_path: Path) -> None:
    rig = Rig(plant, tmp_path, reads_need_token=False)
    rig.commit([condition(plant, TANK), condition(plant, REACTOR)])
    view = ScopeView(PlantPlaces.of(plant),
                     rig.tokens.verify(rig.token("li", "viewer", workshops=["tank-farm"])
                                       ["Authorization"].removeprefix("Bearer "), NOW))
    stream = alarm_stream(
        rig.hub, lambda: [p for p in rig.alarms.manager.standing() if view.covers_point(p)],
        keepalive_s=5, accept=view.covers_event)
    first = (await anext(stream)).decode()
    snapshot = json.loads(first.split("data: ", 1)[1])
    assert [a["alarm_id"] for a in snapshot["alarms"]] == [f"{TANK}:h"]
    rig.hub.publish("alarm", {"alarm_id": f"{REACTOR}:hh", "workshop": "reactor-unit",
                              "post": "rx-board"})
    rig.hub.publish("flood", {"post": "rx-board"})
    rig.hub.publish("alarm", {"alarm_id": f"{TANK}:hh", "workshop": "tank-farm",
                              "post": "tf-board"})
    rig.hub.publish("flood", {"post": "tf-board"})
    assert '"alarm_id":"TF-A-LEL-01:hh"' in (await anext(stream)).decode()
    assert '"post":"tf-board"' in (await anext(stream)).decode()
    await stream.aclose()


async def test_floods_are_shown_for_the_tokens_posts_only(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    view = ScopeView(PlantPlaces.of(rig.plant), None)
    assert view.covers_post("rx-board")
    tank = rig.token("li", "viewer", workshops=["tank-farm"])
    tank_view = ScopeView(PlantPlaces.of(rig.plant),
                          rig.tokens.verify(tank["Authorization"][7:], NOW))
    assert tank_view.covers_post("tf-loading") and not tank_view.covers_post("rx-board")
    floods = (await client.get("/api/v1/floods", headers=tank)).json()
    assert floods == {"open": [], "history": []}


# ---- reads behind a token ----------------------------------------------------------


async def test_reads_need_a_token_when_set_and_probes_stay_open(
        locked_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = locked_rig
    reads = ["/api/v1/sensors", f"/api/v1/sensors/{TANK}", f"/api/v1/sensors/{TANK}/readings",
             "/api/v1/alarms", "/api/v1/alarms/stream", "/api/v1/audit", "/api/v1/suppressions",
             "/api/v1/floods", "/api/v1/kpi", "/api/v1/risk", "/api/v1/periods",
             "/api/v1/hazards"]
    for path in reads:
        r = await client.get(path)
        assert r.status_code == 401, path
        assert "needs a token for reads" in r.json()["detail"], path
    viewer = rig.token("screen", "viewer")
    for path in reads:
        if path.endswith("/stream"):
            continue  # endless; its dependency is the one checked above
        assert (await client.get(path, headers=viewer)).status_code == 200, path
    for probe in ("/livez", "/readyz", "/healthz", "/metrics"):
        assert (await client.get(probe)).status_code == 200, probe
    assert (await client.get("/")).status_code == 200  # the page itself: it asks for one


# ---- headers -------------------------------------------------------------------------


async def test_security_headers(open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    _, client = open_rig
    for path, csp in (("/", DASHBOARD_CSP), ("/static/dashboard.js", DASHBOARD_CSP),
                      ("/api/v1/alarms", API_CSP), ("/healthz", API_CSP),
                      ("/api/v1/nope", API_CSP)):
        r = await client.get(path)
        assert r.headers["content-security-policy"] == csp, path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
    assert "'unsafe-inline'" not in DASHBOARD_CSP and "frame-ancestors 'none'" in DASHBOARD_CSP
    assert "default-src 'self'" in DASHBOARD_CSP
    docs = await client.get("/docs")
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"


# ---- probes --------------------------------------------------------------------------


async def test_livez_readyz_healthz(open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    assert (await client.get("/livez")).json() == {"status": "alive"}
    assert (await client.get("/readyz")).json() == {"ready": True, "reasons": []}
    # Store down, the spool takes the readings: degraded but healthy, and ready.
    rig.health.update(status="degraded", store_up=False, spool_full=False)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    rig.health.update(spool_full=True)
    r = await client.get("/readyz")
    assert r.status_code == 503 and "spool is full" in r.json()["reasons"][0]
    rig.health.update(spool_full=False, mqtt_connected=False, outbox_oldest_s=600,
                      outbox_max_age_s=300)
    reasons = (await client.get("/readyz")).json()["reasons"]
    assert len(reasons) == 2 and "broker" in reasons[0] and "outbox" in reasons[1]
    assert (await client.get("/livez")).status_code == 200  # never restarted for that
    rig.services.readiness = lambda: {"ready": False, "reasons": ["warming up"]}
    async for other in client_for(rig):
        r = await other.get("/readyz")
        assert r.status_code == 503 and r.json()["reasons"] == ["warming up"]


# ---- reading order -------------------------------------------------------------------


async def test_readings_newest_first_by_default(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    row = rig.table.index[TANK]
    ts = np.arange(NOW - 100_000, NOW, 10_000, dtype=np.int64)  # ten readings
    await rig.store.write(ReadingBatch(
        sensor=np.full(len(ts), row, dtype=np.int32), ts=ts,
        value=np.arange(len(ts), dtype=np.float64), quality=np.zeros(len(ts), dtype=np.uint8)))
    url = f"/api/v1/sensors/{TANK}/readings"
    newest = (await client.get(url, params={"limit": 3})).json()
    assert newest["order"] == "desc"
    assert [p["ts"] for p in newest["points"]] == [int(t) for t in ts[::-1][:3]]
    oldest = (await client.get(url, params={"limit": 3, "order": "asc"})).json()
    assert [p["ts"] for p in oldest["points"]] == [int(t) for t in ts[:3]]
    r = await client.get(url, params={"order": "sideways"})
    assert r.status_code == 422


# ---- the token CLI -------------------------------------------------------------------


def test_token_cli_create_rotate_list(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--state-dir", str(tmp_path)]
    env = {"PLANTWATCH_PLANT": str(PLANT_YAML)}
    bad = runner.invoke(cli, ["token", "create", "li", "--role", "operator",
                              "--workshop", "tank-frm", *base], env=env)
    assert bad.exit_code == 2 and "did you mean 'tank-farm'?" in " ".join(bad.output.split())
    never = runner.invoke(cli, ["token", "create", "li", "--role", "operator",
                                "--expires-in", "never", *base], env=env)
    assert never.exit_code == 2 and "must expire" in never.output
    made = runner.invoke(cli, ["token", "create", "li", "--role", "operator", "--expires-in",
                               "30d", "--workshop", "tank-farm", "--post", "rx-board", *base],
                         env=env)
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("pw_")
    store = TokenStore(tmp_path / "tokens.json")
    principal = store.verify(secret)
    assert principal is not None and principal.scope == TokenScope.of(["tank-farm"],
                                                                       ["rx-board"])
    listed = runner.invoke(cli, ["token", "list", *base], env=env)
    assert listed.exit_code == 0
    assert "workshops tank-farm; posts rx-board" in listed.stdout
    assert "expires 20" in listed.stdout and secret not in listed.stdout
    rotated = runner.invoke(cli, ["token", "rotate", "li", "--grace", "0", *base], env=env)
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != secret and store.verify(secret) is None
    assert store.verify(new_secret) is not None
    assert "the old secret no longer works" in " ".join(rotated.output.split())


# ---- ids that repeat across sites and workshops -----------------------------------


def _sensor(sensor_id: str) -> dict[str, Any]:
    return {"id": sensor_id, "kind": "combustible_lel", "range": [0, 100]}


def _workshop(ws: str, post: str, area: str, sensor: str) -> dict[str, Any]:
    return {"id": ws, "teams": [{"id": "team-a", "posts": [{"id": post}]}],
            "areas": [{"id": area, "post": post, "sensors": [_sensor(sensor)]}]}


def two_site_plant() -> PlantConfig:
    """Workshop ``tank-farm`` in both sites; post ``post-tf`` in s1/tank-farm,
    s1/loading and s2/tank-farm; area ``tf-a`` in both sites."""
    return parse_plant({
        "enterprise": {"id": "acme"},
        "sites": [
            {"id": "s1", "workshops": [_workshop("tank-farm", "post-tf", "tf-a", "S1-LEL"),
                                       _workshop("loading", "post-tf", "ld-a", "S1-LD-LEL")]},
            {"id": "s2", "workshops": [_workshop("tank-farm", "post-tf", "tf-a", "S2-LEL")]},
        ],
    }, "two_site_plant")


def test_check_scope_refuses_a_name_in_two_places_and_takes_the_qualified_one() -> None:
    plant = two_site_plant()
    with pytest.raises(ValueError) as info:
        check_scope(plant, ["tank-farm"])
    text = str(info.value)
    assert "\n" not in text
    assert "workshop 'tank-farm' is in more than one place (s1/tank-farm, s2/tank-farm)" in text
    assert "SITE/WORKSHOP" in text
    with pytest.raises(ValueError) as info:
        check_scope(plant, posts=["post-tf"])
    text = str(info.value)
    assert ("post 'post-tf' is in more than one place (s1/loading/post-tf, "
            "s1/tank-farm/post-tf, s2/tank-farm/post-tf)") in text
    assert "SITE/WORKSHOP/POST" in text
    assert check_scope(plant, ["s1/tank-farm"], ["s2/tank-farm/post-tf"]) == TokenScope.of(
        ["s1/tank-farm"], ["s2/tank-farm/post-tf"])
    assert check_scope(plant, ["loading"]) == TokenScope.of(["loading"])  # only in one place
    with pytest.raises(ValueError, match=r"no workshop 's3/tank-farm'.*did you mean"):
        check_scope(plant, ["s3/tank-farm"])
    with pytest.raises(ValueError, match="no post 's1/loading/post-ld'"):
        check_scope(plant, posts=["s1/loading/post-ld"])


def test_scopes_compare_qualified_ids_and_fail_closed_on_a_repeated_bare_id(
        tmp_path: Path) -> None:
    plant = two_site_plant()
    places = PlantPlaces.of(plant)
    rig = Rig(plant, tmp_path, reads_need_token=False)

    def view(workshops: list[str] = [], posts: list[str] = []) -> ScopeView:  # noqa: B006
        name = f"t{len(rig.tokens.list())}"
        secret = rig.token(name, "viewer", workshops, posts)["Authorization"][7:]
        return ScopeView(places, rig.tokens.verify(secret, NOW))

    s1_tanks = view(["s1/tank-farm"])
    assert s1_tanks.covers_sensor("S1-LEL") and not s1_tanks.covers_sensor("S2-LEL")
    assert not s1_tanks.covers_sensor("S1-LD-LEL")
    assert s1_tanks.covers_event("alarm", {"site": "s1", "workshop": "tank-farm",
                                           "post": "post-tf"})
    assert not s1_tanks.covers_event("alarm", {"site": "s2", "workshop": "tank-farm",
                                               "post": "post-tf"})
    assert s1_tanks.covers_event("risk", {"site": "s1", "area": "tf-a"})
    assert not s1_tanks.covers_event("risk", {"site": "s2", "area": "tf-a"})
    # A bare area or post that is in several places, some outside the scope: not covered.
    assert not s1_tanks.covers_area("tf-a") and not s1_tanks.covers_post("post-tf")
    s1_loading_post = view(posts=["s1/loading/post-tf"])
    assert s1_loading_post.covers_sensor("S1-LD-LEL")
    assert not s1_loading_post.covers_sensor("S1-LEL")
    assert not s1_loading_post.covers_event("alarm", {"site": "s1", "workshop": "tank-farm",
                                                      "post": "post-tf"})
    # A token made with a bare name that is (or became) ambiguous covers nothing there.
    bare = view(["tank-farm"], ["post-tf"])
    assert not bare.everything
    for sensor in ("S1-LEL", "S2-LEL", "S1-LD-LEL"):
        assert not bare.covers_sensor(sensor), sensor
    assert not bare.covers_event("alarm", {"site": "s1", "workshop": "tank-farm",
                                           "post": "post-tf"})
    assert "more than one place" in bare.describe()


async def test_a_workshop_or_post_token_acts_only_in_its_own_place(tmp_path: Path) -> None:
    plant = two_site_plant()
    rig = Rig(plant, tmp_path, reads_need_token=False)
    await rig.store.start()
    rig.commit([condition(plant, s) for s in ("S1-LEL", "S1-LD-LEL", "S2-LEL")])
    s1_post = rig.token("li", "operator", posts=["s1/tank-farm/post-tf"])
    bare_post = rig.token("wu", "operator", posts=["post-tf"])
    bare_ws = rig.token("zhao", "viewer", workshops=["tank-farm"])
    async for client in client_for(rig):
        for sensor in ("S1-LD-LEL", "S2-LEL"):
            r = await client.post(f"/api/v1/alarms/{sensor}:h/ack", headers=s1_post)
            assert r.status_code == 403, sensor
        r = await client.post("/api/v1/alarms/S1-LEL:h/ack", headers=s1_post)
        assert r.status_code == 200 and r.json()["state"] == "ack"
        for sensor in ("S1-LEL", "S1-LD-LEL", "S2-LEL"):
            r = await client.post(f"/api/v1/alarms/{sensor}:h/ack", headers=bare_post)
            assert r.status_code == 403, sensor
            assert "more than one place" in r.json()["detail"]
        assert (await client.get("/api/v1/sensors/S2-LEL/readings", headers=bare_ws)
                ).status_code == 403
        assert (await client.get("/api/v1/alarms", headers=bare_ws)).json() == []
        seen = (await client.get("/api/v1/alarms", headers=s1_post)).json()
        assert [a["alarm_id"] for a in seen] == ["S1-LEL:h"]
        tree = (await client.get("/api/v1/sensors", headers=s1_post)).json()
        assert [(s["id"], ws["id"]) for s in tree["sites"] for ws in s["workshops"]] == [
            ("s1", "tank-farm")]
    await rig.store.close()


def test_the_token_cli_takes_a_qualified_workshop(tmp_path: Path) -> None:
    plant_file = tmp_path / "plant.yaml"
    plant_file.write_text(json.dumps(two_site_plant().model_dump(mode="json")))
    runner = CliRunner()
    base = ["--state-dir", str(tmp_path)]
    env = {"PLANTWATCH_PLANT": str(plant_file)}
    bad = runner.invoke(cli, ["token", "create", "li", "--workshop", "tank-farm", *base],
                        env=env)
    assert bad.exit_code == 2
    assert "s1/tank-farm, s2/tank-farm" in " ".join(bad.output.split())
    made = runner.invoke(cli, ["token", "create", "li", "--workshop", "s2/tank-farm", *base],
                         env=env)
    assert made.exit_code == 0, made.output
    assert "workshops s2/tank-farm" in " ".join(made.output.split())


# ---- suppression rules seen by a scoped token ---------------------------------------

TANK_RULE = SuppressionRule(id="tf-purge", when_sensor="TF-B-LEL-01", below=1.0,
                            areas=("tf-group-a",))
REACTOR_RULE = SuppressionRule(id="rx-startup", when_sensor="RX-LEL-102", below=1.0,
                               areas=("rx-r101",))


async def test_suppression_toggles_are_in_the_audit_of_the_rules_scope(
        plant: PlantConfig, tmp_path: Path) -> None:
    rig = Rig(plant, tmp_path, reads_need_token=False, rules=(TANK_RULE, REACTOR_RULE))
    await rig.store.start()
    engineer = rig.token("zhao", "engineer")
    tank = rig.token("li", "viewer", workshops=["tank-farm"])
    async for client in client_for(rig):
        for rule in ("tf-purge", "rx-startup"):
            r = await client.post(f"/api/v1/suppressions/{rule}",
                                  json={"enabled": False, "reason": "test"}, headers=engineer)
            assert r.status_code == 200, r.text
        audit = (await client.get("/api/v1/audit", headers=tank)).json()
        assert [(a["rule"], a["enabled"]) for a in audit] == [("tf-purge", False)]
        assert len((await client.get("/api/v1/audit")).json()) == 2
    await rig.store.close()


def test_suppression_events_reach_only_the_streams_of_the_rules_scope(
        plant: PlantConfig, tmp_path: Path) -> None:
    rig = Rig(plant, tmp_path, reads_need_token=False, rules=(TANK_RULE, REACTOR_RULE))
    secret = rig.token("li", "viewer", workshops=["tank-farm"])["Authorization"][7:]
    view = ScopeView(PlantPlaces.of(plant), rig.tokens.verify(secret, NOW),
                     rules=rig.alarms.manager.rules)

    def system(rule: str | None) -> dict[str, Any]:
        return {"type": "alarm_system", "change": "suppression_on", "ts": NOW,
                "alarm_id": None, "post": None, "detail": None if rule is None else
                {"rule": rule, "active": True, "enabled": True}}

    assert view.covers_event("system", system("tf-purge"))
    assert not view.covers_event("system", system("rx-startup"))
    assert not view.covers_event("system", system("no-such-rule"))
    assert view.covers_event("system", system(None))  # the alarm system's own state


# ---- hazards tied to places ----------------------------------------------------------


async def test_a_new_hazard_must_lie_wholly_in_scope_and_agree_with_the_plant(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    tank_op = rig.token("li", "operator", workshops=["tank-farm"])
    plant_op = rig.token("wu", "operator")
    for body in ({"sensor": TANK, "post": "rx-board"}, {"area": "tf-group-a", "post": "rx-board"},
                 {"area": "rx-r101", "post": "tf-board"}):
        r = await client.post("/api/v1/hazards", json={"title": "x", **body}, headers=tank_op)
        assert r.status_code == 403, body
        assert "outside the scope" in r.json()["detail"]
    for body, said in (({"sensor": TANK, "area": "rx-r101"},
                        f"sensor '{TANK}' is in area 'tf-group-a'"),
                       ({"sensor": TANK, "post": "tf-loading"},
                        f"sensor '{TANK}' is answered by post 'tf-board'"),
                       ({"area": "tf-group-a", "post": "tf-loading"},
                        "area 'tf-group-a' is answered by post 'tf-board'"),
                       ({"sensor": "NO-SUCH"}, "unknown sensor 'NO-SUCH'"),
                       ({"area": "nowhere"}, "unknown area 'nowhere'")):
        r = await client.post("/api/v1/hazards", json={"title": "x", **body}, headers=plant_op)
        assert r.status_code == 422, body
        assert said in r.json()["detail"], (body, r.json())
    r = await client.post("/api/v1/hazards", json={
        "title": "x", "sensor": TANK, "area": "tf-group-a", "post": "tf-board"}, headers=tank_op)
    assert r.status_code == 201, r.text
    assert rig.alarms.hazards.list() and len(rig.alarms.hazards.list()) == 1


async def test_a_hazard_partly_outside_the_scope_cannot_be_changed(
        open_rig: tuple[Rig, httpx.AsyncClient]) -> None:
    rig, client = open_rig
    tank_op = rig.token("li", "operator", workshops=["tank-farm"])
    # Made before places were checked: the tank sensor, the reactor's post.
    hazard = rig.alarms.create_hazard(title="old", sensor=TANK, post="rx-board", by="x",
                                      ts=NOW - 5000)
    r = await client.patch(f"/api/v1/hazards/{hazard.id}", json={"note": "mine?"},
                           headers=tank_op)
    assert r.status_code == 403 and "post 'rx-board'" in r.json()["detail"]
    assert rig.alarms.hazards.get(hazard.id) == hazard
    # Still seen: it concerns a tank-farm sensor.
    assert [h["id"] for h in (await client.get("/api/v1/hazards", headers=tank_op)).json()] \
        == [hazard.id]


# ---- the stream ends with its token ------------------------------------------------


class AuthedStream:
    """Drive the app's ASGI callable by hand to read the event stream live (httpx's
    ASGITransport waits for the whole body, which an event stream never ends)."""

    def __init__(self, app: Any, path: str, headers: dict[str, str]) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._asked = False
        self._gone = asyncio.Event()
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"t"), (b"accept", b"text/event-stream"),
                        *((k.lower().encode(), v.encode()) for k, v in headers.items())],
            "client": ("127.0.0.1", 50000), "server": ("t", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Any) -> None:
        await self.messages.put(dict(message))

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), 5)

    async def close(self) -> None:
        self._gone.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)


@pytest.mark.parametrize("end", ["revoked", "rotated away", "expired"])
async def test_an_open_stream_ends_when_its_token_stops_working(
        plant: PlantConfig, tmp_path: Path, end: str) -> None:
    rig = Rig(plant, tmp_path, reads_need_token=True)
    clock = [NOW]
    rig.services.clock_ms = lambda: clock[0]
    rig.services.keepalive_s = 0.2
    viewer = rig.token("screen", "viewer", workshops=["tank-farm"])
    stream = AuthedStream(create_app(rig.services), "/api/v1/alarms/stream", viewer)
    try:
        assert (await stream.next())["status"] == 200
        assert b"event: snapshot" in (await stream.next())["body"]
        tank_event = {"alarm_id": f"{TANK}:hh", "site": "nanhai", "workshop": "tank-farm",
                      "post": "tf-board"}
        rig.hub.publish("alarm", tank_event)
        assert b"TF-A-LEL-01:hh" in (await stream.next())["body"]
        cli_store = TokenStore(rig.tokens.path)  # the token command, another process
        if end == "revoked":
            assert cli_store.revoke("screen")
        elif end == "rotated away":
            cli_store.rotate("screen", NOW, grace_ms=0)
        else:
            clock[0] = NOW + 91 * 86_400_000  # past the default 90 days
        rig.hub.publish("alarm", tank_event)
        last = await stream.next()
        assert last["type"] == "http.response.body"
        assert last["body"] == b"" and not last.get("more_body", False)
        await asyncio.wait_for(stream.task, 5)
        assert rig.hub.subscriber_count == 0
    finally:
        await stream.close()


async def test_an_idle_stream_ends_at_its_keepalive_when_the_token_is_revoked(
        plant: PlantConfig, tmp_path: Path) -> None:
    rig = Rig(plant, tmp_path, reads_need_token=True)
    rig.services.keepalive_s = 0.2
    viewer = rig.token("screen", "viewer")
    stream = AuthedStream(create_app(rig.services), "/api/v1/alarms/stream", viewer)
    try:
        assert (await stream.next())["status"] == 200
        await stream.next()  # the snapshot
        assert (await stream.next())["body"] == b": keepalive\n\n"
        TokenStore(rig.tokens.path).revoke("screen")
        last = await stream.next()
        assert last["body"] == b"" and not last.get("more_body", False)
        await asyncio.wait_for(stream.task, 5)
    finally:
        await stream.close()
