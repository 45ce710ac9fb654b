"""Decode plantwatch's JSON gateway payload straight into a :class:`ReadingBatch`.

The payload (topic ``plant/<site>/<gateway>``, QoS 1) carries many readings,
because a gateway batches::

    {"gateway": "gw-tank-a", "ts": 1764337200000,
     "readings": [{"sensor": "TF-A-LEL-01", "value": 3.1},
                  {"sensor": "TF-A-H2S-01", "value": 0.4, "ts": 1764337200500, "quality": 1}]}

``ts`` is event time in integer milliseconds since the epoch (UTC); a
reading's own ``ts`` overrides the message's. ``quality`` is optional
(0 good, 1 uncertain, 2 bad, 3 stale; default 0). ``gateway`` is optional and
informational.

Validation happens here, once: a reading is rejected (with a stable reason
code) when its sensor is unknown, its value is not a finite number, its
timestamp is missing, too far in the future or older than the store keeps, or
its quality is out of range. A rejected reading never takes the rest of the
message with it. A message is rejected whole only when it cannot be read at
all (too large, not JSON, not the envelope above).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

import orjson

from model.batch import BatchBuilder, ReadingBatch

__all__ = [
    "DecodeLimits",
    "DecodeResult",
    "Rejection",
    "decode_gateway_json",
    "decode_gateway_json_into",
    "timestamp_scale",
    "timestamp_unit_hint",
]

_DAY_MS = 86_400_000
_UNITS = {1e3: "seconds", 1e-3: "microseconds", 1e-6: "nanoseconds"}
_SCALES = (1e3, 1e6, 1e9, 1e-3, 1e-6)


def timestamp_scale(ts: int, now_ms: int) -> float | None:
    """The power of 1000 that brings ``ts`` to within a day of ``now_ms``, if one does."""
    for scale in _SCALES:
        if abs(ts * scale - now_ms) < _DAY_MS:
            return scale
    return None


def timestamp_unit_hint(ts: int, now_ms: int) -> str:
    """A hint when a rejected timestamp is in the wrong unit, else ``""``.

    The first thing a new gateway gets wrong: seconds (or micro-, nanoseconds)
    where plantwatch wants milliseconds since the epoch. Such a timestamp is
    refused as decades old or far in the future; this names the likely unit.
    """
    unit = _UNITS.get(timestamp_scale(ts, now_ms) or 0.0)
    if unit is None:
        return ""
    return f"; it looks like {unit} since the epoch: send milliseconds (now is {now_ms})"


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a message may be: every dimension of input is bounded (docs/ingest.md, "Input limits").

    Times in ms. A message past a limit is dead-lettered whole, with the limit
    named in the detail; a reading past one is dead-lettered alone.
    """

    max_payload_bytes: int = 1_048_576
    max_readings: int = 100_000
    max_future_skew_ms: int = 300_000
    max_age_ms: int = 30 * 86_400_000
    max_depth: int = 16
    """Deepest nesting of lists and objects in a JSON message (the envelope is 3)."""
    max_id_chars: int = 128
    """Longest sensor id or gateway name read from a message."""
    max_topic_chars: int = 256
    """Longest topic taken; longer ones are dead-lettered as ``bad_topic``."""
    max_topic_levels: int = 8
    """Most ``/``-separated levels of a topic."""
    max_metrics: int = 10_000
    """Most metrics in one Sparkplug B payload."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message (``index`` None) or one reading (``index`` = its position) was refused."""

    reason: str
    detail: str
    index: int | None = None
    reading: Any = None

    def to_dead_letter(self, topic: str, payload: bytes, received_ms: int) -> dict[str, Any]:
        letter: dict[str, Any] = {
            "topic": topic,
            "reason": self.reason,
            "detail": self.detail,
            "received_ms": received_ms,
        }
        if self.index is None:
            letter["payload_bytes"] = len(payload)
            letter["payload_head"] = payload[:1024].decode("utf-8", errors="replace")
        else:
            letter["index"] = self.index
            letter["reading"] = self.reading
        return letter


@dataclass(slots=True)
class DecodeResult:
    batch: ReadingBatch
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def message_rejected(self) -> bool:
        return any(r.index is None for r in self.rejections)


