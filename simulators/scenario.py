"""Scenarios: incidents and faults played over the sample plant, with ground truth.

An engineer replays a scenario through the real pipeline (or backtests it
in-process) and compares when plantwatch warned and alarmed against what
really happened. This module loads and checks the scenario files; the
generator of readings and its ground truth are :class:`ScenarioPlant`
(:mod:`simulators.scenario_plant`), the gateway messages
:func:`scenario_messages` (:mod:`simulators.scenario_messages`); both are
re-exported here so callers need one import.

The file schema is :mod:`simulators.scenario_schema`. A bad file fails with a
:class:`ScenarioError` naming the file, the key path and the problem, e.g.
``config/scenarios/x.yaml: events[2].sensors[1]: sensor 'TF-A-LEL-9' is not in
the plant``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.plant import ConfigError, PlantConfig, read_yaml
from simulators.errors import SimulatorError
from simulators.scenario_messages import ScenarioMessage, scenario_messages
from simulators.scenario_plant import IncidentTruth, PlantIndex, ScenarioPlant
from simulators.scenario_schema import (
    EVENT_KINDS,
    CoolingLossEvent,
    Event,
    GatewayFaultEvent,
    LeakEvent,
    OutOfOrderEvent,
    OverpressureEvent,
    PowerDipEvent,
    RunawayEvent,
    Scenario,
    SealLeakEvent,
    SensorFaultEvent,
)

__all__ = [
    "IncidentTruth",
    "Scenario",
    "ScenarioError",
    "ScenarioMessage",
    "ScenarioPlant",
    "load_scenario",
    "parse_scenario",
    "scenario_messages",
]

_GAS = ("combustible_lel", "toxic_ppm")
_PROCESS = ("pressure_kpa", "temperature_c", "level_pct", "flow_m3h")


class ScenarioError(ConfigError, SimulatorError):
    """A scenario file is invalid; ``path`` is the file, ``problems`` say key path and problem.

    A :class:`model.plant.ConfigError` (so a CLI reports it like any bad
    config file) and a :class:`simulators.errors.SimulatorError`.
    """


def _key_path(loc: Iterable[int | str]) -> str:
    """``('events', 2, 'leak', 'sensors', 1)`` → ``events[2].sensors[1]``.

    Pydantic puts the discriminator's tag after an event's index; the file
    has no such key, so it is left out.
    """
    parts = list(loc)
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            i >= 2 and part in EVENT_KINDS and isinstance(parts[i - 1], int)
            and parts[i - 2] == "events"
        ):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            tag = (err.get("ctx") or {}).get("tag", "?")
            problems.append(
                f"{_key_path(loc)}.kind: unknown event kind {tag!r} "
                f"(known: {', '.join(EVENT_KINDS)})"
            )
        elif err["type"] == "union_tag_not_found":
            problems.append(
                f"{_key_path(loc)}.kind: missing; every event needs a kind "
                f"(one of {', '.join(EVENT_KINDS)})"
            )
        elif err["type"] == "missing":
            problems.append(f"{_key_path(loc)}: required field is missing")
        elif err["type"] == "extra_forbidden":
            problems.append(f"{_key_path(loc)}: unknown field (misspelt?)")
        else:
            problems.append(f"{_key_path(loc)}: {msg}")
    return problems


class _Checker:
    """Checks a shape-valid scenario against the plant; collects problems with key paths."""

    def __init__(self, scenario: Scenario, plant: PlantConfig) -> None:
        self.scenario = scenario
        self.index = PlantIndex(plant)
        self.problems: list[str] = []

    def _sensor(self, where: str, sensor: str, kinds: tuple[str, ...] = ()) -> None:
        place = self.index.by_id.get(sensor)
        if place is None:
            self.problems.append(f"{where}: sensor {sensor!r} is not in the plant")
        elif kinds and place.sensor.kind not in kinds:
            self.problems.append(
                f"{where}: sensor {sensor!r} is a {place.sensor.kind} sensor; "
                f"this needs {' or '.join(kinds)}"
            )

    def _sensors(self, where: str, sensors: Iterable[str], kinds: tuple[str, ...] = ()) -> None:
        for j, sensor in enumerate(sensors):
            self._sensor(f"{where}[{j}]", sensor, kinds)

    def _mapping(self, where: str, sensors: Iterable[str], kinds: tuple[str, ...] = ()) -> None:
        for sensor in sensors:
            self._sensor(f"{where}.{sensor}", sensor, kinds)

    def run(self) -> list[str]:
        scenario = self.scenario
        kinds_of: dict[str, tuple[str, str]] = {}
        for i, event in enumerate(scenario.events):
            where = f"events[{i}]"
            if event.at_s >= scenario.duration_s:
                self.problems.append(
                    f"{where}.at_s: {event.at_s:g} s is not before the scenario's end "
                    f"(duration_s {scenario.duration_s:g} s)"
                )
            self._event(where, event)
            label = event.incident
            if label is None:
                continue
            if label.sensors is not None:
                self._sensors(f"{where}.incident.sensors", label.sensors)
            if label.kind is not None:
                seen = kinds_of.setdefault(label.id, (label.kind, where))
                if seen[0] != label.kind:
                    self.problems.append(
                        f"{where}.incident.kind: {label.kind!r} differs from {seen[0]!r} "
                        f"given for incident {label.id!r} at {seen[1]}"
                    )
        return self.problems

    def _event(self, where: str, event: Event) -> None:
        index = self.index
        if isinstance(event, LeakEvent):
            if event.area not in index.area_rows:
                self.problems.append(
                    f"{where}.area: area {event.area!r} is not in the plant "
                    f"(known: {', '.join(index.area_rows)})"
                )
                return
            in_area = {index.places[r].sensor.id for r in index.area_rows[event.area]}
            for j, sensor in enumerate(event.sensors or ()):
                self._sensor(f"{where}.sensors[{j}]", sensor, tuple(event.gases))
                if sensor in index.by_id and sensor not in in_area:
                    self.problems.append(
                        f"{where}.sensors[{j}]: sensor {sensor!r} is not in area {event.area!r}"
                    )
            for sensor in event.gains:
                if sensor not in in_area:
                    self.problems.append(
                        f"{where}.gains.{sensor}: sensor {sensor!r} is not a gas sensor "
                        f"of area {event.area!r}"
                    )
        elif isinstance(event, SealLeakEvent):
            self._mapping(f"{where}.sensors", event.sensors, _GAS)
            if event.seal_dp is not None:
                self._sensor(f"{where}.seal_dp.sensor", event.seal_dp.sensor, ("pressure_kpa",))
        elif isinstance(event, OverpressureEvent):
            self._sensors(f"{where}.sensors", event.sensors, ("pressure_kpa",))
        elif isinstance(event, RunawayEvent):
            self._sensors(f"{where}.sensors", event.sensors, ("temperature_c",))
            self._mapping(f"{where}.pressure_kpa_per_c", event.pressure_kpa_per_c,
                          ("pressure_kpa",))
        elif isinstance(event, CoolingLossEvent):
            self._mapping(f"{where}.cooling", event.cooling)
            self._mapping(f"{where}.follow", event.follow)
        elif isinstance(event, PowerDipEvent):
            self._power_dip(where, event)
        elif isinstance(event, GatewayFaultEvent):
            if event.gateway not in index.gateway_rows:
                self.problems.append(
                    f"{where}.gateway: gateway {event.gateway!r} is not in the plant "
                    f"(known: {', '.join(index.gateway_rows)})"
                )
            if isinstance(event, OutOfOrderEvent) and event.delay_s is not None and (
                event.delay_s * 1000.0 <= self.scenario.period_ms
            ):
                self.problems.append(
                    f"{where}.delay_s: {event.delay_s:g} s does not reach the next step "
                    f"({self.scenario.period_ms / 1000:g} s later), so nothing is reordered"
                )
        elif isinstance(event, SensorFaultEvent):
            self._sensors(f"{where}.sensors", event.sensors)

    def _power_dip(self, where: str, event: PowerDipEvent) -> None:
        index = self.index
        if event.post not in index.post_rows:
            self.problems.append(
                f"{where}.post: post {event.post!r} answers no area of the plant "
                f"(known: {', '.join(index.post_rows)})"
            )
            return
        ids = {index.places[r].sensor.id for r in index.post_rows[event.post]}
        for j, sensor in enumerate(event.sensors or ()):
            self._sensor(f"{where}.sensors[{j}]", sensor, _PROCESS)
            if sensor in index.by_id and sensor not in ids:
                self.problems.append(
                    f"{where}.sensors[{j}]: sensor {sensor!r} does not answer to post "
                    f"{event.post!r}"
                )
        for sensor in event.directions:
            if sensor not in ids:
                self.problems.append(
                    f"{where}.directions.{sensor}: sensor {sensor!r} does not answer to post "
                    f"{event.post!r}"
                )
        if list(event.shots_s) != sorted(set(event.shots_s)):
            self.problems.append(f"{where}.shots_s: sag times must be strictly increasing")


def parse_scenario(
    data: Any, plant: PlantConfig, source: str | Path = "<scenario>"
) -> Scenario:
    """Validate already-parsed YAML data against the schema and the plant.

    Raises
    ------
    ScenarioError
        Naming ``source`` and the key path of every problem found.
    """
    if not isinstance(data, dict):
        raise ScenarioError(source, ["(top level): expected a mapping with name, duration_s "
                                     "and events"])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, _pydantic_problems(exc)) from exc
    problems = _Checker(scenario, plant).run()
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def load_scenario(path: str | Path, plant: PlantConfig) -> Scenario:
    """Load and check a scenario file such as ``config/scenarios/reactor-runaway.yaml``."""
    return parse_scenario(read_yaml(path, ScenarioError), plant, path)
