"""Backtest: a scenario through the live engine, in process, at full speed.

The backtest drives the same :class:`~engine.engine.Engine` as the live
service, minus the broker and the store: each gateway message is ingested by
the engine (the real decoders: JSON, line protocol or Sparkplug B), the
pending readings are flushed once per second of scenario time and the engine
ticks on scenario time, so limits tightened by important periods,
suppression-by-design rules, no-data faults, shelves and floods all act as
they would in the plant, with the alarm system built from ``config/alarms.yaml``
exactly as the service builds it (its journal kept in memory). Then every
incident of the scenario's ground truth is scored:

* ``first_warning_s``: the first predictive warning (trend, drift) raised on
  one of its sensors at or after its start;
* ``first_alarm_s``: the first alarm (limit, rate) raised on one of them;
* ``lead_time_s``: how long the warning came before the first-level limit
  was crossed (``limit_crossing_s - first_warning_s``; positive is ahead);
* ``detected``: any alarm, warning or sensor fault on its sensors in the
  incident's time.

Fitted MSPC groups (``groups``, as the service loads them from its state
directory) are monitored as in the service: a group's ``mspc`` warning is
raised on the sensor contributing most, and scored like any other warning on
that sensor.

Everything else raised is false: an alarm or warning on a sensor no incident
involves, or before its incident started, or more than ``settle_s`` after it
ended. For the steady day that gives false alarms per sensor-day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from alarms.config import AlarmConfig
from alarms.journal import MemoryJournal
from decoders.json_gateway import DecodeLimits
from decoders.sparkplug_host import SparkplugHost
from detectors.groups import GroupModel
from detectors.suite import DetectorSuite
from engine.engine import Engine
from engine.step import Step
from model.plant import PlantConfig
from model.sensor_table import SensorTable

__all__ = ["BacktestError", "BacktestReport", "IncidentResult", "IncidentTruthLike", "RaisedAlarm",
           "backtest_host", "run_backtest"]

_SETTLE_S = 1800.0
_LIMITS = DecodeLimits()  # as the service judges readings by default


class IncidentTruthLike(Protocol):
    """What a backtest needs of a ground-truth incident."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sensors(self) -> Sequence[str]: ...
    @property
    def start_s(self) -> float: ...
    @property
    def end_s(self) -> float | None: ...
    @property
    def limit_crossing_s(self) -> float | None: ...
    @property
    def ramp(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    """One raise or clear of an alarm point, seconds from scenario start (event time)."""

    t_s: float
    alarm_id: str
    action: str
    category: str


@dataclass(slots=True)
class IncidentResult:
    id: str
    kind: str
    detected: bool
    limit_crossing_s: float | None
    first_warning_s: float | None
    first_alarm_s: float | None
    lead_time_s: float | None
    ramp: bool = False
    sensors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("ramp", "sensors")}


@dataclass(slots=True)
class BacktestReport:
    scenario: str
    incidents: list[IncidentResult]
    false_alarms: int
    false_warnings: int
    sensor_days: float
    faults: int = 0
    readings: int = 0
    rejected: int = 0
    events: list[RaisedAlarm] = field(default_factory=list)
    false_events: list[RaisedAlarm] = field(default_factory=list)
    mspc_groups: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The issue's ``--json`` shape (plus a few counts that help reading it)."""
        return {
            "scenario": self.scenario,
            "incidents": [i.to_dict() for i in self.incidents],
            "false_alarms": self.false_alarms,
            "false_warnings": self.false_warnings,
            "sensor_days": round(self.sensor_days, 4),
            "false_alarms_per_sensor_day": (
                round(self.false_alarms / self.sensor_days, 6) if self.sensor_days else None),
            "faults": self.faults,
            "readings": self.readings,
            "rejected": self.rejected,
            "mspc_groups": self.mspc_groups,
        }


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    received_ms: int


def backtest_host(table: SensorTable, limits: DecodeLimits = _LIMITS) -> SparkplugHost:
    """A Sparkplug B host as the service builds one (the plant's nodes only), with the
    default reorder and rebirth settings."""
    return SparkplugHost("plantwatch-backtest", table.index, limits=limits,
                         nodes=table.nodes(), site_index=table.by_site())


