"""A Sparkplug B edge node for one plant gateway: births, data, deaths, rebirth on command.

Two parts, so the protocol can be tested and replayed without a broker:

* :class:`EdgeNodeMessages` is pure and deterministic: given times and values
  it returns the exact messages (topic, payload bytes, QoS) an edge node
  sends. The same inputs give byte-identical payloads, which a backtest and
  the determinism tests rely on.
* :class:`SparkplugEdgeNode` puts it on an MQTT broker with paho: Will =
  NDEATH, clean session, subscription to its NCMD/DCMD, births on connect,
  births again when a host asks (NCMD ``Node Control/Rebirth``).

Naming (see :mod:`sparkplug`): group = site id, edge node = gateway id, one
device per area the gateway serves, metric name = sensor id. Every sensor
metric is a Double; births also carry ``bdSeq`` and ``Node Control/Rebirth``.
Aliases are 1, 2, … in device order, then sensor order, stable across births.

Message rules followed (Sparkplug 3.0): the NBIRTH has ``seq`` 0 and every
later message of the node but NDEATH the next ``seq``, wrapping 255 → 0; births
carry names, aliases, datatypes and current values (``is_null`` when there is
none yet); data carries aliases only; ``bdSeq`` goes up by one per MQTT
session and the NDEATH in the Will carries the session's value; a rebirth
keeps the ``bdSeq`` (same session) and starts ``seq`` from 0 again. Data are
sent for every value given (a gateway that samples on a clock); pass only
changed values for report-by-exception. A NaN value is sent as ``is_null``.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from model.plant import PlantConfig
from simulators.errors import PublishError, SimulatorError
from simulators.publisher import parse_broker_url
from sparkplug import (
    NAMESPACE,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    Metric,
    NodeTopic,
    Payload,
    SparkplugError,
    bd_seq_metric,
    check_id,
    decode_payload,
    encode_payload,
    ndeath_payload,
    parse_topic,
)

__all__ = [
    "EdgeNodeError",
    "EdgeNodeMessages",
    "SparkplugEdgeNode",
    "SparkplugMessage",
    "edge_nodes_for_plant",
]


class EdgeNodeError(SimulatorError, ValueError):
    """The edge node was asked for something Sparkplug does not allow (data before a birth,
    an unknown sensor or device); the message names it."""


@dataclass(frozen=True, slots=True)
class SparkplugMessage:
    """One MQTT message to publish; ``n_readings`` counts the sensor values it carries."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    n_readings: int = 0


