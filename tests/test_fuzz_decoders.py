"""Fuzzing the decoders: any bytes in, no exception out, and every answer exact.

The JSON, line protocol and Sparkplug B decoders are fed by MQTT, so any
publisher can send them anything. What the service relies on, checked here on
structure-aware inputs (``tests/fuzz_strategies.py``) and plain garbage:

* no exception escapes a decoder, whatever the bytes;
* every rejection has a reason, and its dead letter serialises with plain
  ``orjson.dumps`` to at most 64 KiB (a 2 KB message of 1,000 nested ``[``
  once made the letter unwritable and crashed the ingest loop);
* in a message mixing valid and invalid readings, exactly the valid ones are
  accepted (sensor, time, value, quality, in order) and each invalid one is
  rejected once, at its position;
* what is accepted is a finite value of a known sensor at a time the store keeps;
* a Sparkplug edge node that is not one of the plant's is never asked to rebirth
  (every rebirth request is an invitation to publish more).
"""

from __future__ import annotations

from collections.abc import Iterable
from math import isfinite

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoders.json_gateway import DecodeResult, Rejection, decode_gateway_json
from decoders.lp_gateway import PRECISIONS, decode_line_protocol
from decoders.sparkplug_host import HostOutput, SparkplugHost
from model.batch import ReadingBatch
from simulators.sparkplug_edge import EdgeNodeMessages
from sparkplug import MessageType, parse_topic
from tests.fuzz_strategies import (
    AREA,
    GATEWAY,
    INDEX,
    LIMITS,
    MAX_LETTER_BYTES,
    NOW_MS,
    PLANT_NODES,
    REGRESSION_DEPTHS,
    SENSORS,
    SITE,
    Blob,
    Message,
    SparkplugMixed,
    SpStep,
    at_service_recursion_limit,
    deep_json_payload,
    fuzz_settings,
    json_messages,
    junk_json_messages,
    junk_lp_messages,
    letter_bytes,
    lp_messages,
    mutated,
    plant_host,
    sparkplug_mixed,
    sparkplug_sessions,
    sparkplug_topics,
    unknown_nodes,
    wire_payloads,
)

JSON_TOPIC = f"plant/{SITE}/{GATEWAY}"
LP_TOPIC = f"plant/{SITE}/lp"
TS_MIN = NOW_MS - LIMITS.max_age_ms


def decode_json(payload: bytes) -> DecodeResult:
    """The JSON decoder as the service calls it: the small plant, default limits."""
    return decode_gateway_json(payload, INDEX, NOW_MS, LIMITS)


def decode_lp(payload: bytes, precision: str = "auto") -> DecodeResult:
    """The line protocol decoder as the service calls it (``precision`` is a setting)."""
    return decode_line_protocol(payload, INDEX, NOW_MS, LIMITS, precision=precision)


def rows(batch: ReadingBatch) -> list[tuple[int, int, float, int]]:
    """A batch as (sensor row, ts, value, quality) tuples, to compare with :class:`Reading`."""
    return list(zip(batch.sensor.tolist(), batch.ts.tolist(), batch.value.tolist(),
                    batch.quality.tolist(), strict=True))


def check_letter(letter: dict[str, object], reason: str) -> None:
    """A dead letter, as the service writes it, keeps its reason (it is not replaced by the
    writer's ``internal_error`` fallback) and has a size a person can read."""
    body = letter_bytes(letter)
    written = orjson.loads(body)
    assert written.get("reason") == reason, (
        f"the dead letter of a {reason!r} rejection was written as {body[:300]!r}")
    assert len(body) <= MAX_LETTER_BYTES, (
        f"the dead letter of a {reason!r} rejection is {len(body)} bytes "
        f"(limit {MAX_LETTER_BYTES}): {body[:300]!r}…")


def check_rejections(rejections: Iterable[Rejection], topic: str, payload: bytes) -> None:
    """Every rejection names its reason and becomes a writable, bounded dead letter."""
    for rej in rejections:
        assert isinstance(rej.reason, str) and rej.reason, f"no reason: {rej!r:.300}"
        assert isinstance(rej.detail, str), f"rejection without a detail: {rej!r:.300}"
        check_letter(rej.to_dead_letter(topic, payload, NOW_MS), rej.reason)


def check_batch(batch: ReadingBatch, ts_max: int = NOW_MS + LIMITS.max_future_skew_ms) -> None:
    """Accepted readings: known sensor rows, finite values, kept times, quality 0–3."""
    assert np.isin(batch.sensor, list(INDEX.values())).all(), batch.sensor.tolist()[:20]
    assert np.isfinite(batch.value).all(), batch.value.tolist()[:20]
    if len(batch):
        assert int(batch.ts.min()) >= TS_MIN and int(batch.ts.max()) <= ts_max
        assert int(batch.quality.max()) <= 3


