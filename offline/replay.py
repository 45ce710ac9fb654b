"""Replay: recorded or scenario data through the real broker, at N× speed.

A replay publishes gateway messages so that a running service sees them
live. Two sources: a scenario (``config/scenarios/*.yaml``) and a recorded
CSV (e.g. a SKAB file) with a small YAML map from columns to plant sensors.

Timing. At ``speed`` N, event time runs N times faster than the wall clock.
The service accepts readings at most ``max_future_skew_s`` (300 s) ahead of
its clock, so the replay's event time is placed in the past and catches up
with the wall clock as the replay ends: the first message is stamped
``duration × (1 - 1/N)`` before now (:func:`replay_start_ms`). The pacing is
by publish time in the data, divided by N.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.plant import ConfigError, PlantConfig
from simulators import MqttPublisher, encode_gateway_message, gateway_topic
from simulators.publisher import parse_broker_url

__all__ = ["CommandListener", "CsvMap", "ReplayResult", "csv_messages", "load_csv_map",
           "publish_paced", "replay_start_ms"]


def replay_start_ms(duration_s: float, speed: float, now_ms: int | None = None) -> int:
    """Event time of the first message so the last one lands at the wall clock's now."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    # Slower than real time (speed < 1) never runs ahead: it starts now.
    return now - int(duration_s * 1000 * max(0.0, 1.0 - 1.0 / speed))


