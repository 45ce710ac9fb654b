"""The ingest pipeline: source → decode/validate → detect → alarms → store → ack.

Messages are decoded as they arrive and collected until a flush (by count or
by age). A flush runs the detectors over the whole batch, journals the alarm
events it produced (fsync), checkpoints detector state (fsync), announces the
events, and hands the batch to the store writer; the messages are
acknowledged to the broker only when the writer reports the batch durable.
So a ``kill -9`` at any point loses nothing the broker accepted, and a restart
neither loses nor re-raises an alarm.

Rejected messages and readings are dead-lettered (one dead letter each, with
its reason) and counted; they never stop the loop. No input may: anything
unexpected while handling one message dead-letters that message
(``internal_error``, with the exception's class) and it is acknowledged with
the rest, so a message that once failed can never fail the service again
after the broker redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np
import orjson
from paho.mqtt.client import topic_matches_sub

from alarms.from_detections import events_from_transitions
from alarms.periods import limit_factor, tightened_limits
from alarms.records import suppress_record, tick_record
from alarms.system import AlarmSystem, Outcome
from detectors.batch import BatchBuilder, ReadingBatch
from detectors.decide import Transitions
from detectors.sensor_table import SensorTable
from detectors.suite import DetectorSuite
from ingest import dead_letter
from ingest.checkpoint import CheckpointFile, remap_state
from ingest.decode_json import DecodeLimits, Rejection, decode_gateway_json_into
from ingest.decode_lp import decode_line_protocol_into
from ingest.letter_limits import TopicLimiter
from ingest.metrics import IngestMetrics
from ingest.mqtt_source import InboundMessage
from ingest.sparkplug_host import HostMessage, HostOutput, HostRejection, SparkplugHost
from ingest.writer import StoreWriter, WriteJob

__all__ = ["MessageSource", "Pipeline", "PipelineConfig", "restore_alarm_state"]

log = logging.getLogger(__name__)

_BITE_READINGS = 10_000
"""About how many readings are taken from the source per turn of the loop (the
bite is set in messages from the size of the last ones, 10 to 1,000). The
store writers run between bites, so a write's request moves on once per bite.
Measured with ``benchmarks/ingest_throughput.py`` (10,000 sensors, 1.5 M
readings in 100-reading messages): bites of 1,000 messages with a turn after
each flush drained 187k–213k readings/s and stored the first reading at 3.6 s;
bites of 100 messages with a turn after each, 245k–250k. Single-reading
messages keep bites of 1,000: with 100 they measured 9.4k–11.1k readings/s
against 10.4k–12.4k."""

MAX_DEAD_LETTERS_PER_MESSAGE = 100
SPARKPLUG_PREFIX = "spBv1.0/"
MAX_TOPICS_CACHED = 4_096
"""Topics whose subscription match is remembered; the cache starts again when full,
so junk on ever-new topics costs a little time, never memory."""
_INTERNAL_ERROR_LOG_EVERY_S = 10.0
DETECTION_SPANS = 1_000.0
"""The detectors see a reading clipped to this many measuring spans beyond its sensor's
range. Any finite value is stored as sent, but 1.8e308 on a 0–100 %LEL head overflowed
the drift statistics to inf (a detector that no longer detects); clipped, it is still
far out of range (a fault, an alarm), and no square of it overflows."""


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


def restore_alarm_state(
    table: SensorTable,
    detector: DetectorSuite,
    alarms: AlarmSystem,
    checkpoint: CheckpointFile,
    now_ms: int | None = None,
) -> None:
    """Resume detector and alarm state from disk, consistent with each other.

    Every journal append is followed by a checkpoint that records the
    journal's size, so a journal longer than the checkpoint says can only be
    a crash between the two: the cut records came from readings (or API
    actions) that were never acknowledged, and they are produced again.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    saved = checkpoint.load()
    if saved is None:
        # No checkpoint (first start, or it was deleted): take the limit levels
        # from the active alarms so nothing active is raised a second time.
        alarms.restore(now)
        detector.restore_active(alarms.manager.active_conditions())
        return
    cut = alarms.journal.truncate(saved.journal_offset)
    if cut:
        log.info("alarm journal ran %d bytes ahead of the detector checkpoint; the readings "
                 "behind those events are redelivered by the broker", cut)
    detector.set_state(
        remap_state(saved.state, saved.sensor_ids, detector.get_state(), table.ids)
    )
    alarms.restore(now)


