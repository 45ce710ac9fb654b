"""Fuzz the Sparkplug B host and codec: ``python fuzz/fuzz_sparkplug.py fuzz/corpus/sparkplug``.

The host keeps state per edge node (births, aliases, seq, held messages), so
one input is a session: a sequence of records (``fuzz_support.records``), each
an op byte, a clock advance (×100 ms) and a payload. The op picks the topic
from :data:`TOPICS` (the small plant's edge node, its device, a second node,
an undeclared device, STATE, malformed topics), a raw topic carried in the
payload before its first NUL, or a :meth:`SparkplugHost.tick`. A fresh host
per input keeps runs reproducible.

Checked per record: ``decode_payload`` raises nothing but ``PayloadError``; no
exception escapes ``handle`` or ``tick``; every dead letter serialises with
``orjson.dumps``; every reading is finite, of the sensor its index names, and
within the time window the store keeps; the host publishes only to valid
Sparkplug topics; and the batches the pipeline builds from the output hold the
same promises as the other decoders' (see ``fuzz_support``).
"""

from __future__ import annotations

import contextlib
from math import isfinite

import fuzz_support as fs

from decoders.sparkplug_host import HostOutput, SparkplugHost
from sparkplug import PayloadError, decode_payload, parse_topic

HOST_ID = "plantwatch"
_NODE = "spBv1.0/s1/{}/gw-tf-a"
TOPICS: tuple[str, ...] = (
    _NODE.format("NBIRTH"),
    _NODE.format("NDATA"),
    _NODE.format("NDEATH"),
    _NODE.format("DBIRTH") + "/tf-a",
    _NODE.format("DDATA") + "/tf-a",
    _NODE.format("DDEATH") + "/tf-a",
    _NODE.format("DBIRTH") + "/ghost",  # a device the plant does not have
    _NODE.format("DDATA") + "/ghost",
    "spBv1.0/s1/NBIRTH/gw-2",  # a second edge node (aliases must not cross over)
    "spBv1.0/s1/NDATA/gw-2",
    "spBv1.0/s1/DDATA/gw-2/tf-a",
    f"spBv1.0/STATE/{HOST_ID}",
    "spBv1.0/STATE/other-host",
    _NODE.format("NCMD"),
    "spBv1.0/s1/NDATA",  # malformed: no edge node
    "spBv1.0/s1/XDATA/gw-tf-a",  # malformed: no such verb
)
# Smaller than the service's defaults (10,000 nodes, 10 rebirths/s in bursts of 50) so
# that a fuzz input of a few records can reach the node limit and defer a rebirth.
MAX_NODES = 4
MAX_REBIRTHS_PER_S = 0.5
OP_RAW_TOPIC = len(TOPICS)  # the payload is b"<topic>\0<payload>"
OP_TICK = OP_RAW_TOPIC + 1
_N_OPS = OP_TICK + 1


def _topic_and_payload(op: int, body: bytes) -> tuple[str, bytes]:
    """A fixed topic, or one the fuzzer writes itself (topic parsing is hostile input too)."""
    if op < OP_RAW_TOPIC:
        return TOPICS[op], body
    topic, _, payload = body.partition(b"\0")
    return topic.decode("utf-8", errors="replace"), payload


def _check_output(out: HostOutput, first_ms: int, now_ms: int) -> None:
    """The invariants of one ``handle``/``tick`` answer; held messages were judged on arrival,
    so a reading's time is bounded by the session's first and latest arrivals."""
    for rej in out.rejections:
        fs.check_letter(rej.to_dead_letter(now_ms), rej.reason)
    ts_min, ts_max = fs.ts_bounds(first_ms, now_ms)
    for r in out.readings:
        if fs.SENSOR_INDEX.get(r.sensor) != r.index:
            raise fs.InvariantError(f"reading of {r.sensor!r} filed under row {r.index}")
        if not isfinite(r.value) or not ts_min <= r.ts <= ts_max:
            raise fs.InvariantError(f"reading accepted with a bad value or time: {r!r}")
    for m in out.publish:
        parse_topic(m.topic)
    if out.readings:  # the columns the pipeline builds from them (int64 ts, float64 value)
        for batch in out.batches():
            fs.check_batch(batch, ts_min, ts_max)


def test_one(data: bytes) -> None:
    """One host session: the records of ``data`` in order, on a clock that only moves on."""
    host = SparkplugHost(HOST_ID, fs.SENSOR_INDEX, limits=fs.LIMITS, max_nodes=MAX_NODES,
                         max_rebirths_per_s=MAX_REBIRTHS_PER_S)
    host.state_birth(fs.NOW_MS)
    now_ms = fs.NOW_MS
    for op, advance, body in fs.records(data):
        now_ms += advance * 100
        op %= _N_OPS
        if op == OP_TICK:
            _check_output(host.tick(now_ms), fs.NOW_MS, now_ms)
            continue
        topic, payload = _topic_and_payload(op, body)
        with contextlib.suppress(PayloadError):
            decode_payload(payload, topic)
        _check_output(host.handle(topic, payload, now_ms), fs.NOW_MS, now_ms)


if __name__ == "__main__":
    fs.fuzz(test_one)