class EdgeNodeMessages:
    """The messages of one Sparkplug edge node, built deterministically (no I/O, no clock).

    Parameters
    ----------
    group, edge_node : str
        Sparkplug group id and edge node id (plantwatch: site id and gateway id).
    devices : mapping of device id → sensor ids
        The node's devices and the metrics each publishes, in publishing order.
    bd_seq : int
        ``bdSeq`` of the first MQTT session, 0–255 (a real node persists it
        across restarts; the simulator starts where it is told).
    """

    def __init__(
        self,
        group: str,
        edge_node: str,
        devices: Mapping[str, Sequence[str]],
        *,
        bd_seq: int = 0,
    ) -> None:
        try:
            check_id(group, "group id")
            check_id(edge_node, "edge node id")
            for device in devices:
                check_id(device, "device id")
        except SparkplugError as exc:
            raise EdgeNodeError(f"edge node {group}/{edge_node}: {exc}") from exc
        if not 0 <= bd_seq <= 255:
            raise EdgeNodeError(f"edge node {group}/{edge_node}: bdSeq {bd_seq} is not 0–255")
        self.group = group
        self.edge_node = edge_node
        self.devices: dict[str, tuple[str, ...]] = {d: tuple(s) for d, s in devices.items()}
        self.alias: dict[str, int] = {}
        self.device_of: dict[str, str] = {}
        for device, sensors in self.devices.items():
            for sensor in sensors:
                if sensor in self.alias:
                    raise EdgeNodeError(
                        f"edge node {group}/{edge_node}: sensor {sensor!r} is listed under "
                        f"devices {self.device_of[sensor]!r} and {device!r}; metric names must "
                        "be unique per edge node"
                    )
                self.alias[sensor] = len(self.alias) + 1
                self.device_of[sensor] = device
        self.bd_seq = bd_seq
        self.rows: npt.NDArray[np.intp] | None = None  # set by from_plant: rows in a plant step
        self._seq = 0
        self._born = False
        self._dead: set[str] = set()  # devices after DDEATH, until their DBIRTH
        self._last: dict[str, float] = {}

    @classmethod
    def from_plant(cls, plant: PlantConfig, site: str, gateway: str,
                   *, bd_seq: int = 0) -> EdgeNodeMessages:
        """The edge node of ``gateway`` at ``site``: one device per area it serves."""
        devices: dict[str, list[str]] = {}
        for place in plant.places():
            if place.site == site and place.gateway == gateway:
                devices.setdefault(place.area, []).append(place.sensor.id)
        if not devices:
            raise EdgeNodeError(f"site {site!r} has no gateway {gateway!r} in the plant config")
        node = cls(site, gateway, devices, bd_seq=bd_seq)
        # Rows in alias order, so step() can pick this node's values from a plant step.
        index_of = {p.sensor.id: p.index for p in plant.places()}
        node.rows = np.array([index_of[s] for s in node.alias], dtype=np.intp)
        return node

    # -- topics --------------------------------------------------------------

    def topic(self, message_type: MessageType, device: str | None = None) -> str:
        return str(NodeTopic(self.group, message_type, self.edge_node, device))

    @property
    def ncmd_topic(self) -> str:
        """Where hosts send this node's commands (it subscribes here)."""
        return self.topic(MessageType.NCMD)

    @property
    def dcmd_filter(self) -> str:
        """Subscription filter for the commands to this node's devices."""
        return f"{NAMESPACE}/{self.group}/{MessageType.DCMD}/{self.edge_node}/+"

    # -- state ---------------------------------------------------------------

    @property
    def born(self) -> bool:
        """True once births were built in this session."""
        return self._born

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next sequenced message will carry."""
        return self._seq

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def new_session(self) -> None:
        """A new MQTT connection: ``bdSeq`` moves on, and births are due again."""
        self.bd_seq = (self.bd_seq + 1) % 256
        self._born = False

    # -- messages ------------------------------------------------------------

    def will(self) -> SparkplugMessage:
        """The NDEATH to register as the MQTT Will (QoS 1, not retained)."""
        return SparkplugMessage(self.topic(MessageType.NDEATH), ndeath_payload(self.bd_seq),
                                qos=1)

    def death(self) -> SparkplugMessage:
        """The NDEATH to publish before an intentional disconnect (same as the Will)."""
        return self.will()

    def _metric(self, sensor: str, ts_ms: int, *, birth: bool,
                historical: bool = False) -> Metric:
        value = self._last.get(sensor, math.nan)
        null = not math.isfinite(value)
        return Metric(
            name=sensor if birth else None,
            alias=self.alias[sensor],
            timestamp=ts_ms,
            datatype=DataType.Double if birth else None,
            value=None if null else value,
            is_historical=historical,
            is_null=null,
        )

    def _remember(self, values: Mapping[str, float]) -> None:
        for sensor, value in values.items():
            if sensor not in self.alias:
                raise EdgeNodeError(
                    f"edge node {self.group}/{self.edge_node} has no sensor {sensor!r}"
                )
            self._last[sensor] = float(value)

    def births(self, ts_ms: int,
               values: Mapping[str, float] | None = None) -> list[SparkplugMessage]:
        """NBIRTH (``seq`` 0) and a DBIRTH per live device, with every metric's current value.

        ``values`` updates the current values first; a sensor never given a
        value is sent as null. Also what answers a rebirth request. A device
        after :meth:`device_death` gets no DBIRTH until :meth:`device_birth`.
        """
        if values:
            self._remember(values)
        self._seq = 0
        node = Payload(timestamp=ts_ms, seq=self._take_seq(), metrics=(
            bd_seq_metric(self.bd_seq, ts_ms),
            Metric(name=REBIRTH_METRIC, timestamp=ts_ms, datatype=DataType.Boolean, value=False),
        ))
        out = [SparkplugMessage(self.topic(MessageType.NBIRTH), encode_payload(node))]
        for device, sensors in self.devices.items():
            if device not in self._dead:
                out.append(self._device_birth(device, sensors, ts_ms))
        self._born = True
        return out

    def _device_birth(self, device: str, sensors: Sequence[str], ts_ms: int) -> SparkplugMessage:
        metrics = tuple(self._metric(s, ts_ms, birth=True) for s in sensors)
        payload = Payload(timestamp=ts_ms, seq=self._take_seq(), metrics=metrics)
        return SparkplugMessage(self.topic(MessageType.DBIRTH, device), encode_payload(payload),
                                n_readings=sum(not m.is_null for m in metrics))

    def data(self, ts_ms: int, values: Mapping[str, float], *,
             historical: bool = False) -> list[SparkplugMessage]:
        """DDATA, one per device with values, aliases only; all values stamped ``ts_ms``.

        ``historical=True`` marks them backfill (``is_historical``): a host
        stores them but does not treat them as live.

        Raises
        ------
        EdgeNodeError
            Before the births of this session, for an unknown sensor, or for
            a device that is dead (after :meth:`device_death`).
        """
        if not self._born:
            raise EdgeNodeError(
                f"edge node {self.group}/{self.edge_node}: data before its births in this session"
            )
        self._remember(values)
        out: list[SparkplugMessage] = []
        for device, sensors in self.devices.items():
            chosen = [s for s in sensors if s in values]
            if not chosen:
                continue
            if device in self._dead:
                raise EdgeNodeError(
                    f"edge node {self.group}/{self.edge_node}: device {device!r} is dead; "
                    "send device_birth() first"
                )
            metrics = tuple(self._metric(s, ts_ms, birth=False, historical=historical)
                            for s in chosen)
            payload = Payload(timestamp=ts_ms, seq=self._take_seq(), metrics=metrics)
            out.append(SparkplugMessage(self.topic(MessageType.DDATA, device),
                                        encode_payload(payload),
                                        n_readings=sum(not m.is_null for m in metrics)))
        return out

    def step(self, ts_ms: int, plant_values: npt.ArrayLike) -> list[SparkplugMessage]:
        """Messages for one plant step (values in ``plant.places()`` order).

        The first step of a session is sent as births (they carry current
        values); later steps as data, without the sensors of dead devices.
        Only for nodes made by :meth:`from_plant`.
        """
        if self.rows is None:
            raise EdgeNodeError(
                f"edge node {self.group}/{self.edge_node} was not made from a plant config"
            )
        mine: list[float] = np.asarray(plant_values, dtype=np.float64)[self.rows].tolist()
        values = dict(zip(self.alias, mine, strict=True))
        if not self._born:
            return self.births(ts_ms, values)
        return self.data(ts_ms, {s: v for s, v in values.items()
                                 if self.device_of[s] not in self._dead})

    def device_death(self, device: str, ts_ms: int) -> SparkplugMessage:
        """DDEATH of ``device`` (its metrics turn stale at hosts) until :meth:`device_birth`."""
        self._check_device(device)
        self._dead.add(device)
        payload = Payload(timestamp=ts_ms, seq=self._take_seq())
        return SparkplugMessage(self.topic(MessageType.DDEATH, device), encode_payload(payload))

    def device_birth(self, device: str, ts_ms: int) -> SparkplugMessage:
        """DBIRTH of one device, e.g. when it answers again after a DDEATH."""
        self._check_device(device)
        if not self._born:
            raise EdgeNodeError(
                f"edge node {self.group}/{self.edge_node}: DBIRTH before the NBIRTH"
            )
        self._dead.discard(device)
        return self._device_birth(device, self.devices[device], ts_ms)

    def _check_device(self, device: str) -> None:
        if device not in self.devices:
            raise EdgeNodeError(
                f"edge node {self.group}/{self.edge_node} has no device {device!r} "
                f"(it has {sorted(self.devices)})"
            )

    def handle_command(self, topic: str, payload: bytes, now_ms: int) -> list[SparkplugMessage]:
        """Answer a command: births again for NCMD ``Node Control/Rebirth`` = true.

        Anything else (other commands, malformed ones, other nodes' topics)
        is ignored: a simulated gateway has no outputs to write.
        """
        try:
            parsed = parse_topic(topic)
            if (not isinstance(parsed, NodeTopic) or parsed.message_type is not MessageType.NCMD
                    or parsed.node != (self.group, self.edge_node)):
                return []
            rebirth = decode_payload(payload, topic).metric(REBIRTH_METRIC)
        except SparkplugError:
            return []
        if rebirth is None or rebirth.value is not True:
            return []
        return self.births(now_ms)


def edge_nodes_for_plant(plant: PlantConfig, *, bd_seq: int = 0) -> list[EdgeNodeMessages]:
    """One edge node per (site, gateway) of the plant, in the order gateways first appear."""
    seen: dict[tuple[str, str], None] = {}
    for place in plant.places():
        seen.setdefault((place.site, place.gateway), None)
    return [EdgeNodeMessages.from_plant(plant, site, gw, bd_seq=bd_seq) for site, gw in seen]


def _wall_ms() -> int:
    return int(time.time() * 1000)


class SparkplugEdgeNode:
    """An :class:`EdgeNodeMessages` on a real broker (paho, MQTT 3.1.1, clean session).

    Entering connects with the NDEATH as Will, subscribes to the node's NCMD
    and DCMD topics, and publishes the births; leaving publishes the NDEATH
    and disconnects. A reconnect (paho retries by itself) is a new session:
    ``bdSeq`` moves on, the Will is replaced, births follow. NCMD rebirth
    requests are answered from paho's network thread; a lock keeps them from
    interleaving with :meth:`publish`, so ``seq`` order is the send order.

    Parameters
    ----------
    broker_url : str
        ``mqtt://HOST:PORT``.
    node : EdgeNodeMessages
        The node's messages (its state moves on as this client publishes).
    initial_values : mapping, optional
        Values for the first births (others are sent as null).
    clock_ms : callable
        Timestamps for births (on connect and on rebirth), ms; wall time by
        default, a scenario clock in a replay.
    """

    def __init__(
        self,
        broker_url: str,
        node: EdgeNodeMessages,
        *,
        initial_values: Mapping[str, float] | None = None,
        client_id: str | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.broker_url = broker_url
        self.host, self.port = parse_broker_url(broker_url)
        self.node = node
        self.clock_ms = clock_ms
        self.connect_timeout_s = connect_timeout_s
        self.client_id = client_id or f"plantwatch-sparkplug-{uuid.uuid4().hex[:12]}"
        self.births_published = 0  # NBIRTHs, counting the one of each connect
        self.rebirths_answered = 0
        self._initial = dict(initial_values or {})
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._connect_failure: str | None = None
        self._closing = False
        self._sessions = 0
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,  # Sparkplug: recovery is by birth, never by session state
        )
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._set_will()

    def _set_will(self) -> None:
        will = self.node.will()
        self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    # -- paho callbacks (network thread) --------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self._connect_failure = str(reason_code)
            self._connected.set()
            return
        with self._lock:
            self._sessions += 1
            client.subscribe([(self.node.ncmd_topic, 1), (self.node.dcmd_filter, 1)])
            values = self._initial if self._sessions == 1 else None
            self._send(self.node.births(self.clock_ms(), values))
            self.births_published += 1
            self._cond.notify_all()
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason_code: ReasonCode,
                       properties: Properties | None) -> None:
        with self._lock:
            if self._closing:
                return
            # The broker has published (or will publish) this session's Will;
            # the next CONNECT is a new Sparkplug session with a new bdSeq.
            self.node.new_session()
            self._set_will()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            answer = self.node.handle_command(msg.topic, bytes(msg.payload), self.clock_ms())
            if answer:
                self._send(answer)
                self.births_published += 1
                self.rebirths_answered += 1
                self._cond.notify_all()

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> SparkplugEdgeNode:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot connect to the broker at {self.broker_url}: {exc}",
                               broker=self.broker_url) from exc
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout_s) or self._connect_failure:
            self._closing = True
            self._client.loop_stop()
            problem = self._connect_failure or f"no CONNACK within {self.connect_timeout_s} s"
            raise PublishError(f"the broker at {self.broker_url} did not accept edge node "
                               f"{self.node.group}/{self.node.edge_node}: {problem}",
                               broker=self.broker_url)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            death = self.node.death()
            info = self._client.publish(death.topic, death.payload, qos=death.qos)
        # An intentional disconnect: NDEATH first, then DISCONNECT (Sparkplug 3.0).
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=self.connect_timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crash would.

        The broker then publishes the Will (the NDEATH). paho is stopped
        first so it does not reconnect. For tests and fault scenarios.
        """
        with self._lock:
            self._closing = True
        self._client.loop_stop()
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    # -- publishing -----------------------------------------------------------

    def _send(self, messages: Sequence[SparkplugMessage]) -> None:
        for m in messages:
            info = self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                raise PublishError(f"cannot publish on {m.topic!r}: {mqtt.error_string(info.rc)}",
                                   broker=self.broker_url, topic=m.topic)

    def publish(self, ts_ms: int, values: Mapping[str, float], *,
                historical: bool = False) -> list[SparkplugMessage]:
        """Publish DDATA for ``values`` stamped ``ts_ms``; returns what was sent.

        Between a lost connection and the births of the next session nothing
        is sent (the births carry the current values), rather than raising.
        """
        with self._lock:
            if not self.node.born:
                self.node._remember(values)
                return []
            messages = self.node.data(ts_ms, values, historical=historical)
            self._send(messages)
        return messages

    def step(self, ts_ms: int, plant_values: npt.ArrayLike) -> list[SparkplugMessage]:
        """Publish one plant step (see :meth:`EdgeNodeMessages.step`)."""
        with self._lock:
            messages = self.node.step(ts_ms, plant_values)
            self._send(messages)
        return messages

    def device_death(self, device: str) -> None:
        """Publish the DDEATH of ``device``."""
        with self._lock:
            self._send([self.node.device_death(device, self.clock_ms())])

    def device_birth(self, device: str) -> None:
        """Publish the DBIRTH of ``device`` (after a DDEATH)."""
        with self._lock:
            self._send([self.node.device_birth(device, self.clock_ms())])

    def wait_births(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` NBIRTHs have been published (first connect included)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.births_published < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
