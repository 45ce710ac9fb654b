"""A scenario as Sparkplug B edge nodes, and the host decoder the backtest uses.

Each gateway of the plant is an edge node (group = site, edge node = gateway
id, one device per area, metrics named by sensor id): the first step is sent
as births, later steps as DDATA with aliases only. Readings a sensor fault
drops are left out of the data message. Of a scenario's gateway faults, a
silent gateway sends nothing and a skewed clock stamps its metrics wrong, as
in the JSON format; duplicates and reordering are not applied (Sparkplug's
seq numbering would expose them; its own recovery, seq gaps and rebirth, is
tested in ``tests/test_sparkplug*.py``).

A replay answers rebirth requests as a real edge node does: ``commands``
hands over the NCMD messages that arrived since the last step, and a node
asked to rebirth sends its births again, with its current values, before its
next data (a silent gateway does not answer; the host asks again later).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from model.plant import PlantConfig
from simulators.faults import active
from simulators.scenario import Scenario, ScenarioPlant
from simulators.scenario_schema import ClockSkewEvent, GatewaySilentEvent
from simulators.sparkplug_edge import edge_nodes_for_plant

__all__ = ["sparkplug_messages"]


Commands = Callable[[], list[tuple[str, bytes]]]
"""Returns the (topic, payload) of the commands received since it was last called."""


def sparkplug_messages(scenario: Scenario, plant: PlantConfig, plant_sim: ScenarioPlant,
                       commands: Commands | None = None,
                       ) -> Iterator[tuple[str, bytes, int, int]]:
    """(topic, payload, publish ms, readings) of every edge node, step by step."""
    nodes = edge_nodes_for_plant(plant)
    ids = plant_sim.sensor_ids
    silent = [e for e in scenario.events if isinstance(e, GatewaySilentEvent)]
    skews = [e for e in scenario.events if isinstance(e, ClockSkewEvent)]
    for ts in plant_sim.step_times_ms.tolist():
        t_s = (ts - plant_sim.start_ms) / 1000.0
        values, present = plant_sim.values_at(ts)
        by_sensor = {ids[i]: float(values[i]) for i in range(len(ids)) if present[i]}
        received = commands() if commands is not None else []
        for node in nodes:
            gw = node.edge_node
            if any(e.gateway == gw and active(t_s, e.at_s, e.duration_s) for e in silent):
                continue
            written = ts + sum(round(e.skew_s * 1000.0) for e in skews
                               if e.gateway == gw and active(t_s, e.at_s, e.duration_s))
            if node.born:
                for topic, payload in received:
                    for m in node.handle_command(topic, payload, written):
                        yield m.topic, m.payload, ts, m.n_readings
            mine = {s: by_sensor[s] for s in node.alias if s in by_sensor}
            messages = node.births(written, mine) if not node.born else node.data(written, mine)
            for m in messages:
                yield m.topic, m.payload, ts, m.n_readings
