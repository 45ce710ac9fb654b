"""A scenario as the gateways publish it: one batched message per gateway per step.

The messages are what a replay publishes and what a backtest decodes, in the
order the broker would see them, with the gateway faults of the scenario
applied: a silent gateway sends nothing, a skewed clock shifts the
timestamps it writes (not when it sends), duplicates send a message again,
and out-of-order delivery holds a message back past later ones. Every random
choice is keyed by the scenario's seed, the event and the step, so the same
scenario gives byte-identical payloads in the same order, every time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from model.plant import PlantConfig
from simulators.faults import active
from simulators.gateway_json import GatewayLayout, encode_gateway_message
from simulators.gateway_lp import encode_lp_message, lp_topic, series_prefix
from simulators.scenario_plant import ScenarioPlant
from simulators.scenario_schema import (
    ClockSkewEvent,
    DuplicatesEvent,
    GatewaySilentEvent,
    OutOfOrderEvent,
    Scenario,
)

__all__ = ["ScenarioMessage", "scenario_messages"]

_GATEWAY_SALT = 0x6A7E3A11
_DEFAULT_HOLD_STEPS = 1.5


@dataclass(frozen=True, slots=True)
class ScenarioMessage:
    """One MQTT message of a scenario.

    Attributes
    ----------
    topic : str
        ``plant/<site>/<gateway>`` (JSON) or ``plant/<site>/lp`` (line protocol).
    payload : bytes
    publish_ts_ms : int
        Scenario time (ms since the epoch) at which the gateway sends it; a
        replay at N× waits until then, a backtest uses it as arrival time.
    n_readings : int
    gateway : str
        The gateway that sent it.
    ts_ms : int
        The timestamp written in the payload (the step's time plus any clock skew).
    """

    topic: str
    payload: bytes
    publish_ts_ms: int
    n_readings: int
    gateway: str
    ts_ms: int


def _step_rng(seed: int, event: int, ts_ms: int, gateway: str) -> np.random.Generator:
    tag = int.from_bytes(gateway.encode()[:16].ljust(16, b"\0"), "big")
    return np.random.default_rng([seed, _GATEWAY_SALT, event, ts_ms, tag])


def scenario_messages(
    scenario: Scenario,
    plant: PlantConfig,
    fmt: Literal["json", "lp"] = "json",
    *,
    max_readings_per_message: int = 100,
    scenario_plant: ScenarioPlant | None = None,
) -> Iterator[ScenarioMessage]:
    """Every gateway message of the scenario, in publish order.

    Parameters
    ----------
    scenario : Scenario
        Checked against ``plant``.
    plant : PlantConfig
    fmt : {"json", "lp"}
        The JSON gateway payload (:mod:`simulators.gateway_json`) or InfluxDB
        line protocol on ``plant/<site>/lp`` (:mod:`simulators.gateway_lp`).
    max_readings_per_message : int
        A gateway with more readings in a step splits them (JSON and lp alike).
    scenario_plant : ScenarioPlant or None
        Reuse an already built generator (its ground truth cache, say).

    Yields
    ------
    ScenarioMessage
        Ordered by ``publish_ts_ms``; messages sent at the same time keep the
        order gateways appear in ``plant.places()``, a duplicate right after
        its original.
    """
    if fmt not in ("json", "lp"):
        raise ValueError(f"fmt must be 'json' or 'lp', not {fmt!r}")
    if max_readings_per_message < 1:
        raise ValueError(
            f"max_readings_per_message must be at least 1, not {max_readings_per_message}"
        )
    sp = scenario_plant if scenario_plant is not None else ScenarioPlant(scenario, plant)
    layout = GatewayLayout(plant)
    prefixes = [series_prefix(p) for p in sp.index.places]
    events = list(enumerate(scenario.events))
    silent = [(i, e) for i, e in events if isinstance(e, GatewaySilentEvent)]
    skews = [(i, e) for i, e in events if isinstance(e, ClockSkewEvent)]
    dups = [(i, e) for i, e in events if isinstance(e, DuplicatesEvent)]
    holds = [(i, e) for i, e in events if isinstance(e, OutOfOrderEvent)]
    period_ms = scenario.period_ms

    queue: list[tuple[int, int, ScenarioMessage]] = []
    seq = 0
    for ts in sp.step_times_ms.tolist():
        t_s = (ts - sp.start_ms) / 1000.0
        values, present = sp.values_at(ts)
        for group in layout.groups:
            gw = group.gateway
            if any(e.gateway == gw and active(t_s, e.at_s, e.duration_s) for _, e in silent):
                continue
            rows = group.rows[present[group.rows]]
            if len(rows) == 0:
                continue
            skew_ms = sum(round(e.skew_s * 1000.0) for _, e in skews
                          if e.gateway == gw and active(t_s, e.at_s, e.duration_s))
            written = ts + skew_ms
            publish = ts
            for i, hold in holds:
                if (
                    hold.gateway == gw and active(t_s, hold.at_s, hold.duration_s)
                    and _step_rng(scenario.seed, i, ts, gw).uniform() < hold.probability
                ):
                    hold_ms = (_DEFAULT_HOLD_STEPS * period_ms if hold.delay_s is None
                               else hold.delay_s * 1000.0)
                    publish = max(publish, ts + round(hold_ms))
            copies = [publish]
            for i, dup in dups:
                if (
                    dup.gateway == gw and active(t_s, dup.at_s, dup.duration_s)
                    and _step_rng(scenario.seed, i, ts, gw).uniform() < dup.probability
                ):
                    copies.append(publish + round(dup.delay_s * 1000.0))
            chunk_values = values[rows].tolist()
            for start in range(0, len(rows), max_readings_per_message):
                part = rows[start:start + max_readings_per_message]
                part_values = chunk_values[start:start + max_readings_per_message]
                if fmt == "json":
                    ids = [sp.sensor_ids[r] for r in part]
                    payload = encode_gateway_message(
                        gw, written, list(zip(ids, part_values, strict=True))
                    )
                    topic = group.topic
                else:
                    payload = encode_lp_message([prefixes[r] for r in part], part_values, written)
                    topic = lp_topic(group.site)
                for when in copies:
                    message = ScenarioMessage(topic, payload, when, len(part), gw, written)
                    heapq.heappush(queue, (when, seq, message))
                    seq += 1
        while queue and queue[0][0] <= ts:
            yield heapq.heappop(queue)[2]
    while queue:
        yield heapq.heappop(queue)[2]