def check_result(result: DecodeResult, topic: str, payload: bytes) -> None:
    """What holds for any input: writable rejections, sane readings, all or nothing."""
    check_rejections(result.rejections, topic, payload)
    check_batch(result.batch)
    if result.message_rejected:
        assert len(result.batch) == 0, "a message rejected whole kept readings"


def check_mixed(result: DecodeResult, msg: Message) -> None:
    """Exactly the valid readings, in order; each invalid one rejected once, where it is."""
    assert rows(result.batch) == [r.row for r in msg.valid]
    assert not result.message_rejected, [r.reason for r in result.rejections if r.index is None]
    assert [r.index for r in result.rejections] == list(msg.rejected_at), [
        (r.index, r.reason) for r in result.rejections]
    check_rejections(result.rejections, msg.topic, msg.payload)


# -- JSON ---------------------------------------------------------------------

ANY_JSON_PAYLOAD = st.one_of(
    st.binary(max_size=300),
    json_messages().map(lambda m: m.payload),
    junk_json_messages().map(lambda m: m.payload),
    mutated(json_messages(huge=False).map(lambda m: m.payload)),
).map(Blob)


@fuzz_settings(300)
@given(ANY_JSON_PAYLOAD)
@at_service_recursion_limit
def test_json_decoder_takes_any_bytes(payload: Blob) -> None:
    """Garbage, near-misses and valid messages alike: an answer, never an exception."""
    check_result(decode_json(payload.data), JSON_TOPIC, payload.data)


@fuzz_settings(200)
@given(json_messages())
@at_service_recursion_limit
def test_json_mixed_message_keeps_exactly_the_valid_readings(msg: Message) -> None:
    """Unknown sensors, non-numbers, nested values, bad times and qualities, non-objects and
    oversized fields around valid readings: the valid ones all kept, the others rejected."""
    check_mixed(decode_json(msg.payload), msg)


@pytest.mark.parametrize("where", ["reading", "value"])
@pytest.mark.parametrize("depth", REGRESSION_DEPTHS)
def test_deep_nesting_is_one_rejection_with_a_writable_letter(depth: int, where: str) -> None:
    """The payloads that crashed the service: ``[`` × depth as a reading (it crashed at
    1,000) or as a reading's value. One rejection, a dead letter that can be written."""
    payload = deep_json_payload(depth, where)
    result = decode_json(payload)
    assert len(result.rejections) == 1 and len(result.batch) == 0
    check_rejections(result.rejections, JSON_TOPIC, payload)


@fuzz_settings(100)
@given(depth=st.integers(1, 20_000), where=st.sampled_from(["reading", "value"]))
@at_service_recursion_limit
def test_any_nesting_depth_is_one_rejection_with_a_writable_letter(depth: int,
                                                                   where: str) -> None:
    """The same at every depth: hypothesis finds the shallowest one that still breaks."""
    payload = deep_json_payload(depth, where)
    result = decode_json(payload)
    assert len(result.rejections) == 1 and len(result.batch) == 0
    check_rejections(result.rejections, JSON_TOPIC, payload)


# -- line protocol ------------------------------------------------------------

ANY_LP_PAYLOAD = st.one_of(
    st.binary(max_size=300),
    lp_messages().map(lambda m: m.payload),
    junk_lp_messages().map(lambda m: m.payload),
    mutated(lp_messages().map(lambda m: m.payload)),
    st.lists(st.sampled_from(list('m,sensor=LEL-1 value=1i 2.5e3 quality "\\#\t\r\n=-u')),
             max_size=80).map(lambda cs: "".join(cs).encode()),
).map(Blob)


@fuzz_settings(300)
@given(payload=ANY_LP_PAYLOAD, precision=st.sampled_from(PRECISIONS))
@at_service_recursion_limit
def test_lp_decoder_takes_any_bytes(payload: Blob, precision: str) -> None:
    """In every timestamp precision: an answer, never an exception."""
    result = decode_lp(payload.data, precision)
    check_rejections(result.rejections, LP_TOPIC, payload.data)
    # A line without a timestamp is read at arrival; other precisions may put a
    # valid ms timestamp out of the window: only the bounds the decoder enforces.
    check_batch(result.batch)


@fuzz_settings(200)
@given(lp_messages())
@at_service_recursion_limit
def test_lp_mixed_message_keeps_exactly_the_valid_lines(msg: Message) -> None:
    """Lines from our writer and Telegraf-style lines (escapes, integer values, extra tags
    and fields, odd whitespace) among bad lines, comments and blank lines."""
    check_mixed(decode_lp(msg.payload), msg)


# -- Sparkplug B --------------------------------------------------------------


