"""The engine: messages in, readings to store and alarm outcomes out. No I/O; time comes in.

One engine serves every runner: the live pipeline (:mod:`ingest.pipeline`),
the backtest (:mod:`offline.backtest`), the replay and any future worker.
Each drives it with the same four calls, passing the time in (the engine reads
no clock for anything it decides; only its log throttle looks at one):

* :meth:`Engine.ingest` decodes messages into the pending batch (the
  decoder for each topic comes from :mod:`decoders.registry`); refusals come
  back as dead letters at once;
* :meth:`Engine.flush` runs the pending readings through suppression
  rules, the detector suite and the alarm system;
* :meth:`Engine.tick` lets time pass: Sparkplug reorder timeouts, important
  periods (limit tightening), no-data faults, shelves, floods, risk colours;
* :meth:`Engine.act` applies operator actions.

Each returns a :class:`~engine.step.Step` for the runner to carry out. The
alarm journal is written inside the step (see :mod:`engine.step`);
:meth:`snapshot` and :meth:`restore` carry detector and alarm state across a
restart consistently with each other.

Nothing an input holds may stop the engine: a message that makes a decoder
raise is taken back and dead-lettered as ``internal_error``; a batch whose
detection raises is still handed back to be stored, with one letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Protocol

import numpy as np

from alarms.from_detections import condition_records
from alarms.period_limits import PeriodLimits
from alarms.records import ActionRecord, Record, SuppressionRecord, tick_record
from alarms.suppression import SuppressionWatch
from alarms.system import AlarmSystem, Outcome
from decoders.json_gateway import DecodeLimits, Rejection
from decoders.registry import (
    NOTHING,
    Decoded,
    Decoders,
    SparkplugDecoder,
    plant_decoders,
    refused,
)
from decoders.sparkplug_host import HostRejection, SparkplugHost
from detectors.suite import DetectorSuite
from engine.snapshot import Snapshot, remap_state
from engine.step import DeadLetter, Step
from model.batch import BatchBuilder, ReadingBatch
from model.sensor_table import SensorTable

__all__ = ["DETECTION_SPANS", "MAX_DEAD_LETTERS_PER_MESSAGE", "Engine", "Inbound"]

log = logging.getLogger(__name__)

MAX_DEAD_LETTERS_PER_MESSAGE = 100
DETECTION_SPANS = 1_000.0
"""The detectors see a reading clipped to this many measuring spans beyond its sensor's
range. Any finite value is stored as sent, but 1.8e308 on a 0–100 %LEL head overflowed
the drift statistics to inf (a detector that no longer detects); clipped, it is still
far out of range (a fault, an alarm), and no square of it overflows."""
_INTERNAL_ERROR_LOG_EVERY_S = 10.0
_DEFAULT_LIMITS = DecodeLimits()


class Inbound(Protocol):
    """What the engine needs of a received message."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def received_ms(self) -> int: ...


