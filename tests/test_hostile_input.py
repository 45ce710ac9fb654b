"""Hostile input: each case here stopped the service, or made it trust what it should not.

The regression payloads of the hostile-input issue, through the real pipeline
(in-memory source, real SQLite store) and the Sparkplug host: a message is
dead-lettered with its reason and acknowledged, the loop goes on, and nothing
of another site is stored.
"""

from __future__ import annotations

import orjson
import pytest

import decoders.registry
import ingest.pipeline
from decoders.json_gateway import DecodeLimits, decode_gateway_json
from decoders.lp_gateway import decode_line_protocol
from decoders.sparkplug_host import MAX_DEVICES, SparkplugHost
from ingest import dead_letter
from ingest.letter_limits import TopicLimiter
from simulators.sparkplug_edge import EdgeNodeMessages
from sparkplug import DataType, Metric, Payload, encode_payload
from tests.clock import T0
from tests.test_pipeline import NOW, TABLE, Rig, gateway, until

CRASH_LOOP = b'{"readings":[' + b"[" * 1000 + b"]" * 1000 + b"]}"
"""2,015 bytes that crash-looped the service: orjson parses 1,000 levels, refuses to
write them back into the dead letter, and the repr() fallback raised RecursionError."""


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def letters(rig: Rig) -> list[dict[str, object]]:
    return [orjson.loads(p) for t, p in rig.source.published if t == "plantwatch/deadletter"]


def counter(rig: Rig, name: str, **labels: str) -> float:
    for metric in rig.metrics.registry.collect():
        for s in metric.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_crash_loop_payload_is_dead_lettered_and_acknowledged(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        bad = rig.source.feed("plant/s1/gw", CRASH_LOOP)
        good = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=1.0))
        await until(lambda: {bad, good} <= set(rig.source.acked))
        assert await rig.store.count_readings() == 1
    [letter] = letters(rig)
    assert letter["reason"] == "too_deep" and letter["index"] == 0
    assert counter(rig, "plantwatch_readings_rejected_total", reason="too_deep") == 1


@pytest.mark.parametrize("depth", [16, 17, 100, 500, 1000, 1023, 1024, 1025, 10_000, 200_000])
def test_nesting_in_a_reading_field_is_refused_whole_with_a_writable_letter(depth: int) -> None:
    """Depth 16 (the envelope's 3 + 13 in the field) is within the limit: the reading is
    a ``bad_value``; deeper, it is ``too_deep``; either way its sibling is kept. Past what
    the parsers read at all the message is ``malformed_json``. Every letter serialises."""
    payload = (b'{"readings":[{"sensor":"LEL-1","value":' + nested(depth - 3)
               + b'},{"sensor":"LEL-2","value":1.0,"ts":' + str(NOW).encode() + b"}]}")
    result = decode_gateway_json(payload, TABLE.index, NOW)
    reasons = [r.reason for r in result.rejections]
    if depth <= 16:
        assert reasons == ["bad_value"] and len(result.batch) == 1
    elif reasons == ["malformed_json"]:
        assert depth > 1024 and len(result.batch) == 0
    else:
        assert reasons == ["too_deep"] and len(result.batch) == 1
    for r in result.rejections:
        body = dead_letter.encode(r.to_dead_letter("plant/s1/gw", payload, NOW))
        assert orjson.loads(body)["reason"] == r.reason
        assert len(body) <= dead_letter.MAX_LETTER_BYTES


def test_a_deep_extra_envelope_field_is_refused_and_a_shallow_one_ignored() -> None:
    reading = b'[{"sensor":"LEL-1","value":1.0,"ts":' + str(NOW).encode() + b"}]"
    deep = b'{"meta":' + nested(500) + b',"readings":' + reading + b"}"
    shallow = b'{"meta":{"fw":"1.2","tags":["a","b"]},"readings":' + reading + b"}"
    assert [r.reason for r in decode_gateway_json(deep, TABLE.index, NOW).rejections] == [
        "too_deep"]
    ok = decode_gateway_json(shallow, TABLE.index, NOW)
    assert not ok.rejections and len(ok.batch) == 1


def test_long_ids_and_values_are_cut_in_the_detail_and_the_letter() -> None:
    huge = "X" * 100_000
    payload = orjson.dumps({"readings": [
        {"sensor": huge, "value": 1.0, "ts": NOW},
        {"sensor": "LEL-1", "value": huge, "ts": NOW},
    ]})
    result = decode_gateway_json(payload, TABLE.index, NOW)
    assert [r.reason for r in result.rejections] == ["unknown_sensor", "bad_value"]
    assert all(len(r.detail) < 400 for r in result.rejections)
    for r in result.rejections:
        assert len(dead_letter.encode(r.to_dead_letter("plant/s1/gw", payload, NOW))) < 8192
    gw = orjson.dumps({"gateway": huge, "readings": []})
    assert [r.reason for r in decode_gateway_json(gw, TABLE.index, NOW).rejections] == [
        "bad_envelope"]