class Pipeline:
    """Runs the ingest loop until cancelled."""

    def __init__(
        self,
        *,
        table: SensorTable,
        source: MessageSource,
        writer: StoreWriter,
        detector: DetectorSuite,
        alarms: AlarmSystem,
        checkpoint: CheckpointFile,
        metrics: IngestMetrics,
        config: PipelineConfig = PipelineConfig(),
        on_alarm_outcome: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] = time.time,
        sparkplug: SparkplugHost | None = None,
    ) -> None:
        self.table = table
        self.source = source
        self.writer = writer
        self.detector = detector
        self.alarms = alarms
        self.checkpoint = checkpoint
        self.metrics = metrics
        self.config = config
        self.on_alarm_outcome = on_alarm_outcome
        self._rules = [(r, table.index[r.when_sensor]) for r in alarms.manager.rule_definitions()
                       if r.when_sensor in table.index]
        self._base_limits = {n: table.limit(n).copy() for n in ("ll", "l", "h", "hh")}
        self._tightening: tuple[tuple[str, float], ...] = ()
        self.clock = clock
        self._builder = BatchBuilder()
        # Sparkplug B backfill (is_historical): stored, never run through the
        # detectors, so it can never raise a live alarm.
        self._historical = BatchBuilder()
        self.sparkplug = sparkplug
        self._messages: list[InboundMessage] = []
        self._topic_ours: dict[str, bool] = {}
        self._site_index = table.by_site()
        # What the detectors are shown of a reading: see _for_detection.
        span = np.maximum(table.range_hi - table.range_lo, 1.0)
        self._detect_lo = table.range_lo - DETECTION_SPANS * span
        self._detect_hi = table.range_hi + DETECTION_SPANS * span
        self._internal_errors = 0
        self._letters = TopicLimiter(config.letters_per_s, config.letter_burst)
        self._internal_logged_at = -_INTERNAL_ERROR_LOG_EVERY_S
        self._next_tick = 0.0
        self._bite = 1000  # messages per receive; see _BITE_READINGS
        self._first_pending_at = 0.0
        self._disconnects_seen = source.disconnects
        self.flushes = 0

    @property
    def pending_readings(self) -> int:
        """Decoded readings not yet flushed (live and Sparkplug backfill)."""
        return len(self._builder) + len(self._historical)

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
                before = len(self._builder)
                self.handle(messages)
                per_message = max(1, (len(self._builder) - before) // len(messages))
                self._bite = max(10, min(1000, _BITE_READINGS // per_message))
            self.metrics.source_queue_depth.set(self.source.pending)
            if self._messages and (
                len(self._builder) >= cfg.flush_max_readings
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
        """Tell the Sparkplug host when the broker connection was lost (Sparkplug
        B: every node is then stale until it is born again; the host asks for
        rebirths as their data comes in). Checked here, in the loop's thread,
        because the host is not thread-safe and paho notices on its own thread."""
        lost = self.source.disconnects
        if lost == self._disconnects_seen:
            return
        self._disconnects_seen = lost
        if self.sparkplug is not None:
            self.sparkplug.connection_lost(int(self.clock() * 1000))
            log.warning("broker connection was lost: every Sparkplug node is stale until "
                        "it is born again")

    def handle(self, messages: list[InboundMessage]) -> None:
        """Decode and validate messages into the pending batch; dead-letter rejects.

        Never raises for any message: see :meth:`_handle_one` and the module notes.
        """
        if not self._messages:
            self._first_pending_at = time.monotonic()
        now_ms = int(self.clock() * 1000)
        out = self._builder
        before = len(out)
        self.metrics.messages_received.inc(len(messages))
        self._messages.extend(messages)
        for msg in messages:
            mark = len(out), len(self._historical)
            try:
                rejections = self._handle_one(msg, now_ms)
            except Exception as exc:
                # A bug of ours that this input found. The message's readings
                # are taken back (they may be half appended) and it is
                # dead-lettered and acknowledged with the rest: redelivered,
                # it would fail the same way.
                out.truncate(mark[0])
                self._historical.truncate(mark[1])
                rejections = [self._internal_error(msg, exc)]
            if rejections:
                self._dead_letter(msg, rejections)
        self.metrics.readings_received.inc(len(out) - before)
        self.metrics.pending_readings.set(len(out))

    def _handle_one(self, msg: InboundMessage, now_ms: int) -> list[Rejection]:
        """Decode one message into the pending batch; its rejections."""
        topic = msg.topic
        limits = self.config.decode_limits
        if len(topic) > limits.max_topic_chars or topic.count("/") >= limits.max_topic_levels:
            return [Rejection("bad_topic", f"topic of {len(topic)} characters and "
                              f"{topic.count('/') + 1} levels; the limits are "
                              f"{limits.max_topic_chars} and {limits.max_topic_levels}")]
        if not self._is_ours(topic):
            # Some brokers (amqtt) hand new clients retained messages of topics
            # they never subscribed to; they are not ours to judge.
            return []
        if topic.startswith(SPARKPLUG_PREFIX):
            return self._sparkplug(msg, now_ms)
        levels = topic.split("/")
        if len(levels) < 3 or not levels[1]:
            return [Rejection("bad_topic", "expected plant/<site>/<gateway> (or "
                              "plant/<site>/lp): the topic names the site its readings "
                              "belong to")]
        index = self._site_index.get(levels[1], {})
        plant = self.table.index
        if levels[-1] == "lp":
            return decode_line_protocol_into(msg.payload, index, now_ms, limits, self._builder,
                                             plant_index=plant)
        return decode_gateway_json_into(msg.payload, index, now_ms, limits, self._builder,
                                        plant_index=plant)

    def _internal_error(self, msg: InboundMessage, exc: Exception) -> Rejection:
        self._internal_errors += 1
        now = time.monotonic()
        if now - self._internal_logged_at >= _INTERNAL_ERROR_LOG_EVERY_S:
            self._internal_logged_at = now
            log.error("handling a message on topic %.200r raised %s (%d such messages so "
                      "far); it is dead-lettered as internal_error and acknowledged",
                      msg.topic, type(exc).__name__, self._internal_errors, exc_info=exc)
        return Rejection("internal_error",
                         f"handling this message raised {type(exc).__name__}; it was "
                         "dead-lettered and acknowledged so it cannot stop the service "
                         "(please report it with this dead letter)")

    def _sparkplug(self, msg: InboundMessage, now_ms: int) -> list[Rejection]:
        """Feed the Sparkplug host; send the rebirth requests it decides on."""
        if self.sparkplug is None:
            return [Rejection("sparkplug_disabled", "Sparkplug B ingest is switched off "
                              "(settings sparkplug.enabled)")]
        result = self.sparkplug.handle(msg.topic, msg.payload, now_ms)
        result.append_to(self._builder, self._historical)
        self._publish_host(result.publish)
        # Rejections of this message go back with it; those of earlier messages
        # the host was holding (released now) are dead-lettered with their own.
        own = [r.rejection for r in result.rejections
               if r.topic == msg.topic and r.payload is msg.payload]
        self._dead_letter_host([r for r in result.rejections
                                if not (r.topic == msg.topic and r.payload is msg.payload)],
                               now_ms)
        return own

    def _dead_letter_host(self, rejections: list[HostRejection], now_ms: int) -> None:
        for rej in rejections:
            if rej.rejection.index is None:
                self.metrics.messages_rejected.labels(rej.reason).inc()
            else:
                self.metrics.readings_rejected.labels(rej.reason).inc()
            self._limited_letter(rej.topic, rej.reason, partial(rej.to_dead_letter, now_ms))

    def _limited_letter(self, topic: str, reason: str,
                        letter: Callable[[], dict[str, object]]) -> None:
        """Publish a letter of input on ``topic`` if its rate allows (ingest.letter_limits);
        the letter is built only then."""
        # Keyed by the topic's first characters: a topic past the limit must not
        # keep kilobytes in the limiter's table.
        key = topic[:self.config.decode_limits.max_topic_chars]
        if self._letters.take(key, reason, time.monotonic()):
            self._publish_dead_letter(dead_letter.encode(letter()))
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

    def _publish_host(self, messages: list[HostMessage]) -> None:
        for m in messages:
            try:
                refused = self.source.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            except Exception as exc:  # a command not sent must not stop the loop
                refused = repr(exc)
            if refused is None:
                self.metrics.sparkplug_rebirths.inc()
            else:
                log.warning("the Sparkplug host's message to %.200r was not sent: %s",
                            m.topic, refused)

    def _is_ours(self, topic: str) -> bool:
        ours = self._topic_ours.get(topic)
        if ours is None:
            ours = any(topic_matches_sub(sub, topic) for sub in self.source.topics)
            if len(self._topic_ours) >= MAX_TOPICS_CACHED:
                self._topic_ours.clear()
            self._topic_ours[topic] = ours
        return ours

    def _dead_letter(self, msg: InboundMessage, rejections: list[Rejection]) -> None:
        """One dead letter per rejection, up to ``MAX_DEAD_LETTERS_PER_MESSAGE``;
        past that one summary with the count per reason (all are counted)."""
        for rej in rejections:
            if rej.index is None:
                self.metrics.messages_rejected.labels(rej.reason).inc()
            else:
                self.metrics.readings_rejected.labels(rej.reason).inc()
        for rej in rejections[:MAX_DEAD_LETTERS_PER_MESSAGE]:
            self._limited_letter(msg.topic, rej.reason, partial(
                rej.to_dead_letter, msg.topic, msg.payload, msg.received_ms))
        if len(rejections) > MAX_DEAD_LETTERS_PER_MESSAGE:
            by_reason: dict[str, int] = {}
            for rej in rejections[MAX_DEAD_LETTERS_PER_MESSAGE:]:
                by_reason[rej.reason] = by_reason.get(rej.reason, 0) + 1
            self._limited_letter(msg.topic, "more_rejections", lambda: {
                "topic": msg.topic, "reason": "more_rejections",
                "detail": f"{sum(by_reason.values())} more rejected readings in this message",
                "by_reason": by_reason, "received_ms": msg.received_ms,
            })

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

    def _for_detection(self, batch: ReadingBatch) -> ReadingBatch:
        """The batch with values clipped to ``DETECTION_SPANS`` beyond each sensor's range."""
        s = batch.sensor
        clipped = np.clip(batch.value, self._detect_lo[s], self._detect_hi[s])
        return ReadingBatch(s, batch.ts, clipped, batch.quality)

    def _batch_failed(self, batch: ReadingBatch, messages: list[InboundMessage],
                      exc: Exception) -> None:
        self._internal_errors += 1
        log.error("detecting on a batch of %d readings from %d messages raised %s; the "
                  "readings are stored and acknowledged, their detections are lost",
                  len(batch), len(messages), type(exc).__name__, exc_info=exc)
        self.metrics.messages_rejected.labels("internal_error").inc()
        topics = sorted({m.topic for m in messages})
        self._publish_dead_letter(dead_letter.encode({
            "topic": topics[0] if len(topics) == 1 else None, "reason": "internal_error",
            "detail": f"detecting on these readings raised {type(exc).__name__}; they were "
                      "stored and acknowledged without detection (please report it)",
            "readings": len(batch), "messages": len(messages), "topics": topics[:32],
        }))

    def dead_letter_refused(self, batch: ReadingBatch, detail: str) -> None:
        """Readings the store refused (a 4xx): one dead letter naming them."""
        ids = sorted({self.table.ids[s] for s in batch.sensor.tolist()})
        self._publish_dead_letter(orjson.dumps({
            "topic": None, "reason": "store_refused", "detail": detail,
            "readings": len(batch), "sensors": ids[:100],
            "ts_range": [int(batch.ts.min()), int(batch.ts.max())] if len(batch) else None,
        }))

    def tick(self) -> None:
        """Judge silence (no-data faults) and let alarm time pass (shelves, re-alarms, floods)."""
        now_ms = int(self.clock() * 1000)
        if self.sparkplug is not None:
            try:
                held = self.sparkplug.tick(now_ms)  # seq gaps past their reorder timeout
            except Exception as exc:  # held input found a bug: say so, keep running
                log.error("the Sparkplug host's tick raised %s", type(exc).__name__,
                          exc_info=exc)
                held = HostOutput()
            self._publish_host(held.publish)
            held.append_to(self._builder, self._historical)
            self._dead_letter_host(held.rejections, now_ms)
        self._rate_limit_summaries(now_ms)
        self._apply_period_limits(now_ms)
        self.detector.tick(now_ms)
        transitions = self.detector.transitions
        records = self._condition_records(transitions)
        records.append(tick_record(now_ms))
        self._commit(records, detector_moved=len(transitions) > 0)
        risk = self.alarms.risk_tick(now_ms)
        if risk and self.on_alarm_outcome is not None:
            self.on_alarm_outcome(Outcome(risk=risk))

    def _apply_period_limits(self, now_ms: int) -> None:
        """Tighten the limits of areas in an important period; restore them after it.

        Judged each tick; the detectors are touched only when the set of
        tightening periods in force changes.
        """
        periods = [p for p in self.alarms.periods_in_force(now_ms) if p.tighten_limits_pct > 0]
        key = tuple(sorted((p.id, p.tighten_limits_pct) for p in periods))
        if key == self._tightening:
            return
        self._tightening = key
        limits = {n: a.copy() for n, a in self._base_limits.items()}
        tightened = 0
        for place in self.table.places:
            factor = limit_factor(periods, place.area)
            if factor >= 1.0:
                continue
            sensor = place.sensor
            moved = tightened_limits(sensor.effective_limits(), sensor.range, factor)
            for name, value in moved.items():
                limits[name][place.index] = value
            tightened += 1
        self.detector.set_limits(limits)
        log.info("important periods in force %s: limits of %d sensors tightened",
                 [p.id for p in periods] or "none", tightened)

    def _condition_records(
        self, transitions: Transitions, contributions: dict[int, dict[str, float]] | None = None
    ) -> list[dict[str, object]]:
        """Journal records of the detectors' transitions, stamped with alarm time.

        ``at`` is the event time capped at the server clock: alarm time (shelve
        expiry, re-alarm, flood end) must not run ahead with a gateway whose
        clock is fast (readings up to ``max_future_skew_s`` ahead are accepted).
        """
        if not len(transitions):
            return []
        now_ms = int(self.clock() * 1000)
        return [{**e.to_dict(), "at": min(e.ts, now_ms)}
                for e in events_from_transitions(self.table, transitions, contributions)]

    def _suppression_records(self, batch: ReadingBatch) -> list[dict[str, object]]:
        """A suppression rule's condition, judged on the latest reading of its state sensor."""
        out: list[dict[str, object]] = []
        for rule, index in self._rules:
            mask = batch.sensor == index
            if not mask.any():
                continue
            ts, values = batch.ts[mask], batch.value[mask]
            k = int(np.argmax(ts))
            active = rule.condition(float(values[k]))
            if active != self.alarms.manager.rule_active(rule.id):
                out.append(suppress_record(rule.id, active, int(ts[k])))
        return out

    def commit(self, records: list[dict[str, object]]) -> Outcome:
        """Apply alarm records from outside the data path (operator actions)."""
        return self._commit(records, detector_moved=False)

    def _commit(self, records: list[dict[str, object]], *, detector_moved: bool) -> Outcome:
        """Journal the records, checkpoint the detectors, then announce.

        Journal and checkpoint are both fsynced before the readings behind
        them are acknowledged (the caller acks after this returns).
        """
        size = self.alarms.journal.size()
        outcome = self.alarms.commit(records, int(self.clock() * 1000))
        for e in outcome.events:
            self.metrics.alarm_events.labels(e.action).inc()
        if detector_moved or self.alarms.journal.size() != size:
            self.checkpoint.save(self.detector.get_state(), self.table.ids,
                                 self.alarms.journal.size())
        if outcome:
            if self.on_alarm_outcome is not None:
                self.on_alarm_outcome(outcome)
            if outcome.events:
                self.writer.submit_alarm_events(outcome.events)
        return outcome

    async def flush(self) -> None:
        """Detect, journal, checkpoint, announce, and hand the batch to the writer."""
        batch = self._builder.build()
        historical = self._historical.build()
        messages = self._messages
        self._messages = []
        self.metrics.pending_readings.set(0)
        self.flushes += 1

        received = min((m.received_ms for m in messages), default=0)
        if len(batch):
            arrived = max((m.received_ms for m in messages),
                          default=int(self.clock() * 1000))  # released by a gap timeout
            try:
                records = self._suppression_records(batch) if self._rules else []
                self.detector.update(self._for_detection(batch), received_ms=arrived)
                records += self._condition_records(self.detector.transitions,
                                                   self.detector.groups.last_contributions)
            except Exception as exc:
                # A bug of ours that these readings found. They are still stored
                # and acknowledged (redelivered, they would fail the same way);
                # what failed is said loudly, once per batch.
                records = []
                self._batch_failed(batch, messages, exc)
            self._commit(records, detector_moved=True)

        def acknowledge() -> None:
            self.source.ack(messages)
            if received:
                self.metrics.ack_latency_seconds.observe(
                    max(0.0, self.clock() - received / 1000)
                )

        stored = ReadingBatch.concat([batch, historical]) if len(historical) else batch
        if len(stored):
            await self.writer.submit(WriteJob(stored, acknowledge))
        else:
            acknowledge()
