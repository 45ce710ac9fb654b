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
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

import orjson

from detectors.batch import BatchBuilder, ReadingBatch

__all__ = [
    "DecodeLimits",
    "DecodeResult",
    "Rejection",
    "decode_gateway_json",
    "decode_gateway_json_into",
]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a message may be. Times in ms."""

    max_payload_bytes: int = 1_048_576
    max_readings: int = 100_000
    max_future_skew_ms: int = 300_000
    max_age_ms: int = 30 * 86_400_000


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


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        # Gateways written in Python or JS often emit NaN/Infinity, which strict
        # JSON (and orjson) refuse. The stdlib parser accepts them, so such a
        # message keeps its good readings and only the non-finite ones are
        # rejected below. Anything the stdlib also refuses is malformed.
        return json.loads(payload)


def decode_gateway_json(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits = DecodeLimits(),
) -> DecodeResult:
    """Decode and validate one gateway message into a batch of its own.

    Parameters
    ----------
    payload : bytes
        The MQTT message body.
    sensor_index : dict
        Sensor id → row in the sensor table.
    now_ms : int
        Wall-clock time of arrival, ms; only used to bound timestamps.
    """
    out = BatchBuilder()
    rejections = decode_gateway_json_into(payload, sensor_index, now_ms, limits, out)
    return DecodeResult(out.build(), rejections)


def decode_gateway_json_into(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits,
    out: BatchBuilder,
) -> list[Rejection]:
    """Decode one message, appending its valid readings to ``out``; return the rejections.

    A message rejected whole appends nothing.
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
    msg_ts = doc.get("ts")
    if msg_ts is not None and type(msg_ts) is not int:
        return [Rejection("bad_timestamp", f"message 'ts' must be integer ms, got {msg_ts!r}")]

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
        if type(r) is not dict:
            rejections.append(Rejection("bad_reading", "a reading must be a JSON object", i, r))
            continue
        sid = r.get("sensor")
        s = lookup(sid) if type(sid) is str else None
        if s is None:
            rejections.append(
                Rejection("unknown_sensor", f"sensor {sid!r} is not in the plant config", i, r)
            )
            continue
        v: Any = r.get("value")
        tv = type(v)
        if tv is not float and tv is not int:
            rejections.append(
                Rejection("bad_value", f"value {v!r} of sensor {sid} is not a number", i, r)
            )
            continue
        t = r.get("ts", msg_ts)
        if type(t) is not int:
            rejections.append(Rejection(
                "bad_timestamp",
                f"timestamp {t!r} of sensor {sid} must be integer ms since the epoch", i, r,
            ))
            continue
        q = r.get("quality", 0)
        if type(q) is not int or not 0 <= q <= 3:
            rejections.append(
                Rejection("bad_quality", f"quality {q!r} of sensor {sid} must be 0–3", i, r)
            )
            continue
        try:
            finite = isfinite(v)
        except OverflowError:  # an integer beyond float range
            finite = False
        if not finite:
            # The reading goes into the dead letter as text: NaN/inf are not JSON.
            rejections.append(Rejection(
                "non_finite_value", f"value {v!r} of sensor {sid} is not finite", i,
                {"sensor": sid, "value": repr(v), "ts": t},
            ))
            continue
        if t > ts_max:
            rejections.append(Rejection(
                "timestamp_in_future",
                f"timestamp {t} of sensor {sid} is {(t - now_ms) / 1000:.0f} s ahead of this "
                f"server's clock (allowed {limits.max_future_skew_ms / 1000:.0f} s); "
                "check the gateway clock", i, r,
            ))
            continue
        if t < ts_min:
            rejections.append(Rejection(
                "timestamp_too_old",
                f"timestamp {t} of sensor {sid} is older than the "
                f"{limits.max_age_ms / 86_400_000:.0f}-day retention", i, r,
            ))
            continue
        add_sensor(s)
        add_ts(t)
        add_value(v)
        add_quality(q)
    return rejections
