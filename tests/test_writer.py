"""The store writer's group commit: a writer that is behind merges queued flushes
into one write, acknowledges each flush only once its readings are in, and
still refuses a store-rejected flush on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from ingest.writer import REPLAY_SPLIT_WRITES, StoreWriter, WriteJob
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from store.errors import StoreRejected, StoreUnavailable
from tests.test_pipeline import until

BAD_SENSOR = 99


class GatedStore:
    """A store seam: each write waits for the gate, is recorded, and any batch
    holding ``BAD_SENSOR`` is refused whole (as a 4xx would be)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writes: list[ReadingBatch] = []
        self.refused_writes = 0

    async def write(self, batch: ReadingBatch) -> None:
        await self.gate.wait()
        if (batch.sensor == BAD_SENSOR).any():
            self.refused_writes += 1
            raise StoreRejected("bad point", "memory")
        self.writes.append(batch)

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        return None


def flush(k: int, n: int = 10, sensor: int = 0) -> ReadingBatch:
    """The k-th flush: n readings, values k*1000 + i, so each is traceable."""
    return ReadingBatch.from_columns(np.full(n, sensor), 1_700_000_000_000 + np.arange(n),
                                     k * 1000.0 + np.arange(n))


@contextlib.asynccontextmanager
async def running(writer: StoreWriter) -> AsyncIterator[StoreWriter]:
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stored_values(store: GatedStore) -> list[float]:
    return sorted(v for b in store.writes for v in b.value.tolist())


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool.bin", [f"S-{i}" for i in range(BAD_SENSOR + 1)])
    yield spool
    spool.close()


async def test_queued_flushes_are_merged_and_each_acked_after_its_readings_are_in(
    spool: Spool,
) -> None:
    store = GatedStore()
    writer = StoreWriter(store, spool, IngestMetrics(), concurrency=1, queue_size=8,
                         coalesce_readings=35)
    durable: list[int] = []

    def ack(k: int) -> Callable[[], None]:
        def on_durable() -> None:
            # every reading of flush k is in the store when it is acknowledged
            assert {k * 1000.0 + i for i in range(10)} <= set(stored_values(store))
            durable.append(k)
        return on_durable

    async with running(writer):
        for k in range(6):
            await writer.submit(WriteJob(flush(k), ack(k)))
        await asyncio.sleep(0.05)
        assert durable == []  # the store has not answered: nothing acknowledged
        store.gate.set()
        await asyncio.wait_for(writer.join(), 5)

    # All six were queued before the writer first ran (a put into a queue with
    # room does not yield), so it merged them up to 35 readings: 4 flushes, then 2.
    assert [len(b) for b in store.writes] == [40, 20]
    assert stored_values(store) == sorted(k * 1000.0 + i for k in range(6) for i in range(10))
    assert sorted(durable) == list(range(6))


async def test_without_coalescing_every_flush_is_its_own_write(spool: Spool) -> None:
    store = GatedStore()
    writer = StoreWriter(store, spool, IngestMetrics(), concurrency=1, coalesce_readings=0)
    acked = 0

    def on_durable() -> None:
        nonlocal acked
        acked += 1

    async with running(writer):
        for k in range(5):
            await writer.submit(WriteJob(flush(k), on_durable))
        store.gate.set()
        await asyncio.wait_for(writer.join(), 5)
    assert [len(b) for b in store.writes] == [10] * 5
    assert acked == 5


async def test_a_refused_merged_write_refuses_only_the_flush_it_came_from(spool: Spool) -> None:
    store = GatedStore()
    refused: list[ReadingBatch] = []
    writer = StoreWriter(store, spool, IngestMetrics(), concurrency=1,
                         coalesce_readings=1_000, on_refused=lambda b, _why: refused.append(b))
    durable: list[int] = []
    async with running(writer):
        await writer.submit(WriteJob(flush(0), lambda: durable.append(0)))
        for k in (1, 2, 3):
            batch = flush(k, sensor=BAD_SENSOR if k == 2 else 0)
            await writer.submit(WriteJob(batch, lambda k=k: durable.append(k)))
        store.gate.set()
        await asyncio.wait_for(writer.join(), 5)

    # 1+2+3 were merged and refused; written again one by one, 1 and 3 go in
    assert store.refused_writes == 2
    assert len(refused) == 1 and (refused[0].sensor == BAD_SENSOR).all()
    assert stored_values(store) == sorted(k * 1000.0 + i for k in (0, 1, 3) for i in range(10))
    # a refused flush is still acknowledged (it is dead-lettered, never retried)
    assert sorted(durable) == [0, 1, 2, 3]


# -- the spool drainer -------------------------------------------------------


class FlakyStore:
    """A store seam: away while ``down``; raises ``surprise`` once if set (a store
    bug); refuses any write holding a reading of ``BAD_SENSOR`` or a negative
    value (as a 4xx would), and keeps what it takes."""

    def __init__(self) -> None:
        self.down = False
        self.surprise: Exception | None = None
        self.writes: list[ReadingBatch] = []
        self.refused_writes = 0

    async def write(self, batch: ReadingBatch) -> None:
        if self.surprise is not None:
            surprise, self.surprise = self.surprise, None
            raise surprise
        if self.down:
            raise StoreUnavailable("away", "memory")
        if (batch.sensor == BAD_SENSOR).any() or (batch.value < 0).any():
            self.refused_writes += 1
            raise StoreRejected("bad point", "memory")
        self.writes.append(batch)

    async def write_alarm_events(self, events: list[AlarmEvent]) -> None:
        return None


