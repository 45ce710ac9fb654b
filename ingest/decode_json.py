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
from typing import Any

import numpy as np
import orjson

from detectors.batch import ReadingBatch

__all__ = ["DecodeLimits", "DecodeResult", "Rejection", "decode_gateway_json"]


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


def _reject_message(reason: str, detail: str) -> DecodeResult:
    return DecodeResult(ReadingBatch.empty(), [Rejection(reason, detail)])


def decode_gateway_json(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits = DecodeLimits(),  # noqa: B008 - frozen, immutable default
) -> DecodeResult:
    """Decode and validate one gateway message.

    Parameters
    ----------
    payload : bytes
        The MQTT message body.
    sensor_index : dict
        Sensor id → row in the sensor table.
    now_ms : int
        Wall-clock time of arrival, ms; only used to bound timestamps.
    """
    if len(payload) > limits.max_payload_bytes:
        return _reject_message(
            "payload_too_large",
            f"{len(payload)} bytes is above the limit of {limits.max_payload_bytes} bytes; "
            "split the gateway's message",
        )
    try:
        doc = _loads(payload)
    except (ValueError, RecursionError) as exc:
        return _reject_message("malformed_json", f"not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return _reject_message(
            "bad_envelope", f"expected a JSON object with 'readings', got {type(doc).__name__}"
        )
    readings = doc.get("readings")
    if not isinstance(readings, list):
        return _reject_message("bad_envelope", "'readings' must be a list of reading objects")
    if len(readings) > limits.max_readings:
        return _reject_message(
            "too_many_readings",
            f"{len(readings)} readings is above the limit of {limits.max_readings} per message",
        )
    msg_ts = doc.get("ts")
    if msg_ts is not None and type(msg_ts) is not int:
        return _reject_message("bad_timestamp", f"message 'ts' must be integer ms, got {msg_ts!r}")

    rejections: list[Rejection] = []
    rows: list[int] = []
    sensors: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    qualities: list[int] = []
    lookup = sensor_index.get
    # The one per-reading Python loop of ingest: JSON objects have to be
    # visited to be read. Everything after it is vectorized.
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
        v = r.get("value")
        tv = type(v)
        if tv is not float and tv is not int:
            rejections.append(
                Rejection("bad_value", f"value {v!r} of sensor {sid} is not a number", i, r)
            )
            continue
        t = r.get("ts", msg_ts)
        if type(t) is not int:
            rejections.append(
                Rejection(
                    "bad_timestamp",
                    f"timestamp {t!r} of sensor {sid} must be integer ms since the epoch",
                    i,
                    r,
                )
            )
            continue
        q = r.get("quality", 0)
        if type(q) is not int or not 0 <= q <= 3:
            rejections.append(
                Rejection("bad_quality", f"quality {q!r} of sensor {sid} must be 0–3", i, r)
            )
            continue
        rows.append(i)
        sensors.append(s)
        stamps.append(t)
        values.append(v)
        qualities.append(q)

    try:
        ts_arr = np.array(stamps, dtype=np.int64)
    except OverflowError:
        ts_arr = np.array([min(max(t, -(2**63)), 2**63 - 1) for t in stamps], dtype=np.int64)
    value_arr = np.array(values, dtype=np.float64)
    bad_value = ~np.isfinite(value_arr)
    future = ts_arr > now_ms + limits.max_future_skew_ms
    old = ts_arr < now_ms - limits.max_age_ms
    bad = bad_value | future | old
    if bad.any():
        for j in np.flatnonzero(bad).tolist():
            i = rows[j]
            sid = readings[i]["sensor"]
            if bad_value[j]:
                rej = Rejection(
                    "non_finite_value", f"value {values[j]!r} of sensor {sid} is not finite", i
                )
            elif future[j]:
                rej = Rejection(
                    "timestamp_in_future",
                    f"timestamp {stamps[j]} of sensor {sid} is "
                    f"{(stamps[j] - now_ms) / 1000:.0f} s ahead of this server's clock "
                    f"(allowed {limits.max_future_skew_ms / 1000:.0f} s); check the gateway clock",
                    i,
                )
            else:
                rej = Rejection(
                    "timestamp_too_old",
                    f"timestamp {stamps[j]} of sensor {sid} is older than the "
                    f"{limits.max_age_ms / 86_400_000:.0f}-day retention",
                    i,
                )
            # The reading goes into the dead letter as text: NaN/inf are not JSON.
            rejections.append(
                Rejection(rej.reason, rej.detail, i, {"sensor": sid, "value": repr(values[j]),
                                                     "ts": stamps[j]})
            )
        keep = ~bad
        batch = ReadingBatch(
            np.array(sensors, np.int32)[keep],
            ts_arr[keep],
            value_arr[keep],
            np.array(qualities, np.uint8)[keep],
        )
    else:
        batch = ReadingBatch(
            np.array(sensors, np.int32), ts_arr, value_arr, np.array(qualities, np.uint8)
        )
    rejections.sort(key=lambda r: -1 if r.index is None else r.index)
    return DecodeResult(batch, rejections)
