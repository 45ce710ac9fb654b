"""Prometheus metrics of the pipeline, on a registry of its own (no global state).

Every metric of ours is named ``plantwatch_...``. The registry also carries
prometheus_client's process and platform collectors under their standard names
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
``process_open_fds``, ``python_info``, ...), which dashboards and alert rules
expect as they are.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["IngestMetrics", "SourceCollector"]



def _version() -> str:
    try:
        return importlib.metadata.version("plantwatch")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"

class _CountingSource(Protocol):
    takeovers: int
    disconnects: int
    connected: bool


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
        yield GaugeMetricFamily("plantwatch_broker_connected",
                                "1 while the MQTT broker connection is up",
                                value=1 if self.source.connected else 0)


class IngestMetrics:
    """Everything ``/metrics`` shows about ingest, storage and alarms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Every name starts plantwatch_, the process's own figures too
        # (plantwatch_process_resident_memory_bytes, ..._cpu_seconds_total).
        ProcessCollector(namespace="plantwatch", registry=r)
        build = Gauge("plantwatch_build_info", "The running release (always 1)",
                      ["version", "python"], registry=r)
        build.labels(_version(), platform.python_version()).set(1)
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
        self.spool_bytes = Gauge(
            "plantwatch_spool_bytes", "Size of the spool file (capped by ingest.spool_max_bytes)",
            registry=r,
        )
        self.spool_full = Gauge(
            "plantwatch_spool_full",
            "1 while the spool is at its cap: readings are held unacknowledged at the broker",
            registry=r,
        )
        self.spool_readings_refused = Counter(
            "plantwatch_spool_readings_refused",
            "Spooled readings not stored on replay, by reason (sensor_left_config, "
            "old_format_table_changed, record_damaged); dead-lettered", ["reason"], registry=r,
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