class Engine:
    """Decoding, detection and alarms for one plant (or one partition of it)."""

    def __init__(
        self,
        table: SensorTable,
        detector: DetectorSuite,
        alarms: AlarmSystem,
        decoders: Decoders,
        *,
        limits: DecodeLimits = _DEFAULT_LIMITS,
        accepts: Callable[[str], bool] | None = None,
    ) -> None:
        """``accepts`` says whether a topic is this engine's to judge at all (the live
        source's subscriptions); topics it refuses are ignored without a letter."""
        self.table = table
        self.detector = detector
        self.alarms = alarms
        self.decoders = decoders
        self.limits = limits
        self.accepts = accepts
        self._sparkplug = [d for d in self.decoders if isinstance(d, SparkplugDecoder)]
        self._live = BatchBuilder()
        self._historical = BatchBuilder()
        """Sparkplug B backfill (is_historical): stored, never detected, so it can never
        raise a live alarm."""
        self._suppression = SuppressionWatch(alarms.manager.rule_definitions(), table)
        self._period_limits = PeriodLimits(table)
        span = np.maximum(table.range_hi - table.range_lo, 1.0)
        self._detect_lo = table.range_lo - DETECTION_SPANS * span
        self._detect_hi = table.range_hi + DETECTION_SPANS * span
        self.internal_errors = 0
        self._internal_logged_at = -_INTERNAL_ERROR_LOG_EVERY_S

    @classmethod
    def for_plant(cls, table: SensorTable, detector: DetectorSuite, alarms: AlarmSystem, *,
                  sparkplug: SparkplugHost | None = None, limits: DecodeLimits = _DEFAULT_LIMITS,
                  accepts: Callable[[str], bool] | None = None) -> Engine:
        """An engine reading every payload format plantwatch knows (gateway JSON, line
        protocol, and Sparkplug B through ``sparkplug`` when given)."""
        decoders = plant_decoders(table.by_site(), table.index, limits, sparkplug)
        return cls(table, detector, alarms, decoders, limits=limits, accepts=accepts)

    def connection_lost(self, now_ms: int) -> None:
        """The broker connection was lost: every Sparkplug node is stale until it is
        born again (the host asks for rebirths as their data comes in)."""
        for decoder in self._sparkplug:
            if decoder.host is not None:
                decoder.host.connection_lost(now_ms)
                log.warning("broker connection was lost: every Sparkplug node is stale "
                            "until it is born again")

    # ------------------------------------------------------------------ state
    @property
    def pending_readings(self) -> int:
        """Decoded readings not yet flushed (live and backfill)."""
        return len(self._live) + len(self._historical)

    @property
    def pending_live(self) -> int:
        return len(self._live)

    def snapshot(self) -> Snapshot:
        """Detector state and the journal offset it matches (take it after a step)."""
        return Snapshot(self.detector.get_state(), self.table.ids, self.alarms.journal.size())

    def restore(self, saved: Snapshot | None, now_ms: int) -> int:
        """Resume from a snapshot and the journal; announce nothing. Returns the bytes
        of journal cut because they ran ahead of the snapshot.

        Every journal append is followed by a snapshot that records the
        journal's size, so a journal longer than the snapshot says can only be
        a crash between the two: the cut records came from input that was never
        acknowledged, and they are produced again when it is redelivered.
        """
        if saved is None:
            # No snapshot (first start, or it was deleted): take the limit levels
            # from the active alarms so nothing active is raised a second time.
            self.alarms.restore(now_ms)
            self.detector.restore_active(self.alarms.manager.active_conditions())
            return 0
        cut = self.alarms.journal.truncate(saved.journal_offset)
        self.detector.set_state(
            remap_state(saved.state, saved.sensor_ids, self.detector.get_state(),
                        self.table.ids))
        self.alarms.restore(now_ms)
        return cut

    # ------------------------------------------------------------------ input
    def ingest(self, messages: Iterable[Inbound], now_ms: int) -> Step:
        """Decode ``messages`` into the pending batch; their refusals as dead letters."""
        step = Step()
        live, historical = self._live, self._historical
        live_rows, historical_rows = live.sensor, historical.sensor
        for msg in messages:
            mark = len(live_rows), len(historical_rows)
            try:
                rejections, released, publish = self._decode(msg, now_ms)
            except Exception as exc:
                # A bug of ours that this input found. The message's readings
                # are taken back (they may be half appended); dead-lettered and
                # acknowledged with the rest, redelivered it would fail the same way.
                live.truncate(mark[0])
                historical.truncate(mark[1])
                rejections, released, publish = refused(self._internal_error(msg.topic, exc))
                step.internal_errors += 1
            if rejections:
                step.dead_letters += _letters(msg, rejections)
                for r in rejections:
                    key = r.reason, r.index is not None
                    step.refused[key] = step.refused.get(key, 0) + 1
            if released:
                _release(step, released, now_ms)
            if publish:
                step.publish += publish
        return step

    def _decode(self, msg: Inbound, now_ms: int) -> Decoded:
        topic, limits = msg.topic, self.limits
        if len(topic) > limits.max_topic_chars or topic.count("/") >= limits.max_topic_levels:
            return refused(Rejection(
                "bad_topic", f"topic of {len(topic)} characters and {topic.count('/') + 1} "
                f"levels; the limits are {limits.max_topic_chars} and "
                f"{limits.max_topic_levels}"))
        if self.accepts is not None and not self.accepts(topic):
            # Some brokers (amqtt) hand new clients retained messages of topics
            # they never subscribed to; they are not ours to judge.
            return NOTHING
        return self.decoders.decode(topic, msg.payload, now_ms, self._live, self._historical)

    def _internal_error(self, topic: str, exc: Exception) -> Rejection:
        self.internal_errors += 1
        now = time.monotonic()
        if now - self._internal_logged_at >= _INTERNAL_ERROR_LOG_EVERY_S:
            self._internal_logged_at = now
            log.error("handling a message on topic %.200r raised %s (%d such inputs so far); "
                      "it is dead-lettered as internal_error and acknowledged", topic,
                      type(exc).__name__, self.internal_errors, exc_info=exc)
        return Rejection("internal_error",
                         f"handling this message raised {type(exc).__name__}; it was "
                         "dead-lettered and acknowledged so it cannot stop the service "
                         "(please report it with this dead letter)")

    # ------------------------------------------------------------------ detection
    def flush(self, now_ms: int, received_ms: int | None = None,
              sources: Sequence[Inbound] = ()) -> Step:
        """Detect on the pending readings and commit what they changed.

        ``received_ms`` is when the batch arrived (no-data is judged on arrival
        time; event time when None, as in a backtest); ``sources`` are the messages the
        readings came from, named in the letter if detection fails.
        """
        batch = self._live.build()
        historical = self._historical.build()
        step = Step(readings=ReadingBatch.concat([batch, historical])
                    if len(historical) else batch)
        if not len(batch):
            return step
        try:
            records: list[Record] = []
            if self._suppression:
                records += self._suppression.records(batch, self.alarms.manager.rule_active)
            transitions = self.detector.update(self._for_detection(batch),
                                               received_ms=received_ms)
            records += condition_records(self.table, transitions, now_ms,
                                         self.detector.groups.last_contributions)
        except Exception as exc:
            # A bug of ours that these readings found. They are still stored and
            # acknowledged (redelivered, they would fail the same way).
            records = []
            step.internal_errors += 1
            step.dead_letters.append(self._batch_failed(batch, sources, exc))
            step.refused["internal_error", False] = 1
        self._commit(step, records, now_ms, detector_moved=True)
        return step

    def _for_detection(self, batch: ReadingBatch) -> ReadingBatch:
        """The batch with values clipped to ``DETECTION_SPANS`` beyond each sensor's range."""
        s = batch.sensor
        clipped = np.clip(batch.value, self._detect_lo[s], self._detect_hi[s])
        return ReadingBatch(s, batch.ts, clipped, batch.quality)

    def _batch_failed(self, batch: ReadingBatch, sources: Sequence[Inbound],
                      exc: Exception) -> DeadLetter:
        self.internal_errors += 1
        log.error("detecting on a batch of %d readings raised %s; the readings are stored "
                  "and acknowledged, their detections are lost", len(batch),
                  type(exc).__name__, exc_info=exc)
        names = sorted({m.topic for m in sources})
        letter = {
            "topic": names[0] if len(names) == 1 else None, "reason": "internal_error",
            "detail": f"detecting on these readings raised {type(exc).__name__}; they were "
                      "stored and acknowledged without detection (please report it)",
            "readings": len(batch), "messages": len(sources), "topics": names[:32],
        }
        return DeadLetter("", "internal_error", False, lambda: letter)

    # ------------------------------------------------------------------ time
    def tick(self, now_ms: int) -> Step:
        """Let time pass to ``now_ms``: reorder timeouts, periods, silence, alarm time."""
        step = Step()
        for sparkplug in self._sparkplug:
            try:
                _, released, publish = sparkplug.tick(now_ms, self._live, self._historical)
            except Exception as exc:  # held input found a bug: say so, keep running
                log.error("the Sparkplug host's tick raised %s", type(exc).__name__,
                          exc_info=exc)
                step.internal_errors += 1
                continue
            step.publish += publish
            _release(step, released, now_ms)
        limits = self._period_limits.changed(self.alarms.periods_in_force(now_ms))
        if limits is not None:
            self.detector.set_limits(limits)
        transitions = self.detector.tick(now_ms)
        records: list[Record] = [*condition_records(self.table, transitions, now_ms),
                                 tick_record(now_ms), *self.alarms.escalations_due(now_ms)]
        self._commit(step, records, now_ms, detector_moved=len(transitions) > 0)
        step.outcome.risk += self.alarms.risk_tick(now_ms)
        return step

    # ------------------------------------------------------------------ operators
    def act(self, records: Sequence[Record], now_ms: int) -> Step:
        """Apply operator actions (records of :mod:`alarms.records`). Each is checked
        first: :class:`~alarms.lifecycle.AlarmActionError` is raised, and nothing
        applied, if one would not apply."""
        for record in records:
            if isinstance(record, ActionRecord | SuppressionRecord):
                self.alarms.check(record)
        step = Step()
        self._commit(step, list(records), now_ms, detector_moved=False)
        return step

    # ------------------------------------------------------------------ commit
    def _commit(self, step: Step, records: list[Record], now_ms: int, *,
                detector_moved: bool) -> None:
        size = self.alarms.journal.size()
        outcome: Outcome = self.alarms.commit(records, now_ms)
        step.outcome = outcome
        step.records = outcome.journaled
        step.state_moved = detector_moved or self.alarms.journal.size() != size


