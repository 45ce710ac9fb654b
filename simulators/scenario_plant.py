"""A scenario's readings, step by step, and its ground truth.

:class:`ScenarioPlant` composes :class:`simulators.plant.PlantSimulator` (the
plant in normal operation, seeded with the scenario's seed, so a scenario
without events reads exactly like ``plantwatch simulate`` with that seed) with
the scenario's process models (:mod:`simulators.process`), which move the
*true* values, and its sensor faults (:mod:`simulators.faults`), which only
move the *readings*. Everything is a pure function of the timestamp, so
readings can be drawn in any order and the same seed gives the same bytes.

Ground truth is computed, never written by hand: an incident's first-level
crossing is the first step at which one of its sensors' true value (a healthy
transmitter's reading, before any sensor fault) reaches its first-level limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.batch import F64
from model.plant import PlantConfig
from simulators.plant import PlantSimulator
from simulators.scenario_effects import (
    Effect,
    EffectCompiler,
    Fault,
    PlantIndex,
    first_level,
)
from simulators.scenario_schema import (
    RAMP_KINDS,
    GatewayFaultEvent,
    Scenario,
    SensorFaultEvent,
    StuckEvent,
)

__all__ = ["IncidentTruth", "PlantIndex", "ScenarioPlant", "first_level"]

Rows = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]

# Salt of the per-event generators, so they never coincide with the plant's.
_EVENT_SALT = 0x5CE7A210
# An event's effect is over once no affected true value is moved by more than
# this fraction of its span.
_END_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class IncidentTruth:
    """What really happened in one incident of a scenario.

    Attributes
    ----------
    id, kind : str
        From the events' ``incident`` label.
    sensors : list of str
        Affected sensors, plant order: derived from the events, or as labelled.
    start_s : float
        Seconds from the scenario's start to the incident's first event.
    limit_crossing_s : float or None
        Seconds from the scenario's start to the first step at which an
        affected sensor's true value reached its first-level limit (``≥ h`` or
        ``≤ l``; the second level where a sensor has no first); None if never.
    ramp : bool
        The incident builds up over minutes (leaks, seal leaks, overpressure,
        runaway, cooling loss), so it should be warned ahead of the crossing;
        power dips and faults are not.
    end_s : float
        When its effect is over: the last step at which an affected true value
        is still moved by more than 1 % of its span, or a fault's end (the
        scenario's duration if it lasts).
    """

    id: str
    kind: str
    sensors: list[str]
    start_s: float
    limit_crossing_s: float | None
    ramp: bool
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "sensors": list(self.sensors),
            "start_s": self.start_s, "limit_crossing_s": self.limit_crossing_s,
            "ramp": self.ramp, "end_s": self.end_s,
        }


class ScenarioPlant:
    """Deterministic readings of every sensor under a scenario, and its ground truth.

    Parameters
    ----------
    scenario : Scenario
        Checked against ``plant`` (:func:`simulators.scenario.parse_scenario`).
    plant : PlantConfig

    Attributes
    ----------
    sensor_ids : tuple of str
        Row order of every array (``plant.places()`` order).
    start_ms : int
        Scenario start, ms since the Unix epoch.
    step_times_ms : int64 array, shape (n_steps,)
        Event times of the steps.
    """

    def __init__(self, scenario: Scenario, plant: PlantConfig) -> None:
        self.scenario = scenario
        self.plant = plant
        self.index = PlantIndex(plant)
        self.start_ms = scenario.start_ms
        self.step_times_ms = np.array(scenario.step_times_ms(), dtype=np.int64)
        self.normal = PlantSimulator(plant, np.random.default_rng(scenario.seed), self.start_ms)
        self.sensor_ids = self.normal.sensor_ids
        places = self.index.places
        self._lo = np.array([p.sensor.range[0] for p in places], dtype=np.float64)
        self._hi = np.array([p.sensor.range[1] for p in places], dtype=np.float64)
        self._truth: F64 | None = None
        self._normal: F64 | None = None
        self._compiler = EffectCompiler(
            self.index, self.normal.baseline_, scenario.rate_hz, self._frozen
        )
        self._effects: list[Effect] = self._compiler.effects
        self._faults: list[Fault] = self._compiler.faults
        self._affected: dict[int, Rows] = self._compiler.affected
        rngs = [
            np.random.default_rng([scenario.seed, _EVENT_SALT, i])
            for i in range(len(scenario.events))
        ]
        # Process models first: a stuck sensor freezes at a reading that may
        # already include an incident listed after it.
        for i, event in enumerate(scenario.events):
            self._compiler.process(i, event, rngs[i])
        for i, event in enumerate(scenario.events):
            self._compiler.fault(i, event, rngs[i])
            if isinstance(event, GatewayFaultEvent):
                self._affected[i] = np.array(
                    self.index.gateway_rows[event.gateway], dtype=np.intp
                )

    # -- readings -----------------------------------------------------------------

    @property
    def n_sensors(self) -> int:
        return len(self.sensor_ids)

    def true_values_at(self, ts_ms: int) -> F64:
        """True values at ``ts_ms``: normal operation plus the process events, clipped to range.

        Returns
        -------
        float64 array, shape (n_sensors,)
        """
        ts_ms = int(ts_ms)
        normal = self.normal.normal_values_at(ts_ms)
        values = normal.copy()
        t = np.array((ts_ms - self.start_ms) / 1000.0)
        for effect in self._effects:
            values[effect.rows] += effect.delta(t, normal)
        return np.clip(values, self._lo, self._hi)

    def values_at(self, ts_ms: int) -> tuple[F64, Bools]:
        """Readings at ``ts_ms`` and whether each sensor sends one (False: dropped out).

        Returns
        -------
        values : float64 array, shape (n_sensors,)
            True values with the sensor faults applied, clipped to range.
        present : bool array, shape (n_sensors,)
        """
        return self._readings(int(ts_ms), len(self._faults))

    def _readings(self, ts_ms: int, n_faults: int) -> tuple[F64, Bools]:
        values = self.true_values_at(ts_ms)
        present = np.ones(self.n_sensors, dtype=bool)
        t_s = (ts_ms - self.start_ms) / 1000.0
        for fault in self._faults[:n_faults]:
            fault.apply(t_s, ts_ms, values, present)
        return np.clip(values, self._lo, self._hi), present

    def _normal_values(self) -> F64:
        """Normal values at every step, shape (n_steps, n_sensors); computed once."""
        if self._normal is None:
            self._normal = np.array(
                [self.normal.normal_values_at(int(ts)) for ts in self.step_times_ms],
                dtype=np.float64,
            ).reshape(len(self.step_times_ms), self.n_sensors)
        return self._normal

    def true_values(self) -> F64:
        """True values at every step, shape (n_steps, n_sensors); computed once."""
        if self._truth is None:
            self._truth = np.array(
                [self.true_values_at(int(ts)) for ts in self.step_times_ms], dtype=np.float64
            ).reshape(len(self.step_times_ms), self.n_sensors)
        return self._truth

    # -- ground truth ---------------------------------------------------------------

    def affected_sensors(self, event_index: int) -> list[str]:
        """Sensors event ``event_index`` moves (process), fakes (faults) or silences (gateways)."""
        return [self.sensor_ids[r] for r in self._affected.get(event_index, ())]

    def ground_truth(self) -> list[IncidentTruth]:
        """One record per incident id, in order of first appearance in the file."""
        groups: dict[str, list[int]] = {}
        for i, event in enumerate(self.scenario.events):
            if event.incident is not None:
                groups.setdefault(event.incident.id, []).append(i)
        return [self._incident(incident_id, members) for incident_id, members in groups.items()]

    def _incident(self, incident_id: str, members: list[int]) -> IncidentTruth:
        events = [self.scenario.events[i] for i in members]
        labels = [e.incident for e in events if e.incident is not None]
        kind = next((lb.kind for lb in labels if lb.kind is not None), events[0].kind)
        explicit = next((lb.sensors for lb in labels if lb.sensors is not None), None)
        if explicit is not None:
            rows = self.index.rows(explicit)
        else:
            rows = np.array(
                sorted({int(r) for i in members for r in self._affected.get(i, ())}),
                dtype=np.intp,
            )
        ramp = next((lb.ramp for lb in labels if lb.ramp is not None), None)
        if ramp is None:
            ramp = any(e.kind in RAMP_KINDS for e in events)
        start_s = min(e.at_s for e in events)
        return IncidentTruth(
            id=incident_id,
            kind=kind,
            sensors=[self.sensor_ids[r] for r in rows],
            start_s=start_s,
            limit_crossing_s=self.first_crossing_s(rows, start_s),
            ramp=ramp,
            end_s=max(self._end_s(i) for i in members),
        )

    def first_crossing_s(self, rows: Rows, from_s: float = 0.0) -> float | None:
        """Seconds from the start to the first step at or after ``from_s`` at which a
        sensor of ``rows`` has a true value at or beyond a first-level limit; None if none."""
        if len(rows) == 0:
            return None
        limits = np.array([first_level(self.index.places[r].sensor) for r in rows])
        limits = limits.reshape(len(rows), 2)
        values = self.true_values()[:, rows]
        t_s = (self.step_times_ms - self.start_ms) / 1000.0
        crossed = ((values >= limits[:, 0]) | (values <= limits[:, 1])).any(axis=1)
        hits = np.flatnonzero(crossed & (t_s >= from_s))
        return float(t_s[hits[0]]) if len(hits) else None

    def _end_s(self, event_index: int) -> float:
        event = self.scenario.events[event_index]
        if isinstance(event, SensorFaultEvent | GatewayFaultEvent):
            if event.duration_s is None:
                return float(self.scenario.duration_s)
            return float(min(event.at_s + event.duration_s, self.scenario.duration_s))
        t_s = (self.step_times_ms - self.start_ms) / 1000.0
        moved = np.zeros(len(t_s), dtype=bool)
        for effect in self._effects:
            if effect.event != event_index:
                continue
            span = self._hi[effect.rows] - self._lo[effect.rows]
            delta = effect.delta(t_s, self._normal_values())
            moved |= (np.abs(delta) > _END_FRACTION * span).any(axis=1)
        hits = np.flatnonzero(moved)
        return float(t_s[hits[-1]]) if len(hits) else float(event.at_s)

    def _frozen(self, event: StuckEvent, rows: Rows) -> F64:
        """What a stuck transmitter holds: ``value``, or its reading at the first step ≥ at_s."""
        if event.value is not None:
            return np.full(len(rows), event.value)
        after = np.flatnonzero(self.step_times_ms - self.start_ms >= event.at_s * 1000.0)
        ts = int(self.step_times_ms[after[0]]) if len(after) else self.start_ms + round(
            event.at_s * 1000.0)
        readings, _ = self._readings(ts, len(self._faults))
        frozen: F64 = readings[rows].copy()
        return frozen
