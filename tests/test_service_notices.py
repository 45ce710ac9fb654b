"""What the service itself announces and records at start and when the spool fills."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx

from api import create_app
from plantwatch.service import Service
from plantwatch.settings import load_settings
from tests.plants import PLANT_YAML


def service(tmp_path: Path) -> Service:
    state = tmp_path / "state"
    settings = load_settings(
        None, plant=PLANT_YAML, store="sqlite", state_dir=state,
        sqlite={"path": state / "readings.sqlite3"},
        notify={"webhooks": [{"name": "pager", "url": "http://127.0.0.1:9/hook"}]})
    return Service(settings)


def test_a_first_start_checkpoints_at_once_and_sends_every_risk_colour(tmp_path: Path) -> None:
    s = service(tmp_path)
    # A crash in the very first step cuts the journal back to this checkpoint.
    saved = s.checkpoint.load()
    assert saved is not None and saved.journal_offset == s.alarms.journal.size()
    topics = {d.topic for d in s.outbox.pending("mqtt")}
    areas = {area.id for _, area in s.plant.areas()}
    assert {t.rsplit("/", 1)[1] for t in topics if t and t.startswith("plantwatch/risk/")} \
        == areas
    assert all(d.retain for d in s.outbox.pending("mqtt"))
    s.outbox.close()


def test_a_full_spool_is_announced_to_webhooks_and_the_broker(tmp_path: Path) -> None:
    s = service(tmp_path)
    events: list[tuple[str, dict[str, object]]] = []
    s.hub.publish = lambda kind, data: events.append((kind, data))  # type: ignore[method-assign]
    s._spool_full(True)
    [(kind, data)] = events
    assert kind == "system" and data["change"] == "spool_full"
    assert "not evaluated for alarms until the store is back" in str(data["detail"])
    [hook] = list(s.outbox.pending("webhook:pager"))
    assert json.loads(hook.body)["change"] == "spool_full"
    [state] = [d for d in s.outbox.pending("mqtt") if d.topic == "plantwatch/system/spool"]
    assert state.retain and json.loads(state.body)["change"] == "spool_full"
    s._spool_full(False)
    assert [json.loads(d.body)["change"] for d in s.outbox.pending("webhook:pager")] == [
        "spool_full", "spool_drained"]
    s.outbox.close()


async def test_healthz_names_nothing_of_the_plant_when_reads_need_a_token(
        tmp_path: Path) -> None:
    s = service(tmp_path)
    report = {"status": "ok", "posts_in_flood": ["tf-board"],
              "sparkplug": {"online_nodes": ["nanhai/gw-1"], "stale_sensors": ["TF-A-LEL-01"]}}
    for closed in (False, True):
        services = dataclasses.replace(s.api_services(), health=lambda: report,
                                       require_token_for_reads=closed)
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = (await client.get("/healthz")).json()
        if closed:
            assert body["posts_in_flood"] == 1
            assert body["sparkplug"] == {"online_nodes": 1, "stale_sensors": 1}
        else:
            assert body == report
    s.outbox.close()
