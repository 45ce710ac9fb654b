"""A scenario replayed at 10× through Mosquitto and the running service raises
the same alarms, at the same scenario times, as its in-process backtest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from alarms.config import load_alarm_config
from offline.backtest import run_backtest
from offline.replay import publish_paced, replay_start_ms
from offline.scenario_io import scenario_feed
from simulators.scenario import load_scenario
from tests.test_end_to_end import PLANT, PLANT_FILE, running_service, until

pytestmark = pytest.mark.servers

SCENARIO = PLANT_FILE.parent / "scenarios" / "overpressure-stuck-relief.yaml"
SPEED = 10.0


async def test_replay_at_10x_matches_the_backtest(mosquitto: Any, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIO, PLANT)
    settings = {
        "store": "sqlite", "state_dir": tmp_path / "state",
        "mqtt": {"url": mosquitto.url, "client_id": "pw-replay-live"},
        "sqlite": {"path": tmp_path / "state" / "pw.sqlite3"},
    }
    async with running_service(settings) as service:
        feed = scenario_feed(sc, PLANT, "json", start_ms=replay_start_ms(sc.duration_s, SPEED))
        result = await asyncio.to_thread(publish_paced, feed.paced, mosquitto.url, speed=SPEED)
        assert result.acked_readings == result.readings
        assert result.wall_s >= sc.duration_s / SPEED * 0.95  # really paced at 10×
        await until(lambda: _stored(service, result.readings), 60, "all readings stored")
        journal = [json.loads(line) for line in
                   (tmp_path / "state" / "alarms.jsonl").read_text().splitlines()]

    live = sorted((r["alarm_id"], r["action"], (r["ts"] - feed.start_ms) / 1000)
                  for r in journal if "action" in r and r.get("type") is None)
    alarms = load_alarm_config(PLANT_FILE.parent / "alarms.yaml", PLANT)
    same = scenario_feed(sc, PLANT, "json", start_ms=feed.start_ms)
    report = run_backtest(sc.name, PLANT, alarms, same.messages, same.truths,
                          start_ms=same.start_ms, duration_s=sc.duration_s)
    backtested = sorted((e.alarm_id, e.action, e.t_s) for e in report.events)
    assert backtested, "the scenario raises alarms"
    assert live == backtested
    assert any(a.endswith(":trend") for a, _, _ in live)  # the warning ahead is there too


async def _stored(service: Any, n: int) -> bool:
    return bool(await service.store.count_readings() == n)
