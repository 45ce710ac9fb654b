"""Alarm gauges for operations teams, read from the alarm state at scrape time.

``plantwatch_alarms_standing{priority,state}`` (points not normal, by
priority and ISA state), ``plantwatch_alarms_annunciated{priority}`` (those
the operator is shown), ``plantwatch_alarms_escalated{to}`` (unacknowledged
past their response time, by the level they reached) and
``plantwatch_posts_in_flood``. Read at scrape time from the alarm manager,
so they can never drift from what the API shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alarms.lifecycle import AlarmManager
from alarms.points import PRIORITIES, AlarmPoint

__all__ = ["AlarmCollector"]

_STATES = ("unack", "ack", "rtn_unack", "latched")


class AlarmCollector(Collector):
    """The alarm gauges of one alarm manager (register it on the service's registry)."""

    def __init__(self, manager: AlarmManager) -> None:
        self.manager = manager

    def collect(self) -> Iterable[GaugeMetricFamily]:
        standing: list[AlarmPoint] = []
        for _ in range(5):  # /metrics on api.metrics_port reads from another thread
            try:
                standing = self.manager.standing()
                break
            except RuntimeError:  # the loop changed the points meanwhile: read again
                continue
        by_state: Counter[tuple[str, str]] = Counter((p.priority, p.state) for p in standing)
        shown = Counter(p.priority for p in standing if p.annunciable and not p.flood_held)
        escalated = Counter(e.to for p in standing if (e := p.current_escalation()) is not None)
        g = GaugeMetricFamily("plantwatch_alarms_standing",
                              "Alarm points not normal, by priority and state",
                              labels=["priority", "state"])
        for priority in PRIORITIES:
            for state in _STATES:
                g.add_metric([priority, state], by_state.get((priority, state), 0))
        yield g
        g = GaugeMetricFamily("plantwatch_alarms_annunciated",
                              "Standing alarm points shown to the operator (not shelved, "
                              "suppressed, out of service or held back by a flood)",
                              labels=["priority"])
        for priority in PRIORITIES:
            g.add_metric([priority], shown.get(priority, 0))
        yield g
        g = GaugeMetricFamily("plantwatch_alarms_escalated",
                              "Alarms unacknowledged past their response time, by the level "
                              "they were escalated to", labels=["to"])
        for to in ("team", "workshop", "enterprise"):
            g.add_metric([to], escalated.get(to, 0))
        yield g
        try:
            floods = len(self.manager.floods.open_floods())
        except RuntimeError:
            floods = 0
        yield GaugeMetricFamily("plantwatch_posts_in_flood", "Posts in an alarm flood now",
                                value=floods)
