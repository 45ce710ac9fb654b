"""The store writer: batches to the store, or to the spool when it is away.

A job is a batch plus what to do once it is durable (acknowledge its MQTT
messages). A batch is durable when the store took it, or when it was appended
and fsynced to the spool. While the spool holds anything, new batches go to
the spool too, so the store receives readings in the order they came; a
drainer replays the spool a bounded chunk at a time with jittered exponential
backoff (the one place that retries the store). Spooled readings whose sensor
left the plant config since they were spooled are dead-lettered through
``on_refused`` and counted, and the rest of the spool goes on. The drainer is
as hard to stop as the live path: an unexpected error is logged with its
traceback and the chunk retried after a backoff, and a chunk the store refuses
is split (by halves of its series, then of a series' readings) so that what
the store takes is written and only the refused readings are dead-lettered.

Concurrency towards the store is bounded (``concurrency`` writers over the
store's own bounded connection pool). A writer that finds more jobs queued
behind its own takes them too, up to ``coalesce_readings`` readings, and
writes them as one (group commit).

Back-pressure: when the spool is full (its size cap) or the disk refuses it,
the writer holds the jobs it has, unacknowledged, and waits: for the drain to
free the spool, or a backoff before trying the disk again. Nothing is dropped
and nothing spins; its bounded queue fills, ``submit`` waits, the pipeline
stops taking messages, and the broker keeps the rest (QoS 1, persistent
session) until the writer takes jobs again. ``on_spool_full`` is told when
that starts and ends: while it lasts no new reading reaches the detectors, so
alarm evaluation waits for the store, and operators must know.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ingest.metrics import IngestMetrics
from ingest.spool import RefusedReadings, Spool, SpoolFull
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from store.backoff import Backoff
from store.base import ReadingStore
from store.errors import SpoolError, StoreRejected, StoreUnavailable

__all__ = ["REPLAY_SPLIT_WRITES", "StoreWriter", "WriteJob"]

log = logging.getLogger(__name__)

REPLAY_SPLIT_WRITES = 256
"""Most writes spent splitting one refused replay chunk. One bad reading costs
about 2·log2(chunk) of them; a series refused whole (a field type conflict)
would cost two per reading, so past this the refused parts left are
dead-lettered whole (said in the log), good readings among them included."""


@dataclass(slots=True)
class WriteJob:
    batch: ReadingBatch
    on_durable: Callable[[], None]


def _readings_of(jobs: list[WriteJob]) -> ReadingBatch:
    return jobs[0].batch if len(jobs) == 1 else ReadingBatch.concat([j.batch for j in jobs])


def _halves(batch: ReadingBatch) -> tuple[ReadingBatch, ReadingBatch] | None:
    """Two halves of a refused batch to try apart: half of its series each while
    it holds several (a store refuses a series whole, for a field type
    conflict say), else the first and second half of the one series' readings
    (their order kept). None for a single reading."""
    series = np.unique(batch.sensor)
    if len(series) > 1:
        first = np.isin(batch.sensor, series[:len(series) // 2])
        return batch.take(np.flatnonzero(first)), batch.take(np.flatnonzero(~first))
    if len(batch) > 1:
        mid = len(batch) // 2
        return batch.take(np.arange(mid)), batch.take(np.arange(mid, len(batch)))
    return None


class StoreWriter:
    """Writes jobs to ``store``; spools while it is unavailable."""

    def __init__(
        self,
        store: ReadingStore,
        spool: Spool,
        metrics: IngestMetrics,
        *,
        concurrency: int = 2,
        queue_size: int = 8,
        coalesce_readings: int = 400_000,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_refused: Callable[[ReadingBatch, str], None] | None = None,
        replay_readings: int = 400_000,
        on_spool_full: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_refused(batch, detail)`` is told of readings that will never be
        stored (a store 4xx, or spooled readings of a sensor no longer in the
        config: their ``batch.sensor`` is -1 and ``detail`` names the ids).
        ``replay_readings``: about how many spooled readings one replay write
        carries (the memory replay needs is bounded by it).
        ``on_spool_full(True)`` is called when the spool refuses an append as
        full (once, however many writers it refuses), ``on_spool_full(False)``
        when the drain has made room again: in between, readings are held at
        the broker and alarm evaluation waits for the store. An exception it
        raises is logged, never fatal to the writer."""
        self.store = store
        self.spool = spool
        self.metrics = metrics
        self.concurrency = concurrency
        self.coalesce_readings = coalesce_readings
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.on_refused = on_refused
        self.replay_readings = replay_readings
        self.on_spool_full = on_spool_full
        self.store_up = True
        self._jobs: asyncio.Queue[WriteJob] = asyncio.Queue(queue_size)
        self._alarm_events: asyncio.Queue[list[AlarmEvent]] = asyncio.Queue(1000)
        self._spool_wake = asyncio.Event()
        if not spool.empty:
            self._spool_wake.set()
        self._held = 0
        self._spool_room = asyncio.Event()
        """Set while the spool may take an append; cleared when it refused one as full."""
        if not spool.full:
            self._spool_room.set()
        self._full_said = False
        """True from ``on_spool_full(True)`` until ``on_spool_full(False)``."""
        self._spool_gauges()
        metrics.store_up.set(1)

    async def submit(self, job: WriteJob) -> None:
        """Queue a job; waits while the queue is full (backpressure to the source)."""
        await self._jobs.put(job)
        self.metrics.writer_queue_depth.set(self._jobs.qsize())

    def submit_alarm_events(self, events: list[AlarmEvent]) -> None:
        """Best effort: the alarm journal, not the store, is the record of alarms."""
        try:
            self._alarm_events.put_nowait(events)
        except asyncio.QueueFull:
            log.warning("alarm-event queue to the store is full; %d events not stored "
                        "(they are in the alarm journal)", len(events))

    @property
    def queued(self) -> int:
        return self._jobs.qsize()

    async def join(self) -> None:
        """Wait until every submitted job is durable."""
        await self._jobs.join()

    async def run(self) -> None:
        # What the spool found on open and could not keep (old-format readings it
        # could not tie to sensors, records damaged on disk): said here, once
        # on_refused is wired.
        if self.spool.set_aside is not None:
            self._refused_from_spool(self.spool.set_aside)
            self.spool.set_aside = None
        if self.spool.damaged is not None:
            self._refused_from_spool(self.spool.damaged)
            self.spool.damaged = None
        async with asyncio.TaskGroup() as tg:
            for i in range(self.concurrency):
                tg.create_task(self._write_jobs(), name=f"store-writer-{i}")
            tg.create_task(self._drain_spool(), name="spool-drainer")
            tg.create_task(self._write_alarm_events(), name="alarm-event-writer")

    @property
    def held(self) -> int:
        """Readings the writer holds unacknowledged because the spool cannot take them."""
        return self._held

    def _say_spool_full(self, full: bool) -> None:
        """``on_spool_full(full)``, once per change."""
        if self._full_said == full:
            return
        self._full_said = full
        if self.on_spool_full is None:
            return
        try:
            self.on_spool_full(full)
        except Exception:  # a notifier's bug must not stop the writer
            log.exception("on_spool_full(%s) failed", full)

    def _spool_gauges(self) -> None:
        self.metrics.spool_readings.set(self.spool.readings)
        self.metrics.spool_bytes.set(self.spool.bytes)
        self.metrics.spool_full.set(1 if self.spool.full else 0)

    def _try_spool(self, jobs: list[WriteJob]) -> SpoolError | None:
        """Spool the jobs' readings and acknowledge them; None when done, else
        why the spool did not take them (they are not acknowledged)."""
        batch = _readings_of(jobs)
        try:
            self.spool.append(batch)
        except SpoolError as exc:
            if isinstance(exc, SpoolFull):
                self._spool_room.clear()
                self._say_spool_full(True)
            self._spool_gauges()
            return exc
        self.metrics.readings_spooled.inc(len(batch))
        self._spool_gauges()
        self._spool_wake.set()
        for job in jobs:
            job.on_durable()
        return None

    async def _deliver(self, jobs: list[WriteJob]) -> None:
        """Make the jobs durable, in the store or the spool, and acknowledge them.

        Returns only once they are (or were refused by the store and
        dead-lettered). While the spool cannot take them they are held:
        unacknowledged, the writer waiting on the drain (spool full) or on a
        backoff (the disk refused), never in a busy loop.
        """
        backoff: Backoff | None = None
        holding = False
        try:
            while True:
                if not self._spooling:
                    if await self._write_to_store(jobs):
                        return
                    continue  # the store went away: spool them
                refused = self._try_spool(jobs)
                if refused is None:
                    return
                n = sum(len(j.batch) for j in jobs)
                if not holding:
                    holding = True
                    self._held += n
                    log.error("%s; %d readings held unacknowledged (the broker keeps the "
                              "rest) until the spool takes them", refused, n)
                if isinstance(refused, SpoolFull):
                    self.metrics.store_write_errors.labels("spool_full").inc()
                    await self._spool_room.wait()
                else:
                    self.metrics.store_write_errors.labels("spool").inc()
                    backoff = backoff or Backoff(self.backoff_initial_s, self.backoff_max_s)
                    await asyncio.sleep(backoff.next())
                    # With nothing spooled, order allows the store: it may be back
                    # while the disk is not (the drainer, which says so, sleeps).
                    if self.spool.empty and await self._write_to_store(jobs):
                        self._mark_up()
                        return
        finally:
            if holding:
                self._held -= sum(len(j.batch) for j in jobs)

    @property
    def _spooling(self) -> bool:
        """New jobs go to the spool: the store is away, or the spool still holds
        readings that must reach the store first (order is kept)."""
        return not self.store_up or not self.spool.empty

    def _take_jobs(self, first: WriteJob) -> list[WriteJob]:
        """``first`` and, while the writer is behind, the jobs queued after it,
        up to ``coalesce_readings`` readings in all.

        Why: one request with more points of each series costs InfluxDB less
        per point (see :func:`store.influx.series_chunks`), and the queue only
        holds jobs when the store is the bottleneck. The end-to-end gain was
        clear with 100k-reading flushes and is within noise with today's
        bites (docs/benchmarks.md, "Design measurements").
        """
        jobs = [first]
        size = len(first.batch)
        while size < self.coalesce_readings and not self._jobs.empty():
            job = self._jobs.get_nowait()
            jobs.append(job)
            size += len(job.batch)
        return jobs

    async def _write_jobs(self) -> None:
        while True:
            jobs = self._take_jobs(await self._jobs.get())
            try:
                self.metrics.writer_queue_depth.set(self._jobs.qsize())
                await self._deliver(jobs)
            finally:
                for _ in jobs:
                    self._jobs.task_done()

    async def _write_to_store(self, jobs: list[WriteJob]) -> bool:
        """Write the jobs to the store and acknowledge them: True. False when the
        store is away (marked down; the caller spools them)."""
        batch = _readings_of(jobs)
        started = time.perf_counter()
        try:
            await self.store.write(batch)
        except StoreUnavailable as exc:
            self._mark_down(exc)
            return False
        except StoreRejected as exc:
            if len(jobs) > 1:
                # Find the refused flush: write the merged jobs one by one
                # (rewriting a point that did go in only overwrites it). Once
                # the store is away or the spool holds anything, the rest go to
                # the spool behind it, as any job would.
                for job in jobs:
                    await self._deliver([job])
                return True
            self._refused(batch, exc)
            jobs[0].on_durable()
            return True
        except Exception as exc:  # a store bug must not stop ingest
            log.exception("unexpected error from the store; spooling")
            self._mark_down(exc)
            return False
        self.metrics.store_write_seconds.observe(time.perf_counter() - started)
        self.metrics.readings_stored.inc(len(batch))
        for job in jobs:
            job.on_durable()
        return True

    def _mark_down(self, exc: Exception) -> None:
        if self.store_up:
            log.warning("store unavailable (%s); spooling readings to %s", exc, self.spool.path)
        self.store_up = False
        self.metrics.store_up.set(0)
        self.metrics.store_write_errors.labels("unavailable").inc()

    def _mark_up(self) -> None:
        if not self.store_up:
            log.info("store is back")
        self.store_up = True
        self.metrics.store_up.set(1)

    def _refused(self, batch: ReadingBatch, why: Exception | str) -> None:
        log.error("store refused %d readings: %s", len(batch), why)
        self.metrics.store_write_errors.labels("refused").inc()
        self.metrics.readings_refused_by_store.inc(len(batch))
        if self.on_refused is not None:
            self.on_refused(batch, str(why))

    def _refused_from_spool(self, gone: RefusedReadings) -> None:
        """Spooled readings that cannot be stored (their sensor left the config, an
        old-format record under a changed table): logged, counted, dead-lettered."""
        log.error("%s: %s", gone.reason, gone.detail)
        self.metrics.spool_readings_refused.labels(gone.reason).inc(gone.count)
        if self.on_refused is not None:
            # Even with no readings at hand or counted (a damaged record whose
            # header hid its count): the dead letter says what was lost.
            self.on_refused(gone.batch, f"{gone.reason}: {gone.detail}")

    async def _drain_spool(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            await self._spool_wake.wait()
            self._spool_wake.clear()
            while not self.spool.empty:
                if await self._replay_chunk():
                    backoff.reset()
                else:
                    await asyncio.sleep(backoff.next())
            if not self.store_up:
                log.info("store is back; spool drained")
            self.store_up = True
            self.metrics.store_up.set(1)

    async def _replay_chunk(self) -> bool:
        """Replay the spool's next chunk and commit it: True. False when it must
        be tried again after a backoff (the store is away, or an error nobody
        expected: logged with its traceback, never fatal to the writer)."""
        try:
            # Large peeks: the store splits them over its connection pool, so
            # the spool drains faster than live traffic arrives. Bounded: the
            # spool reads only the records of this chunk.
            chunk = self.spool.peek(max_readings=self.replay_readings)
        except Exception:
            log.exception("cannot read the next chunk of spool %s; trying again",
                          self.spool.path)
            self.metrics.store_write_errors.labels("spool_replay").inc()
            return False
        try:
            refused = await self._write_replayed(chunk.readings, [REPLAY_SPLIT_WRITES])
        except (StoreUnavailable, OSError) as exc:
            self._mark_down(exc)
            return False
        except Exception as exc:  # a store bug must not stop the drain, or ingest
            log.exception("unexpected error from the store replaying spool %s; trying again",
                          self.spool.path)
            self._mark_down(exc)
            return False
        if refused:
            why = str(refused[0][1])
            if len(refused) > 1:
                why += f" (and {len(refused) - 1} more refused parts of this replay chunk)"
            self._refused(ReadingBatch.concat([b for b, _ in refused]), why)
        for gone in chunk.refused:
            self._refused_from_spool(gone)
        try:
            self.spool.commit(chunk.end, chunk.count)
        except Exception:
            # Stored and said: replayed again later, rewriting them is harmless.
            log.exception("cannot mark a replayed chunk of spool %s done", self.spool.path)
            self.metrics.store_write_errors.labels("spool_replay").inc()
            return False
        if not self.spool.full:
            self._spool_room.set()
            self._say_spool_full(False)
        self._spool_gauges()
        return True

    async def _write_replayed(self, batch: ReadingBatch, budget: list[int]
                              ) -> list[tuple[ReadingBatch, StoreRejected]]:
        """Write spooled readings; the parts the store refused, and why.

        A refused batch is split in halves (:func:`_halves`), each written on
        its own, down to a single series and then a single reading, so that one
        bad reading costs about 2·log2(n) writes and the rest is stored.
        ``budget[0]`` counts down the writes splitting may still spend
        (:data:`REPLAY_SPLIT_WRITES`). Rewriting a point that did go in only
        overwrites it. StoreUnavailable and other errors propagate: the whole
        chunk is tried again."""
        if not len(batch):
            return []
        started = time.perf_counter()
        try:
            await self.store.write(batch)
        except StoreRejected as exc:
            halves = _halves(batch)
            if halves is None:
                return [(batch, exc)]
            if budget[0] <= 0:
                if budget[0] == 0:
                    budget[0] = -1  # said once
                    log.warning("a spool replay chunk has more refused readings than "
                                "%d writes can sort out; the refused parts left are "
                                "dead-lettered whole", REPLAY_SPLIT_WRITES)
                return [(batch, exc)]
            budget[0] -= 2
            return [*await self._write_replayed(halves[0], budget),
                    *await self._write_replayed(halves[1], budget)]
        self.metrics.store_write_seconds.observe(time.perf_counter() - started)
        self.metrics.readings_stored.inc(len(batch))
        return []

    async def _write_alarm_events(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            events = await self._alarm_events.get()
            while True:
                try:
                    await self.store.write_alarm_events(events)
                    backoff.reset()
                    break
                except StoreUnavailable:
                    await asyncio.sleep(backoff.next())
                except StoreRejected as exc:
                    log.error("store refused %d alarm events: %s", len(events), exc)
                    break