def run_backtest(
    name: str,
    plant: PlantConfig,
    alarm_config: AlarmConfig,
    messages: Iterable[tuple[str, bytes, int]],
    truths: Sequence[IncidentTruthLike],
    *,
    start_ms: int,
    duration_s: float,
    flush_ms: int = 1000,
    settle_s: float = _SETTLE_S,
    sparkplug: bool = False,
    on_progress: Callable[[int], None] | None = None,
    groups: Sequence[GroupModel] = (),
    journal: MemoryJournal | None = None,
) -> BacktestReport:
    """Run ``messages`` (topic, payload, publish time in ms) and score ``truths``.

    ``sparkplug`` reads Sparkplug B topics through a host state machine (as
    the service does when ``sparkplug.enabled``); ``groups`` are the fitted
    MSPC groups to monitor; ``journal`` receives the alarm journal's records.
    """
    table = SensorTable.from_config(plant)
    journal = journal if journal is not None else MemoryJournal()
    engine = Engine.for_plant(
        table, DetectorSuite(table, groups=groups), alarm_config.system(plant, journal),
        sparkplug=backtest_host(table) if sparkplug else None, limits=_LIMITS)
    engine.restore(None, start_ms)
    events: list[RaisedAlarm] = []
    readings = rejected = 0
    next_flush: int | None = None
    last_publish = start_ms

    def record(step: Step) -> None:
        _check(step)
        for e in step.outcome.events:
            events.append(RaisedAlarm((e.ts - start_ms) / 1000, e.alarm_id, e.action,
                                      e.category))

    def flush(now_ms: int) -> None:
        nonlocal readings
        step = engine.flush(now_ms, received_ms=now_ms)
        readings += len(step.readings)
        record(step)
        record(engine.tick(now_ms))

    for i, (topic, payload, publish_ms) in enumerate(messages):
        if next_flush is None:
            next_flush = publish_ms + flush_ms
        while publish_ms >= next_flush:
            flush(next_flush)
            next_flush += flush_ms
        step = engine.ingest([_Message(topic, payload, publish_ms)], publish_ms)
        _check(step)
        rejected += sum(step.refused.values())
        last_publish = publish_ms
        if on_progress is not None and i % 500 == 0:
            on_progress(publish_ms - start_ms)
    end_ms = max(last_publish, start_ms + int(duration_s * 1000))
    while next_flush is not None and next_flush <= end_ms + flush_ms:
        flush(next_flush)
        next_flush += flush_ms

    results, false_events = _score(truths, events, settle_s)
    n_sensors = len(table)
    return BacktestReport(
        scenario=name,
        incidents=results,
        false_alarms=sum(1 for e in false_events if e.category == "alarm"),
        false_warnings=sum(1 for e in false_events if e.category == "warning"),
        sensor_days=n_sensors * duration_s / 86_400,
        faults=sum(1 for e in events if e.category == "fault" and e.action == "raise"),
        readings=readings,
        rejected=rejected,
        events=events,
        false_events=false_events,
        mspc_groups=[g.id for g in groups],
    )


class BacktestError(RuntimeError):
    """The engine met a bug of ours during a backtest. Live, it dead-letters the input
    and carries on; a backtest stops, because its scores would be wrong."""


def _check(step: Step) -> None:
    if step.internal_errors:
        details = "; ".join(str(letter.letter().get("detail")) for letter in step.dead_letters
                            if letter.reason == "internal_error")
        raise BacktestError(f"the engine met {step.internal_errors} internal error(s): "
                            f"{details or 'see the log'}")


def _score(truths: Sequence[IncidentTruthLike], events: list[RaisedAlarm],
           settle_s: float) -> tuple[list[IncidentResult], list[RaisedAlarm]]:
    raises = [e for e in events if e.action == "raise"]
    explained = np.zeros(len(raises), dtype=bool)
    results: list[IncidentResult] = []
    for truth in truths:
        sensors = set(truth.sensors)
        end = truth.end_s if truth.end_s is not None else float("inf")
        mine = [(k, e) for k, e in enumerate(raises)
                if e.alarm_id.rpartition(":")[0] in sensors
                and truth.start_s <= e.t_s <= end + settle_s]
        for k, _ in mine:
            explained[k] = True
        warnings = [e.t_s for _, e in mine if e.category == "warning"]
        alarms = [e.t_s for _, e in mine if e.category == "alarm"]
        first_warning = min(warnings) if warnings else None
        first_alarm = min(alarms) if alarms else None
        lead = (truth.limit_crossing_s - first_warning
                if truth.limit_crossing_s is not None and first_warning is not None else None)
        results.append(IncidentResult(
            id=truth.id, kind=truth.kind, detected=bool(mine),
            limit_crossing_s=truth.limit_crossing_s, first_warning_s=first_warning,
            first_alarm_s=first_alarm, lead_time_s=lead, ramp=truth.ramp,
            sensors=sorted(sensors),
        ))
    false_events = [e for k, e in enumerate(raises)
                    if not explained[k] and e.category in ("alarm", "warning")]
    return results, false_events
