"""The backtest runs the live code: one scenario, two runners, the identical alarm journal.

The H2S leak scenario runs with an alarm config that adds an important period
tightening the limits of the leak's area by 30 % and a suppression-by-design
rule that holds the valve-pit detector's alarms. Once through
``offline.backtest.run_backtest`` (the engine with its journal in memory) and
once through the live :class:`~ingest.pipeline.Pipeline` (in-memory source,
the real SQLite store and the real journal file), fed the same messages at
the same times in the same one-second bites. Both must write the same journal,
record for record, and that journal must show the period and the rule at work
(before the engine, the backtest applied neither).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import yaml

from alarms.config import AlarmConfig, parse_alarm_config
from alarms.journal import AlarmJournal, MemoryJournal
from alarms.records import Record, to_json
from alarms.system import AlarmSystem
from detectors.suite import DetectorSuite
from engine.engine import Engine
from ingest.checkpoint import CheckpointFile
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import InboundMessage
from ingest.pipeline import Pipeline, PipelineConfig
from ingest.spool import Spool
from ingest.writer import StoreWriter
from model.plant import load_plant
from model.sensor_table import SensorTable
from offline.backtest import run_backtest
from offline.scenario_io import scenario_feed
from simulators.scenario import load_scenario
from store.sqlite import SQLiteStore
from tests.test_pipeline import MemorySource

ROOT = Path(__file__).resolve().parents[1]
PLANT = load_plant(ROOT / "config" / "plant.yaml")
SCENARIO = load_scenario(ROOT / "config" / "scenarios" / "h2s-leak-tank-farm.yaml", PLANT)
FLUSH_MS = 1000
PUMPS, VALVE_PIT = "TF-SW-H2S-02", "TF-SW-H2S-03"


def alarm_config() -> AlarmConfig:
    """config/alarms.yaml plus a tightening period over the leak and a rule in force."""
    data = yaml.safe_load((ROOT / "config" / "alarms.yaml").read_text())
    data["periods"].append({
        "id": "sour-water-turnaround", "name": "Sour-water pump turnaround",
        "kind": "startup", "areas": ["tf-sour-water"],
        "start": "2026-06-01T08:00:00+08:00", "end": "2026-06-01T12:00:00+08:00",
        "tighten_limits_pct": 30,
    })
    data["suppression"].append({
        "id": "valve-pit-flooded", "description": "Valve pit flooded for the turnaround",
        "when": {"sensor": "TF-SW-H2S-01", "above": -1},  # any reading: in force throughout
        "sensors": [VALVE_PIT],
    })
    return parse_alarm_config(data, PLANT, "test alarm config")


def as_journaled(records: list[Record]) -> list[dict[str, Any]]:
    """Records as the journal file holds them (JSON: NaN becomes null)."""
    return [orjson.loads(orjson.dumps(to_json(r))) for r in records]


def backtest_journal(config: AlarmConfig) -> list[dict[str, Any]]:
    feed = scenario_feed(SCENARIO, PLANT, "json")
    journal = MemoryJournal()
    run_backtest(SCENARIO.name, PLANT, config, feed.messages, feed.truths,
                 start_ms=feed.start_ms, duration_s=SCENARIO.duration_s, flush_ms=FLUSH_MS,
                 journal=journal)
    return as_journaled(journal.records)


async def live_journal(config: AlarmConfig, tmp_path: Path
                       ) -> tuple[list[dict[str, Any]], AlarmSystem]:  # fmt: skip
    """The live pipeline, driven the way the backtest drives the engine: messages are
    handled at their publish time and delivered in bites that flush, then tick, on
    each second boundary."""
    feed = scenario_feed(SCENARIO, PLANT, "json")
    table = SensorTable.from_config(PLANT)
    clock = [feed.start_ms / 1000]
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    alarms = config.system(PLANT, journal)
    engine = Engine.for_plant(table, DetectorSuite(table), alarms)
    engine.restore(None, feed.start_ms)
    source = MemorySource()
    store = SQLiteStore(tmp_path / "readings.sqlite3", table)
    metrics = IngestMetrics()
    spool = Spool(tmp_path / "spool.bin", table.ids)
    writer = StoreWriter(store, spool, metrics)
    pipeline = Pipeline(engine=engine, source=source, writer=writer,
                        checkpoint=CheckpointFile(tmp_path / "detectors.npz"), metrics=metrics,
                        config=PipelineConfig(), clock=lambda: clock[0])
    await store.start()
    writing = asyncio.create_task(writer.run())
    try:
        next_flush: int | None = None
        last = feed.start_ms

        async def flush(at_ms: int) -> None:
            clock[0] = at_ms / 1000
            await pipeline.flush()
            pipeline.tick()

        mid = 0
        for topic, payload, publish_ms in feed.messages:
            if next_flush is None:
                next_flush = publish_ms + FLUSH_MS
            while publish_ms >= next_flush:
                await flush(next_flush)
                next_flush += FLUSH_MS
            clock[0] = publish_ms / 1000
            mid += 1
            # Delivered in the bite that flushes at the next boundary.
            pipeline.handle([InboundMessage(topic, payload, 1, mid, 1, next_flush)])
            last = publish_ms
        end_ms = max(last, feed.start_ms + int(SCENARIO.duration_s * 1000))
        while next_flush is not None and next_flush <= end_ms + FLUSH_MS:
            await flush(next_flush)
            next_flush += FLUSH_MS
        await asyncio.wait_for(writer.join(), 30)
        assert await store.count_readings() > 0
        assert sorted(source.acked) == list(range(1, mid + 1))
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        await store.close()
        spool.close()
    return as_journaled(journal.load_records()), alarms


async def test_backtest_and_live_pipeline_write_the_identical_journal(tmp_path: Path) -> None:
    config = alarm_config()
    backtest = backtest_journal(config)
    live, alarms = await live_journal(config, tmp_path)
    assert len(live) > 20
    assert live == backtest

    # The period tightened the pumps' H limit (toxic first level 7.1 ppm H2S)...
    configured_h = next(p.sensor.effective_limits().h for p in SensorTable.from_config(
        PLANT).places if p.sensor.id == PUMPS)
    assert configured_h is not None
    raised = [r for r in live if r.get("alarm_id") == f"{PUMPS}:h" and r.get("action") == "raise"]
    assert raised and raised[0]["setpoint"] < configured_h
    # ...and the rule was judged on readings and held the valve pit's alarms: raised
    # (recorded) but suppressed by design, never annunciated.
    assert any(r.get("type") == "suppress" and r["rule"] == "valve-pit-flooded"
               and r["active"] for r in live)
    pit = [p for p in alarms.manager.points() if p.sensor == VALVE_PIT and p.raise_count]
    assert pit and all(p.suppressed_by == ("valve-pit-flooded",) for p in pit)