def _letters(msg: Inbound, rejections: Sequence[Rejection]) -> list[DeadLetter]:
    """One letter per rejection up to ``MAX_DEAD_LETTERS_PER_MESSAGE``; past that one
    summary with the count per reason."""
    out = [DeadLetter(msg.topic, r.reason, r.index is not None,
                      partial(r.to_dead_letter, msg.topic, msg.payload, msg.received_ms))
           for r in rejections[:MAX_DEAD_LETTERS_PER_MESSAGE]]
    if len(rejections) > MAX_DEAD_LETTERS_PER_MESSAGE:
        by_reason: dict[str, int] = {}
        for rej in rejections[MAX_DEAD_LETTERS_PER_MESSAGE:]:
            by_reason[rej.reason] = by_reason.get(rej.reason, 0) + 1
        summary = {
            "topic": msg.topic, "reason": "more_rejections",
            "detail": f"{sum(by_reason.values())} more rejected readings in this message",
            "by_reason": by_reason, "received_ms": msg.received_ms,
        }
        out.append(DeadLetter(msg.topic, "more_rejections", True, lambda: summary))
    return out


def _release(step: Step, rejections: Sequence[HostRejection], now_ms: int) -> None:
    """Letters and counts for refusals a decoder judged only now (held messages)."""
    for r in rejections:
        per_reading = r.rejection.index is not None
        step.dead_letters.append(DeadLetter(r.topic, r.reason, per_reading,
                                            partial(r.to_dead_letter, now_ms)))
        key = r.reason, per_reading
        step.refused[key] = step.refused.get(key, 0) + 1
