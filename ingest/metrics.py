"""Prometheus metrics of the pipeline, on a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["IngestMetrics", "SourceCollector"]


class _CountingSource(Protocol):
    takeovers: int
    disconnects: int


class SourceCollector(Collector):
    """What the MQTT source counts on paho's thread, read at each scrape of ``/metrics``."""

    def __init__(self, source: _CountingSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "plantwatch_mqtt_session_takeovers",
            "Connections lost to another client using the service's client id (suspected: "
            "repeated close-and-take-back, or the persistent session gone on reconnect)",
            value=self.source.takeovers)
        yield CounterMetricFamily("plantwatch_mqtt_disconnects", "Broker connections lost",
                                  value=self.source.disconnects)


class IngestMetrics:
    """Everything ``/metrics`` shows about ingest, storage and alarms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "plantwatch_messages_received", "MQTT messages received", registry=r
        )
        self.messages_rejected = Counter(
            "plantwatch_messages_rejected", "Messages rejected whole, by reason", ["reason"],
            registry=r,
        )
        self.readings_received = Counter(
            "plantwatch_readings_received", "Readings accepted by validation", registry=r
        )
        self.readings_rejected = Counter(
            "plantwatch_readings_rejected", "Readings rejected, by reason", ["reason"], registry=r
        )
        self.readings_stored = Counter(
            "plantwatch_readings_stored", "Readings written to the store", registry=r
        )
        self.readings_spooled = Counter(
            "plantwatch_readings_spooled", "Readings written to the local spool", registry=r
        )
        self.readings_refused_by_store = Counter(
            "plantwatch_readings_refused_by_store",
            "Readings the store refused (a 4xx); dead-lettered", registry=r,
        )
        self.dead_letters = Counter(
            "plantwatch_dead_letters", "Dead letters published", registry=r
        )
        self.dead_letters_dropped = Counter(
            "plantwatch_dead_letters_dropped",
            "Dead letters counted but not handed to the broker, by why", ["why"], registry=r,
        )
        self.sparkplug_rebirths = Counter(
            "plantwatch_sparkplug_host_messages",
            "Messages the Sparkplug host published (rebirth requests, STATE)", registry=r
        )
        self.alarm_events = Counter(
            "plantwatch_alarm_events", "Alarm events journaled, by action", ["action"], registry=r
        )
        self.source_queue_depth = Gauge(
            "plantwatch_source_queue_depth", "Messages received but not yet decoded", registry=r
        )
        self.pending_readings = Gauge(
            "plantwatch_pending_readings", "Readings decoded, waiting for the next flush",
            registry=r,
        )
        self.writer_queue_depth = Gauge(
            "plantwatch_writer_queue_depth", "Batches waiting for the store writer", registry=r
        )
        self.spool_readings = Gauge(
            "plantwatch_spool_readings", "Readings in the spool waiting for the store", registry=r
        )
        self.store_up = Gauge("plantwatch_store_up", "1 when the last store write succeeded",
                              registry=r)
        self.store_write_seconds = Histogram(
            "plantwatch_store_write_seconds", "Latency of one store write",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.store_write_errors = Counter(
            "plantwatch_store_write_errors", "Store writes that failed", ["kind"], registry=r
        )
        self.ack_latency_seconds = Histogram(
            "plantwatch_ack_latency_seconds", "From receipt to PUBACK (readings durable)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
