"""The line-protocol gateway payload, as a Telegraf-fed gateway publishes it.

Topic ``plant/<site>/lp``, one reading per line, in the schema plantwatch
itself writes to InfluxDB (``store/line_protocol.py``) and reads back from
MQTT (``decoders/lp_gateway.py``)::

    combustible_lel,area=tf-loading,sensor=TF-L-LEL-01,site=nanhai,workshop=tank-farm \\
        value=1.25,quality=0i 1780243200000

(one line; broken here for width)

Measurement: the sensor kind; tags sorted by key (the order InfluxDB keeps
them in); field ``value`` as the shortest text that reads back to the same
float, ``quality`` 0 (good); the timestamp in integer milliseconds, which the
decoder's ``auto`` precision reads as ms for any date after 1973.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from model.plant import SensorPlace

__all__ = ["encode_lp_message", "escape_lp_measurement", "escape_lp_tag", "lp_topic",
           "series_prefix"]

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def lp_topic(site: str) -> str:
    """MQTT topic of a site's line-protocol gateways."""
    return f"plant/{site}/lp"


def escape_lp_measurement(name: str) -> str:
    """A measurement name with commas and spaces escaped."""
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_lp_tag(text: str) -> str:
    """A tag key or value with commas, equals signs and spaces escaped."""
    return text.translate(_TAG_ESCAPES)


def series_prefix(place: SensorPlace) -> str:
    """``measurement,tags `` of one sensor, escaped, ending in a space (computed once)."""
    tags = sorted(
        (("area", place.area), ("sensor", place.sensor.id), ("site", place.site),
         ("workshop", place.workshop))
    )
    text = "".join(f",{escape_lp_tag(k)}={escape_lp_tag(v)}" for k, v in tags if v)
    return escape_lp_measurement(place.sensor.kind) + text + " "


def encode_lp_message(prefixes: Sequence[str], values: Sequence[float], ts_ms: int) -> bytes:
    """One line per reading, ``\\n``-terminated, all at ``ts_ms``.

    Raises
    ------
    ValueError
        If a value is not finite (line protocol has no NaN; a gateway reports
        a failed sensor by quality, not by a made-up number).
    """
    lines = []
    suffix = f",quality=0i {int(ts_ms)}\n"
    for prefix, value in zip(prefixes, values, strict=True):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{prefix.strip()}: value {v} is not finite")
        lines.append(f"{prefix}value={v!r}{suffix}")
    return "".join(lines).encode()
