"""A scenario as a feed of gateway messages, for the backtest and the replay.

One place decides how a scenario is encoded (JSON gateway, line protocol or
Sparkplug B), where its time starts (as written, or moved so a replay ends
at now), and whether it needs a Sparkplug B host to be read, so a replay and a
backtest of the same scenario see the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from model.plant import PlantConfig
from simulators.scenario import IncidentTruth, Scenario, ScenarioPlant, scenario_messages

__all__ = ["ScenarioFeed", "scenario_feed"]

Format = Literal["json", "lp", "sparkplug"]


@dataclass(slots=True)
class ScenarioFeed:
    scenario: Scenario
    fmt: Format
    start_ms: int
    truths: list[IncidentTruth]
    plant_sim: ScenarioPlant
    plant: PlantConfig
    # Sparkplug replay: the NCMD messages received since the last call, so the
    # simulated edge nodes answer rebirth requests (offline.replay.CommandListener).
    commands: Callable[[], list[tuple[str, bytes]]] | None = None

    def _raw(self) -> Iterator[tuple[str, bytes, int, int]]:
        if self.fmt == "sparkplug":
            from offline.sparkplug_feed import sparkplug_messages

            yield from sparkplug_messages(self.scenario, self.plant, self.plant_sim,
                                          self.commands)
            return
        for m in scenario_messages(self.scenario, self.plant, self.fmt,
                                   scenario_plant=self.plant_sim):
            yield m.topic, m.payload, m.publish_ts_ms, m.n_readings

    @property
    def sparkplug(self) -> bool:
        """Whether reading the feed needs a Sparkplug B host (the backtest makes one)."""
        return self.fmt == "sparkplug"

    @property
    def messages(self) -> Iterable[tuple[str, bytes, int]]:
        """(topic, payload, publish ms), for the backtest."""
        return ((t, p, ms) for t, p, ms, _ in self._raw())

    @property
    def paced(self) -> Iterable[tuple[str, bytes, int, int]]:
        """(topic, payload, publish ms, readings), for a paced replay."""
        return self._raw()


def scenario_feed(scenario: Scenario, plant: PlantConfig, fmt: Format = "json", *,
                  start_ms: int | None = None) -> ScenarioFeed:
    """The scenario's messages in ``fmt``; ``start_ms`` moves its start (a replay's "now")."""
    if start_ms is not None:
        scenario = scenario.model_copy(
            update={"start": datetime.fromtimestamp(start_ms / 1000, UTC)})
    plant_sim = ScenarioPlant(scenario, plant)
    return ScenarioFeed(scenario, fmt, scenario.start_ms, plant_sim.ground_truth(), plant_sim,
                        plant)
