"""The pipeline through in-memory seams: acks only after durability, spool while the
store is down, dead letters, alarms, and a restart that changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import orjson
import pytest

from alarms.catalogue import AlarmCatalogue
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from alarms.periods import ImportantPeriod
from alarms.system import AlarmSystem
from decoders.sparkplug_host import SparkplugHost
from detectors.groups import GroupModel
from detectors.suite import DetectorSuite
from engine.engine import Engine
from ingest.checkpoint import CheckpointFile
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import InboundMessage
from ingest.pipeline import Pipeline, PipelineConfig
from ingest.spool import Spool
from ingest.writer import StoreWriter
from model.batch import ReadingBatch
from model.plant import PlantConfig
from model.sensor_table import SensorTable
from simulators.sparkplug_edge import EdgeNodeMessages
from store.errors import StoreUnavailable
from store.sqlite import SQLiteStore
from tests.plants import small_plant

PLANT = small_plant()
TABLE = SensorTable.from_config(PLANT)
PLANT_LIMITS = {n: TABLE.limit(n).copy() for n in ("ll", "l", "h", "hh")}


class MemorySource:
    """A source seam: messages fed by the test, acks and publishes recorded."""

    def __init__(self) -> None:
        self.topics = ["plant/#"]
        self.queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self.disconnects = 0
        self._mid = 0

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def feed(self, topic: str, doc: object) -> int:
        self._mid += 1
        payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        self.queue.put_nowait(InboundMessage(topic, payload, 1, self._mid, 1,
                                             int(time.time() * 1000)))
        return self._mid

    async def receive(self, max_messages: int = 10_000, timeout_s: float | None = None):
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return []
        out = [first]
        while not self.queue.empty() and len(out) < max_messages:
            out.append(self.queue.get_nowait())
        return out

    def ack(self, messages: list[InboundMessage]) -> int:
        self.acked += [m.mid for m in messages]
        return len(messages)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, *,
                droppable: bool = False) -> str | None:
        self.published.append((topic, payload))
        return None


class SwitchableStore(SQLiteStore):
    """The real SQLite store with a switch that makes it unreachable."""

    down = False
    writes = 0

    async def write(self, batch: ReadingBatch) -> None:
        if self.down:
            raise StoreUnavailable("switched off by the test")
        self.writes += 1
        await super().write(batch)


class Rig:
    def __init__(self, tmp_path, store: SwitchableStore | None = None,
                 periods: list[ImportantPeriod] | None = None,
                 sparkplug: SparkplugHost | None = None,
                 plant: PlantConfig | None = None, groups: Sequence[GroupModel] = (),
                 config: PipelineConfig | None = None) -> None:
        self.tmp = tmp_path
        plant = plant or PLANT
        table = TABLE if plant is PLANT else SensorTable.from_config(plant)
        self.source = MemorySource()
        self.store = store or SwitchableStore(tmp_path / "db.sqlite3", table)
        self.metrics = IngestMetrics()
        self.spool = Spool(tmp_path / "spool.bin", table.ids)
        self.journal = AlarmJournal(tmp_path / "alarms.jsonl")
        self.checkpoint = CheckpointFile(tmp_path / "det.npz")
        self.detector = DetectorSuite(table, groups=groups)
        self.alarms = AlarmSystem(AlarmManager(AlarmCatalogue(plant)), self.journal,
                                  periods=periods or [])
        cfg = config or PipelineConfig(flush_interval_s=0.02)
        self.engine = Engine.for_plant(table, self.detector, self.alarms, sparkplug=sparkplug,
                                       limits=cfg.decode_limits)
        self.engine.restore(self.checkpoint.load(), int(time.time() * 1000))
        self.manager = self.alarms.manager
        self.writer = StoreWriter(self.store, self.spool, self.metrics, backoff_initial_s=0.05,
                                  backoff_max_s=0.2)
        self.announced: list[str] = []
        self.pipeline = Pipeline(
            engine=self.engine, source=self.source, writer=self.writer,
            checkpoint=self.checkpoint, metrics=self.metrics, config=cfg,
            on_alarm_outcome=lambda out: self.announced.extend(
                f"{e.alarm_id}:{e.action}" for e in out.events),
            on_connection_lost=self.engine.connection_lost,
        )
        if sparkplug is not None:
            self.source.topics.append("spBv1.0/#")

    @contextlib.asynccontextmanager
    async def running(self):
        await self.store.start()
        tasks = [asyncio.create_task(self.writer.run()), asyncio.create_task(self.pipeline.run())]
        try:
            yield self
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.store.close()
            self.spool.close()


async def until(cond, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def gateway(ts: int, **values: float) -> dict[str, object]:
    return {"ts": ts, "readings": [{"sensor": k.replace("_", "-"), "value": v}
                                   for k, v in values.items()]}


NOW = int(time.time() * 1000)


async def test_readings_stored_then_acked_and_alarm_raised_and_cleared(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        mids = [rig.source.feed("plant/s1/gw", gateway(NOW + i, LEL_1=v, PT_1=500.0))
                for i, v in enumerate([1.0, 30.0, 55.0, 20.0, 2.0])]
        await until(lambda: sorted(rig.source.acked) == mids)
        assert await rig.store.count_readings() == 10
        assert rig.announced == ["LEL-1:h:raise", "LEL-1:hh:raise", "LEL-1:hh:clear",
                                 "LEL-1:h:clear"]
        assert rig.alarms.active_points() == []
        assert [e.action for e in rig.journal.load()] == ["raise", "raise", "clear", "clear"]


async def test_bad_input_is_dead_lettered_and_loop_survives(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        rig.source.feed("plant/s1/gw", b"{garbage")
        rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=1.0, NOPE=2.0))
        # line protocol: timestamp 1 (auto precision: seconds) is far too old; the
        # good line of the same message is kept
        rig.source.feed("plant/s1/lp", b"lel,sensor=LEL-1 value=1 1\n"
                        + f"lel,sensor=PT-1 value=500,quality=0i {NOW}".encode())
        rig.source.feed("elsewhere/retained", b"not ours")  # amqtt-style foreign retained
        mid = rig.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=2.0))
        await until(lambda: mid in rig.source.acked)
        await until(lambda: len(rig.source.acked) == 5)
        letters = [orjson.loads(p) for t, p in rig.source.published]
        assert [x["reason"] for x in letters] == [
            "malformed_json", "unknown_sensor", "timestamp_too_old"]
        assert letters[1]["reading"] == {"sensor": "NOPE", "value": 2.0}
        assert letters[2]["topic"] == "plant/s1/lp"
        assert (letters[2]["index"], letters[2]["reading"]) == (0, "lel,sensor=LEL-1 value=1 1")
        assert await rig.store.count_readings() == 3
        samples = {(s.name, tuple(s.labels.items())): s.value
                   for m in rig.metrics.registry.collect() for s in m.samples}
        rejected = ("plantwatch_readings_rejected_total", (("reason", "unknown_sensor"),))
        assert samples[rejected] == 1
        too_old = ("plantwatch_readings_rejected_total", (("reason", "timestamp_too_old"),))
        assert samples[too_old] == 1
        malformed = ("plantwatch_messages_rejected_total", (("reason", "malformed_json"),))
        assert samples[malformed] == 1
        assert samples[("plantwatch_dead_letters_total", ())] == 3


async def test_store_down_spools_acks_and_drains_in_order(tmp_path) -> None:
    rig = Rig(tmp_path)
    rig.store.down = True
    async with rig.running():
        mids = [rig.source.feed("plant/s1/gw", gateway(NOW + i, LEL_1=float(i % 3)))
                for i in range(20)]
        await until(lambda: sorted(rig.source.acked) == mids)  # durable in the spool
        assert rig.spool.readings == 20
        assert rig.writer.store_up is False
        # alarms keep running while the store is down
        rig.source.feed("plant/s1/gw", gateway(NOW + 100, LEL_1=60.0))
        await until(lambda: "LEL-1:hh:raise" in rig.announced)
        rig.store.down = False
        await until(lambda: rig.spool.empty and rig.writer.store_up, timeout_s=10)
        await until(lambda: rig.spool.readings == 0)
        assert await rig.store.count_readings() == 21


async def test_restart_resumes_without_reraising(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        mid = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=60.0, O2_1=18.0))
        await until(lambda: mid in rig.source.acked)
    before = rig.manager.snapshot()
    assert {a.alarm_id for a in rig.alarms.active_points()} == {"LEL-1:h", "LEL-1:hh", "O2-1:l"}

    again = Rig(tmp_path)
    assert again.manager.snapshot() == before
    async with again.running():
        # the same readings redelivered, and a further high reading: nothing new
        mids = [again.source.feed("plant/s1/gw", gateway(NOW, LEL_1=60.0, O2_1=18.0)),
                again.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=58.0, O2_1=18.5))]
        await until(lambda: sorted(again.source.acked) == mids)
        assert again.announced == []
        mid = again.source.feed("plant/s1/gw", gateway(NOW + 2, LEL_1=1.0, O2_1=20.9))
        await until(lambda: mid in again.source.acked)
    assert sorted(again.announced) == ["LEL-1:h:clear", "LEL-1:hh:clear", "O2-1:l:clear"]


async def test_journal_ahead_of_checkpoint_is_cut_back(tmp_path) -> None:
    """A crash between journaling and checkpointing: the events are produced again
    from the redelivered readings, and the board matches the detector."""
    rig = Rig(tmp_path)
    async with rig.running():
        mid = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=1.0))
        await until(lambda: mid in rig.source.acked)
    saved = (tmp_path / "det.npz").read_bytes()
    rig2 = Rig(tmp_path)
    async with rig2.running():
        mid = rig2.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=30.0))
        await until(lambda: mid in rig2.source.acked)
    (tmp_path / "det.npz").write_bytes(saved)  # as if the crash hit before the checkpoint
    rig3 = Rig(tmp_path)
    assert rig3.alarms.active_points() == []
    async with rig3.running():
        mid = rig3.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=30.0))
        await until(lambda: mid in rig3.source.acked)
    assert rig3.announced == ["LEL-1:h:raise"]


@pytest.mark.parametrize("n_messages", [1, 250])
async def test_every_accepted_reading_reaches_the_store(tmp_path, n_messages) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        for i in range(n_messages):
            rig.source.feed("plant/s1/gw", {"ts": NOW + i, "readings": [
                {"sensor": s, "value": 1.0} for s in TABLE.ids]})
        await until(lambda: len(rig.source.acked) == n_messages, timeout_s=20)
    store = SQLiteStore(tmp_path / "db.sqlite3", TABLE)
    await store.start()
    assert await store.count_readings() == n_messages * len(TABLE)
    await store.close()


async def test_a_flood_of_bad_readings_is_capped_with_a_summary(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        doc = {"ts": NOW, "readings": [{"sensor": f"X{i}", "value": 1.0} for i in range(250)]
               + [{"sensor": "LEL-1", "value": 1.0}]}
        mid = rig.source.feed("plant/s1/gw", doc)
        await until(lambda: mid in rig.source.acked)
    letters = [orjson.loads(p) for _, p in rig.source.published]
    assert len(letters) == 101
    assert letters[-1]["reason"] == "more_rejections"
    assert letters[-1]["by_reason"] == {"unknown_sensor": 150}
    samples = {(s.name, tuple(s.labels.items())): s.value
               for m in rig.metrics.registry.collect() for s in m.samples}
    assert samples[("plantwatch_readings_rejected_total", (("reason", "unknown_sensor"),))] == 250


async def test_important_period_tightens_limits_while_in_force(tmp_path) -> None:
    """A start-up period tightening limits by 20 %: LEL h 25 → 20 %LEL, so 22 alarms."""
    from datetime import UTC, datetime, timedelta
    now = datetime.now(UTC)
    period = ImportantPeriod(id="startup", kind="startup", areas=["tf-a"],
                             start=now - timedelta(hours=1), end=now + timedelta(hours=1),
                             tighten_limits_pct=20)
    rig = Rig(tmp_path, periods=[period])
    try:
        async with rig.running():
            mid = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=22.0))
            await until(lambda: mid in rig.source.acked)
        point = rig.manager.get("LEL-1:h")
        assert point is not None and point.process_active and point.setpoint == 20.0
        assert TABLE.h[TABLE.index["LEL-1"]] == 20.0  # the trend detector sees it too
    finally:
        rig.detector.set_limits({n: a.copy() for n, a in PLANT_LIMITS.items()})

    # Outside the period the configured limit holds: 22 %LEL is no alarm.
    later = ImportantPeriod(id="later", kind="startup", areas=["tf-a"],
                            start=now + timedelta(hours=5), end=now + timedelta(hours=6),
                            tighten_limits_pct=20)
    rig2 = Rig(tmp_path / "b", periods=[later])
    async with rig2.running():
        mid = rig2.source.feed("plant/s1/gw", gateway(NOW, LEL_1=22.0))
        await until(lambda: mid in rig2.source.acked)
    assert rig2.manager.get("LEL-1:h") is None


async def test_sparkplug_gap_timeout_rebirth_dead_letter_and_backfill_never_detected(
        tmp_path) -> None:
    """Through the pipeline: a lost DDATA is waited for, then a rebirth is asked,
    the gap dead-lettered with the message that exposed it, the held readings
    stored even though no message follows; historical readings are stored and
    never reach the detectors (a 60 %LEL backfill newer than every live reading)."""
    host = SparkplugHost("pw-test", TABLE.index, reorder_timeout_ms=300)
    rig = Rig(tmp_path, sparkplug=host)
    node = EdgeNodeMessages("s1", "gw1", {"tf-a": ["LEL-1", "LEL-2"]})
    now = int(time.time() * 1000)
    births = node.births(now, {"LEL-1": 1.0, "LEL-2": 1.0})
    m1 = node.data(now + 1000, {"LEL-1": 2.0, "LEL-2": 2.0})
    node.data(now + 2000, {"LEL-1": 3.0, "LEL-2": 3.0})  # lost on the way
    m3 = node.data(now + 3000, {"LEL-1": 4.0, "LEL-2": 4.0})
    backfill = node.data(now + 9000, {"LEL-1": 60.0}, historical=True)
    async with rig.running():
        for m in [*births, *m1, *m3]:
            rig.source.feed(m.topic, m.payload)
        await until(lambda: any("/NCMD/" in t for t, _ in rig.source.published), 5)
        await until(lambda: len(rig.source.acked) == 4, 5)
        # births (2) + m1 (2) + the held m3 (2), stored with no further message
        await until(lambda: _stored(rig) == 6, 5)
        letters = [orjson.loads(p) for t, p in rig.source.published
                   if t == "plantwatch/deadletter"]
        assert [(d["reason"], d["topic"]) for d in letters] == [("seq_gap", m3[0].topic)]
        for m in node.births(now + 5000, {"LEL-1": 4.0, "LEL-2": 4.0}):  # the rebirth
            rig.source.feed(m.topic, m.payload)
        for m in backfill:
            rig.source.feed(m.topic, m.payload)
        await until(lambda: _stored(rig) == 9, 5)
    assert rig.manager.get("LEL-1:hh") is None and rig.manager.get("LEL-1:h") is None
    assert rig.detector.limits.last_ts[TABLE.index["LEL-1"]] == now + 5000


def _stored(rig: Rig) -> int:
    """Readings in the store (the SQLite file, read synchronously for the test)."""
    import sqlite3
    with contextlib.closing(sqlite3.connect(rig.tmp / "db.sqlite3")) as db:
        return int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])


async def test_a_lost_broker_connection_makes_sparkplug_nodes_stale_until_reborn(
        tmp_path) -> None:
    """After the source reports a lost connection, the host treats every node as
    unborn: its next data is dead-lettered as data before birth and a rebirth is
    asked for; the rebirth makes its sensors current again."""
    host = SparkplugHost("pw-test", TABLE.index, reorder_timeout_ms=300)
    rig = Rig(tmp_path, sparkplug=host)
    node = EdgeNodeMessages("s1", "gw1", {"tf-a": ["LEL-1", "LEL-2"]})
    now = int(time.time() * 1000)
    async with rig.running():
        for m in [*node.births(now, {"LEL-1": 1.0, "LEL-2": 1.0}),
                  *node.data(now + 1000, {"LEL-1": 2.0, "LEL-2": 2.0})]:
            rig.source.feed(m.topic, m.payload)
        await until(lambda: _stored(rig) == 4, 5)
        assert not any("/NCMD/" in t for t, _ in rig.source.published)
        rig.source.disconnects += 1  # paho noticed; the loop hears of it on its next turn
        for m in node.data(now + 2000, {"LEL-1": 3.0, "LEL-2": 3.0}):
            rig.source.feed(m.topic, m.payload)
        await until(lambda: any("/NCMD/" in t for t, _ in rig.source.published), 5)
        assert {"LEL-1", "LEL-2"} <= host.stale_sensors()
        letters = [orjson.loads(p)["reason"] for t, p in rig.source.published
                   if t == "plantwatch/deadletter"]
        assert "data_before_birth" in letters
        for m in node.births(now + 3000, {"LEL-1": 4.0, "LEL-2": 4.0}):
            rig.source.feed(m.topic, m.payload)
        await until(lambda: _stored(rig) == 6, 5)
        assert not {"LEL-1", "LEL-2"} & host.stale_sensors()


async def test_bites_hold_about_ten_thousand_readings(tmp_path) -> None:
    """The pipeline takes ~10,000 readings per turn of the loop, in messages of
    whatever size the gateways send: big messages, small bites."""
    rig = Rig(tmp_path)
    asked: list[int] = []
    receive = rig.source.receive

    async def recording_receive(max_messages: int = 10_000, timeout_s: float | None = None):
        asked.append(max_messages)
        return await receive(max_messages, timeout_s)

    rig.source.receive = recording_receive  # type: ignore[method-assign]
    per_message = 20 * len(TABLE)  # 100 readings: 20 times of each sensor
    async with rig.running():
        for i in range(150):
            rig.source.feed("plant/s1/gw", {"readings": [
                {"sensor": s, "value": 1.0, "ts": NOW + 20 * i + k}
                for k in range(20) for s in TABLE.ids]})
        await until(lambda: len(rig.source.acked) == 150, timeout_s=20)
        big = len(asked)
        mids = [rig.source.feed("plant/s1/gw", gateway(NOW + 10_000 + i, LEL_1=1.0))
                for i in range(5)]
        await until(lambda: set(mids) <= set(rig.source.acked))
        assert await rig.store.count_readings() == 150 * per_message + 5
    assert per_message == 100
    assert asked[0] == 1000  # nothing known yet
    assert 10_000 // per_message in asked[1:big]
    assert asked[-1] == 1000  # one reading a message: bites of 1,000 again