def _int64_or_float(text: str) -> int | float:
    if len(text) <= 20:
        n = int(text)
        if -(2**63) <= n < 2**64:
            return n
    return float(text)


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        # Gateways written in Python or JS often emit NaN/Infinity, which strict
        # JSON (and orjson) refuse. The stdlib parser accepts them, so such a
        # message keeps its good readings and only the non-finite ones are
        # rejected below. Anything the stdlib also refuses is malformed. Its
        # integers are unbounded where orjson's stop at 64 bits: beyond that
        # they are read as floats, as orjson would, so no later arithmetic on
        # a timestamp can overflow.
        return json.loads(payload, parse_int=_int64_or_float)


def decode_gateway_json(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits = DecodeLimits(),
    *,
    plant_index: Mapping[str, int] | None = None,
) -> DecodeResult:
    """Decode and validate one gateway message into a batch of its own.

    Parameters
    ----------
    payload : bytes
        The MQTT message body.
    sensor_index : dict
        Sensor id → row in the sensor table, for the sensors this message may
        carry (those of the topic's site).
    now_ms : int
        Wall-clock time of arrival, ms; only used to bound timestamps.
    plant_index : mapping, optional
        Every sensor of the plant: a sensor found here but not in
        ``sensor_index`` belongs to another site and is rejected ``wrong_site``.
    """
    out = BatchBuilder()
    rejections = decode_gateway_json_into(payload, sensor_index, now_ms, limits, out,
                                          plant_index=plant_index)
    return DecodeResult(out.build(), rejections)


def id_text(value: object, limits: DecodeLimits) -> str:
    """A sensor id or name from input, as short text fit for an error message."""
    if type(value) is str and len(value) > limits.max_id_chars:
        return f"{value[:limits.max_id_chars]!r}… ({len(value)} characters)"
    return repr(value)


def short(value: object) -> str:
    """Input shown in an error message: never long, never deep (its repr could recurse)."""
    if type(value) is dict or type(value) is list:
        kind = "JSON object" if type(value) is dict else "list"
        return f"a {kind} of {len(value)} items"
    text = repr(value) if type(value) in (str, int, float, bool, type(None)) else type(
        value).__name__
    return text if len(text) <= 80 else f"{text[:80]}… ({len(text)} characters)"


def wrong_site_or_unknown(
    sid: object, plant_index: Mapping[str, int] | None, limits: DecodeLimits
) -> tuple[str, str]:
    """The reason and detail for a sensor id not accepted on this topic."""
    if type(sid) is str and len(sid) > limits.max_id_chars:
        return "unknown_sensor", (f"sensor id {id_text(sid, limits)} is longer than the limit "
                                  f"of {limits.max_id_chars} characters")
    if plant_index is not None and type(sid) is str and sid in plant_index:
        return "wrong_site", (f"sensor {sid!r} belongs to another site than the topic's; a "
                              "gateway publishes only its own site's sensors (check the topic "
                              "plant/<site>/<gateway> and the plant config)")
    return "unknown_sensor", f"sensor {id_text(sid, limits)} is not in the plant config"


