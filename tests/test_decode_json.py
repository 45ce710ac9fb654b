"""The JSON gateway decoder: good readings kept, each bad one rejected with its reason."""

from __future__ import annotations

import json

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.json_gateway import DecodeLimits, decode_gateway_json

INDEX = {"A": 0, "B": 1, "C": 2}
NOW = 1_764_337_200_000


def decode(doc: object, **kw: int):
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decode_gateway_json(payload, INDEX, NOW, DecodeLimits(**kw))


def test_readings_with_message_and_own_timestamps() -> None:
    r = decode({"gateway": "gw", "ts": NOW, "readings": [
        {"sensor": "A", "value": 1.5},
        {"sensor": "C", "value": 0, "ts": NOW - 500, "quality": 2},
    ]})
    assert r.rejections == []
    assert r.batch.sensor.tolist() == [0, 2]
    assert r.batch.ts.tolist() == [NOW, NOW - 500]
    assert r.batch.value.tolist() == [1.5, 0.0]
    assert r.batch.quality.tolist() == [0, 2]
    assert r.batch.sensor.dtype == np.int32 and r.batch.ts.dtype == np.int64


def test_mixed_good_and_bad_readings_keep_the_good_ones() -> None:
    payload = json.dumps({"ts": NOW, "readings": [
        {"sensor": "A", "value": 1.0},
        {"sensor": "nope", "value": 1.0},
        {"sensor": "B", "value": float("nan")},
        {"sensor": "B", "value": float("inf")},
        {"sensor": "B", "value": "3.2"},
        {"sensor": "B", "value": True},
        {"sensor": "C", "value": 2.0, "ts": NOW + 3_600_000},
        {"sensor": "C", "value": 2.0, "ts": NOW - 40 * 86_400_000},
        {"sensor": "C", "value": 2.0, "ts": 1.5e12},
        {"sensor": "C", "value": 2.0, "quality": 9},
        "not an object",
        {"sensor": "C", "value": 4.0},
    ]}).encode()  # stdlib json writes NaN/Infinity, as many gateways do
    r = decode_gateway_json(payload, INDEX, NOW)
    assert r.batch.sensor.tolist() == [0, 2]
    assert r.batch.value.tolist() == [1.0, 4.0]
    reasons = [(x.index, x.reason) for x in r.rejections]
    assert reasons == [
        (1, "unknown_sensor"), (2, "non_finite_value"), (3, "non_finite_value"),
        (4, "bad_value"), (5, "bad_value"), (6, "timestamp_in_future"),
        (7, "timestamp_too_old"), (8, "bad_timestamp"), (9, "bad_quality"),
        (10, "bad_reading"),
    ]
    assert not r.message_rejected
    assert "ahead of this server's clock" in r.rejections[5].detail
    letter = r.rejections[1].to_dead_letter("plant/s1/gw", payload, NOW)
    assert letter["reading"] == {"sensor": "B", "value": "nan", "ts": NOW}
    orjson.dumps(letter)  # every dead letter is JSON


def test_whole_message_rejections() -> None:
    assert decode(b"{not json").rejections[0].reason == "malformed_json"
    assert decode([1, 2]).rejections[0].reason == "bad_envelope"
    assert decode({"readings": {"a": 1}}).rejections[0].reason == "bad_envelope"
    assert decode({"ts": "now", "readings": []}).rejections[0].reason == "bad_timestamp"
    big = {"ts": NOW, "readings": [{"sensor": "A", "value": 1.0}] * 200}
    r = decode(big, max_payload_bytes=1024)
    assert r.rejections[0].reason == "payload_too_large" and len(r.batch) == 0
    assert decode(big, max_readings=10).rejections[0].reason == "too_many_readings"
    letter = decode(b"\xff\xfe garbage").rejections[0].to_dead_letter("t", b"\xff\xfe", NOW)
    assert letter["reason"] == "malformed_json" and letter["payload_bytes"] == 2


def test_missing_timestamp_everywhere() -> None:
    r = decode({"readings": [{"sensor": "A", "value": 1.0}]})
    assert [x.reason for x in r.rejections] == ["bad_timestamp"]


def test_huge_integer_timestamp_is_rejected_not_crashing() -> None:
    r = decode({"readings": [{"sensor": "A", "value": 1.0, "ts": 10**30},
                             {"sensor": "B", "value": 2.0, "ts": NOW}]})
    # orjson reads a >64-bit integer as a float, so it is not integer ms.
    assert [x.reason for x in r.rejections] == ["bad_timestamp"]
    assert r.batch.sensor.tolist() == [1]
    # NaN sends the message to the stdlib parser; it reads the integer as orjson does
    # (a float), so the same reading is refused for the same reason, and nothing
    # later can overflow on a 10**320 timestamp.
    for ts in (10**30, 10**320):
        r = decode({"readings": [{"sensor": "A", "value": float("nan"), "ts": ts}]})
        assert [x.reason for x in r.rejections] == ["bad_timestamp"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C", "X"]),
                          st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                    st.integers(-10**6, 10**6), st.text(max_size=3))),
                max_size=40))
def test_every_reading_is_kept_or_rejected_exactly_once(readings) -> None:
    doc = {"ts": NOW, "readings": [{"sensor": s, "value": v} for s, v in readings]}
    r = decode_gateway_json(json.dumps(doc).encode(), INDEX, NOW)
    assert len(r.batch) + len(r.rejections) == len(readings)
    assert np.isfinite(r.batch.value).all()
    rejected = {x.index for x in r.rejections}
    assert len(rejected) == len(r.rejections)


def test_a_timestamp_in_seconds_is_refused_saying_which_unit_was_meant() -> None:
    r = decode({"ts": NOW // 1000, "readings": [{"sensor": "A", "value": 1.0}]})
    [x] = r.rejections
    assert x.reason == "timestamp_too_old"
    assert f"it looks like seconds since the epoch: send milliseconds (now is {NOW})" in x.detail
    r = decode({"ts": NOW * 1_000_000, "readings": [{"sensor": "A", "value": 1.0}]})
    assert "it looks like nanoseconds" in r.rejections[0].detail
    r = decode({"ts": NOW - 40 * 86_400_000, "readings": [{"sensor": "A", "value": 1.0}]})
    assert "looks like" not in r.rejections[0].detail  # just old: no unit to blame