def check_host_output(out: HostOutput, now_ms: int) -> None:
    """Rejections named and writable; readings of known sensors, finite, in the window;
    the host publishes only to Sparkplug topics."""
    for rej in out.rejections:
        assert isinstance(rej.reason, str) and rej.reason, f"no reason: {rej.rejection!r:.300}"
        check_letter(rej.to_dead_letter(now_ms), rej.reason)
    for r in out.readings:
        assert INDEX.get(r.sensor) == r.index, r
        assert isfinite(r.value), r
        assert TS_MIN <= r.ts <= now_ms + LIMITS.max_future_skew_ms, r
    for m in out.publish:
        parse_topic(m.topic)


def run_session(host: SparkplugHost, steps: list[SpStep]) -> list[HostOutput]:
    """Feed a session to the host on a clock that only moves on; check every output."""
    now, outputs = NOW_MS, []
    for step in steps:
        now += step.advance_ms
        out = host.tick(now) if step.topic is None else host.handle(step.topic, step.payload,
                                                                     now)
        check_host_output(out, now)
        outputs.append(out)
    return outputs


@fuzz_settings(300)
@given(topic=sparkplug_topics(), payload=wire_payloads().map(Blob))
@at_service_recursion_limit
def test_sparkplug_host_takes_any_message(topic: str, payload: Blob) -> None:
    """Any topic under spBv1.0/, any protobuf (odd fields, cut short, garbage)."""
    host = plant_host()
    check_host_output(host.handle(topic, payload.data, NOW_MS), NOW_MS)
    check_host_output(host.tick(NOW_MS + 60_000), NOW_MS + 60_000)


@fuzz_settings(150)
@given(sparkplug_sessions())
@at_service_recursion_limit
def test_sparkplug_host_takes_any_session(steps: list[SpStep]) -> None:
    """The plant's edge node with births, data, deaths, lost, repeated and swapped messages,
    among junk on any topic: the host's state machine never raises."""
    run_session(plant_host(reorder_timeout_ms=1000, rebirth_interval_ms=2000), steps)


@fuzz_settings(200)
@given(sparkplug_mixed())
@at_service_recursion_limit
def test_sparkplug_mixed_data_keeps_exactly_the_valid_metrics(mixed: SparkplugMixed) -> None:
    """One DDATA of a born node: every valid metric a reading, every invalid one rejected
    once, at its position; nulls are neither."""
    host = plant_host()
    for topic, payload in mixed.births:
        born = host.handle(topic, payload, NOW_MS)
        assert not born.rejections, [r.reason for r in born.rejections]
    out = host.handle(mixed.topic, mixed.payload, NOW_MS)
    got = [(INDEX[r.sensor], r.ts, r.value, 0) for r in out.readings]
    assert got == [r.row for r in mixed.valid]
    assert [r.rejection.index for r in out.rejections] == list(mixed.rejected_at), [
        (r.rejection.index, r.reason) for r in out.rejections]
    check_host_output(out, NOW_MS)


@fuzz_settings(60)
@given(node=unknown_nodes(), verb=st.sampled_from(["NDATA", "DDATA", "DBIRTH", "NBIRTH"]),
       payload=wire_payloads().map(Blob))
@at_service_recursion_limit
def test_unknown_sparkplug_nodes_earn_no_rebirth(node: tuple[str, str], verb: str,
                                                 payload: Blob) -> None:
    """A node that is not a (site, gateway) of the plant is not asked to publish its births:
    anyone on the broker could otherwise make the host send commands for ever-new nodes."""
    group, edge = node
    topic = f"spBv1.0/{group}/{verb}/{edge}" + ("/dev" if MessageType(verb).is_device else "")
    host = plant_host()
    outs = [host.handle(topic, payload.data, NOW_MS), host.tick(NOW_MS + 60_000)]
    assert [m.topic for o in outs for m in o.rebirths] == []


def test_the_plant_node_is_still_asked_to_rebirth() -> None:
    """The other side of the test above: data from a plant node the host has not seen born
    earns it a rebirth request (that is how a host recovers after it restarts)."""
    assert (SITE, GATEWAY) in PLANT_NODES
    node = EdgeNodeMessages(SITE, GATEWAY, {AREA: list(SENSORS)})
    node.births(NOW_MS)  # sent before the host was listening
    data = node.data(NOW_MS + 1, {"LEL-1": 1.0})[0]
    out = plant_host().handle(data.topic, data.payload, NOW_MS + 1)
    assert [m.topic for m in out.rebirths] == [f"spBv1.0/{SITE}/NCMD/{GATEWAY}"]
    assert [r.reason for r in out.rejections] == ["data_before_birth"]


def test_check_letter_catches_what_the_service_must_not_send() -> None:
    """The check above can fail: a letter written under another reason is caught."""
    with pytest.raises(AssertionError, match="was written as"):
        check_letter({"reason": "internal_error", "reading": [1]}, "bad_reading")
    check_letter({"reason": "ok", "reading": "x" * MAX_LETTER_BYTES}, "ok")  # cut, kept
