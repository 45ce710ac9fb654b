"""A Sparkplug B host application, as pure logic: messages and a clock in, decisions out.

:class:`SparkplugHost` is fed every message of ``spBv1.0/#`` with its arrival
time and answers with a :class:`HostOutput`: the readings to store, the
messages to publish (rebirth requests, the host's own STATE), and the
rejections to dead-letter with their reasons. It never touches MQTT, so the
service, a backtest and the tests drive it the same way; :meth:`tick` lets time
pass when no message arrives.

What it keeps per edge node (``spBv1.0/<group>/…/<edge node>``):

* **Aliases** from the NBIRTH and each DBIRTH; data messages carry aliases
  only. An alias the births did not define, or data from a node or device
  that has not been born in this session, cannot be attributed to a sensor:
  it is rejected and a rebirth requested.
* **Sequence numbers** (``seq`` 0–255, wrapping, counted across all of a
  node's messages but NDEATH). A message that arrives ahead of a missing one
  is held; if the missing one arrives within ``reorder_timeout_ms`` the held
  messages follow it in order and nothing else happens. If it does not, the
  held messages are processed anyway (their readings are real), the gap is
  reported, a rebirth is requested, and until the new NBIRTH the node's
  messages are taken in arrival order.
* **bdSeq** of the current NBIRTH: an NDEATH counts only if its bdSeq matches.
  A broker delivers a Will late, after the node has reconnected and been
  born again, and that stale Will must not kill the new session.
* **Staleness**: NDEATH makes every sensor of the node stale, DDEATH every
  sensor of the device, a lost broker connection every sensor; a birth
  makes its sensors fresh again. :meth:`SparkplugHost.stale_sensors` says
  which are stale now.

Rebirth requests (NCMD ``Node Control/Rebirth``) are rate-limited per node to
one per ``rebirth_interval_ms``, and overall to ``max_rebirths_per_s`` (junk
on many node ids must not make the host flood the broker with commands); a
request wanted meanwhile is sent by a later :meth:`tick`, if the node still
has not been reborn.

Hostile input is bounded: given the plant's nodes (``nodes``: its
``(site, gateway)`` pairs), a message of any other node is rejected
(``unknown_node``), earns no rebirth and leaves no trace in the host's
tables; without them, at most ``max_nodes`` nodes are tracked. A payload of
more than ``limits.max_metrics`` metrics is rejected whole
(``too_many_metrics``), and so is a birth that would define more than that
many metrics on one node. Given ``site_index`` (site → its sensors), a birth
naming a sensor of another site than its group is refused (``wrong_site``).

Metric names are the plant's sensor ids (see :mod:`sparkplug`). Sparkplug's
own metrics (``bdSeq``, ``Node Control/…``, ``Device Control/…``,
``Properties/…``, ``Node Info/…``, ``Device Info/…``) are not sensors and are
skipped; any other unknown name is rejected once per birth (``unknown_sensor``)
and its later data skipped quietly, so a gateway with extra diagnostics does
not flood the dead letters. A null metric (``is_null``) is "no value" and
yields no reading. Readings of ``is_historical`` metrics are flagged: they are
backfill, to be stored but never alarmed on (:meth:`HostOutput.batches`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

from decoders.json_gateway import DecodeLimits, Rejection, timestamp_unit_hint
from model.batch import BatchBuilder, ReadingBatch
from sparkplug import (
    BD_SEQ_METRIC,
    DataType,
    MessageType,
    Metric,
    NodeTopic,
    Payload,
    PayloadError,
    StateTopic,
    TopicError,
    bd_seq_of,
    check_id,
    decode_payload,
    decode_value,
    parse_topic,
    rebirth_command,
    state_topic,
)
from sparkplug.codec import MetricValue

__all__ = [
    "HostMessage",
    "HostOutput",
    "HostRejection",
    "SparkplugHost",
    "SparkplugReading",
]

_CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/", "Node Info/",
                     "Device Info/")
# How many processed seqs are remembered to recognise a duplicate delivery.
_RECENT_SEQS = 64
# Held messages beyond this many (or this many bytes) are not waited for: the gap
# is declared at once.
_MAX_HELD = 128
_MAX_HELD_BYTES = 8 * 1024 * 1024
# Devices one edge node may have born at once (a gateway's devices are its areas).
MAX_DEVICES = 1_000
_NO_SENSORS: Mapping[str, int] = {}

NodeKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SparkplugReading:
    """One reading decoded from a Sparkplug metric; ``index`` is its sensor-table row."""

    sensor: str
    index: int
    ts: int
    value: float
    is_historical: bool = False


@dataclass(frozen=True, slots=True)
class HostMessage:
    """A message the host wants published (a rebirth request, or its STATE)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class HostRejection:
    """A refused message (``rejection.index`` None) or metric (its position in the payload)."""

    topic: str
    payload: bytes
    rejection: Rejection

    @property
    def reason(self) -> str:
        return self.rejection.reason

    def to_dead_letter(self, received_ms: int) -> dict[str, Any]:
        return self.rejection.to_dead_letter(self.topic, self.payload, received_ms)


