"""The line protocol decoder: Telegraf's escaping and precisions, exact readings, each bad
line dead-lettered with its reason while the good ones are kept."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decoders.json_gateway import DecodeLimits, DecodeResult
from decoders.lp_gateway import (
    LineError,
    _parse_fast,
    _parse_slow,
    decode_line_protocol,
    parse_line,
)
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from store.line_protocol import encode_readings, escape_measurement, escape_tag, series_prefixes
from tests.plants import small_plant

NOW = 1_764_337_200_000  # 2025-11-28T13:40:00Z, ms
AWKWARD = "tank 1,north=x"  # a sensor id that needs every tag escape
INDEX = {"A": 0, "B": 1, AWKWARD: 2}


def decode(text: str | bytes, precision: str = "auto", **limits: int) -> DecodeResult:
    payload = text if isinstance(text, bytes) else text.encode()
    return decode_line_protocol(payload, INDEX, NOW, DecodeLimits(**limits), precision=precision)


def readings(r: DecodeResult) -> list[tuple[int, int, float, int]]:
    b = r.batch
    return list(zip(b.sensor.tolist(), b.ts.tolist(), b.value.tolist(), b.quality.tolist(),
                    strict=True))


def test_telegraf_style_lines_decode_exactly() -> None:
    r = decode(
        "# written by telegraf\n"
        f"combustible_lel,area=tf-a,host=gw\\ 1,sensor=A,site=s1 value=12.5,quality=1i,"
        f'status="ok, \\"calibrated\\" today",uptime=3600i,online=true {NOW}000000\n'
        "\n"
        f"weird\\ meas\\,ure=ment,note=a\\=b\\,c,sensor={escape_tag(AWKWARD)} "
        f"value=-7i,raw=1.5e3,flag=F,path=\"C:\\\\gas\\\\\" {NOW - 1000}\n"
        f"toxic_ppm,sensor=B quality=0i,value=3u,q\\ uoted\\,key\\=x=\"a=b c\" "
        f"{NOW // 1000 - 5}\r\n"
        f"  oxygen_pct,sensor=B value=20.9  {NOW - 7}  \n"
    )
    assert r.rejections == []
    assert readings(r) == [
        (0, NOW, 12.5, 1),
        (2, NOW - 1000, -7.0, 0),
        (1, NOW - 5000, 3.0, 0),
        (1, NOW - 7, 20.9, 0),
    ]
    assert r.batch.sensor.dtype == np.int32 and r.batch.ts.dtype == np.int64
    assert r.batch.value.dtype == np.float64 and r.batch.quality.dtype == np.uint8


def test_escapes_and_strings_are_parsed_per_the_spec() -> None:
    sensor, value, quality, ts = parse_line(
        'm\\ 1\\,x,k\\ e\\,y\\==v\\ a\\,l\\=ue,sensor=a\\\\b '
        's="x \\"y\\" \\\\ \\n, z=1",value="a\\"b",quality=t 17'
    )
    # a backslash before anything but the escaped characters is literal (InfluxDB 1.x)
    assert sensor == "a\\\\b"
    assert (value, quality, ts) == ('a"b', True, "17")
    assert parse_line('m,sensor=A value=1,s="\\\\" 5') == ("A", 1.0, None, "5")
    # several fields in any order, integers and unsigned
    assert parse_line("m,sensor=A quality=2i,a=-3i,value=-4.5e-3") == ("A", -4.5e-3, 2, None)


@pytest.mark.parametrize(("precision", "ts", "ms"), [
    ("ns", NOW * 1_000_000 + 999_999, NOW),
    ("us", NOW * 1_000 + 999, NOW),
    ("ms", NOW, NOW),
    ("s", NOW // 1000, NOW // 1000 * 1000),
    ("auto", NOW * 1_000_000 + 999_999, NOW),
    ("auto", NOW * 1_000 + 999, NOW),
    ("auto", NOW, NOW),
    ("auto", NOW // 1000, NOW // 1000 * 1000),
])
def test_precision_explicit_and_inferred_floors_to_ms(precision: str, ts: int, ms: int) -> None:
    r = decode(f"m,sensor=A value=1 {ts}", precision)
    assert r.rejections == []
    assert r.batch.ts.tolist() == [ms]


def test_explicit_precision_is_not_second_guessed() -> None:
    # milliseconds read as seconds are ~55,000 years ahead
    r = decode(f"m,sensor=A value=1 {NOW}", "s")
    assert [x.reason for x in r.rejections] == ["timestamp_in_future"]
    with pytest.raises(ValueError, match="precision"):
        decode("m,sensor=A value=1", "minutes")


def test_missing_timestamp_is_arrival_time() -> None:
    r = decode("m,sensor=A value=1\nm,sensor=B value=2i,quality=3i")
    assert readings(r) == [(0, NOW, 1.0, 0), (1, NOW, 2.0, 3)]


def test_mixed_payload_rejects_each_bad_line_and_keeps_the_good_ones() -> None:
    lines = [
        f"m,sensor=A value=1 {NOW}",                       # 0 good
        f"m,sensor=nope value=1 {NOW}",                    # 1
        f"m,site=s1 value=1 {NOW}",                        # 2 no sensor tag
        f"m,sensor=A quality=0i {NOW}",                    # 3 no value field
        f'm,sensor=A value="3.2" {NOW}',                   # 4
        f"m,sensor=A value=true {NOW}",                    # 5
        f"m,sensor=A value=1 {NOW}.5",                     # 6
        f"m,sensor=A value=1,quality=4i {NOW}",            # 7
        f"m,sensor=A value=1,quality=1 {NOW}",             # 8 a float, not 1i
        f'm,sensor=A value=1,quality="1" {NOW}',           # 9
        f"m,sensor=A value=NaN {NOW}",                     # 10
        f"m,sensor=A value=1e999 {NOW}",                   # 11
        f"m,sensor=A value=1 {NOW + 3_600_000}",           # 12
        f"m,sensor=A value=1 {NOW - 40 * 86_400_000}",     # 13
        "",                                                # 14 blank: skipped
        "m,sensor=A=b value=1",                            # 15 unescaped '='
        "m,sensor=A value=1 2 3",                          # 16
        "m,sensor=A",                                      # 17 no fields
        "m,sensor=A value=",                               # 18
        'm,sensor=A value="unterminated',                  # 19
        "m,sensor=A value=1,",                             # 20
        ",sensor=A value=1",                               # 21
        "m,sensor=A value=12x",                            # 22
        "m,sensor=A,sensor=B value=1",                     # 23
        "m,sensor=A value=1,value=2",                      # 24
        "m,sensor=A value=1_000",                          # 25
        "m,sensor=A value=99999999999999999999i",          # 26 beyond int64
        f"m,sensor=B value=2,quality=2i {NOW - 1}",        # 27 good
    ]
    r = decode("\n".join(lines))
    assert readings(r) == [(0, NOW, 1.0, 0), (1, NOW - 1, 2.0, 2)]
    assert [(x.index, x.reason) for x in r.rejections] == [
        (1, "unknown_sensor"), (2, "unknown_sensor"), (3, "bad_value"), (4, "bad_value"),
        (5, "bad_value"), (6, "bad_timestamp"), (7, "bad_quality"), (8, "bad_quality"),
        (9, "bad_quality"), (10, "non_finite_value"), (11, "non_finite_value"),
        (12, "timestamp_in_future"), (13, "timestamp_too_old"),
        *((i, "malformed_line") for i in range(15, 27)),
    ]
    assert all(x.index is not None and x.reading == lines[x.index] for x in r.rejections)
    by_line = {x.index: x.detail for x in r.rejections}
    assert "no 'sensor' tag" in by_line[2]
    assert "no 'value' field" in by_line[3]
    assert "column 11" in by_line[15] and "'='" in by_line[15]
    assert "column 21" in by_line[16]
    assert "column 11" in by_line[17] and "no fields" in by_line[17]
    assert "column 18" in by_line[18] and "empty value" in by_line[18]
    assert "column 18" in by_line[19] and "closing quote" in by_line[19]
    assert "column 1:" in by_line[21]
    assert "'12x'" in by_line[22]
    assert "duplicate tag 'sensor'" in by_line[23]
    assert "duplicate field 'value'" in by_line[24]


def test_rejection_columns_count_leading_whitespace_and_reading_is_truncated() -> None:
    long = "m,sensor=A value=1 " + "9" * 1000
    r = decode("  m,sensor=A=b value=1\n" + long)
    assert [(x.index, x.reason) for x in r.rejections] == [
        (0, "malformed_line"), (1, "bad_timestamp")]
    assert "column 13" in r.rejections[0].detail
    assert r.rejections[1].reading == long[:500]
    assert r.rejections[0].to_dead_letter("plant/s1/lp", b"", 0)["reading"] == (
        "  m,sensor=A=b value=1")


def test_whole_message_rejections() -> None:
    r = decode(b"m,sensor=A value=1\n" * 10, max_payload_bytes=100)
    assert [(x.reason, x.index) for x in r.rejections] == [("payload_too_large", None)]
    r = decode(b"m,sensor=A value=1 \xff\xfe")
    assert [(x.reason, x.index) for x in r.rejections] == [("bad_encoding", None)]
    assert r.message_rejected and len(r.batch) == 0
    r = decode(b"m,sensor=A value=1\n" * 4, max_readings=3)
    assert [(x.reason, x.index) for x in r.rejections] == [("too_many_readings", None)]
    assert len(r.batch) == 0
    # blank and comment lines do not count
    r = decode(b"# hello\n\n" * 5 + b"m,sensor=A value=1\n" * 3, max_readings=3)
    assert r.rejections == [] and len(r.batch) == 3


def test_round_trip_through_our_encoder() -> None:
    table = SensorTable.from_config(small_plant())
    rng = np.random.default_rng(5)
    n = 2_000
    batch = ReadingBatch.from_columns(
        rng.integers(0, len(table), n),
        NOW - rng.integers(0, 86_400_000, n),
        np.concatenate([rng.normal(0, 1e3, n - 6), [0.0, -0.0, 5e-324, 1e300, -2.5, 3.0]]),
        rng.integers(0, 4, n),
    )
    payload = encode_readings(batch, series_prefixes(table))
    for precision in ("ms", "auto"):
        r = decode_line_protocol(payload, table.index, NOW, precision=precision)
        assert r.rejections == []
        for name in ("sensor", "ts", "value", "quality"):
            got, want = getattr(r.batch, name), getattr(batch, name)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def representable(text: str) -> bool:
    """Line protocol (1.x, Telegraf) cannot carry a backslash before a character it escapes,
    nor at the end: ``a\\ b`` reads as ``a\\`` then a separator. The encoder refuses only
    the trailing one."""
    return not text.endswith("\\") and not any(f"\\{c}" in text for c in " ,=")


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                         max_size=12).filter(representable),
                 min_size=1, max_size=5, unique=True),
    kind=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8)
    .filter(lambda s: representable(s) and s[0] not in "# "),
    value=st.floats(allow_nan=False, allow_infinity=False),
    quality=st.integers(0, 3),
)
def test_any_escaped_sensor_id_round_trips(ids: list[str], kind: str, value: float,
                                           quality: int) -> None:
    index = {sid: i for i, sid in enumerate(ids)}
    text = "".join(
        f"{escape_measurement(kind)},{escape_tag('sen sor')}=x,sensor={escape_tag(sid)}"
        f",zz=1 value={value!r},quality={quality}i {NOW}\n"
        for sid in ids
    )
    r = decode_line_protocol(text.encode(), index, NOW)
    assert r.rejections == []
    assert r.batch.sensor.tolist() == list(range(len(ids)))
    assert r.batch.value.tolist() == [value] * len(ids)
    assert r.batch.quality.tolist() == [quality] * len(ids)


LP_ALPHABET = st.sampled_from(list('m,sensor=value A B"\\ quality 1i 2.5e3 t 0 -#\t\r='))
junk_line = st.one_of(
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]),
            max_size=60),
    st.lists(LP_ALPHABET, max_size=40).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(junk_line, max_size=20))
def test_junk_never_raises_and_every_line_is_decoded_or_rejected_once(
    lines: list[str],
) -> None:
    r = decode_line_protocol("\n".join(lines).encode(), {"A": 0, "B": 1}, NOW)
    data = [i for i, x in enumerate(lines) if x.strip(" \t\r") and
            not x.strip(" \t\r").startswith("#")]
    rejected = [x.index for x in r.rejections]
    assert all(x.reason != "too_many_readings" for x in r.rejections)
    assert len(rejected) == len(set(rejected))
    assert set(rejected) <= set(data)
    assert len(r.batch) + len(rejected) == len(data)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(list("m,sensor=value A B quality 1i 2.5 t 0 -.e+u=")),
                max_size=40).map("".join).map(lambda s: s.strip(" \t\r")).filter(bool))
def test_fast_path_agrees_with_the_careful_scanner(line: str) -> None:
    fast = _parse_fast(line)
    try:
        slow = _parse_slow(line)
    except LineError:
        assert fast is None
    else:
        assert fast is None or fast == slow


@pytest.mark.parametrize("line", [
    'm,sensor=A value="' + '\\"' * 200_000,          # unterminated string of escapes
    "m,sensor=A" + "\\," * 200_000,                    # escapes without end
    "m,sensor=A value=" + "1" * 400_000 + "x",         # a number that fails at the end
    "m" + ",a=b" * 100_000,                            # tags and no fields
])
def test_pathological_lines_are_rejected_in_linear_time(line: str) -> None:
    start = time.perf_counter()
    r = decode(line)
    assert [x.reason for x in r.rejections] == ["malformed_line"]
    # Not a speed target: catastrophic regex backtracking would take hours on
    # these lines; linear parsing takes a fraction of a second.
    assert time.perf_counter() - start < 10.0


def test_a_precision_that_does_not_match_the_gateway_is_named() -> None:
    r = decode(f"m,sensor=A value=1 {NOW // 1000}", precision="ms")  # seconds sent as ms
    [x] = r.rejections
    assert x.reason == "timestamp_too_old"
    assert "read with precision ms it is 1000× off the clock" in x.detail
    assert "make the precision match" in x.detail