class CommandListener:
    """Collects the Sparkplug B node commands (NCMD) a host publishes, so a
    replayed edge node can answer rebirth requests (see
    :mod:`offline.sparkplug_feed`). A context manager: entering connects
    and subscribes (clean session, QoS 1), leaving disconnects.
    :meth:`drain` returns what arrived since it was last called; paho
    delivers on its own thread, hence the lock.
    """

    TOPIC = "spBv1.0/+/NCMD/+"

    def __init__(self, broker_url: str, *, connect_timeout_s: float = 10.0) -> None:
        self.host, self.port = parse_broker_url(broker_url)
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._received: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.on_connect = lambda client, *_: client.subscribe(self.TOPIC, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._received.append((msg.topic, bytes(msg.payload)))

    def drain(self) -> list[tuple[str, bytes]]:
        with self._lock:
            out, self._received = self._received, []
        return out

    def __enter__(self) -> CommandListener:
        self._client.connect(self.host, self.port)
        self._client.loop_start()
        if not self._subscribed.wait(self.connect_timeout_s):
            self._client.loop_stop()
            raise TimeoutError(f"no subscription to {self.TOPIC} at {self.host}:{self.port} "
                               f"within {self.connect_timeout_s:.0f} s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(slots=True)
class ReplayResult:
    messages: int
    readings: int
    acked_readings: int
    wall_s: float


def publish_paced(
    messages: Iterable[tuple[str, bytes, int, int]],
    broker_url: str,
    *,
    speed: float,
    client_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    ack_timeout_s: float = 60.0,
) -> ReplayResult:
    """Publish (topic, payload, publish ms, n readings) at ``speed``× their own pacing, QoS 1.

    Waits for every PUBACK at the end; raises ``TimeoutError`` naming how
    many readings the broker did not acknowledge.
    """
    if not speed > 0:
        raise ValueError(f"speed {speed} must be > 0")
    wall0 = time.monotonic()
    first: int | None = None
    n_messages = 0
    with MqttPublisher(broker_url, client_id=client_id) as pub:
        for topic, payload, publish_ms, n in messages:
            if first is None:
                first = publish_ms
            due = wall0 + (publish_ms - first) / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pub.publish(topic, payload, n)
            n_messages += 1
            if on_progress is not None:
                on_progress(publish_ms - first)
        if not pub.wait_all_acked(ack_timeout_s):
            raise TimeoutError(
                f"the broker at {broker_url} acknowledged {pub.acked_readings} of "
                f"{pub.published_readings} readings within {ack_timeout_s:.0f} s")
        return ReplayResult(n_messages, pub.published_readings, pub.acked_readings,
                            time.monotonic() - wall0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMap(_Model):
    sensor: str
    scale: float = 1.0
    offset: float = 0.0


class CsvMap(_Model):
    """How a recorded CSV becomes readings of plant sensors (``MAP.yaml``).

    ``value = raw * scale + offset`` per column; rows with an empty or
    non-numeric cell skip that reading only.
    """

    time_column: str = "datetime"
    time_format: str = "%Y-%m-%d %H:%M:%S"
    delimiter: str | None = None  # None: sniffed (SKAB uses ';')
    gateway: str = "gw-replay"
    columns: dict[str, ColumnMap] = Field(min_length=1)


def load_csv_map(path: str | Path, plant: PlantConfig) -> CsvMap:
    """Load and check a CSV map; errors name the file, the key path and the problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, [f"cannot read the map ({exc})"]) from exc
    try:
        cmap = CsvMap.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [
            ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors()
        ]) from exc
    known = {p.sensor.id for p in plant.places()}
    bad = [f"columns.{col}.sensor: {m.sensor!r} is not a sensor of the plant"
           for col, m in cmap.columns.items() if m.sensor not in known]
    if bad:
        raise ConfigError(path, bad)
    site = {p.sensor.id: p.site for p in plant.places()}
    sites = sorted({site[m.sensor] for m in cmap.columns.values()})
    if len(sites) > 1:
        # The topic names the site, and a reading of another site's sensor is refused.
        raise ConfigError(path, [f"columns: the sensors belong to sites {', '.join(sites)}; "
                                 "a gateway publishes one site's sensors: make one map per "
                                 "site"])
    return cmap


def csv_messages(
    path: str | Path, cmap: CsvMap, plant: PlantConfig, *, start_ms: int | None,
) -> tuple[list[tuple[str, bytes, int, int]], float]:
    """Gateway messages for every CSV row (one message per row), and the duration in s.

    Times are shifted so the first row is at ``start_ms`` (None: as recorded,
    read as UTC).
    """
    path = Path(path)
    site = {p.sensor.id: p.site for p in plant.places()}
    with open(path, newline="", encoding="utf-8") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delimiter = cmap.delimiter or csv.Sniffer().sniff(sample, delimiters=";,\t").delimiter
        reader = csv.DictReader(fh, delimiter=delimiter)
        missing = [c for c in [cmap.time_column, *cmap.columns] if c not in (reader.fieldnames
                                                                            or [])]
        if missing:
            raise ValueError(f"{path}: columns {missing} not in the file (it has "
                             f"{reader.fieldnames})")
        rows = list(reader)
    times = [_parse_time(r[cmap.time_column], cmap.time_format, path, i + 2)
             for i, r in enumerate(rows)]
    if not rows:
        return [], 0.0
    shift = 0 if start_ms is None else start_ms - times[0]
    out: list[tuple[str, bytes, int, int]] = []
    sites = {site[m.sensor] for m in cmap.columns.values()}
    topic = gateway_topic(sorted(sites)[0], cmap.gateway)
    for row, ts in zip(rows, times, strict=True):
        readings = list(_row_readings(row, cmap))
        if readings:
            out.append((topic, encode_gateway_message(cmap.gateway, ts + shift, readings),
                        ts + shift, len(readings)))
    return out, (times[-1] - times[0]) / 1000


def _parse_time(text: str, fmt: str, path: Path, line: int) -> int:
    try:
        return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError as exc:
        raise ValueError(f"{path}:{line}: time {text!r} does not match {fmt!r}") from exc


def _row_readings(row: dict[str, Any], cmap: CsvMap) -> Iterator[tuple[str, float]]:
    for col, m in cmap.columns.items():
        try:
            raw = float(row[col])
        except (TypeError, ValueError):
            continue
        value = raw * m.scale + m.offset
        if math.isfinite(value):
            yield m.sensor, value