async def drained(writer: StoreWriter) -> None:
    """Run the writer until its spool is empty; fails (not hangs) if it stops."""
    async with running(writer) as w:
        await until(lambda: w.spool.empty and w.store_up)


async def test_the_drainer_outlives_an_unexpected_store_error(
    spool: Spool, caplog: pytest.LogCaptureFixture,
) -> None:
    spool.append(flush(1))
    store = FlakyStore()
    store.surprise = RuntimeError("a bug in the store client")
    writer = StoreWriter(store, spool, IngestMetrics(), backoff_initial_s=0.01,
                         backoff_max_s=0.02)
    await drained(writer)
    assert stored_values(store) == [1000.0 + i for i in range(10)]  # retried, then stored
    # Said with its traceback.
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == [
        "a bug in the store client"]


@pytest.mark.parametrize("bad", ["one series", "one reading"])
async def test_a_refused_replay_chunk_is_split_and_only_refused_readings_are_dead_lettered(
    spool: Spool, bad: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # Four sensors' readings interleaved; either a whole series the store refuses
    # or a single refused reading inside a good series.
    n = 4_000
    sensor = np.where(np.arange(n) % 4 == 3, BAD_SENSOR if bad == "one series" else 3,
                      np.arange(n) % 4)
    value = np.arange(n, dtype=np.float64)
    if bad == "one reading":
        value[2_001] = -1.0  # sensor 1
    spool.append(ReadingBatch.from_columns(sensor, 1_700_000_000_000 + np.arange(n), value))
    store = FlakyStore()
    metrics = IngestMetrics()
    letters: list[tuple[ReadingBatch, str]] = []
    writer = StoreWriter(store, spool, metrics, on_refused=lambda b, why: letters.append((b, why)))
    await drained(writer)

    refused = (sensor == BAD_SENSOR) | (value < 0)
    assert stored_values(store) == value[~refused].tolist()  # everything the store takes
    [(letter, why)] = letters  # one dead letter for the chunk
    assert sorted(letter.value.tolist()) == value[refused].tolist()
    assert "bad point" in why
    assert metrics.registry.get_sample_value(
        "plantwatch_readings_refused_by_store_total") == refused.sum()
    assert metrics.registry.get_sample_value(
        "plantwatch_readings_stored_total") == (~refused).sum()
    # Split by halves: a handful of writes for one bad reading, and never more
    # than the budget (a whole refused series is not tried reading by reading).
    writes = len(store.writes) + store.refused_writes
    assert writes < (40 if bad == "one reading" else REPLAY_SPLIT_WRITES + 20)
    assert ("dead-lettered whole" in caplog.text) == (bad == "one series")


# -- on_spool_full -----------------------------------------------------------


async def test_on_spool_full_says_when_the_spool_refuses_and_when_it_has_room(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.bin", ["S-0"], max_bytes=600)  # about two flushes
    store = FlakyStore()
    store.down = True
    said: list[bool] = []
    writer = StoreWriter(store, spool, IngestMetrics(), concurrency=2, queue_size=8,
                         coalesce_readings=0, backoff_initial_s=0.01, backoff_max_s=0.02,
                         on_spool_full=said.append)
    acked: list[int] = []
    async with running(writer):
        for k in range(6):
            await writer.submit(WriteJob(flush(k), lambda k=k: acked.append(k)))
        await until(lambda: spool.full and writer.held > 0)
        await asyncio.sleep(0.1)  # both writers refused, and wait: said once
        assert said == [True]
        assert len(acked) < 6
        store.down = False
        await asyncio.wait_for(writer.join(), 5)
        await until(lambda: spool.empty)
    assert said == [True, False]
    assert sorted(acked) == list(range(6))
    assert stored_values(store) == sorted(k * 1000.0 + i for k in range(6) for i in range(10))
    spool.close()


async def test_a_failing_on_spool_full_callback_does_not_stop_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    spool = Spool(tmp_path / "spool.bin", ["S-0"], max_bytes=300)

    def broken(full: bool) -> None:
        raise RuntimeError(f"notifier down ({full})")

    store = FlakyStore()
    store.down = True
    writer = StoreWriter(store, spool, IngestMetrics(), concurrency=1, coalesce_readings=0,
                         backoff_initial_s=0.01, backoff_max_s=0.02, on_spool_full=broken)
    async with running(writer):
        for k in range(3):
            await writer.submit(WriteJob(flush(k), lambda: None))
        await until(lambda: spool.full)
        store.down = False
        await asyncio.wait_for(writer.join(), 5)
    assert stored_values(store) == sorted(k * 1000.0 + i for k in range(3) for i in range(10))
    assert "notifier down (True)" in caplog.text and "notifier down (False)" in caplog.text
    spool.close()