def _too_deep(doc: Any, max_depth: int) -> bool:
    """Whether ``doc`` nests lists/objects deeper than ``max_depth`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        children = node.values() if type(node) is dict else node
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return False


def decode_gateway_json_into(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits,
    out: BatchBuilder,
    *,
    plant_index: Mapping[str, int] | None = None,
) -> list[Rejection]:
    """Decode one message, appending its valid readings to ``out``; return the rejections.

    A message rejected whole appends nothing. See :func:`decode_gateway_json`.
    """
    if len(payload) > limits.max_payload_bytes:
        return [Rejection(
            "payload_too_large",
            f"{len(payload)} bytes is above the limit of {limits.max_payload_bytes} bytes; "
            "split the gateway's message",
        )]
    try:
        doc = _loads(payload)
    except (ValueError, RecursionError) as exc:
        return [Rejection("malformed_json", f"not valid JSON: {exc}")]
    if not isinstance(doc, dict):
        return [Rejection(
            "bad_envelope", f"expected a JSON object with 'readings', got {type(doc).__name__}"
        )]
    readings = doc.get("readings")
    if not isinstance(readings, list):
        return [Rejection("bad_envelope", "'readings' must be a list of reading objects")]
    if len(readings) > limits.max_readings:
        return [Rejection(
            "too_many_readings",
            f"{len(readings)} readings is above the limit of {limits.max_readings} per message",
        )]
    # A message of scalar readings has exactly one container per reading plus
    # the envelope's two; only a message with more brackets than that (extra
    # containers, or brackets inside strings) is walked to measure its depth.
    # Too deep outside the readings refuses the message; a reading too deep is
    # refused alone, so its siblings are kept.
    deep: set[int] = set()
    if (payload.count(b"{") + payload.count(b"[") > len(readings) + 2
            and _too_deep(doc, limits.max_depth)):
        if any(_too_deep(v, limits.max_depth - 1) for k, v in doc.items()
               if k != "readings" and (type(v) is dict or type(v) is list)):
            return [Rejection(
                "too_deep", f"lists or objects nested deeper than {limits.max_depth} levels",
            )]
        deep = {i for i, r in enumerate(readings)
                if (type(r) is dict or type(r) is list) and _too_deep(r, limits.max_depth - 2)}
    gateway = doc.get("gateway")
    if gateway is not None and (type(gateway) is not str or len(gateway) > limits.max_id_chars):
        return [Rejection(
            "bad_envelope", f"'gateway' must be a name of at most {limits.max_id_chars} "
            f"characters, got {short(gateway)}",
        )]
    msg_ts = doc.get("ts")
    if msg_ts is not None and type(msg_ts) is not int:
        return [Rejection("bad_timestamp", f"message 'ts' must be integer ms, got {short(msg_ts)}")]

    rejections: list[Rejection] = []
    ts_min = now_ms - limits.max_age_ms
    ts_max = now_ms + limits.max_future_skew_ms
    lookup = sensor_index.get
    add_sensor, add_ts = out.sensor.append, out.ts.append
    add_value, add_quality = out.value.append, out.quality.append
    # The one per-reading Python loop of ingest: JSON objects have to be
    # visited to be read, so the checks are scalar comparisons made on the way
    # (cheaper than building arrays per message); the rest is vectorized.
    for i, r in enumerate(readings):
        if deep and i in deep:
            rejections.append(Rejection(
                "too_deep", f"the reading nests lists or objects deeper than the message limit "
                f"of {limits.max_depth} levels; a reading's fields are numbers and strings", i, r))
            continue
        if type(r) is not dict:
            rejections.append(Rejection("bad_reading", "a reading must be a JSON object", i, r))
            continue
        sid = r.get("sensor")
        s = lookup(sid) if type(sid) is str else None
        if s is None:
            reason, detail = wrong_site_or_unknown(sid, plant_index, limits)
            rejections.append(Rejection(reason, detail, i, r))
            continue
        v: Any = r.get("value")
        tv = type(v)
        if tv is not float and tv is not int:
            rejections.append(
                Rejection("bad_value", f"value {short(v)} of sensor {sid} is not a number", i, r)
            )
            continue
        t = r.get("ts", msg_ts)
        if type(t) is not int:
            rejections.append(Rejection(
                "bad_timestamp",
                f"timestamp {short(t)} of sensor {sid} must be integer ms since the epoch", i, r,
            ))
            continue
        q = r.get("quality", 0)
        if type(q) is not int or not 0 <= q <= 3:
            rejections.append(
                Rejection("bad_quality", f"quality {short(q)} of sensor {sid} must be 0–3", i, r)
            )
            continue
        try:
            finite = isfinite(v)
        except OverflowError:  # an integer beyond float range
            finite = False
        if not finite:
            # The reading goes into the dead letter as text: NaN/inf are not JSON.
            rejections.append(Rejection(
                "non_finite_value", f"value {short(v)} of sensor {sid} is not finite", i,
                {"sensor": sid, "value": short(v), "ts": t},
            ))
            continue
        if t > ts_max:
            rejections.append(Rejection(
                "timestamp_in_future",
                f"timestamp {t} of sensor {sid} is {(t - now_ms) / 1000:.0f} s ahead of this "
                f"server's clock (allowed {limits.max_future_skew_ms / 1000:.0f} s); "
                "check the gateway clock" + timestamp_unit_hint(t, now_ms), i, r,
            ))
            continue
        if t < ts_min:
            rejections.append(Rejection(
                "timestamp_too_old",
                f"timestamp {t} of sensor {sid} is older than the "
                f"{limits.max_age_ms / 86_400_000:.0f}-day retention"
                + timestamp_unit_hint(t, now_ms), i, r,
            ))
            continue
        add_sensor(s)
        add_ts(t)
        add_value(v)
        add_quality(q)
    return rejections
