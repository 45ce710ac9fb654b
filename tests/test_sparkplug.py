"""Sparkplug B without a broker: topics, payload codec, the edge node's messages, the host.

The edge node (:class:`EdgeNodeMessages`) and the host (:class:`SparkplugHost`)
are both pure, so every rule is checked here with exact times and bytes;
``test_sparkplug_interop.py`` runs the same two through a real Mosquitto.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from decoders.sparkplug_host import HostOutput, SparkplugHost
from model.plant import load_plant
from simulators.sparkplug_edge import (
    EdgeNodeError,
    EdgeNodeMessages,
    SparkplugMessage,
    edge_nodes_for_plant,
)
from sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    NodeTopic,
    Payload,
    PayloadError,
    StateTopic,
    TopicError,
    bd_seq_of,
    decode_payload,
    encode_payload,
    ndeath_payload,
    parse_topic,
    rebirth_command,
    state_topic,
)
from sparkplug import sparkplug_b_pb2 as pb
from tests.clock import T0

ROOT = Path(__file__).resolve().parents[1]
DEVICES = {"area-a": ["S-A-1", "S-A-2"], "area-b": ["S-B-1"]}
INDEX = {"S-A-1": 0, "S-A-2": 1, "S-B-1": 2}
ALL = frozenset(INDEX)


def make_node(bd_seq: int = 0) -> EdgeNodeMessages:
    return EdgeNodeMessages("site", "gw-1", DEVICES, bd_seq=bd_seq)


def make_host(reorder_timeout_ms: int = 2000, rebirth_interval_ms: int = 5000) -> SparkplugHost:
    return SparkplugHost("plantwatch", INDEX, reorder_timeout_ms=reorder_timeout_ms,
                         rebirth_interval_ms=rebirth_interval_ms)


def feed(host: SparkplugHost, messages: Sequence[SparkplugMessage], now_ms: int) -> HostOutput:
    out = HostOutput()
    for m in messages:
        out.extend(host.handle(m.topic, m.payload, now_ms))
    return out


def values(step: int) -> dict[str, float]:
    return {"S-A-1": 1.0 + step, "S-A-2": 20.0 + step, "S-B-1": -3.5 - step}


def born(host: SparkplugHost | None = None, node: EdgeNodeMessages | None = None,
         ) -> tuple[SparkplugHost, EdgeNodeMessages]:
    host = host or make_host()
    node = node or make_node()
    out = feed(host, node.births(T0, values(0)), T0)
    assert not out.rejections and not out.publish
    return host, node


def reasons(out: HostOutput) -> list[str]:
    return [r.reason for r in out.rejections]


# -- topics --------------------------------------------------------------------


@pytest.mark.parametrize("topic", [
    "spBv1.0/site/NBIRTH/gw-1",
    "spBv1.0/site/NDATA/gw-1",
    "spBv1.0/site/DDATA/gw-1/area-a",
    "spBv1.0/site/DCMD/gw-1/area-a",
])
def test_node_topics_round_trip(topic: str) -> None:
    parsed = parse_topic(topic)
    assert isinstance(parsed, NodeTopic)
    assert str(parsed) == topic
    assert parsed.node == ("site", "gw-1")


def test_state_topic_round_trip() -> None:
    assert parse_topic("spBv1.0/STATE/plantwatch") == StateTopic("plantwatch")
    assert state_topic("plantwatch") == "spBv1.0/STATE/plantwatch"


@pytest.mark.parametrize(("topic", "problem"), [
    ("spAv1.0/site/NDATA/gw-1", "namespace"),
    ("spBv1.0/site/NOPE/gw-1", "not a Sparkplug verb"),
    ("spBv1.0/site/DDATA/gw-1", "needs a device id"),
    ("spBv1.0/site/NDATA/gw-1/area-a", "has no device id"),
    ("spBv1.0/site/NDATA", "levels"),
    ("spBv1.0//NDATA/gw-1", "must not be empty"),
    ("spBv1.0/si+te/NDATA/gw-1", "'+'"),
    ("spBv1.0/STATE/a/b", "STATE topic"),
])
def test_bad_topics_are_named_in_the_error(topic: str, problem: str) -> None:
    with pytest.raises(TopicError) as err:
        parse_topic(topic)
    assert err.value.topic == topic
    assert topic in str(err.value) and problem in str(err.value)


# -- codec ---------------------------------------------------------------------


def test_datatype_enum_matches_the_proto() -> None:
    assert {d.name: int(d) for d in DataType} == dict(pb.DataType.items())


def test_metrics_round_trip_with_every_scalar_type() -> None:
    metrics = (
        Metric("i8", 1, T0, DataType.Int8, -128),
        Metric("i16", 2, T0, DataType.Int16, -2),
        Metric("i32", 3, T0, DataType.Int32, -2_000_000_000),
        Metric("i64", 4, T0, DataType.Int64, -(2**63)),
        Metric("u32", 5, T0, DataType.UInt32, 2**32 - 1),
        Metric("u64", 6, T0, DataType.UInt64, 2**64 - 1),
        Metric("dt", 7, T0, DataType.DateTime, T0),
        Metric("f", 8, T0, DataType.Float, 0.5),
        Metric("d", 9, T0, DataType.Double, 3.141592653589793),
        Metric("b", 10, T0, DataType.Boolean, True),
        Metric("s", 11, T0, DataType.String, "naphtha"),
        Metric("raw", 12, T0, DataType.Bytes, b"\x00\xff"),
        Metric("none", 13, T0, DataType.Double, None, is_null=True),
        Metric("old", 14, T0 - 60_000, DataType.Double, 2.0, is_historical=True),
    )
    payload = Payload(T0, 42, metrics)
    assert decode_payload(encode_payload(payload)) == payload


def test_signed_ints_read_back_from_either_packing() -> None:
    # Tahu sign-extends an Int8 to 32 bits; some nodes pack it at 8 bits.
    for raw in (0xFFFF_FFFF, 0xFF):
        msg = pb.Payload(seq=0)
        msg.metrics.add(name="x", datatype=DataType.Int8, int_value=raw)
        assert decode_payload(msg.SerializeToString()).metrics[0].value == -1


def test_values_that_do_not_fit_their_type_are_refused_with_the_metric_named() -> None:
    with pytest.raises(PayloadError, match=r"'i8'.*200.*-128\.\.127"):
        encode_payload(Payload(T0, 0, (Metric("i8", None, T0, DataType.Int8, 200),)))
    with pytest.raises(PayloadError, match="seq 256"):
        encode_payload(Payload(T0, 256))
    with pytest.raises(PayloadError, match="needs a datatype"):
        encode_payload(Payload(T0, 0, (Metric(alias=3, value=7),)))


def test_garbage_is_a_payload_error_naming_the_topic() -> None:
    with pytest.raises(PayloadError) as err:
        decode_payload(b"\xff\xff\xff", topic="spBv1.0/site/NDATA/gw-1")
    assert err.value.topic == "spBv1.0/site/NDATA/gw-1"
    assert "spBv1.0/site/NDATA/gw-1" in str(err.value)


def test_rebirth_command_and_ndeath_payloads() -> None:
    cmd = decode_payload(rebirth_command(T0))
    rebirth = cmd.metric(REBIRTH_METRIC)
    assert cmd.timestamp == T0
    assert rebirth is not None and rebirth.value is True and rebirth.datatype is DataType.Boolean
    death = decode_payload(ndeath_payload(7))
    assert death.seq is None and [m.name for m in death.metrics] == [BD_SEQ_METRIC]
    assert death.metrics[0].datatype is DataType.Int64 and bd_seq_of(death) == 7


# -- the edge node's messages --------------------------------------------------


def test_births_carry_bdseq_rebirth_names_aliases_and_datatypes() -> None:
    node = make_node(bd_seq=5)
    nbirth, dbirth_a, dbirth_b = node.births(T0, values(0))
    assert nbirth.topic == "spBv1.0/site/NBIRTH/gw-1"
    nb = decode_payload(nbirth.payload)
    assert nb.seq == 0 and nb.timestamp == T0 and bd_seq_of(nb) == 5
    assert nb.metric(REBIRTH_METRIC) == Metric(REBIRTH_METRIC, None, T0, DataType.Boolean, False)
    assert dbirth_a.topic == "spBv1.0/site/DBIRTH/gw-1/area-a"
    assert dbirth_b.topic == "spBv1.0/site/DBIRTH/gw-1/area-b"
    a, b = decode_payload(dbirth_a.payload), decode_payload(dbirth_b.payload)
    assert (a.seq, b.seq) == (1, 2)
    assert [(m.name, m.alias, m.datatype, m.value) for m in a.metrics + b.metrics] == [
        ("S-A-1", 1, DataType.Double, 1.0),
        ("S-A-2", 2, DataType.Double, 20.0),
        ("S-B-1", 3, DataType.Double, -3.5),
    ]
    assert all(m.qos == 0 and not m.retain for m in (nbirth, dbirth_a, dbirth_b))


def test_data_carries_aliases_only_and_seq_runs_across_all_messages() -> None:
    node = make_node()
    node.births(T0, values(0))
    ddata = node.data(T0 + 1000, {"S-A-2": 7.25, "S-B-1": 1.0})
    assert [m.topic for m in ddata] == ["spBv1.0/site/DDATA/gw-1/area-a",
                                        "spBv1.0/site/DDATA/gw-1/area-b"]
    a, b = (decode_payload(m.payload) for m in ddata)
    assert (a.seq, b.seq) == (3, 4)
    assert a.metrics == (Metric(None, 2, T0 + 1000, None, 7.25),)
    assert b.metrics == (Metric(None, 3, T0 + 1000, None, 1.0),)


def test_seq_wraps_from_255_to_0() -> None:
    node = make_node()
    node.births(T0, values(0))  # seq 0, 1, 2
    seqs = [decode_payload(m.payload).seq
            for k in range(300) for m in node.data(T0 + k, {"S-A-1": float(k)})]
    assert seqs[:3] == [3, 4, 5]
    assert seqs[252:255] == [255, 0, 1]


def test_nan_is_sent_as_null() -> None:
    node = make_node()
    node.births(T0)  # nothing known yet: every metric null
    (m,) = node.data(T0 + 1, {"S-A-1": float("nan")})
    metric = decode_payload(m.payload).metrics[0]
    assert metric.is_null and metric.value is None and m.n_readings == 0


def test_will_is_ndeath_with_bdseq_and_new_session_moves_it_on() -> None:
    node = make_node(bd_seq=255)
    will = node.will()
    assert will.topic == "spBv1.0/site/NDEATH/gw-1" and will.qos == 1 and not will.retain
    assert bd_seq_of(decode_payload(will.payload)) == 255
    node.new_session()
    assert bd_seq_of(decode_payload(node.will().payload)) == 0
    assert not node.born


def test_rebirth_command_restarts_seq_at_zero_with_the_same_bdseq() -> None:
    node = make_node(bd_seq=3)
    node.births(T0, values(0))
    node.data(T0 + 1, values(1))
    assert node.handle_command("spBv1.0/site/NCMD/gw-other", rebirth_command(T0), T0) == []
    assert node.handle_command("spBv1.0/site/NCMD/gw-1", b"\xff", T0) == []
    again = node.handle_command("spBv1.0/site/NCMD/gw-1", rebirth_command(T0 + 5), T0 + 5)
    assert [m.topic.split("/")[2] for m in again] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    nb = decode_payload(again[0].payload)
    assert nb.seq == 0 and bd_seq_of(nb) == 3
    # The births carry the latest values, not the first ones.
    assert decode_payload(again[1].payload).metrics[0].value == values(1)["S-A-1"]


def test_data_before_births_and_unknown_sensors_are_refused() -> None:
    node = make_node()
    with pytest.raises(EdgeNodeError, match="before its births"):
        node.data(T0, values(0))
    node.births(T0)
    with pytest.raises(EdgeNodeError, match="no sensor 'S-X'"):
        node.data(T0, {"S-X": 1.0})


def test_same_inputs_give_byte_identical_messages() -> None:
    plant = load_plant(ROOT / "config" / "plant.yaml")
    rng = np.random.default_rng(7)
    steps = rng.normal(10.0, 1.0, size=(5, len(plant.places())))

    def run() -> list[tuple[str, bytes]]:
        return [(m.topic, m.payload) for node in edge_nodes_for_plant(plant)
                for k, row in enumerate(steps) for m in node.step(T0 + 1000 * k, row)]

    assert run() == run()


def test_plant_edge_nodes_name_metrics_by_sensor_id() -> None:
    plant = load_plant(ROOT / "config" / "plant.yaml")
    index = {p.sensor.id: p.index for p in plant.places()}
    host = SparkplugHost("plantwatch", index)
    row = np.arange(len(index), dtype=np.float64)
    readings = []
    for node in edge_nodes_for_plant(plant):
        for k in range(2):
            out = feed(host, node.step(T0 + 1000 * k, row + k), T0 + 5000)
            assert not out.rejections and not out.publish
            readings += out.readings
    # Every sensor of the plant arrives, under its own id, with its own value.
    last = {r.sensor: r for r in readings if r.ts == T0 + 1000}
    assert set(last) == set(index)
    assert all(r.value == index[r.sensor] + 1 and r.index == index[r.sensor]
               for r in last.values())


# -- the host ------------------------------------------------------------------


def test_births_then_alias_only_data_decode_to_the_right_sensors() -> None:
    host, node = born()
    out = feed(host, node.data(T0 + 1000, values(1)), T0 + 1000)
    assert not out.rejections and not out.publish
    assert [(r.sensor, r.index, r.ts, r.value, r.is_historical) for r in out.readings] == [
        ("S-A-1", 0, T0 + 1000, 2.0, False),
        ("S-A-2", 1, T0 + 1000, 21.0, False),
        ("S-B-1", 2, T0 + 1000, -4.5, False),
    ]
    assert host.online_nodes() == [("site", "gw-1")]


def test_birth_values_are_readings_too() -> None:
    host = make_host()
    out = feed(host, make_node().births(T0, values(0)), T0)
    assert {(r.sensor, r.value) for r in out.readings} == {
        ("S-A-1", 1.0), ("S-A-2", 20.0), ("S-B-1", -3.5)}


def test_seq_gap_requests_a_rebirth_after_the_reorder_timeout_and_not_before() -> None:
    host, node = born(make_host(reorder_timeout_ms=2000))
    first, lost, after = (node.data(T0 + k, {"S-A-1": float(k)})[0] for k in (1, 2, 3))
    assert not feed(host, [first], T0 + 10).rejections
    held = feed(host, [after], T0 + 1000)
    assert held.readings == [] and not held.publish and not held.rejections
    assert not host.tick(T0 + 2999).publish
    out = host.tick(T0 + 3000)
    (rebirth,) = out.rebirths
    assert rebirth.topic == "spBv1.0/site/NCMD/gw-1"
    assert decode_payload(rebirth.payload).metric(REBIRTH_METRIC) is not None
    assert reasons(out) == ["seq_gap"]
    # The message past the gap is still real data: it is processed, not dropped.
    assert [(r.sensor, r.value) for r in out.readings] == [("S-A-1", 3.0)]
    assert lost.topic  # never delivered


def test_late_message_within_the_timeout_fills_the_gap_without_rebirth() -> None:
    host, node = born()
    m1, m2, m3 = (node.data(T0 + k, {"S-A-1": float(k)})[0] for k in (1, 2, 3))
    feed(host, [m1], T0 + 10)
    assert feed(host, [m3], T0 + 100).readings == []
    out = feed(host, [m2], T0 + 1900)
    # In order: the late message first, then the one held behind it.
    assert [r.value for r in out.readings] == [2.0, 3.0]
    assert not out.rejections and not out.publish
    assert not host.tick(T0 + 60_000).publish


def test_seq_wrap_is_not_a_gap() -> None:
    host, node = born()
    out = HostOutput()
    for k in range(600):
        out.extend(feed(host, node.data(T0 + k, {"S-B-1": float(k)}), T0 + k))
        out.extend(host.tick(T0 + k))
    out.extend(host.tick(T0 + 60_000))
    assert not out.rejections and not out.publish
    assert [r.value for r in out.readings] == [float(k) for k in range(600)]


def test_duplicate_delivery_is_refused_not_read_twice() -> None:
    host, node = born()
    (m,) = node.data(T0 + 1, {"S-A-1": 5.0})
    assert len(feed(host, [m], T0 + 1).readings) == 1
    out = feed(host, [m], T0 + 2)
    assert out.readings == [] and reasons(out) == ["duplicate_seq"]


def test_ndeath_with_an_old_bdseq_is_ignored_and_a_matching_one_marks_stale() -> None:
    host = make_host()
    node = make_node(bd_seq=0)
    old_will = node.will()
    feed(host, node.births(T0, values(0)), T0)
    # The node reconnects (bdSeq 1) and is born again before the broker
    # delivers the Will of its first connection.
    node.new_session()
    feed(host, node.births(T0 + 100, values(1)), T0 + 100)
    out = feed(host, [old_will], T0 + 200)
    assert reasons(out) == ["stale_ndeath"]
    assert host.stale_sensors() == frozenset()
    assert host.online_nodes() == [("site", "gw-1")]
    out = feed(host, [node.will()], T0 + 300)
    assert not out.rejections
    assert host.stale_sensors() == ALL
    assert host.online_nodes() == []
    # Dead means dead: data now is data before a birth.
    after = feed(host, node.data(T0 + 400, values(2)), T0 + 400)
    assert after.readings == [] and "data_before_birth" in reasons(after)
    # A new session's births make the sensors fresh again.
    node.new_session()
    feed(host, node.births(T0 + 500, values(3)), T0 + 500)
    assert host.stale_sensors() == frozenset()


def test_ddeath_marks_only_that_device_stale_until_its_dbirth() -> None:
    host, node = born()
    feed(host, [node.device_death("area-b", T0 + 1)], T0 + 1)
    assert host.stale_sensors() == {"S-B-1"}
    out = feed(host, node.data(T0 + 2, {"S-A-1": 1.0}), T0 + 2)
    assert len(out.readings) == 1 and not out.rejections
    # A rebirth meanwhile does not bring the dead device back.
    again = node.handle_command("spBv1.0/site/NCMD/gw-1", rebirth_command(T0 + 3), T0 + 3)
    assert [m.topic.split("/")[-1] for m in again] == ["gw-1", "area-a"]
    feed(host, again, T0 + 3)
    assert host.stale_sensors() == {"S-B-1"}
    with pytest.raises(EdgeNodeError, match="'area-b' is dead"):
        node.data(T0 + 4, {"S-B-1": 1.0})
    feed(host, [node.device_birth("area-b", T0 + 5)], T0 + 5)
    assert host.stale_sensors() == frozenset()


def test_data_before_birth_requests_a_rate_limited_rebirth() -> None:
    host = make_host(rebirth_interval_ms=5000)
    node = make_node()
    node.births(T0, values(0))  # sent before this host was listening
    out = feed(host, node.data(T0 + 1, values(1)), T0 + 1)
    assert out.readings == []
    assert set(reasons(out)) == {"data_before_birth"}
    assert [m.topic for m in out.rebirths] == ["spBv1.0/site/NCMD/gw-1"]
    assert out.rebirths[0].qos == 0 and not out.rebirths[0].retain
    # More data within 5 s: refused again, but no second request yet.
    out = feed(host, node.data(T0 + 1000, values(2)), T0 + 1000)
    assert "data_before_birth" in reasons(out) and not out.publish
    assert not host.tick(T0 + 5000).publish
    assert len(host.tick(T0 + 5001).rebirths) == 1  # the held-back request, once
    assert not host.tick(T0 + 20_000).publish
    # The rebirth answers it: no more requests, data decodes.
    feed(host, node.handle_command("spBv1.0/site/NCMD/gw-1", rebirth_command(T0), T0 + 6000),
         T0 + 6000)
    out = feed(host, node.data(T0 + 7000, values(3)), T0 + 7000)
    assert len(out.readings) == 3 and not out.rejections and not out.publish


def test_unknown_alias_is_refused_and_asks_for_a_rebirth() -> None:
    host, node = born()
    stranger = encode_payload(Payload(T0 + 1, node.next_seq, (Metric(alias=99, value=1.0),)))
    out = host.handle("spBv1.0/site/DDATA/gw-1/area-a", stranger, T0 + 1)
    assert reasons(out) == ["unknown_alias"] and out.rejections[0].rejection.index == 0
    assert len(out.rebirths) == 1


def test_an_alias_of_another_device_is_not_misfiled() -> None:
    host, node = born()
    # Alias 3 is S-B-1 of area-b; sent as if it were area-a's.
    wrong = encode_payload(Payload(T0 + 1, node.next_seq, (Metric(alias=3, value=1.0),)))
    out = host.handle("spBv1.0/site/DDATA/gw-1/area-a", wrong, T0 + 1)
    assert out.readings == [] and reasons(out) == ["unknown_alias"]


def test_historical_metrics_are_flagged_and_kept_apart_from_live_ones() -> None:
    host, node = born()
    backfill = feed(host, node.data(T0 - 60_000, {"S-A-1": 9.0}, historical=True), T0 + 1)
    live = feed(host, node.data(T0 + 2, {"S-A-1": 1.0}), T0 + 2)
    backfill.extend(live)
    assert [(r.value, r.is_historical) for r in backfill.readings] == [(9.0, True), (1.0, False)]
    live_batch, historical_batch = backfill.batches()
    assert live_batch.value.tolist() == [1.0]
    assert historical_batch.value.tolist() == [9.0]
    assert historical_batch.ts.tolist() == [T0 - 60_000]


def test_unknown_sensor_is_reported_once_at_birth() -> None:
    host = SparkplugHost("plantwatch", {"S-A-1": 0, "S-B-1": 2})  # S-A-2 not in the plant
    node = make_node()
    out = feed(host, node.births(T0, values(0)), T0)
    assert reasons(out) == ["unknown_sensor"]
    assert "S-A-2" in out.rejections[0].rejection.detail
    out = feed(host, node.data(T0 + 1, values(1)), T0 + 1)
    assert not out.rejections and {r.sensor for r in out.readings} == {"S-A-1", "S-B-1"}


def test_bad_messages_are_dead_lettered_with_reasons() -> None:
    host, node = born()
    assert reasons(host.handle("plant/site/gw", b"{}", T0)) == ["bad_topic"]
    bad = host.handle("spBv1.0/site/DDATA/gw-1/area-a", b"\xff\xff", T0)
    assert reasons(bad) == ["bad_payload"]
    letter = bad.rejections[0].to_dead_letter(T0)
    assert letter["topic"] == "spBv1.0/site/DDATA/gw-1/area-a" and letter["reason"] == "bad_payload"
    future = feed(host, node.data(T0 + 3_600_000, {"S-A-1": 1.0}), T0)
    assert reasons(future) == ["timestamp_in_future"]
    no_bdseq = encode_payload(Payload(T0, 0, ()))
    assert reasons(host.handle("spBv1.0/site/NBIRTH/gw-2", no_bdseq, T0)) == ["bad_payload"]


def test_host_losing_the_broker_makes_everything_stale() -> None:
    host, _ = born()
    host.connection_lost(T0 + 1)
    assert host.stale_sensors() == ALL and host.online_nodes() == []


def test_state_birth_and_death_payloads() -> None:
    host = make_host()
    death = host.state_death(T0)
    birth = host.state_birth(T0)
    assert death.topic == birth.topic == "spBv1.0/STATE/plantwatch"
    assert json.loads(death.payload) == {"online": False, "timestamp": T0}
    assert json.loads(birth.payload) == {"online": True, "timestamp": T0}
    assert (death.qos, death.retain, birth.qos, birth.retain) == (1, True, 1, True)


def test_host_answers_a_stale_death_of_its_own_with_a_new_birth() -> None:
    host = make_host()
    host.state_birth(T0)
    # The retained Will of an earlier connection says we are offline: we are not.
    earlier = json.dumps({"online": False, "timestamp": T0 - 60_000}).encode()
    out = host.handle("spBv1.0/STATE/plantwatch", earlier, T0 + 5)
    (again,) = out.publish
    # Stamped like the birth (= its Will's timestamp), never newer than the Will.
    assert json.loads(again.payload) == {"online": True, "timestamp": T0}
    assert again.retain and again.qos == 1
    # Our own intentional death (newer than the birth) is left alone,
    assert not host.handle("spBv1.0/STATE/plantwatch", host.state_death(T0 + 10).payload,
                           T0 + 10).publish
    # and so is another host's state.
    assert not host.handle("spBv1.0/STATE/other", earlier, T0 + 11).publish


def test_an_alias_bound_twice_is_dropped_rather_than_guessed() -> None:
    host, node = born()
    seq = node.next_seq
    clash = encode_payload(Payload(T0 + 1, seq, (
        Metric("S-B-1", 1, T0 + 1, DataType.Double, 4.0),)))  # alias 1 is S-A-1's
    out = host.handle("spBv1.0/site/DBIRTH/gw-1/area-b", clash, T0 + 1)
    assert reasons(out) == ["duplicate_alias"]
    data = encode_payload(Payload(T0 + 2, seq + 1, (Metric(alias=1, value=8.0),)))
    out = host.handle("spBv1.0/site/DDATA/gw-1/area-a", data, T0 + 2)
    assert out.readings == [] and reasons(out) == ["unknown_alias"] and out.rebirths


def test_node_level_metrics_without_devices() -> None:
    host = make_host()
    birth = Payload(T0, 0, (
        Metric(BD_SEQ_METRIC, None, T0, DataType.Int64, 0),
        Metric(REBIRTH_METRIC, None, T0, DataType.Boolean, False),
        Metric("S-A-1", 10, T0, DataType.Int16, -5),
    ))
    out = host.handle("spBv1.0/site/NBIRTH/gw-9", encode_payload(birth), T0)
    assert [(r.sensor, r.value) for r in out.readings] == [("S-A-1", -5.0)]
    # Data without a datatype is read with the birth's (a signed Int16 here).
    data = pb.Payload(timestamp=T0 + 1, seq=1)
    data.metrics.add(alias=10, int_value=0xFFFF_FFFE)
    out = host.handle("spBv1.0/site/NDATA/gw-9", data.SerializeToString(), T0 + 1)
    assert [(r.sensor, r.ts, r.value) for r in out.readings] == [("S-A-1", T0 + 1, -2.0)]