@dataclass(slots=True)
class HostOutput:
    """What one :meth:`SparkplugHost.handle` or :meth:`SparkplugHost.tick` decided."""

    readings: list[SparkplugReading] = field(default_factory=list)
    publish: list[HostMessage] = field(default_factory=list)
    rejections: list[HostRejection] = field(default_factory=list)

    @property
    def rebirths(self) -> list[HostMessage]:
        """The rebirth requests (NCMD) among the messages to publish."""
        return [m for m in self.publish if m.topic.split("/")[2:3] == ["NCMD"]]

    def extend(self, other: HostOutput) -> None:
        self.readings.extend(other.readings)
        self.publish.extend(other.publish)
        self.rejections.extend(other.rejections)

    def append_to(self, live: BatchBuilder, historical: BatchBuilder) -> None:
        """Append live readings to ``live`` and backfill to ``historical`` (store only)."""
        for r in self.readings:
            out = historical if r.is_historical else live
            out.sensor.append(r.index)
            out.ts.append(r.ts)
            out.value.append(r.value)
            out.quality.append(0)

    def batches(self) -> tuple[ReadingBatch, ReadingBatch]:
        """``(live, historical)``: detect and store the first; only store the second."""
        live, historical = BatchBuilder(), BatchBuilder()
        self.append_to(live, historical)
        return live.build(), historical.build()


@dataclass(frozen=True, slots=True)
class _MetricDef:
    name: str
    datatype: DataType | None
    device: str | None


@dataclass(slots=True)
class _Held:
    seq: int
    topic: NodeTopic
    topic_text: str
    payload_bytes: bytes
    payload: Payload
    arrived_ms: int


@dataclass(slots=True)
class _Node:
    """What the host knows of one edge node's current session."""

    group: str
    edge_node: str
    born: bool = False
    bd_seq: int | None = None
    expected_seq: int | None = None
    in_order: bool = True  # False after a gap timed out, until the next NBIRTH
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=_RECENT_SEQS))
    held: dict[int, _Held] = field(default_factory=dict)
    aliases: dict[int, _MetricDef] = field(default_factory=dict)
    bad_aliases: set[int] = field(default_factory=set)  # bound twice in this session
    names: dict[tuple[str | None, str], _MetricDef] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    sensors: dict[str | None, set[str]] = field(default_factory=dict)
    last_rebirth_ms: int | None = None
    rebirth_pending: bool = False

    @property
    def ncmd_topic(self) -> str:
        return str(NodeTopic(self.group, MessageType.NCMD, self.edge_node))

    def all_sensors(self) -> set[str]:
        return set().union(*self.sensors.values()) if self.sensors else set()


