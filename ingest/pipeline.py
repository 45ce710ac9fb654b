"""The live runner: source → engine → store → ack.

The pipeline receives messages, hands them to the :class:`~engine.engine.Engine`
(which decodes, detects and keeps the alarm state: see :mod:`engine`), and
carries out each step: checkpoint the engine (fsync), announce the alarm
outcome, publish dead letters (rate-limited per topic) and Sparkplug commands,
and hand the readings to the store writer. Messages are acknowledged to the
broker only when the writer reports their readings durable. So a ``kill -9``
at any point loses nothing the broker accepted, and a restart neither loses
nor re-raises an alarm.

What is left here is receiving, timing (flush by count or age, tick every
second), acknowledging and writing; no input may stop the loop (the engine
turns any failure an input causes into an ``internal_error`` dead letter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from paho.mqtt.client import topic_matches_sub

from alarms.records import Record
from alarms.system import Outcome
from decoders.json_gateway import DecodeLimits
from engine.engine import MAX_DEAD_LETTERS_PER_MESSAGE, Engine
from engine.step import DeadLetter, Step
from ingest import dead_letter
from ingest.checkpoint import CheckpointFile
from ingest.letter_limits import TopicLimiter
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import InboundMessage
from ingest.writer import StoreWriter, WriteJob
from model.batch import ReadingBatch

__all__ = ["MessageSource", "Pipeline", "PipelineConfig"]

log = logging.getLogger(__name__)

_BITE_READINGS = 10_000
"""About how many readings are taken from the source per turn of the loop (the
bite is set in messages from the size of the last ones, 10 to 1,000). The
store writers run between bites, so a write's request moves on once per bite:
smaller bites of big messages drained faster, while single-reading messages
do better with bites of 1,000 (docs/benchmarks.md, "Design measurements")."""

MAX_TOPICS_CACHED = 4_096
"""Topics whose subscription match is remembered; the cache starts again when full,
so junk on ever-new topics costs a little time, never memory."""


class MessageSource(Protocol):
    """What the pipeline needs of a source (``MqttSource``, or a test seam)."""

    topics: list[str]
    disconnects: int
    """How many times the broker connection was lost so far."""

    @property
    def pending(self) -> int: ...

    async def receive(
        self, max_messages: int = 10_000, timeout_s: float | None = None
    ) -> list[InboundMessage]: ...

    def ack(self, messages: list[InboundMessage]) -> int: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, *,
                droppable: bool = False) -> str | None:
        """None when taken, else why not (``droppable`` ones may be refused under load)."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    flush_max_readings: int = 50_000
    flush_interval_s: float = 0.1
    tick_interval_s: float = 1.0
    deadletter_topic: str = "plantwatch/deadletter"
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)
    letters_per_s: float = 10.0
    """Dead letters of one topic per second, after a burst of ``letter_burst`` (two whole
    messages' worth: ``MAX_DEAD_LETTERS_PER_MESSAGE`` and a summary, twice)."""
    letter_burst: float = 2 * (MAX_DEAD_LETTERS_PER_MESSAGE + 1)