def test_dead_letter_encoding_never_raises() -> None:
    deep: list[object] = []
    for _ in range(100_000):  # deeper than any recursion limit
        deep = [deep]
    cases: list[object] = [deep, {"k" * 10_000: 1}, list(range(10_000)), float("nan"),
                           10**5000, b"\xff\xfe", object(), {1: {2: {3: {4: {5: 6}}}}}]
    for case in cases:
        body = dead_letter.encode({"topic": "t", "reason": "bad_reading", "reading": case})
        doc = orjson.loads(body)
        assert doc["reason"] == "bad_reading"
        assert len(body) <= dead_letter.MAX_LETTER_BYTES


async def test_readings_on_another_sites_topic_are_refused_as_wrong_site(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        evil = rig.source.feed("plant/evilsite/gw", gateway(NOW, LEL_1=60.0, PT_1=500.0))
        lp = rig.source.feed("plant/evilsite/lp", f"lel,sensor=LEL-1 value=60 {NOW}".encode())
        good = rig.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=1.0))
        await until(lambda: {evil, lp, good} <= set(rig.source.acked))
        assert await rig.store.count_readings() == 1
        assert rig.alarms.active_points() == []  # 60 %LEL from the impostor raised nothing
    assert [x["reason"] for x in letters(rig)] == ["wrong_site"] * 3
    assert counter(rig, "plantwatch_readings_rejected_total", reason="wrong_site") == 3


def test_line_protocol_names_wrong_site_only_for_sensors_of_another_site() -> None:
    payload = f"lel,sensor=LEL-1 value=1 {NOW}\nlel,sensor=NOPE value=1 {NOW}".encode()
    result = decode_line_protocol(payload, {}, NOW, plant_index=TABLE.index)
    assert [r.reason for r in result.rejections] == ["wrong_site", "unknown_sensor"]


@pytest.mark.parametrize("topic", [
    "plant/s1/" + "g" * 300,  # longer than 256 characters
    "plant/s1/a/b/c/d/e/f/g",  # 9 levels
    "plant/s1",  # no gateway level: the site cannot be told
])
async def test_bad_topics_are_dead_lettered(tmp_path, topic: str) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        mid = rig.source.feed(topic, gateway(NOW, LEL_1=1.0))
        await until(lambda: mid in rig.source.acked)
    assert [x["reason"] for x in letters(rig)] == ["bad_topic"]
    assert len(letters(rig)[0]["topic"]) <= dead_letter.MAX_TEXT + 40  # type: ignore[arg-type]