class SparkplugHost:
    """The host-application state machine; see the module docstring.

    Not thread-safe: feed it from one task or thread (the ingest loop).

    Parameters
    ----------
    host_id : str
        This host's Sparkplug host id (its STATE topic is ``spBv1.0/STATE/<host_id>``).
    sensor_index : mapping
        Sensor id → row in the sensor table; metric names are looked up here.
    reorder_timeout_ms : int
        How long a gap in ``seq`` is waited for before a rebirth is requested.
    rebirth_interval_ms : int
        At most one rebirth request per node per this interval.
    limits : DecodeLimits, optional
        Payload size and timestamp bounds, shared with the JSON decoder.
    nodes : collection of (group, edge node), optional
        The plant's edge nodes (site, gateway); messages of others are refused.
    site_index : mapping, optional
        Site → (sensor id → row): a node's births may name only its group's sensors.
    max_rebirths_per_s : float
        Rebirth requests sent overall, per second (bursts of up to 5 s worth).
    max_nodes : int
        Most edge nodes tracked when ``nodes`` is not given.
    """

    def __init__(
        self,
        host_id: str,
        sensor_index: Mapping[str, int],
        *,
        reorder_timeout_ms: int = 2000,
        rebirth_interval_ms: int = 5000,
        limits: DecodeLimits | None = None,
        nodes: Collection[NodeKey] | None = None,
        site_index: Mapping[str, Mapping[str, int]] | None = None,
        max_rebirths_per_s: float = 10.0,
        max_nodes: int = 10_000,
    ) -> None:
        check_id(host_id, "host id")
        if reorder_timeout_ms < 0 or rebirth_interval_ms < 0:
            raise ValueError(
                f"reorder_timeout_ms={reorder_timeout_ms} and rebirth_interval_ms="
                f"{rebirth_interval_ms} must not be negative"
            )
        self.host_id = host_id
        self.state_topic = state_topic(host_id)
        self.sensor_index = sensor_index
        self.reorder_timeout_ms = reorder_timeout_ms
        self.rebirth_interval_ms = rebirth_interval_ms
        self.limits = limits if limits is not None else DecodeLimits()
        if max_rebirths_per_s <= 0 or max_nodes <= 0:
            raise ValueError(f"max_rebirths_per_s={max_rebirths_per_s} and max_nodes="
                             f"{max_nodes} must be positive")
        self.known_nodes = frozenset(nodes) if nodes is not None else None
        self.site_index = site_index
        self.max_nodes = max_nodes
        self.max_rebirths_per_s = max_rebirths_per_s
        self._rebirth_burst = max(1.0, 5 * max_rebirths_per_s)
        self._rebirth_tokens = self._rebirth_burst
        self._tokens_at_ms: int | None = None
        self.rebirths_deferred = 0
        """Rebirth requests put off by the overall limit (sent later if still wanted)."""
        self._nodes: dict[NodeKey, _Node] = {}
        self._stale: set[str] = set()
        self._birth_ms: int | None = None

    # -- the host's own STATE ------------------------------------------------

    def _state(self, online: bool, timestamp_ms: int) -> HostMessage:
        body = json.dumps({"online": online, "timestamp": int(timestamp_ms)}).encode()
        return HostMessage(self.state_topic, body, qos=1, retain=True)

    def state_death(self, now_ms: int) -> HostMessage:
        """The STATE death ``{"online": false, "timestamp": now_ms}``, QoS 1, retained.

        Register it as the MQTT Will of every CONNECT (with the CONNECT's
        time), and publish it before an intentional disconnect.
        """
        return self._state(False, now_ms)

    def state_birth(self, now_ms: int) -> HostMessage:
        """The STATE birth ``{"online": true, "timestamp": now_ms}``, QoS 1, retained.

        Publish it right after subscribing, with the timestamp of this
        connection's Will (Sparkplug 3.0, host STATE): edge nodes compare STATE
        timestamps, so a birth must never look older than its own Will. The
        host remembers it: a STATE death of ours that is older than this
        birth, when it arrives, is answered by a new birth in ``publish``.
        """
        self._birth_ms = int(now_ms)
        return self._state(True, now_ms)

    # -- queries -------------------------------------------------------------

    def stale_sensors(self) -> frozenset[str]:
        """Sensors whose node or device died (or whose broker was lost) since their birth."""
        return frozenset(self._stale)

    def online_nodes(self) -> list[NodeKey]:
        """``(group, edge node)`` of every node born and not dead, sorted."""
        return sorted(k for k, n in self._nodes.items() if n.born)

    # -- input ---------------------------------------------------------------

    def connection_lost(self, now_ms: int) -> None:
        """The host lost the broker: every known sensor is stale, every node must be born again."""
        for node in self._nodes.values():
            self._stale |= node.all_sensors()
            node.born = False
            node.held.clear()
            node.expected_seq = None

    def handle(self, topic: str, payload: bytes, now_ms: int) -> HostOutput:
        """Take one message that arrived at ``now_ms`` (the host's clock, ms)."""
        out = HostOutput()
        if len(payload) > self.limits.max_payload_bytes:
            self._reject(out, topic, payload, "payload_too_large",
                         f"{len(payload)} bytes is above the limit of "
                         f"{self.limits.max_payload_bytes} bytes")
            return out
        try:
            parsed = parse_topic(topic)
        except TopicError as exc:
            self._reject(out, topic, payload, "bad_topic", str(exc))
            return out
        if isinstance(parsed, StateTopic):
            self._handle_state(parsed, payload, now_ms, out)
            return out
        mt = parsed.message_type
        if mt in (MessageType.NCMD, MessageType.DCMD):
            return out  # commands are for edge nodes (ours included); nothing to read
        node = self._node(parsed, topic, payload, out)
        if node is None:
            return out
        try:
            decoded = decode_payload(payload, topic)
        except PayloadError as exc:
            self._reject(out, topic, payload, "bad_payload", str(exc))
            if mt is not MessageType.NDEATH:
                self._want_rebirth(node, now_ms, out)
            return out
        if len(decoded.metrics) > self.limits.max_metrics:
            self._reject(out, topic, payload, "too_many_metrics",
                         f"{len(decoded.metrics)} metrics is above the limit of "
                         f"{self.limits.max_metrics} per payload")
            return out
        if mt is MessageType.NBIRTH:
            self._flush_held(node, out)
            self._node_birth(node, topic, payload, decoded, now_ms, out)
        elif mt is MessageType.NDEATH:
            self._node_death(node, topic, payload, decoded, out)
        else:
            self._sequenced(node, parsed, topic, payload, decoded, now_ms, out)
        return out

    def tick(self, now_ms: int) -> HostOutput:
        """Let time pass: declare gaps whose reorder timeout ran out; send held-back rebirths."""
        out = HostOutput()
        for node in self._nodes.values():
            if node.held:
                first = min(h.arrived_ms for h in node.held.values())
                if now_ms - first >= self.reorder_timeout_ms:
                    self._gap_timed_out(node, now_ms, out)
            if (node.rebirth_pending and node.last_rebirth_ms is not None
                    and now_ms - node.last_rebirth_ms >= self.rebirth_interval_ms):
                self._send_rebirth(node, now_ms, out)
        return out

    # -- STATE ---------------------------------------------------------------

    def _handle_state(self, parsed: StateTopic, payload: bytes, now_ms: int,
                      out: HostOutput) -> None:
        if parsed.host_id != self.host_id:
            return  # another host application's state: not ours to judge
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self._reject(out, str(parsed), payload, "bad_payload",
                         f"STATE payload is not JSON: {exc}")
            return
        if not isinstance(doc, dict) or doc.get("online") is not False:
            return
        ts = doc.get("timestamp")
        if self._birth_ms is None or (type(ts) is int and ts >= self._birth_ms):
            # Not born yet, or our own intentional death coming back to us.
            return
        # A death older than our birth (the retained Will of an earlier
        # connection) says we are offline while we are not: edge nodes waiting
        # for us must see us online again (Sparkplug 3.0). Same timestamp as
        # our birth, so it never looks newer than the Will still registered.
        out.publish.append(self.state_birth(self._birth_ms))

    # -- births and deaths ---------------------------------------------------

    def _node(self, topic: NodeTopic, topic_text: str, payload: bytes,
              out: HostOutput) -> _Node | None:
        """The node's state, made on its first message; None (and a rejection) for a node
        that is not the plant's, or one past ``max_nodes``."""
        key = topic.node
        node = self._nodes.get(key)
        if node is not None:
            return node
        if self.known_nodes is not None and key not in self.known_nodes:
            self._reject(out, topic_text, payload, "unknown_node",
                         f"edge node {topic.group[:64]}/{topic.edge_node[:64]} is not a "
                         "site/gateway of the plant config (group = site id, edge node = "
                         "gateway id)")
            return None
        if len(self._nodes) >= self.max_nodes:
            self._reject(out, topic_text, payload, "too_many_nodes",
                         f"{len(self._nodes)} edge nodes are tracked already (limit "
                         f"{self.max_nodes}); give the host the plant's nodes")
            return None
        node = self._nodes[key] = _Node(topic.group, topic.edge_node)
        return node

    def _node_birth(self, node: _Node, topic_text: str, payload_bytes: bytes,
                    payload: Payload, now_ms: int, out: HostOutput) -> None:
        bd_seq = bd_seq_of(payload)
        if bd_seq is None:
            self._reject(out, topic_text, payload_bytes, "bad_payload",
                         f"NBIRTH without a valid {BD_SEQ_METRIC!r} metric (Int64 0–255): its "
                         "NDEATH could never be matched; fix the edge node")
            node.born = False
            return
        if payload.seq is None:
            self._reject(out, topic_text, payload_bytes, "bad_payload", "NBIRTH without seq")
            node.born = False
            return
        node.born = True
        node.bd_seq = bd_seq
        node.expected_seq = (payload.seq + 1) % 256
        node.in_order = True
        node.recent.clear()
        node.recent.append(payload.seq)
        node.held.clear()
        node.aliases.clear()
        node.bad_aliases.clear()
        node.names.clear()
        node.devices.clear()
        node.rebirth_pending = False
        node.sensors[None] = set()
        self._define(node, None, topic_text, payload_bytes, payload, out)
        self._stale -= node.sensors[None]
        self._readings(node, None, topic_text, payload_bytes, payload, now_ms, out,
                       payload_is_birth=True)

    def _node_death(self, node: _Node, topic_text: str, payload_bytes: bytes,
                    payload: Payload, out: HostOutput) -> None:
        bd_seq = bd_seq_of(payload)
        if bd_seq is None:
            self._reject(out, topic_text, payload_bytes, "bad_payload",
                         f"NDEATH without a valid {BD_SEQ_METRIC!r} metric")
            return
        if node.bd_seq is None:
            return  # never saw this node born: it has no sensors here to mark
        if bd_seq != node.bd_seq:
            self._reject(out, topic_text, payload_bytes, "stale_ndeath",
                         f"NDEATH bdSeq {bd_seq} does not match the current NBIRTH's bdSeq "
                         f"{node.bd_seq}: a Will from an earlier session, ignored")
            return
        self._flush_held(node, out)
        node.born = False
        node.expected_seq = None
        node.devices.clear()
        node.rebirth_pending = False
        self._stale |= node.all_sensors()

    def _define(self, node: _Node, device: str | None, topic_text: str, payload_bytes: bytes,
                payload: Payload, out: HostOutput) -> None:
        """Record a birth's metric definitions (names, aliases, datatypes) for ``device``."""
        for alias in [a for a, d in node.aliases.items() if d.device == device]:
            del node.aliases[alias]
        for key in [k for k in node.names if k[0] == device]:
            del node.names[key]
        sensors: set[str] = set()
        if len(node.names) + len(payload.metrics) > self.limits.max_metrics:
            self._reject(out, topic_text, payload_bytes, "too_many_metrics",
                         f"this birth would define {len(node.names) + len(payload.metrics)} "
                         f"metrics on edge node {node.group}/{node.edge_node}; the limit is "
                         f"{self.limits.max_metrics}")
            node.sensors[device] = sensors
            return
        own = self._sensors_of(node.group)
        for i, m in enumerate(payload.metrics):
            if m.name is None:
                self._reject(out, topic_text, payload_bytes, "bad_metric",
                             "a birth metric must have a name", i, _metric_repr(m))
                continue
            d = _MetricDef(m.name, m.datatype, device)
            node.names[(device, m.name)] = d
            if m.alias is not None:
                other = node.aliases.get(m.alias)
                if m.alias in node.bad_aliases or (
                        other is not None and (other.name, other.device) != (m.name, device)):
                    # Neither meaning can be trusted: the alias is dropped, so data
                    # using it is refused (and a rebirth asked for), never misfiled.
                    node.aliases.pop(m.alias, None)
                    node.bad_aliases.add(m.alias)
                    self._reject(out, topic_text, payload_bytes, "duplicate_alias",
                                 f"alias {m.alias} of {m.name!r} is already bound to "
                                 f"{other.name if other else 'another metric'!r} in this session; "
                                 "aliases must be unique per edge node", i, _metric_repr(m))
                else:
                    node.aliases[m.alias] = d
            if m.name in own:
                sensors.add(m.name)
            elif m.name in self.sensor_index:
                self._reject(out, topic_text, payload_bytes, "wrong_site",
                             f"sensor {m.name!r} belongs to another site than group "
                             f"{node.group!r}; an edge node publishes only its own site's "
                             "sensors", i, _metric_repr(m))
            elif m.name != BD_SEQ_METRIC and not m.name.startswith(_CONTROL_PREFIXES):
                self._reject(out, topic_text, payload_bytes, "unknown_sensor",
                             f"metric {m.name!r} is not a sensor in the plant config",
                             i, _metric_repr(m))
        node.sensors[device] = sensors

    # -- sequenced messages (NDATA, DDATA, DBIRTH, DDEATH) -------------------

    def _sequenced(self, node: _Node, topic: NodeTopic, topic_text: str, payload_bytes: bytes,
                   payload: Payload, now_ms: int, out: HostOutput) -> None:
        if not node.born or node.expected_seq is None:
            self._reject(out, topic_text, payload_bytes, "data_before_birth",
                         f"{topic.message_type} from edge node {topic.group}/{topic.edge_node} "
                         "before its NBIRTH in this session; rebirth requested")
            self._want_rebirth(node, now_ms, out)
            return
        seq = payload.seq
        if seq is None:
            self._reject(out, topic_text, payload_bytes, "bad_payload",
                         f"{topic.message_type} without seq")
            return
        if not node.in_order:
            self._apply(node, topic, topic_text, payload_bytes, payload, now_ms, out)
            self._want_rebirth(node, now_ms, out)
            return
        if seq == node.expected_seq:
            self._apply(node, topic, topic_text, payload_bytes, payload, now_ms, out)
            self._drain(node, now_ms, out)
        elif seq in node.recent or seq in node.held:
            self._reject(out, topic_text, payload_bytes, "duplicate_seq",
                         f"seq {seq} of {topic.group}/{topic.edge_node} was already received")
        else:
            node.held[seq] = _Held(seq, topic, topic_text, payload_bytes, payload, now_ms)
            if (len(node.held) > _MAX_HELD or sum(len(h.payload_bytes) for h in
                                                   node.held.values()) > _MAX_HELD_BYTES):
                self._gap_timed_out(node, now_ms, out)

    def _drain(self, node: _Node, now_ms: int, out: HostOutput) -> None:
        """Process held messages that are next in sequence now."""
        while node.expected_seq is not None and node.expected_seq in node.held:
            h = node.held.pop(node.expected_seq)
            self._apply(node, h.topic, h.topic_text, h.payload_bytes, h.payload, now_ms, out)

    def _flush_held(self, node: _Node, out: HostOutput) -> None:
        """Process every held message in seq order from where the node is (a gap is given up)."""
        start = node.expected_seq if node.expected_seq is not None else 0
        for seq in sorted(node.held, key=lambda s: (s - start) % 256):
            h = node.held.pop(seq)
            self._apply(node, h.topic, h.topic_text, h.payload_bytes, h.payload,
                        h.arrived_ms, out)

    def _gap_timed_out(self, node: _Node, now_ms: int, out: HostOutput) -> None:
        start = node.expected_seq
        first = min(node.held, key=lambda s: (s - (start or 0)) % 256)
        h = node.held[first]
        missing = (first - (start or 0)) % 256
        self._reject(out, h.topic_text, b"", "seq_gap",
                     f"{missing} message(s) of edge node {node.group}/{node.edge_node} from seq "
                     f"{start} did not arrive within {self.reorder_timeout_ms} ms (seq {first} "
                     "and later did); rebirth requested")
        self._flush_held(node, out)
        node.in_order = False
        self._want_rebirth(node, now_ms, out)

    def _apply(self, node: _Node, topic: NodeTopic, topic_text: str, payload_bytes: bytes,
               payload: Payload, now_ms: int, out: HostOutput) -> None:
        """Act on one sequenced message, in order."""
        if payload.seq is not None:
            node.recent.append(payload.seq)
            node.expected_seq = (payload.seq + 1) % 256
        mt, device = topic.message_type, topic.device
        if mt is MessageType.DBIRTH:
            assert device is not None  # NodeTopic guarantees a device for D* verbs
            if device not in node.sensors and len(node.sensors) > MAX_DEVICES:
                self._reject(out, topic_text, payload_bytes, "too_many_devices",
                             f"edge node {node.group}/{node.edge_node} has {MAX_DEVICES} "
                             "devices born already; a gateway's devices are its areas")
                return
            node.devices.add(device)
            self._define(node, device, topic_text, payload_bytes, payload, out)
            self._stale -= node.sensors[device]
            self._readings(node, device, topic_text, payload_bytes, payload, now_ms, out,
                           payload_is_birth=True)
        elif mt is MessageType.DDEATH:
            assert device is not None
            node.devices.discard(device)
            self._stale |= node.sensors.get(device, set())
        elif mt is MessageType.DDATA and device not in node.devices:
            self._reject(out, topic_text, payload_bytes, "data_before_birth",
                         f"DDATA from device {device} of {node.group}/{node.edge_node} before "
                         "its DBIRTH in this session; rebirth requested")
            self._want_rebirth(node, now_ms, out)
        else:  # NDATA, or DDATA of a born device
            self._readings(node, device, topic_text, payload_bytes, payload, now_ms, out)

    # -- metrics → readings --------------------------------------------------

    def _readings(self, node: _Node, device: str | None, topic_text: str, payload_bytes: bytes,
                  payload: Payload, now_ms: int, out: HostOutput, *,
                  payload_is_birth: bool = False) -> None:
        ts_min = now_ms - self.limits.max_age_ms
        ts_max = now_ms + self.limits.max_future_skew_ms
        unknown_alias = False
        birth = payload_is_birth
        for i, m in enumerate(payload.metrics):
            d = self._resolve(node, device, m, by_name=birth)
            if d is None:
                if birth:
                    continue  # a nameless birth metric, already rejected by _define
                unknown_alias = True
                self._reject(out, topic_text, payload_bytes, "unknown_alias",
                             f"metric alias {m.alias} (name {m.name!r}) was not defined by a "
                             f"birth of {node.group}/{node.edge_node}"
                             + (f"/{device}" if device else "") + "; rebirth requested",
                             i, _metric_repr(m))
                continue
            index = self._sensors_of(node.group).get(d.name)
            if index is None or m.is_null:
                continue  # not a sensor (reported at birth), or explicitly no value
            value = m.value if m.datatype is not None else decode_value(m.value, d.datatype)
            ts = m.timestamp if m.timestamp is not None else payload.timestamp
            reason = _check_value(d.name, value, ts, ts_min, ts_max, now_ms, self.limits)
            if reason is not None:
                self._reject(out, topic_text, payload_bytes, reason[0], reason[1], i,
                             _metric_repr(m))
                continue
            assert ts is not None and isinstance(value, int | float)
            out.readings.append(
                SparkplugReading(d.name, index, ts, float(value), m.is_historical)
            )
        if unknown_alias:
            self._want_rebirth(node, now_ms, out)

    @staticmethod
    def _resolve(node: _Node, device: str | None, m: Metric, by_name: bool) -> _MetricDef | None:
        if by_name or m.alias is None:
            return node.names.get((device, m.name)) if m.name is not None else None
        if m.alias is not None:
            d = node.aliases.get(m.alias)
            # An alias of another device's metric is not this device's: refusing
            # it is what keeps a reading from landing on the wrong sensor.
            return d if d is not None and d.device == device else None
        return None

    # -- rebirth requests and rejections -------------------------------------

    def _sensors_of(self, group: str) -> Mapping[str, int]:
        """The sensors a node of ``group`` (a site) may publish."""
        if self.site_index is None:
            return self.sensor_index
        return self.site_index.get(group, _NO_SENSORS)

    def _want_rebirth(self, node: _Node, now_ms: int, out: HostOutput) -> None:
        if (node.last_rebirth_ms is None
                or now_ms - node.last_rebirth_ms >= self.rebirth_interval_ms):
            self._send_rebirth(node, now_ms, out)
        else:
            node.rebirth_pending = True

    def _take_rebirth_token(self, now_ms: int) -> bool:
        """The overall rebirth limit: a token bucket refilled at ``max_rebirths_per_s``."""
        if self._tokens_at_ms is not None and now_ms > self._tokens_at_ms:
            self._rebirth_tokens = min(
                self._rebirth_burst,
                self._rebirth_tokens + (now_ms - self._tokens_at_ms) / 1000
                * self.max_rebirths_per_s)
        self._tokens_at_ms = now_ms if self._tokens_at_ms is None else max(self._tokens_at_ms,
                                                                           now_ms)
        if self._rebirth_tokens < 1.0:
            return False
        self._rebirth_tokens -= 1.0
        return True

    def _send_rebirth(self, node: _Node, now_ms: int, out: HostOutput) -> None:
        if not self._take_rebirth_token(now_ms):
            # Put off, not forgotten: tick() sends it once the limit allows.
            if not node.rebirth_pending:
                self.rebirths_deferred += 1
            node.rebirth_pending = True
            if node.last_rebirth_ms is None:
                node.last_rebirth_ms = now_ms - self.rebirth_interval_ms
            return
        out.publish.append(HostMessage(node.ncmd_topic, rebirth_command(now_ms), qos=0))
        node.last_rebirth_ms = now_ms
        node.rebirth_pending = False

    @staticmethod
    def _reject(out: HostOutput, topic: str, payload: bytes, reason: str, detail: str,
                index: int | None = None, reading: Any = None) -> None:
        out.rejections.append(HostRejection(topic, payload, Rejection(reason, detail, index,
                                                                      reading)))