class Pipeline:
    """Runs the ingest loop until cancelled."""

    def __init__(
        self,
        *,
        engine: Engine,
        source: MessageSource,
        writer: StoreWriter,
        checkpoint: CheckpointFile,
        metrics: IngestMetrics,
        config: PipelineConfig = PipelineConfig(),
        on_alarm_outcome: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] = time.time,
        on_connection_lost: Callable[[int], None] | None = None,
        after_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        """``on_connection_lost(now_ms)`` is called in the loop's thread when the
        broker connection was lost (the Sparkplug host marks every node stale).
        ``after_checkpoint(now_ms)`` right after each checkpoint, between steps:
        the one moment the journal may be compacted (the checkpoint matches
        its end)."""
        self.engine = engine
        self.table = engine.table
        self.source = source
        self.writer = writer
        self.checkpoint = checkpoint
        self.metrics = metrics
        self.config = config
        self.after_checkpoint = after_checkpoint
        self.on_alarm_outcome = on_alarm_outcome
        self.on_connection_lost = on_connection_lost
        self.clock = clock
        self._messages: list[InboundMessage] = []
        self._topic_ours: dict[str, bool] = {}
        if engine.accepts is None:
            engine.accepts = self._is_ours
        self._letters = TopicLimiter(config.letters_per_s, config.letter_burst)
        self._next_tick = 0.0
        self._bite = 1000  # messages per receive; see _BITE_READINGS
        self._first_pending_at = 0.0
        self._disconnects_seen = source.disconnects
        self.flushes = 0

    @property
    def pending_readings(self) -> int:
        """Decoded readings not yet flushed (live and Sparkplug backfill)."""
        return self.engine.pending_readings

    @property
    def pending_messages(self) -> int:
        """Messages received but not yet flushed (so not yet acknowledged)."""
        return len(self._messages)

    async def run(self) -> None:
        cfg = self.config
        while True:
            wait = max(0.0, self._next_tick - time.monotonic())
            if self._messages:
                wait = min(wait, max(0.0, self._first_pending_at + cfg.flush_interval_s
                                     - time.monotonic()))
            # A bounded bite, so a flush follows soon after the batch is full
            # and the store writers get a turn often (see the end of the loop).
            messages = await self.source.receive(max_messages=self._bite, timeout_s=wait)
            self._notice_disconnects()
            if messages:
                before = self.engine.pending_live
                self.handle(messages)
                per_message = max(1, (self.engine.pending_live - before) // len(messages))
                self._bite = max(10, min(1000, _BITE_READINGS // per_message))
            self.metrics.source_queue_depth.set(self.source.pending)
            if self._messages and (
                self.engine.pending_live >= cfg.flush_max_readings
                or time.monotonic() >= self._first_pending_at + cfg.flush_interval_s
            ):
                await self.flush()
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + cfg.tick_interval_s
                self.tick()
                if not self._messages and self.pending_readings:
                    # Readings the Sparkplug host released on a gap timeout: their
                    # messages were flushed already, so nothing else would flush them.
                    await self.flush()
            # Give the store writers (and the API) a turn of the loop. With a
            # backlog in the broker neither receive nor flush has to wait, so
            # this task kept the loop to itself, and each step of a write's HTTP
            # request waited a whole bite: see _BITE_READINGS.
            await asyncio.sleep(0)

    def _notice_disconnects(self) -> None:
        """Tell the engine's Sparkplug host when the broker connection was lost
        (Sparkplug B: every node is then stale until it is born again). Checked
        here, in the loop's thread, because the host is not thread-safe and paho
        notices on its own thread."""
        lost = self.source.disconnects
        if lost == self._disconnects_seen:
            return
        self._disconnects_seen = lost
        if self.on_connection_lost is not None:
            self.on_connection_lost(int(self.clock() * 1000))

    def handle(self, messages: list[InboundMessage]) -> None:
        """Decode and validate messages into the engine's pending batch; dead-letter
        rejects. Never raises for any message (see :meth:`Engine.ingest`)."""
        if not self._messages:
            self._first_pending_at = time.monotonic()
        before = self.engine.pending_live
        self.metrics.messages_received.inc(len(messages))
        self._messages.extend(messages)
        step = self.engine.ingest(messages, int(self.clock() * 1000))
        self._carry_out_io(step)
        self.metrics.readings_received.inc(self.engine.pending_live - before)
        self.metrics.pending_readings.set(self.engine.pending_live)

    def _carry_out_io(self, step: Step) -> None:
        """Count refusals, publish letters and commands of a step (no alarm part)."""
        for (reason, per_reading), n in step.refused.items():
            if per_reading:
                self.metrics.readings_rejected.labels(reason).inc(n)
            else:
                self.metrics.messages_rejected.labels(reason).inc(n)
        for letter in step.dead_letters:
            self._limited_letter(letter)
        for m in step.publish:
            try:
                refused = self.source.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            except Exception as exc:  # a command not sent must not stop the loop
                refused = repr(exc)
            if refused is None:
                self.metrics.sparkplug_rebirths.inc()
            else:
                log.warning("the Sparkplug host's message to %.200r was not sent: %s",
                            m.topic, refused)

    def _limited_letter(self, letter: DeadLetter) -> None:
        """Publish a letter if its topic's rate allows (ingest.letter_limits); the
        letter is built only then. Letters of no one topic are never held back."""
        # Keyed by the topic's first characters: a topic past the limit must not
        # keep kilobytes in the limiter's table.
        key = letter.topic[:self.config.decode_limits.max_topic_chars]
        if not key or self._letters.take(key, letter.reason, time.monotonic()):
            self._publish_dead_letter(dead_letter.encode(letter.letter()))
        else:
            self.metrics.dead_letters.inc()
            self.metrics.dead_letters_dropped.labels("rate_limit").inc()

    def _rate_limit_summaries(self, now_ms: int) -> None:
        """One ``rate_limited`` letter per topic whose letters were held back, once it may."""
        for topic, by_reason in self._letters.summaries(time.monotonic()):
            lim = self._letters
            self._publish_dead_letter(dead_letter.encode({
                "topic": topic, "reason": "rate_limited",
                "detail": f"{sum(by_reason.values())} dead letters of this topic were not "
                          f"published (at most {lim.rate_per_s:g} a second per topic, bursts "
                          f"of {lim.burst:g}); every rejection is counted in /metrics",
                "by_reason": by_reason, "received_ms": now_ms,
            }))

    def _is_ours(self, topic: str) -> bool:
        ours = self._topic_ours.get(topic)
        if ours is None:
            ours = any(topic_matches_sub(sub, topic) for sub in self.source.topics)
            if len(self._topic_ours) >= MAX_TOPICS_CACHED:
                self._topic_ours.clear()
            self._topic_ours[topic] = ours
        return ours

    def _publish_dead_letter(self, body: bytes) -> None:
        """Publish one dead letter; a publish that fails is counted, never raised."""
        self.metrics.dead_letters.inc()
        try:
            refused = self.source.publish(self.config.deadletter_topic, body, qos=1,
                                          droppable=True)
        except Exception as exc:  # the dead-letter path must not fail the loop
            refused = type(exc).__name__
            log.warning("a dead letter could not be published: %r", exc)
        if refused is not None:
            self.metrics.dead_letters_dropped.labels(refused).inc()

    def dead_letter_refused(self, batch: ReadingBatch, detail: str) -> None:
        """Readings the store refused (a 4xx), or spooled readings it may never
        have (their sensor left the config): one dead letter naming them. Rows
        outside the sensor table (-1: no row today) are named in ``detail``."""
        rows = len(self.table.ids)
        ids = sorted({self.table.ids[s] for s in batch.sensor.tolist() if 0 <= s < rows})
        self._publish_dead_letter(orjson.dumps({
            "topic": None, "reason": "store_refused", "detail": detail,
            "readings": len(batch), "sensors": ids[:100],
            "ts_range": [int(batch.ts.min()), int(batch.ts.max())] if len(batch) else None,
        }))

    def tick(self) -> None:
        """Let time pass in the engine (no-data faults, shelves, re-alarms, floods)."""
        now_ms = int(self.clock() * 1000)
        step = self.engine.tick(now_ms)
        self._carry_out_io(step)
        self._rate_limit_summaries(now_ms)
        self._after_commit(step)

    def commit(self, records: list[Record]) -> Outcome:
        """Apply operator actions (from the API) through the engine."""
        step = self.engine.act(records, int(self.clock() * 1000))
        self._after_commit(step)
        return step.outcome

    def _after_commit(self, step: Step) -> None:
        """Announce (recording the notifications, fsync), then checkpoint (fsync).

        The journal is durable already (the engine fsynced it). The outbox is
        synced by ``on_alarm_outcome`` before the checkpoint moves past the
        records, and both before the readings behind them are acknowledged
        (the caller acks after this returns): a crash before the outbox sync
        leaves the checkpoint behind, so the journal is cut back at start-up,
        the broker redelivers the readings, and the records and their
        notifications are produced again (notify.outbox).
        """
        outcome = step.outcome
        for e in outcome.events:
            self.metrics.alarm_events.labels(e.action).inc()
        if outcome or outcome.events:
            if self.on_alarm_outcome is not None:
                self.on_alarm_outcome(outcome)
            if outcome.events:
                self.writer.submit_alarm_events(outcome.events)
        if step.state_moved:
            self.checkpoint.save(self.engine.snapshot())
            if self.after_checkpoint is not None:
                self.after_checkpoint(int(self.clock() * 1000))

    async def flush(self) -> None:
        """Detect, journal, checkpoint, announce, and hand the batch to the writer."""
        messages = self._messages
        self._messages = []
        self.metrics.pending_readings.set(0)
        self.flushes += 1
        received = min((m.received_ms for m in messages), default=0)
        arrived = max((m.received_ms for m in messages),
                      default=int(self.clock() * 1000))  # released by a gap timeout
        step = self.engine.flush(int(self.clock() * 1000), received_ms=arrived,
                                 sources=messages)
        self._carry_out_io(step)
        self._after_commit(step)

        def acknowledge() -> None:
            self.source.ack(messages)
            if received:
                self.metrics.ack_latency_seconds.observe(
                    max(0.0, self.clock() - received / 1000)
                )

        if len(step.readings):
            await self.writer.submit(WriteJob(step.readings, acknowledge))
        else:
            acknowledge()
