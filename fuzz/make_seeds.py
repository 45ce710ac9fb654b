"""Write the seed corpora of the fuzzers: ``python fuzz/make_seeds.py`` (from anywhere).

Seeds are committed; this script is how they were made, so a seed can be
re-made or a new one added in code review rather than as an opaque file. Each
format gets valid messages (so the fuzzer starts past the envelope), one per
rejection reason, and the regressions: payloads that once crashed the service
or sit on a limit (nesting depth around orjson's 1024 and the dead letter's
254, a 100 KB sensor id, NaN/Infinity). The Sparkplug seeds are sessions in
the framing of ``fuzz_support.records``, built with the project's edge-node
simulator and codec. A 1 MB + 1 payload (the size limit) is not committed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import fuzz_support as fs
from fuzz_sparkplug import OP_RAW_TOPIC, OP_TICK, TOPICS

from simulators.sparkplug_edge import EdgeNodeMessages
from sparkplug import DataType, Metric, Payload, bd_seq_metric, encode_payload
from sparkplug import sparkplug_b_pb2 as pb
from tests.plants import small_plant

CORPUS = Path(__file__).resolve().parent / "corpus"
T0 = fs.NOW_MS
DEPTHS = (100, 500, 1023, 1024, 1025, 10000)
LONG_ID = "L" * 100_000


def _nest(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def json_seeds() -> dict[str, bytes]:
    """Gateway JSON: valid, one per rejection reason, and the regressions."""
    def msg(readings: str, head: str = f'"gateway":"gw-1","ts":{T0},') -> bytes:
        return f'{{{head}"readings":[{readings}]}}'.encode()

    seeds = {
        "valid_one": msg('{"sensor":"LEL-1","value":3.1}'),
        "valid_many": msg('{"sensor":"LEL-1","value":3.1},'
                          f'{{"sensor":"H2S-1","value":0,"ts":{T0 + 500},"quality":1}},'
                          '{"sensor":"PT-1","value":-12.5e2,"quality":3}'),
        "rejections": msg('7,{"value":1},{"sensor":"NOPE","value":1},'
                          '{"sensor":"LEL-1","value":"3.1"},{"sensor":"LEL-1","value":true},'
                          '{"sensor":"LEL-1","value":1,"ts":1.5},'
                          '{"sensor":"LEL-1","value":1,"quality":4},'
                          f'{{"sensor":"LEL-1","value":1,"ts":{T0 + 10**9}}},'
                          '{"sensor":"LEL-1","value":1,"ts":0},'
                          '{"sensor":"LEL-1","value":1e400},'
                          f'{{"sensor":"LEL-1","value":{10**400}}}'),
        "no_ts": msg('{"sensor":"O2-1","value":20.9}', head=""),
        "envelope_list": b"[]",
        "envelope_readings_object": b'{"readings":{}}',
        "envelope_ts_string": b'{"ts":"now","readings":[]}',
        "not_json": b'{"readings":[',
        "nan_infinity": msg('{"sensor":"LEL-1","value":NaN},{"sensor":"LEL-2","value":Infinity},'
                            '{"sensor":"H2S-1","value":-Infinity},{"sensor":"O2-1","value":20}'),
        "nested_readings_1000": b'{"readings":[' + _nest(1000).encode() + b"]}",
        "nested_envelope_field_1000": msg('{"sensor":"LEL-1","value":3.1}',
                                          head=f'"extra":{_nest(1000)},"ts":{T0},'),
        "nested_object_500": msg('{"sensor":"LEL-1","value":"x","meta":'
                                 + '{"a":' * 500 + "1" + "}" * 500 + "}"),
        "long_sensor_id_100k": msg(f'{{"sensor":"{LONG_ID}","value":1}}'),
        # Found by fuzz_json: NaN (or 1e400, or a lone surrogate) sends the message to
        # the stdlib parser, whose ints are unbounded and whose strings may hold lone
        # surrogates; a rejection echoing either is a letter orjson cannot write.
        "fallback_big_int": b'{"readings":[{"n":18446744073709551616}],"x":NaN}',
        "fallback_big_ts": msg('{"sensor":"LEL-1","value":NaN}', head=f'"ts":{2**64},'),
        "lone_surrogate": b'{"readings":[{"\\ud800":1}]}',
        # Found by fuzz_json: an integer ts past float range, read by the stdlib parser,
        # made the timestamp_in_future detail raise OverflowError out of the decoder.
        "fallback_huge_ts": msg(f'{{"sensor":"LEL-1","value":1,"ts":{10**320}}}', head='"x":NaN,'),
    }
    for d in DEPTHS:
        seeds[f"nested_value_{d}"] = msg(f'{{"sensor":"LEL-1","value":{_nest(d)}}}')
    return seeds


def lp_seeds() -> dict[str, bytes]:
    """Line protocol: every precision, escapes, one line per rejection reason, regressions."""
    line = "combustible_lel,sensor={} value={}{}"
    seeds = {
        "valid_brief": b"combustible_lel,sensor=LEL-1 value=12.5,quality=0i 1700000000000",
        "valid_precisions": "\n".join([
            line.format("LEL-1", "12.5,quality=0i", f" {T0}"),
            line.format("LEL-2", "13i", f" {T0 // 1000}"),
            line.format("H2S-1", "1u", f" {T0 * 1000}"),
            line.format("O2-1", "20.9,quality=1i", f" {T0 * 1_000_000}"),
            line.format("PT-1", "1e3", ""),
        ]).encode(),
        "escapes_and_strings": (
            "# a comment\r\n\r\n  combustible\\ lel,area=a\\,b,sensor=LEL-1 "
            'note="he said \\"hi\\" \\\\",value=1.5,ok=true   '
            f"{T0}\r\n"
            'm,sensor=LEL\\=2 value=2,s="a,b c"\n'
        ).encode(),
        "rejections": "\n".join([
            "no fields",
            "m,sensor value=1",
            "m,sensor=LEL-1 value=abc",
            "m,sensor=LEL-1 value=1 12 34",
            "m,sensor=LEL-1,sensor=LEL-2 value=1",
            "m,sensor=LEL-1 value=1,value=2",
            'm,sensor=LEL-1 value="1',
            "m value=1",
            "m,sensor=NOPE value=1",
            'm,sensor=LEL-1 value="1"',
            "m,sensor=LEL-1 value=t",
            "m,sensor=LEL-1 other=1",
            "m,sensor=LEL-1 value=1 1.5",
            "m,sensor=LEL-1 value=1,quality=9i",
            "m,sensor=LEL-1 value=1,quality=1.0",
            "m,sensor=LEL-1 value=1e999",
            "m,sensor=LEL-1 value=NaN",
            "m,sensor=LEL-1 value=-inf",
            f"m,sensor=LEL-1 value=1 {T0 + 10**9}",
            "m,sensor=LEL-1 value=1 0",
            "m,sensor=LEL-1 value=1 -9223372036854775808",
            "m,sensor=LEL-1 value=1 9223372036854775807",
            "m,sensor=LEL-1 value=18446744073709551615u",
            "m,sensor=LEL-1 value=99999999999999999999i",
        ]).encode(),
        "bad_utf8": b"m,sensor=LEL-1 value=1\xff\xfe",
        "long_sensor_id_100k": line.format(LONG_ID, "1", "").encode(),
    }
    return seeds


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _nested_template_metric(depth: int) -> bytes:
    """A Metric whose template value holds a metric whose template value holds ... ``depth``."""
    metric = _field(1, b"LEL-1")
    for _ in range(depth):
        metric = _field(18, _field(2, metric))  # Metric.template_value → Template.metrics
    return metric


def _not_utf8(payload: pb.Payload) -> bytes:
    """``payload`` serialised, with its string ``XX`` made two bytes that are not UTF-8."""
    return payload.SerializeToString().replace(b"XX", b"\xff\xfe")


def _odd_payloads() -> dict[str, bytes]:
    """Payloads the simulator never sends, built with the generated classes or by hand."""
    p = pb.Payload(timestamp=T0, seq=2)  # after the NBIRTH (0) and the DBIRTH (1)
    specs: list[dict[str, Any]] = [
        {"alias": 1, "double_value": math.nan},
        {"alias": 2, "long_value": 2**64 - 1, "datatype": int(DataType.Int64)},
        {"alias": 3, "string_value": "3.1"},
        {"alias": 4, "float_value": math.inf, "timestamp": T0},
        {"alias": 5, "int_value": 7, "datatype": 99},
        {"alias": 77, "double_value": 1.0},
        {"name": "PT-1", "double_value": 1.0, "timestamp": 2**64 - 1},
        {"alias": 1, "is_null": True},
        {"alias": 2, "double_value": 1.0, "is_historical": True, "timestamp": T0 - 1000},
    ]
    for spec in specs:
        p.metrics.add(**spec)
    data = p.SerializeToString()
    bad_seq = pb.Payload(timestamp=T0, seq=300).SerializeToString()
    named = encode_payload(Payload(T0, 2, (Metric(name="LEL-1", alias=1, datatype=DataType.Double,
                                                  value=1.0),)))
    unknown_alias = pb.Payload(timestamp=T0, seq=2)
    unknown_alias.metrics.add(name="XX", alias=99, double_value=1.0)
    return {
        # Found by fuzz_sparkplug: a proto2 string that is not UTF-8 decodes to bytes.
        "unknown_alias_name_not_utf8": _not_utf8(unknown_alias),
        "metrics": data,
        "bad_seq": bad_seq,
        "name_not_utf8": named.replace(b"LEL-1", b"LE\xff-1"),
        "nested_template_150": _field(2, _nested_template_metric(150)),
        "truncated": data[: len(data) // 2],
    }


def _nbirth_name_not_utf8() -> bytes:
    """Found by fuzz_sparkplug: an NBIRTH metric name that is not UTF-8 (it decodes to bytes)."""
    birth = pb.Payload(timestamp=T0, seq=0)
    birth.metrics.add(name="bdSeq", datatype=int(DataType.Int64), long_value=0)
    birth.metrics.add(name="XX", datatype=int(DataType.Double), double_value=1.0)
    return _not_utf8(birth)


def sparkplug_seeds() -> dict[str, bytes]:
    """Host sessions: normal, reordered, gaps, deaths, STATE, odd payloads, raw topics."""
    op = {topic: i for i, topic in enumerate(TOPICS)}

    def node() -> EdgeNodeMessages:
        return EdgeNodeMessages.from_plant(small_plant(), "s1", "gw-tf-a")

    def frames(messages: list[tuple[str, bytes]], advance: int = 1) -> bytes:
        return b"".join(fs.record(op[t], p, advance) for t, p in messages)

    values = {"LEL-1": 3.1, "LEL-2": 2.0, "H2S-1": 0.4, "O2-1": 20.9, "PT-1": 500.0}
    n = node()
    births = [(m.topic, m.payload) for m in n.births(T0, values)]
    data = [(m.topic, m.payload) for step in range(1, 5)
            for m in n.data(T0 + step * 1000, {k: v + step for k, v in values.items()})]
    death = (n.will().topic, n.will().payload)
    n.new_session()
    rebirths = [(m.topic, m.payload) for m in n.births(T0 + 9000, values)]
    odd = _odd_payloads()
    ddata = TOPICS[4]
    seeds = {
        "session": frames(births + data),
        "reordered": frames([*births, data[1], data[0], data[2]]),
        "gap_then_tick": frames([*births, data[0], data[2]]) + fs.record(OP_TICK, advance=30)
        + frames(data[3:]),  # taken in arrival order until the rebirth
        "duplicate": frames([*births, data[0], data[0]]),
        "death_rebirth_stale_will": frames([*births, death, *rebirths, death]),
        "data_before_birth": frames(data[:2]),
        "device_death": frames([*births, (TOPICS[5], encode_payload(Payload(T0, 2))), *data[1:2]]),
        "ghost_device_and_second_node": frames(
            [*births, (TOPICS[6], births[1][1]), (TOPICS[7], data[0][1]),
             (TOPICS[8], births[0][1]), (TOPICS[10], data[0][1])]),
        "nbirth_without_bdseq": frames([(TOPICS[0], encode_payload(Payload(T0, 0, (
            Metric(name="LEL-1", alias=1, datatype=DataType.Double, value=1.0),))))]),
        "ndeath_without_bdseq": frames([*births, (TOPICS[2], b"")]),
        "birth_oddities": frames([births[0], (TOPICS[3], encode_payload(Payload(T0, 1, (
            Metric(name="LEL-1", alias=1, datatype=DataType.Double, value=1.0),
            Metric(name="LEL-2", alias=1, datatype=DataType.Double, value=2.0),
            Metric(alias=3, datatype=DataType.Double, value=3.0),
            Metric(name="not-a-sensor", alias=9, datatype=DataType.Double, value=1.0),
            Metric(name="Device Control/Reboot", datatype=DataType.Boolean, value=False),
            bd_seq_metric(0),
        ))))]),
        "state": b"".join([
            fs.record(op[TOPICS[11]], json.dumps({"online": False, "timestamp": T0 - 1}).encode()),
            fs.record(op[TOPICS[11]], json.dumps({"online": False, "timestamp": T0}).encode()),
            fs.record(op[TOPICS[11]], _nest(1000).encode()),
            fs.record(op[TOPICS[12]], b'{"online": true}'),
        ]),
        "topics": frames([(TOPICS[13], b""), (TOPICS[14], b""), (TOPICS[15], b"")])
        + fs.record(OP_RAW_TOPIC, b"spBv1.0/s1/NBIRTH/gw-tf-a\0" + births[0][1])
        + fs.record(OP_RAW_TOPIC, b"spBv1.0/s\xff1/DBIRTH/gw/d+#\0"),
        "nbirth_name_not_utf8": frames([(TOPICS[0], _nbirth_name_not_utf8())]),
        # Data before birth from five nodes: rebirths past the overall limit are deferred
        # (sent by the tick), and the fifth node is past the harness's MAX_NODES.
        "many_nodes": b"".join(fs.record(OP_RAW_TOPIC, f"spBv1.0/s1/NDATA/gw-{i}\0".encode()
                                         + data[0][1]) for i in range(5))
        + fs.record(OP_TICK, advance=60),
    }
    for name, payload in odd.items():
        seeds[f"odd_{name}"] = frames([*births, (ddata, payload)])
    return seeds


def main() -> None:
    """(Re)write every seed file; files the script does not name are left alone."""
    for fmt, seeds in (("json", json_seeds()), ("lp", lp_seeds()),
                       ("sparkplug", sparkplug_seeds())):
        folder = CORPUS / fmt
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