def _metric_repr(m: Metric) -> dict[str, Any]:
    """A metric as JSON-safe data for a dead letter."""
    value: Any = m.value
    if isinstance(value, bytes):
        value = value[:64].hex()
    elif isinstance(value, float) and not isfinite(value):
        value = repr(value)
    return {"name": m.name, "alias": m.alias, "timestamp": m.timestamp,
            "datatype": m.datatype.name if m.datatype is not None else None, "value": value,
            "is_historical": m.is_historical, "is_null": m.is_null}


def _check_value(sensor: str, value: MetricValue, ts: int | None, ts_min: int, ts_max: int,
                 now_ms: int, limits: DecodeLimits) -> tuple[str, str] | None:
    """``(reason, detail)`` if the metric cannot be a reading, else None (same codes as JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "bad_value", f"value {value!r} of sensor {sensor} is not a number"
    try:
        finite = isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        return "non_finite_value", f"value {value!r} of sensor {sensor} is not finite"
    if ts is None:
        return "bad_timestamp", (f"sensor {sensor}: neither the metric nor the payload has a "
                                 "timestamp")
    if ts > ts_max:
        return "timestamp_in_future", (
            f"timestamp {ts} of sensor {sensor} is {(ts - now_ms) / 1000:.0f} s ahead of this "
            f"server's clock (allowed {limits.max_future_skew_ms / 1000:.0f} s); check the "
            "edge node's clock" + timestamp_unit_hint(ts, now_ms))
    if ts < ts_min:
        return "timestamp_too_old", (
            f"timestamp {ts} of sensor {sensor} is older than the "
            f"{limits.max_age_ms / 86_400_000:.0f}-day retention"
            + timestamp_unit_hint(ts, now_ms))
    return None
