"""The spool keeps sensor ids: a restart with an edited plant config writes each
spooled reading under its own sensor, and dead-letters those whose sensor left.
It is bounded (a full spool holds readings unacknowledged at the broker), replays
a chunk at a time, still reads the previous release's format under its rule,
and its files (and the detector checkpoint) are owner-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import struct
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from alarms.catalogue import AlarmCatalogue
from alarms.journal import AlarmJournal
from alarms.lifecycle import AlarmManager
from alarms.system import AlarmSystem
from detectors.suite import DetectorSuite
from engine.engine import Engine
from engine.snapshot import Snapshot
from ingest.checkpoint import CheckpointFile
from ingest.metrics import IngestMetrics, SourceCollector
from ingest.pipeline import Pipeline, PipelineConfig
from ingest.spool import RECORD_READINGS, Spool, SpoolFull
from ingest.writer import StoreWriter, WriteJob
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable
from tests.plants import small_plant_data
from tests.test_pipeline import NOW, MemorySource, SwitchableStore, gateway, until

# Table A: the small plant (LEL-1, LEL-2, H2S-1, O2-1, PT-1). Table B: the same
# plant edited while readings were spooled: sensors reordered, H2S-1 removed,
# CO-1 added, so every row moved.
PLANT_A = parse_plant(small_plant_data(), "tests/plants.py")
TABLE_A = SensorTable.from_config(PLANT_A)


def plant_b() -> PlantConfig:
    data = copy.deepcopy(small_plant_data())
    area = data["sites"][0]["workshops"][0]["areas"][0]
    by_id = {s["id"]: s for s in area["sensors"]}
    area["sensors"] = [by_id["PT-1"], {"id": "CO-1", "kind": "toxic_ppm", "gas": "CO",
                                       "range": [0, 500]},
                       by_id["O2-1"], by_id["LEL-2"], by_id["LEL-1"]]
    return parse_plant(data, "tests/test_spool_by_id.py")


PLANT_B = plant_b()
TABLE_B = SensorTable.from_config(PLANT_B)
T0 = NOW - 60_000


def readings_of(table: SensorTable, n_per_sensor: int, t0: int = T0) -> ReadingBatch:
    """``n_per_sensor`` readings of every sensor of ``table``, interleaved; the value
    says whose it is: 1000 × (index of its id in table A's order, or 9) + i."""
    m = len(table)
    rows = np.tile(np.arange(m), n_per_sensor)
    i = np.repeat(np.arange(n_per_sensor), m)
    owner = np.array([TABLE_A.index.get(sid, 9) for sid in table.ids])[rows]
    return ReadingBatch.from_columns(rows, t0 + i, owner * 1000.0 + i, i % 4)


class RecordingStore:
    """A store seam for the replay test: checks each reading arrives once and in
    order (ts counts up from T0) without keeping the batches."""

    def __init__(self) -> None:
        self.next_ts = T0
        self.readings = 0
        self.largest_write = 0

    async def write(self, batch: ReadingBatch) -> None:
        expected = np.arange(self.next_ts, self.next_ts + len(batch))
        assert np.array_equal(batch.ts, expected), "a reading missing, twice, or out of order"
        self.next_ts += len(batch)
        self.readings += len(batch)
        self.largest_write = max(self.largest_write, len(batch))

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        return None


@contextlib.asynccontextmanager
async def running(*coros_of: StoreWriter | Pipeline) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(x.run()) for x in coros_of]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def sample(metrics: IngestMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


# -- 1. spooled by id --------------------------------------------------------


async def test_a_restart_with_an_edited_config_stores_each_reading_under_its_own_id(
    tmp_path: Path,
) -> None:
    spool_a = Spool(tmp_path / "spool.bin", TABLE_A.ids)
    spool_a.append(readings_of(TABLE_A, 40))
    spool_a.append(readings_of(TABLE_A, 10, t0=T0 + 1_000))
    spool_a.close()

    # Restart with table B: the pipeline's own dead-letter path, as the service wires it.
    store = SwitchableStore(tmp_path / "db.sqlite3", TABLE_B)
    source = MemorySource()
    metrics = IngestMetrics()
    spool = Spool(tmp_path / "spool.bin", TABLE_B.ids)
    assert spool.readings == 250
    writer = StoreWriter(store, spool, metrics, backoff_initial_s=0.01, backoff_max_s=0.05)
    journal = AlarmJournal(tmp_path / "alarms.jsonl")
    alarms = AlarmSystem(AlarmManager(AlarmCatalogue(PLANT_B)), journal)
    engine = Engine.for_plant(TABLE_B, DetectorSuite(TABLE_B), alarms)
    engine.restore(None, NOW)
    pipeline = Pipeline(engine=engine, source=source, writer=writer,
                        checkpoint=CheckpointFile(tmp_path / "det.npz"), metrics=metrics)
    writer.on_refused = pipeline.dead_letter_refused
    await store.start()
    try:
        async with running(writer):
            await until(lambda: spool.empty and writer.store_up)
        for sid in TABLE_B.ids:
            points = await store.query_readings(TABLE_B.index[sid], T0 - 1, T0 + 2_000)
            if sid == "CO-1":
                assert points == []  # added after the spool was written: nothing of it
                continue
            own = TABLE_A.index[sid] * 1000.0
            assert [p.value for p in points] == (
                [own + i for i in range(40)] + [own + i for i in range(10)]), sid
        assert await store.count_readings() == 200
    finally:
        await store.close()
        spool.close()

    # H2S-1 left the config: its 50 readings are dead-lettered, named, and counted.
    letters = [orjson.loads(p) for t, p in source.published if t == "plantwatch/deadletter"]
    assert len(letters) == 1
    assert letters[0]["readings"] == 50
    assert "H2S-1" in letters[0]["detail"] and "left the plant config" in letters[0]["detail"]
    assert letters[0]["sensors"] == []  # no row of today's table is named for them
    assert sample(metrics, "plantwatch_spool_readings_refused_total",
                  reason="sensor_left_config") == 50


def test_a_record_keeps_only_the_ids_it_uses_and_big_batches_are_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.bin", TABLE_A.ids)
    lel2 = TABLE_A.index["LEL-2"]
    n = RECORD_READINGS + 10
    spool.append(ReadingBatch.from_columns(np.full(n, lel2), T0 + np.arange(n), np.ones(n)))
    raw = (tmp_path / "s.bin").read_bytes()
    assert raw.count(b"PWS2") == 2  # cut at RECORD_READINGS
    assert b"LEL-2" in raw and b"LEL-1" not in raw and b"PT-1" not in raw
    spool.close()
    again = Spool(tmp_path / "s.bin", TABLE_B.ids)
    first = again.peek(max_readings=1)
    assert first.count == RECORD_READINGS  # whole records only, one at least
    assert set(first.readings.sensor.tolist()) == {TABLE_B.index["LEL-2"]}
    again.close()


# -- 2. bounded: back-pressure to the broker ---------------------------------


@contextlib.contextmanager
def capped_pipeline(tmp_path: Path, max_bytes: int) -> Iterator[
        tuple[Pipeline, StoreWriter, MemorySource, SwitchableStore, Spool, IngestMetrics]]:
    store = SwitchableStore(tmp_path / "db.sqlite3", TABLE_A)
    source = MemorySource()
    metrics = IngestMetrics()
    spool = Spool(tmp_path / "spool.bin", TABLE_A.ids, max_bytes=max_bytes)
    writer = StoreWriter(store, spool, metrics, concurrency=2, queue_size=2,
                         backoff_initial_s=0.01, backoff_max_s=0.05)
    alarms = AlarmSystem(AlarmManager(AlarmCatalogue(PLANT_A)),
                         AlarmJournal(tmp_path / "alarms.jsonl"))
    engine = Engine.for_plant(TABLE_A, DetectorSuite(TABLE_A), alarms)
    engine.restore(None, NOW)
    pipeline = Pipeline(engine=engine, source=source, writer=writer,
                        checkpoint=CheckpointFile(tmp_path / "det.npz"), metrics=metrics,
                        config=PipelineConfig(flush_interval_s=0.005))
    try:
        yield pipeline, writer, source, store, spool, metrics
    finally:
        spool.close()


async def test_a_full_spool_stops_acks_until_the_store_is_back_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # One message (two readings) spools as an ~80-byte record: about six fit.
    with capped_pipeline(tmp_path, max_bytes=500) as (pipeline, writer, source, store, spool,
                                                      metrics):
        store.down = True
        await store.start()
        try:
            async with running(writer, pipeline):
                mids = []
                for i in range(40):
                    mids.append(source.feed("plant/s1/gw", gateway(NOW + i, LEL_1=1.0,
                                                                   PT_1=500.0)))
                    await asyncio.sleep(0.01)  # one flush per message
                await until(lambda: spool.full and writer.held > 0)
                acked_while_full = list(source.acked)
                assert 0 < len(acked_while_full) < len(mids)
                assert spool.bytes <= 500
                assert sample(metrics, "plantwatch_spool_full") == 1
                assert sample(metrics, "plantwatch_spool_bytes") == spool.bytes
                assert sample(metrics, "plantwatch_spool_readings") == spool.readings
                attempts = sample(metrics, "plantwatch_store_write_errors_total",
                                  kind="spool_full")
                await asyncio.sleep(0.3)
                # Nothing more acknowledged; the pipeline stopped taking messages (the
                # broker keeps them) and the writer waits, not retrying in a loop.
                assert source.acked == acked_while_full
                assert source.pending > 0
                assert sample(metrics, "plantwatch_store_write_errors_total",
                              kind="spool_full") == attempts
                assert attempts <= 2  # one refused append per writer, then a wait

                store.down = False
                await until(lambda: sorted(source.acked) == mids, timeout_s=10)
                await until(lambda: spool.empty and not spool.full)
            assert await store.count_readings() == 80  # every reading of every message
        finally:
            await store.close()
        assert sample(metrics, "plantwatch_spool_full") == 0
        assert writer.held == 0


def test_append_past_the_cap_raises_spool_full_and_an_empty_spool_takes_any_batch(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.bin", TABLE_A.ids, max_bytes=300)
    spool.append(readings_of(TABLE_A, 10))  # 50 readings, > 300 bytes: taken, spool empty
    assert not spool.full and spool.bytes > 300
    with pytest.raises(SpoolFull, match=r"ingest\.spool_max_bytes"):
        spool.append(readings_of(TABLE_A, 1))
    assert spool.full and spool.readings == 50
    chunk = spool.peek()
    spool.commit(chunk.end, chunk.count)
    assert not spool.full and spool.bytes == 0
    spool.close()
    with pytest.raises(ValueError, match="spool_max_bytes"):
        Spool(tmp_path / "t.bin", TABLE_A.ids, max_bytes=0)


# -- 3. streamed recovery ----------------------------------------------------


async def test_replay_is_streamed_in_bounded_chunks_every_reading_once_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.bin"
    spool = Spool(path, TABLE_A.ids)
    per_append = 100_000
    appends = 12
    for k in range(appends):
        t = T0 + k * per_append + np.arange(per_append)
        spool.append(ReadingBatch.from_columns(np.arange(per_append) % len(TABLE_A), t,
                                               np.zeros(per_append)))
    spool.close()
    size = path.stat().st_size
    chunk_bytes = 50_000 * 21  # one replay chunk on disk
    assert size > 20 * chunk_bytes

    store = RecordingStore()
    tracemalloc.start()
    try:
        reopened = Spool(path, TABLE_A.ids)  # opening checks every record's CRC too
        writer = StoreWriter(store, reopened, IngestMetrics(), replay_readings=50_000)
        async with running(writer):
            await until(lambda: reopened.empty, timeout_s=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reopened.close()
    assert store.readings == appends * per_append
    assert store.largest_write <= 50_000
    # A few copies of one chunk (bytes read, columns, today's rows), whatever the file.
    assert peak < 5 * chunk_bytes, f"replay of a {size}-byte spool peaked at {peak} bytes"


# -- 4. the previous release's format ----------------------------------------


def v1_record(batch: ReadingBatch) -> bytes:
    """A record as release 0.1 wrote it (a copy of its ``Spool.append``)."""
    body = b"".join((
        np.ascontiguousarray(batch.sensor, "<i4").tobytes(),
        np.ascontiguousarray(batch.ts, "<i8").tobytes(),
        np.ascontiguousarray(batch.value, "<f8").tobytes(),
        np.ascontiguousarray(batch.quality, "u1").tobytes(),
    ))
    return struct.pack("<4sII", b"PWS1", len(batch), zlib.crc32(body)) + body


def test_an_old_format_spool_is_read_when_the_table_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    old = readings_of(TABLE_A, 3)
    path.write_bytes(v1_record(old) + v1_record(readings_of(TABLE_A, 2, t0=T0 + 100)))
    spool = Spool(path, TABLE_A.ids, legacy_sensor_ids=TABLE_A.ids)
    assert spool.readings == 25 and spool.legacy_readings == 25 and spool.set_aside is None
    assert b"PWS1" not in path.read_bytes()  # rewritten with their ids, once, on open
    spool.append(readings_of(TABLE_A, 1, t0=T0 + 200))  # new records follow the old
    spool.close()
    # Read under table B (as after a later config change): each reading keeps its id.
    again = Spool(path, TABLE_B.ids, legacy_sensor_ids=TABLE_B.ids)
    chunk = again.peek(max_readings=10_000)
    assert chunk.count == 30 and len(chunk.readings) == 24  # H2S-1 left: 6 refused
    assert [r.reason for r in chunk.refused] == ["sensor_left_config"]
    first = chunk.readings.take(np.arange(12))
    assert [TABLE_B.ids[r] for r in first.sensor.tolist()] == [
        TABLE_A.ids[r] for r in old.sensor.tolist() if TABLE_A.ids[r] != "H2S-1"]
    again.close()


@pytest.mark.parametrize("legacy", [TABLE_A.ids, None], ids=["table-changed", "table-unknown"])
async def test_an_old_format_spool_under_a_changed_or_unknown_table_is_set_aside(
    tmp_path: Path, legacy: list[str] | None,
) -> None:
    path = tmp_path / "spool.bin"
    v1 = v1_record(readings_of(TABLE_A, 3))
    path.write_bytes(v1)
    spool = Spool(path, TABLE_B.ids, legacy_sensor_ids=legacy)
    assert spool.empty and spool.readings == 0 and spool.legacy_readings == 15
    aside = tmp_path / "spool.bin.v1-unattributed"
    assert aside.read_bytes() == v1 and mode(aside) == 0o600  # kept as it was, for a person
    assert spool.set_aside is not None and spool.set_aside.count == 15
    spool.close()
    # The decision is final: this release's checkpoint names table B from now on,
    # and nothing of table A's rows may later pass for table B's.
    again = Spool(path, TABLE_B.ids, legacy_sensor_ids=TABLE_B.ids)
    assert again.empty and again.set_aside is None

    again.close()

    # The writer says so once it runs: logged, counted, dead-lettered.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "spool.bin").write_bytes(v1)
    metrics = IngestMetrics()
    letters: list[tuple[int, str]] = []
    writer = StoreWriter(RecordingStore(),
                         Spool(tmp_path / "w" / "spool.bin", TABLE_B.ids,
                               legacy_sensor_ids=legacy),
                         metrics, on_refused=lambda b, why: letters.append((len(b), why)))
    async with running(writer):
        await until(lambda: bool(letters))
    writer.spool.close()
    aside = tmp_path / "w" / "spool.bin.v1-unattributed"
    [(_, why)] = letters
    assert why.startswith("old_format_table_changed") and "15 readings" in why
    assert str(aside) in why
    assert sample(metrics, "plantwatch_spool_readings_refused_total",
                  reason="old_format_table_changed") == 15


STATE_01 = Path(__file__).parent / "data" / "state-0.1"


def test_the_spool_of_release_0_1_loads_by_id(tmp_path: Path) -> None:
    # A copy: opening rewrites an old-format spool, and those files are never edited.
    shutil.copy(STATE_01 / "spool.bin", tmp_path / "spool.bin")
    checkpoint = CheckpointFile(STATE_01 / "detectors.npz").load()
    assert checkpoint is not None
    expected = orjson.loads((STATE_01.parent / "state-0.1-expected.json").read_bytes())["spool"]

    # Same table as 0.1 ran with (its checkpoint says which): read, by id.
    spool = Spool(tmp_path / "spool.bin", checkpoint.sensor_ids,
                  legacy_sensor_ids=checkpoint.sensor_ids)
    assert spool.torn_bytes_dropped == 0 and spool.set_aside is None
    assert spool.readings == spool.legacy_readings == len(expected)
    spool.close()
    # ... and after a config change, each reading still goes to its own id.
    reordered = list(reversed(checkpoint.sensor_ids))
    spool = Spool(tmp_path / "spool.bin", reordered)
    chunk = spool.peek(max_readings=10**6)
    assert chunk.refused == []
    got = [[reordered[s], t, v] for s, t, v in zip(chunk.readings.sensor.tolist(),
                                                    chunk.readings.ts.tolist(),
                                                    chunk.readings.value.tolist(), strict=True)]
    assert got == expected
    spool.close()


# -- 5. owner-only files -----------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_spool_and_checkpoint_files_are_owner_only(tmp_path: Path) -> None:
    with umask(0o022):
        spool = Spool(tmp_path / "new" / "spool.bin", TABLE_A.ids)
        spool.append(readings_of(TABLE_A, 2))
        spool.close()
        assert mode(tmp_path / "new" / "spool.bin") == 0o600
        assert mode(tmp_path / "new") == 0o700

        # A spool of the previous release (0644) is tightened; one rewritten on
        # open (a torn record cut off) is created owner-only.
        old = tmp_path / "old.bin"
        old.write_bytes(v1_record(readings_of(TABLE_A, 2)) + b"PWS1\x05\x00torn")
        old.chmod(0o644)
        reopened = Spool(old, TABLE_A.ids, legacy_sensor_ids=TABLE_A.ids)
        assert reopened.torn_bytes_dropped > 0
        reopened.close()
        assert mode(old) == 0o600
        assert not (tmp_path / "old.bin.tmp").exists()

        checkpoint = CheckpointFile(tmp_path / "ck" / "detectors.npz")
        (tmp_path / "ck" / "detectors.npz.tmp").write_bytes(b"left by a crash")
        (tmp_path / "ck" / "detectors.npz.tmp").chmod(0o644)
        checkpoint.save(Snapshot({"x": np.zeros(2)}, ["a", "b"], 0))
        assert mode(tmp_path / "ck" / "detectors.npz") == 0o600
        assert mode(tmp_path / "ck") == 0o700
        checkpoint.save(Snapshot({"x": np.ones(2)}, ["a", "b"], 1))  # replaced: still 0600
        assert mode(tmp_path / "ck" / "detectors.npz") == 0o600
        loaded = checkpoint.load()
        assert loaded is not None and loaded.journal_offset == 1


# -- 6. metrics --------------------------------------------------------------


class ConnectedSource:
    takeovers = 0
    disconnects = 2
    connected = True


def test_metrics_are_prefixed_and_include_process_spool_and_connection_gauges() -> None:
    metrics = IngestMetrics()
    source = ConnectedSource()
    metrics.registry.register(SourceCollector(source))
    names = {m.name for m in metrics.registry.collect()}
    assert all(n.startswith("plantwatch_") for n in names), sorted(names)
    assert {"plantwatch_spool_bytes", "plantwatch_spool_readings", "plantwatch_spool_full",
            "plantwatch_store_up", "plantwatch_broker_connected",
            "plantwatch_build_info"} <= names
    if Path("/proc/self/stat").exists():
        assert metrics.registry.get_sample_value(
            "plantwatch_process_cpu_seconds_total") is not None
    assert metrics.registry.get_sample_value("plantwatch_broker_connected") == 1
    source.connected = False
    assert metrics.registry.get_sample_value("plantwatch_broker_connected") == 0


async def test_writer_sets_spool_gauges_as_it_spools_and_drains(tmp_path: Path) -> None:
    store = SwitchableStore(tmp_path / "db.sqlite3", TABLE_A)
    store.down = True
    metrics = IngestMetrics()
    spool = Spool(tmp_path / "spool.bin", TABLE_A.ids)
    writer = StoreWriter(store, spool, metrics, backoff_initial_s=0.01, backoff_max_s=0.05)
    acked: list[float] = []
    await store.start()
    try:
        async with running(writer):
            await writer.submit(WriteJob(readings_of(TABLE_A, 4),
                                         lambda: acked.append(time.monotonic())))
            await until(lambda: bool(acked))
            assert sample(metrics, "plantwatch_spool_readings") == 20
            assert sample(metrics, "plantwatch_spool_bytes") == spool.bytes > 0
            assert sample(metrics, "plantwatch_store_up") == 0
            store.down = False
            await until(lambda: spool.empty and writer.store_up)
        assert sample(metrics, "plantwatch_spool_bytes") == 0
        assert sample(metrics, "plantwatch_spool_readings") == 0
        assert sample(metrics, "plantwatch_store_up") == 1
        assert await store.count_readings() == 20
    finally:
        await store.close()
        spool.close()


def test_the_same_ids_at_other_rows_are_translated_by_their_own_rows(tmp_path: Path) -> None:
    """Two runs spooled records with the same sensors at different rows (the plant
    file was edited between them): each reading keeps its own sensor."""
    path = tmp_path / "spool.bin"

    def batch(rows: list[int], ts: int) -> ReadingBatch:
        n = len(rows)
        return ReadingBatch(np.array(rows, np.int32), np.full(n, ts, np.int64),
                            np.arange(n, dtype=np.float64) + ts, np.zeros(n, np.uint8))

    first = Spool(path, ["A", "B", "X", "C"])
    first.append(batch([0, 1, 3], 1_000))  # A, B, C
    first.close()
    second = Spool(path, ["Y", "A", "B", "C"])
    second.append(batch([1, 2, 3], 2_000))  # A, B, C again, at other rows
    second.close()
    now = Spool(path, ["C", "B", "A"])
    got: list[tuple[str, int, float]] = []
    while not now.empty:
        chunk = now.peek()
        got += [(now.sensor_ids[int(r)], int(t), float(v)) for r, t, v in zip(
            chunk.readings.sensor, chunk.readings.ts, chunk.readings.value, strict=True)]
        assert chunk.refused == []
        now.commit(chunk.end, chunk.count)
    assert got == [("A", 1_000, 1_000.0), ("B", 1_000, 1_001.0), ("C", 1_000, 1_002.0),
                   ("A", 2_000, 2_000.0), ("B", 2_000, 2_001.0), ("C", 2_000, 2_002.0)]


# -- 7. damage found on open -------------------------------------------------


def three_records(path: Path) -> tuple[int, int, int]:
    """Three records of table A (5, 10 and 15 readings); their end offsets."""
    spool = Spool(path, TABLE_A.ids)
    ends = []
    for k, per_sensor in enumerate((1, 2, 3)):
        spool.append(readings_of(TABLE_A, per_sensor, t0=T0 + 100 * k))
        ends.append(path.stat().st_size)
    spool.close()
    return ends[0], ends[1], ends[2]


class KeepingStore:
    """A store seam that keeps the timestamps it was given, in order."""

    def __init__(self) -> None:
        self.ts: list[int] = []

    async def write(self, batch: ReadingBatch) -> None:
        self.ts += batch.ts.tolist()

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        return None


@pytest.mark.parametrize("where", ["body", "magic"])
async def test_a_record_damaged_in_the_middle_is_logged_counted_and_dead_lettered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str,
) -> None:
    path = tmp_path / "spool.bin"
    first_end, second_end, _ = three_records(path)
    raw = bytearray(path.read_bytes())
    raw[first_end + (40 if where == "body" else 0)] ^= 0xFF  # the second record (10 readings)
    path.write_bytes(bytes(raw))

    with caplog.at_level("WARNING", logger="ingest.spool"):
        spool = Spool(path, TABLE_A.ids)
    assert spool.readings == 20  # the records on both sides are kept
    # Acknowledged readings lost: said with the file, the bytes and how many.
    [said] = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    message = said.getMessage()
    assert str(path) in message and f"bytes {first_end}..{second_end}" in message
    assert "10 readings" in message
    assert spool.damaged_readings == 10
    assert spool.damaged is not None and spool.damaged.count == 10
    assert spool.damaged.reason == "record_damaged"

    # The writer counts them and dead-letters them once, when it runs.
    metrics = IngestMetrics()
    letters: list[tuple[int, str]] = []
    store = KeepingStore()
    writer = StoreWriter(store, spool, metrics,
                         on_refused=lambda b, why: letters.append((len(b), why)))
    async with running(writer):
        await until(lambda: spool.empty and bool(letters))
    spool.close()
    assert store.ts == [T0] * 5 + [T0 + 200 + i for i in range(3) for _ in range(5)]
    [(_, why)] = letters
    assert why.startswith("record_damaged") and f"bytes {first_end}..{second_end}" in why
    assert sample(metrics, "plantwatch_spool_readings_refused_total",
                  reason="record_damaged") == 10


def test_a_torn_tail_is_cut_in_place_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "spool.bin"
    _, second_end, third_end = three_records(path)
    whole = path.read_bytes()
    path.write_bytes(whole[:third_end - 7])  # the third append cut by kill -9
    inode = path.stat().st_ino
    with caplog.at_level("INFO", logger="ingest.spool"):
        spool = Spool(path, TABLE_A.ids)
    assert spool.readings == 15 and spool.torn_bytes_dropped == third_end - 7 - second_end
    assert path.stat().st_size == second_end
    assert path.stat().st_ino == inode  # truncated where it is, not copied
    assert not (tmp_path / "spool.bin.tmp").exists()
    # Never acknowledged (its fsync had not returned): not counted as lost.
    assert spool.damaged_readings == 0 and spool.damaged is None
    assert f"bytes {second_end}..{third_end - 7}" in caplog.text and str(path) in caplog.text
    spool.append(readings_of(TABLE_A, 1, t0=T0 + 900))  # appends go on after the cut
    spool.close()
    assert Spool(path, TABLE_A.ids).readings == 20
