"""Encode readings and alarm events as InfluxDB line protocol (``precision=ms``).

Schema (docs/architecture.md): one measurement per sensor kind; tags
``area``, ``sensor``, ``site``, ``workshop``; fields ``value`` (float) and
``quality`` (integer); the timestamp in milliseconds::

    combustible_lel,area=A1,sensor=LEL-1,site=S1,workshop=W1 value=12.5,quality=0i 1700000000000

Tags are written sorted by key, the order InfluxDB would otherwise sort them
into on every point. Alarm events go to the ``alarm_events`` measurement.

The text before ``value=`` depends only on the sensor, so it is escaped once
per sensor (:func:`series_prefixes`) and the hot path only formats numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.sensor_table import SensorTable

__all__ = [
    "ALARM_EVENTS_MEASUREMENT",
    "encode_alarm_events",
    "encode_readings",
    "escape_measurement",
    "escape_string_field",
    "escape_tag",
    "series_prefixes",
]

ALARM_EVENTS_MEASUREMENT = "alarm_events"

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_FIELD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# ",quality=<q>i " for every uint8 quality code, indexed by the code.
_QUALITY_TEXT = np.array([f",quality={q}i " for q in range(256)], dtype=object)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _check_text(what: str, text: str) -> None:
    # Line protocol has no escape for a line break in a name, and a trailing
    # backslash would escape the separator that follows it.
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a line break; line protocol cannot carry it")
    if text.endswith("\\"):
        raise ValueError(f"{what} {text!r} ends with a backslash; line protocol cannot carry it")


def escape_measurement(name: str) -> str:
    """A measurement name with commas and spaces escaped."""
    if not name:
        raise ValueError("a measurement name cannot be empty")
    _check_text("measurement", name)
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(text: str) -> str:
    """A tag key or tag value with commas, equals signs and spaces escaped."""
    _check_text("tag", text)
    return text.translate(_TAG_ESCAPES)


def escape_string_field(text: str) -> str:
    """A string field value, double-quoted, with backslashes and double quotes escaped."""
    return '"' + text.translate(_STRING_FIELD_ESCAPES) + '"'


def _tags(tags: Iterable[tuple[str, str]]) -> str:
    # An empty tag value is not valid line protocol; a missing tag is the same
    # thing to InfluxDB, so leave it out.
    return "".join(
        f",{escape_tag(key)}={escape_tag(value)}" for key, value in sorted(tags) if value
    )


def series_prefixes(table: SensorTable) -> list[str]:
    """``measurement,tags `` for every row of the table, escaped, ending in a space.

    ``prefixes[row]`` is the series key of the sensor at ``row``; pass the
    list to :func:`encode_readings`.
    """
    out = []
    for place in table.places:
        tags = (
            ("site", place.site),
            ("workshop", place.workshop),
            ("area", place.area),
            ("sensor", place.sensor.id),
        )
        out.append(escape_measurement(place.sensor.kind) + _tags(tags) + " ")
    return out


def encode_readings(batch: ReadingBatch, prefixes: list[str]) -> bytes:
    """Line protocol for every finite reading of ``batch``, one line each, ``\\n``-terminated.

    A NaN or infinite value is rejected by validation upstream; here it is
    skipped (InfluxDB would refuse the whole request for it). A sensor row
    outside ``prefixes`` raises :class:`ValueError`.
    """
    # Hand-written because every stored reading passes through here; it was
    # measured 2-3x faster than one f-string per reading and ten times faster
    # than a per-reading format loop (docs/benchmarks.md, "Design
    # measurements"). What makes it fast: tags escaped once per sensor
    # (``prefixes``); numbers formatted in C by orjson (shortest round-trip
    # text, exact like ``repr``); the six pieces of each line laid out in an
    # (n, 6) object array by NumPy fancy indexing and joined once, so no
    # Python bytecode runs per reading.
    if len(batch) == 0:
        return b""
    sensor, ts, value, quality = batch.sensor, batch.ts, batch.value, batch.quality
    lo, hi = int(sensor.min()), int(sensor.max())
    if lo < 0 or hi >= len(prefixes):
        raise ValueError(f"sensor rows {lo}..{hi} are outside the {len(prefixes)} series prefixes")
    finite = np.isfinite(value)
    if not finite.all():
        sensor, ts, value, quality = sensor[finite], ts[finite], value[finite], quality[finite]
        if len(sensor) == 0:
            return b""
    pieces = np.empty((len(sensor), 6), dtype=object)
    pieces[:, 0] = np.array(prefixes, dtype=object)[sensor]
    pieces[:, 1] = "value="
    pieces[:, 2] = _numbers(value, np.float64)
    pieces[:, 3] = _QUALITY_TEXT[quality]
    pieces[:, 4] = _numbers(ts, np.int64)
    pieces[:, 5] = "\n"
    return "".join(pieces.ravel().tolist()).encode()


def _numbers(column: npt.NDArray[Any], dtype: type[np.generic]) -> list[str]:
    """The shortest round-trip text of every number in ``column``, formatted in C."""
    text = orjson.dumps(np.ascontiguousarray(column, dtype=dtype), option=_NUMPY)
    return text[1:-1].decode().split(",")


def _float_field(name: str, value: float) -> str:
    return f",{name}={float(value)!r}" if math.isfinite(value) else ""


def encode_alarm_events(events: list[AlarmEvent]) -> bytes:
    """Line protocol for alarm events in the ``alarm_events`` measurement.

    Tags: site, workshop, area, post, sensor, limit, action. Fields: value and
    setpoint (floats; left out when not finite), priority and alarm_id
    (strings). Timestamp: the event's ``ts`` in ms.
    """
    lines = []
    measurement = escape_measurement(ALARM_EVENTS_MEASUREMENT)
    for e in events:
        tags = _tags(
            (
                ("site", e.site),
                ("workshop", e.workshop),
                ("area", e.area),
                ("post", e.post),
                ("sensor", e.sensor),
                ("limit", e.limit),
                ("action", e.action),
            )
        )
        fields = (
            f"priority={escape_string_field(e.priority)}"
            f",alarm_id={escape_string_field(e.alarm_id)}"
            + _float_field("value", e.value)
            + _float_field("setpoint", e.setpoint)
        )
        lines.append(f"{measurement}{tags} {fields} {int(e.ts)}\n")
    return "".join(lines).encode()