async def test_topic_cache_is_bounded(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        mids = [rig.source.feed(f"elsewhere/{i}", b"x")
                for i in range(ingest.pipeline.MAX_TOPICS_CACHED + 500)]
        await until(lambda: len(rig.source.acked) == len(mids), timeout_s=20)
        assert len(rig.pipeline._topic_ours) <= ingest.pipeline.MAX_TOPICS_CACHED


async def test_a_message_that_fails_handling_is_dead_lettered_and_acked(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any bug a message finds is that message's internal_error, never the service's end;
    readings it appended before failing are taken back."""
    real = decoders.registry.decode_gateway_json_into

    def buggy(payload, index, now_ms, limits, out, **kw):  # type: ignore[no-untyped-def]
        if b"poison" in payload:
            out.sensor.append(0)  # half a reading: must be taken back
            raise ZeroDivisionError("a bug found by this input")
        return real(payload, index, now_ms, limits, out, **kw)

    monkeypatch.setattr(decoders.registry.GatewayJsonDecoder, "decode_into",
                        staticmethod(buggy))
    rig = Rig(tmp_path)
    async with rig.running():
        bad = rig.source.feed("plant/s1/gw", b'{"poison": 1}')
        good = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=1.0))
        await until(lambda: {bad, good} <= set(rig.source.acked))
        assert await rig.store.count_readings() == 1
    [letter] = letters(rig)
    assert letter["reason"] == "internal_error"
    assert "ZeroDivisionError" in str(letter["detail"])


async def test_a_dead_letter_that_cannot_be_published_is_counted_not_raised(tmp_path) -> None:
    rig = Rig(tmp_path)

    def refuse(topic: str, payload: bytes, qos: int = 1, retain: bool = False,
               droppable: bool = False) -> str | None:
        if b"garbage" in payload:
            raise ValueError("a client that raises")
        return "backlog"

    rig.source.publish = refuse  # type: ignore[method-assign]
    async with rig.running():
        bad = rig.source.feed("plant/s1/gw", b"{garbage")
        refused = rig.source.feed("plant/s1/gw", gateway(NOW, NOPE=1.0))
        good = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=1.0))
        await until(lambda: {bad, refused, good} <= set(rig.source.acked))
        assert await rig.store.count_readings() == 1
    assert counter(rig, "plantwatch_dead_letters_total") == 2
    assert counter(rig, "plantwatch_dead_letters_dropped_total", why="ValueError") == 1
    assert counter(rig, "plantwatch_dead_letters_dropped_total", why="backlog") == 1


# -- Sparkplug B ---------------------------------------------------------------

SITE_INDEX = {"site": {"S-A-1": 0, "S-A-2": 1, "S-B-1": 2}, "other": {"O-1": 3}}
INDEX = {**SITE_INDEX["site"], **SITE_INDEX["other"]}
DEVICES = {"area-a": ["S-A-1", "S-A-2"], "area-b": ["S-B-1"]}


def plant_host(**kw: object) -> SparkplugHost:
    return SparkplugHost("plantwatch", INDEX, nodes={("site", "gw-1")},
                         site_index=SITE_INDEX, **kw)  # type: ignore[arg-type]


def test_unknown_nodes_earn_no_rebirth_and_leave_no_state() -> None:
    host = plant_host()
    rebirths = 0
    for i in range(2_000):
        node = EdgeNodeMessages("site", f"junk-{i}", DEVICES)
        node.births(T0, {"S-A-1": 1.0})
        for m in node.data(T0 + 1, {"S-A-1": 2.0}):
            out = host.handle(m.topic, m.payload, T0 + 1)
            assert [r.reason for r in out.rejections] == ["unknown_node"]
            rebirths += len(out.rebirths)
    assert rebirths == 0
    assert host._nodes == {}


def test_rebirths_are_limited_overall_and_the_deferred_ones_follow() -> None:
    host = SparkplugHost("plantwatch", INDEX, max_rebirths_per_s=10.0)  # any node (backtests)
    sent = 0
    for i in range(1_000):  # data before birth from 1,000 nodes within one second
        node = EdgeNodeMessages("site", f"gw-{i}", DEVICES)
        node.births(T0, {"S-A-1": 1.0})
        for m in node.data(T0 + 1, {"S-A-1": 2.0}):
            sent += len(host.handle(m.topic, m.payload, T0 + i).rebirths)
    assert sent == 50 + 9  # the 5 s burst, and 10/s refilled over the second
    assert host.rebirths_deferred == 1_000 - sent
    later = sum(len(host.tick(T0 + 1_000 + 1_000 * k).rebirths) for k in range(1, 11))
    assert 90 <= later <= 110  # ten more seconds at 10 per second


def test_too_many_metrics_and_wrong_site_births_are_refused() -> None:
    host = plant_host()
    node = EdgeNodeMessages("site", "gw-1", {"area-a": ["S-A-1", "O-1"]})
    out = HostOutputs(host, node.births(T0, {"S-A-1": 1.0, "O-1": 5.0}), T0)
    assert "wrong_site" in out.reasons
    assert {r.sensor for r in out.readings} == {"S-A-1"}
    small = SparkplugHost("plantwatch", INDEX, limits=DecodeLimits(max_metrics=2))
    out = HostOutputs(small, EdgeNodeMessages("site", "gw-1", DEVICES).births(
        T0, {"S-A-1": 1.0, "S-A-2": 2.0, "S-B-1": 3.0}), T0)
    assert "too_many_metrics" in out.reasons


class HostOutputs:
    """Every output of feeding ``messages`` to ``host``."""

    def __init__(self, host: SparkplugHost, messages: list, now_ms: int) -> None:  # type: ignore[type-arg]
        outs = [host.handle(m.topic, m.payload, now_ms) for m in messages]
        self.reasons = [r.reason for o in outs for r in o.rejections]
        self.readings = [r for o in outs for r in o.readings]


async def test_readings_whose_detection_fails_are_stored_acked_and_reported(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug found in the detectors by a batch loses that batch's detections, never the
    readings, and never the service: the next batch is detected as usual."""
    rig = Rig(tmp_path)
    real = rig.detector.update

    def buggy(batch, **kw):  # type: ignore[no-untyped-def]
        if (batch.value == 42.0).any():
            raise FloatingPointError("a bug found by these readings")
        return real(batch, **kw)

    monkeypatch.setattr(rig.detector, "update", buggy)
    async with rig.running():
        bad = rig.source.feed("plant/s1/gw", gateway(NOW, LEL_1=42.0))
        await until(lambda: bad in rig.source.acked)
        good = rig.source.feed("plant/s1/gw", gateway(NOW + 1, LEL_1=60.0))
        await until(lambda: good in rig.source.acked)
        await until(lambda: "LEL-1:hh:raise" in rig.announced)
        assert await rig.store.count_readings() == 2
    [letter] = letters(rig)
    assert letter["reason"] == "internal_error" and letter["readings"] == 1
    assert "FloatingPointError" in str(letter["detail"])


# -- dead letters of a flood ---------------------------------------------------


def test_topic_limiter_gives_a_burst_then_the_rate_and_sums_up_what_it_held_back() -> None:
    lim = TopicLimiter(rate_per_s=10.0, burst=100.0, max_topics=3)
    assert sum(lim.take("flood", "bad_value", 0.0) for _ in range(150)) == 100
    assert lim.take("quiet", "bad_value", 0.0)  # another topic is not crowded out
    assert lim.summaries(0.05) == []  # no token yet for the flood's summary
    assert lim.summaries(0.1) == [("flood", {"bad_value": 50})]
    assert lim.summaries(10.0) == []  # summed up once
    assert sum(lim.take("flood", "bad_value", 1.0) for _ in range(20)) == 9  # 10/s, less one
    for i in range(10):  # ever-new topics: the table starts again, never grows past 3
        lim.take(f"junk-{i}", "bad_topic", 2.0)
        assert len(lim) <= 3


async def test_a_flooding_topic_cannot_crowd_out_another_topics_dead_letters(tmp_path) -> None:
    rig = Rig(tmp_path)
    async with rig.running():
        mids = [rig.source.feed("plant/s1/flood", b"{garbage") for _ in range(300)]
        mids.append(rig.source.feed("plant/s1/rare", b"{garbage"))
        await until(lambda: set(mids) <= set(rig.source.acked))
        await until(lambda: any(x["reason"] == "rate_limited" for x in letters(rig)), 5)
    by_topic: dict[object, list[object]] = {}
    for x in letters(rig):
        by_topic.setdefault(x["topic"], []).append(x["reason"])
    assert by_topic["plant/s1/rare"] == ["malformed_json"]
    flood = by_topic["plant/s1/flood"]
    burst = rig.pipeline.config.letter_burst
    assert burst <= flood.count("malformed_json") < burst + 50 and "rate_limited" in flood
    summary = next(x for x in letters(rig) if x["reason"] == "rate_limited")
    held_back = summary["by_reason"]["malformed_json"]  # type: ignore[index]
    assert flood.count("malformed_json") + held_back <= 300
    assert counter(rig, "plantwatch_messages_rejected_total", reason="malformed_json") == 301
    sent = len(letters(rig))
    assert counter(rig, "plantwatch_dead_letters_total") == sent + counter(
        rig, "plantwatch_dead_letters_dropped_total", why="rate_limit")


def test_a_plant_node_cannot_grow_its_devices_or_held_messages_without_bound() -> None:
    """Even the plant's own gateway id (which a hostile client can use) keeps bounded state:
    at most MAX_DEVICES devices, and held out-of-order messages up to 8 MiB."""
    host = plant_host()
    node = EdgeNodeMessages("site", "gw-1", DEVICES)
    HostOutputs(host, node.births(T0, {"S-A-1": 1.0}), T0)
    reasons: list[str] = []
    for i in range(MAX_DEVICES + 50):
        birth = encode_payload(Payload(T0, (1 + i) % 256, (Metric("S-A-1", None, T0,
                                                                    DataType.Double, 1.0),)))
        reasons += [r.reason for r in host.handle(
            f"spBv1.0/site/DBIRTH/gw-1/dev-{i}", birth, T0).rejections]
    assert reasons.count("too_many_devices") >= 49
    assert len(host._nodes[("site", "gw-1")].sensors) <= MAX_DEVICES + 1

    fresh = plant_host()
    HostOutputs(fresh, EdgeNodeMessages("site", "gw-1", DEVICES).births(T0, {"S-A-1": 1.0}), T0)
    big = "x" * 1_000_000
    out_of_order = [encode_payload(Payload(T0, seq, (Metric("note", None, T0, DataType.String,
                                                            big),))) for seq in range(5, 25)]
    gaps = [r.reason for p in out_of_order
            for r in fresh.handle("spBv1.0/site/NDATA/gw-1", p, T0).rejections]
    assert "seq_gap" in gaps  # declared once the held messages passed 8 MiB, not at 128
    assert sum(len(h.payload_bytes) for h in fresh._nodes[("site", "gw-1")].held.values()) \
        <= 9 * 1024 * 1024
