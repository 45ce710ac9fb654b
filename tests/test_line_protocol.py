"""Line protocol encoding of readings and alarm events."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.sensor_table import LIMIT_NAMES, SensorTable
from store.influx import series_chunks
from store.line_protocol import (
    encode_alarm_events,
    encode_readings,
    escape_measurement,
    escape_string_field,
    escape_tag,
    series_prefixes,
)
from tests.plants import small_plant

TS = 1_700_000_000_000


def awkward_table() -> SensorTable:
    """LEL-1 and O2-1 of the small plant, moved to a workshop and area whose ids need escaping.

    Config validation forbids such ids today; the encoder must not rely on it.
    """
    table = SensorTable.from_config(small_plant())
    rows = [table.ids.index("LEL-1"), table.ids.index("O2-1")]
    places = [
        dataclasses.replace(table.places[row], index=i, workshop="ws 1", area="a,b=c")
        for i, row in enumerate(rows)
    ]
    arrays = {
        name: getattr(table, name)[rows]
        for name in (*LIMIT_NAMES, "deadband", "range_lo", "range_hi")
    }
    return SensorTable(
        ids=[p.sensor.id for p in places],
        places=places,
        index={p.sensor.id: p.index for p in places},
        **arrays,
    )


def test_tag_escaping_of_spaces_commas_and_equals() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("plain-id_1.2") == "plain-id_1.2"
    assert escape_tag("炼油一车间") == "炼油一车间"
    # A measurement name escapes commas and spaces; '=' is literal there.
    assert escape_measurement("m a,b=c") == r"m\ a\,b=c"


@pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", "trailing\\"])
def test_text_line_protocol_cannot_carry_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="line protocol cannot carry"):
        escape_tag(bad)


def test_string_field_escaping() -> None:
    assert escape_string_field('say "hi" \\ bye') == r'"say \"hi\" \\ bye"'


def test_series_prefixes_are_escaped_and_sorted_by_tag_key() -> None:
    assert series_prefixes(awkward_table()) == [
        r"combustible_lel,area=a\,b\=c,sensor=LEL-1,site=s1,workshop=ws\ 1 ",
        r"oxygen_pct,area=a\,b\=c,sensor=O2-1,site=s1,workshop=ws\ 1 ",
    ]


def test_exact_output_for_a_small_batch() -> None:
    prefixes = series_prefixes(awkward_table())
    batch = ReadingBatch.from_columns(
        [1, 0, 1], [TS, TS + 1, TS + 1000], [20.9, 0.0, 19.25], [0, 2, 1]
    )
    assert encode_readings(batch, prefixes) == (
        rb"oxygen_pct,area=a\,b\=c,sensor=O2-1,site=s1,workshop=ws\ 1 "
        b"value=20.9,quality=0i 1700000000000\n"
        rb"combustible_lel,area=a\,b\=c,sensor=LEL-1,site=s1,workshop=ws\ 1 "
        b"value=0.0,quality=2i 1700000000001\n"
        rb"oxygen_pct,area=a\,b\=c,sensor=O2-1,site=s1,workshop=ws\ 1 "
        b"value=19.25,quality=1i 1700000001000\n"
    )


def test_empty_batch_is_empty_bytes() -> None:
    assert encode_readings(ReadingBatch.empty(), series_prefixes(awkward_table())) == b""


def _values(body: bytes) -> list[float]:
    return [float(line.split(b"value=")[1].split(b",")[0]) for line in body.splitlines()]


def test_floats_round_trip_exactly() -> None:
    values = [0.1, 1 / 3, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 1e16, 1e-5,
              123456789.123456789, -42.0, 2.0**53 + 2]  # fmt: skip
    n = len(values)
    batch = ReadingBatch.from_columns(np.zeros(n), np.arange(n) + TS, values)
    parsed = _values(encode_readings(batch, series_prefixes(awkward_table())))
    assert parsed == values
    assert [math.copysign(1, v) for v in parsed] == [math.copysign(1, v) for v in values]


def test_non_finite_values_are_left_out() -> None:
    batch = ReadingBatch.from_columns(
        [0, 0, 0, 0], [TS, TS + 1, TS + 2, TS + 3], [1.0, np.nan, np.inf, -np.inf]
    )
    assert encode_readings(batch, series_prefixes(awkward_table())).count(b"\n") == 1
    only_nan = ReadingBatch.from_columns([0], [TS], [np.nan])
    assert encode_readings(only_nan, series_prefixes(awkward_table())) == b""


@pytest.mark.parametrize("row", [-1, 2])
def test_sensor_row_outside_the_table_is_an_error(row: int) -> None:
    batch = ReadingBatch.from_columns([0, row], [TS, TS], [1.0, 2.0])
    with pytest.raises(ValueError, match="outside the 2 series prefixes"):
        encode_readings(batch, series_prefixes(awkward_table()))


def test_non_contiguous_columns_encode_the_same() -> None:
    prefixes = series_prefixes(awkward_table())
    full = ReadingBatch.from_columns([0, 1] * 4, TS + np.arange(8), np.arange(8) / 7, [0] * 8)
    strided = ReadingBatch(full.sensor[::2], full.ts[::2], full.value[::2], full.quality[::2])
    copied = ReadingBatch.from_columns(
        full.sensor[::2].copy(), full.ts[::2].copy(), full.value[::2].copy(), full.quality[::2]
    )
    assert encode_readings(strided, prefixes) == encode_readings(copied, prefixes)


LINE = re.compile(
    rb"^(?P<prefix>[^ ]+(?:\\ [^ ]*)* )value=(?P<value>[-+0-9.eE]+),quality=(?P<quality>\d+)i "
    rb"(?P<ts>-?\d+)$"
)


@st.composite
def batches(draw: st.DrawFn) -> ReadingBatch:
    n = draw(st.integers(0, 40))
    sensor = draw(hnp.arrays(np.int32, n, elements=st.integers(0, 4)))
    ts = draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**62), 2**62)))
    value = draw(hnp.arrays(np.float64, n, elements=st.floats(allow_nan=True, allow_infinity=True)))
    quality = draw(hnp.arrays(np.uint8, n))
    return ReadingBatch(sensor, ts, value, quality)


@settings(max_examples=200, deadline=None)
@given(batches())
def test_every_line_has_the_expected_structure(batch: ReadingBatch) -> None:
    table = SensorTable.from_config(small_plant())
    prefixes = series_prefixes(table)
    body = encode_readings(batch, prefixes)
    assert body == b"" or body.endswith(b"\n")
    lines = body.splitlines()
    finite = np.isfinite(batch.value)
    assert len(lines) == int(finite.sum())
    expected = zip(
        batch.sensor[finite].tolist(),
        batch.value[finite].tolist(),
        batch.quality[finite].tolist(),
        batch.ts[finite].tolist(),
        strict=True,
    )
    for line, (sensor, value, quality, ts) in zip(lines, expected, strict=True):
        match = LINE.match(line)
        assert match is not None, line
        assert match["prefix"].decode() == prefixes[sensor]
        assert float(match["value"]) == value
        assert int(match["quality"]) == quality
        assert int(match["ts"]) == ts


def _event(**changes: Any) -> AlarmEvent:
    fields: dict[str, Any] = {
        "alarm_id": "LEL-1:hh", "sensor": "LEL-1", "limit": "hh", "action": "raise",
        "ts": TS, "value": 51.5, "setpoint": 50.0, "priority": "highest", "site": "s1",
        "workshop": "ws 1", "area": "tf-a", "team": "team-a", "post": "post-tf",
        "kind": "combustible_lel", "unit": "%LEL",
    }  # fmt: skip
    fields.update(changes)
    return AlarmEvent(**fields)


def test_alarm_event_exact_output() -> None:
    assert encode_alarm_events([_event()]) == (
        rb"alarm_events,action=raise,area=tf-a,limit=hh,post=post-tf,sensor=LEL-1,site=s1,"
        rb"workshop=ws\ 1 "
        b'priority="highest",alarm_id="LEL-1:hh",value=51.5,setpoint=50.0 1700000000000\n'
    )


def test_alarm_event_string_fields_are_escaped_and_non_finite_floats_left_out() -> None:
    body = encode_alarm_events([_event(priority='hi "x" \\', setpoint=float("nan"))])
    assert b'priority="hi \\"x\\" \\\\",' in body
    assert b"setpoint" not in body
    assert encode_alarm_events([]) == b""


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50)), min_size=1, max_size=300),
    st.integers(1, 40),
)
def test_series_chunks_group_each_series_whole_and_in_time_order(
    rows: list[tuple[int, int]], lines_per_write: int
) -> None:
    sensor = np.array([s for s, _ in rows], np.int32)
    ts = np.array([t for _, t in rows], np.int64)
    value = np.arange(len(rows), dtype=np.float64)  # identifies the row
    batch = ReadingBatch.from_columns(sensor, ts, value)
    chunks = series_chunks(batch, lines_per_write)

    # every reading exactly once
    assert sorted(np.concatenate([c.value for c in chunks]).tolist()) == value.tolist()
    seen: set[int] = set()
    for chunk in chunks:
        series = set(chunk.sensor.tolist())
        assert not series & seen, "a series was split over two requests"
        seen |= series
        key = list(zip(chunk.sensor.tolist(), chunk.ts.tolist(), strict=True))
        assert key == sorted(key), "not grouped by series, in time order"
        # the original row's sensor and time travel with its value
        rows_of = chunk.value.astype(int)
        assert (sensor[rows_of] == chunk.sensor).all() and (ts[rows_of] == chunk.ts).all()
        # a chunk passes the size only by the points of the series it ends with
        last = int(chunk.sensor[-1])
        assert len(chunk) - int((chunk.sensor == last).sum()) < lines_per_write
