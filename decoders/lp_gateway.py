"""Decode InfluxDB line protocol (topic ``plant/<site>/lp``) straight into a batch.

Gateways running Telegraf (or anything that speaks line protocol) publish one
reading per line, in the schema :mod:`store.line_protocol` writes::

    combustible_lel,area=A1,sensor=LEL-1,site=S1,workshop=W1 value=12.5,quality=0i 1700000000000

* The ``sensor`` tag is the sensor id. The measurement (the sensor kind) and
  every other tag are not trusted for identity and are ignored.
* Field ``value`` (a float such as ``12.5``/``1e3``, or an integer ``12i`` /
  ``12u``) is the reading; ``quality`` is an optional integer field
  (``0i``–``3i``, default 0). Other fields (Telegraf adds some) are checked for
  syntax and otherwise ignored.
* The timestamp is optional: a line without one is taken to be read at
  ``now_ms`` (arrival time), as InfluxDB itself does. Its unit is ``precision``:
  ``"ns"``, ``"us"``, ``"ms"``, ``"s"``, or ``"auto"`` (the default), which
  infers it from the magnitude: ≥ 1e17 ns, ≥ 1e14 µs, ≥ 1e11 ms, else s. It
  is converted to integer ms, rounding down.
* Blank lines and ``#`` comment lines are skipped; ``\\r\\n`` endings and
  whitespace around a line are tolerated, and so are several spaces between
  the sections of a line.

Escaping (InfluxDB 1.x / Telegraf rules, which :mod:`store.line_protocol`
writes): in the measurement ``\\,`` and ``\\ ``; in tag keys, tag values and
field keys ``\\,``, ``\\=`` and ``\\ ``; any other backslash is literal. String
field values are double-quoted with ``\\"`` and ``\\\\`` escapes. Booleans are
``t``, ``T``, ``true``, ``True``, ``TRUE`` and the same for false.

Validation mirrors :mod:`decoders.json_gateway`, with the same reason codes, and
a rejected line never takes the rest of the message with it. Per line, in this
order: ``malformed_line`` (not line protocol: the detail names the problem and
its 1-based column), ``unknown_sensor`` (also: no ``sensor`` tag),
``bad_value`` (no ``value`` field, or a string/boolean one), ``bad_timestamp``
(not an integer), ``bad_quality`` (not an integer 0–3), ``non_finite_value``
(``1e999``; the non-standard ``NaN``/``inf`` literals some gateways write are
read as such too), ``timestamp_in_future``, ``timestamp_too_old``. A line's
rejection has ``index`` = its 0-based line number in the payload and
``reading`` = its text (at most 500 characters). A message is rejected whole
when it is too large (``payload_too_large``), not UTF-8 (``bad_encoding``) or
has more than ``limits.max_readings`` data lines (``too_many_readings``).

Speed: lines without a backslash or a double quote (nearly all of them) are cut
with ``str.partition``/``str.split``; any other line, and any line the fast
path does not accept, goes through a scanner of possessive regular expressions
(no backtracking), which also produces the error messages. So the two paths
cannot disagree on what is malformed, only on how fast they say it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from math import isfinite

from decoders.json_gateway import (
    DecodeLimits,
    DecodeResult,
    Rejection,
    short,
    timestamp_scale,
    wrong_site_or_unknown,
)
from model.batch import BatchBuilder

__all__ = [
    "PRECISIONS",
    "decode_line_protocol",
    "decode_line_protocol_into",
    "parse_line",
]

#: Explicit timestamp units, and the divisor (ns, us) or multiplier (s) to ms.
PRECISIONS = ("auto", "ns", "us", "ms", "s")
_MAX_LINE_IN_READING = 500
_DEFAULT_LIMITS = DecodeLimits()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MS_MIN, _MS_END = 10**11, 10**14  # the magnitudes "auto" reads as ms

_FLOAT_CHARS = "0123456789.eE+-"
_BOOLS = {
    "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}
_NON_FINITE = {
    s + n: float(s + n)
    for s in ("", "+", "-")
    for n in ("nan", "inf", "infinity")
}

# Slow-path scanners. Every repetition is possessive and its alternatives are
# disjoint, so no input makes them backtrack.
_MEASUREMENT = re.compile(r"(?:[^\\, ]|\\.)++", re.S)
_KEY = re.compile(r"(?:[^\\,= ]|\\.)++", re.S)  # tag key, tag value, field key
_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"', re.S)
_BARE = re.compile(r"[^, ]++")
_SPACES = re.compile(r" ++")
_STRING_ESCAPE = re.compile(r'\\([\\"])')

Scalar = float | int | bool | str
#: What :func:`parse_line` returns: sensor tag, ``value`` and ``quality``
#: fields (``None`` when absent) and the raw timestamp text (``None`` when absent).
Parsed = tuple[str | None, Scalar | None, Scalar | None, str | None]


class LineError(ValueError):
    """A line that is not line protocol; ``column`` is 1-based."""

    def __init__(self, column: int, problem: str) -> None:
        super().__init__(f"column {column}: {problem}")
        self.column = column
        self.problem = problem



def _precision_hint(t_ms: int, now_ms: int, precision: str) -> str:
    """Say when the timestamps are a power of 1000 off: the precision does not match
    what the gateway sends."""
    scale = timestamp_scale(t_ms, now_ms)
    if scale is None:
        return ""
    return (f"; read with precision {precision} it is {scale:g}× off the clock: the gateway "
            "most likely sends another unit; make the precision match it")

def _bare_scalar(tok: str) -> float | int | bool | None:
    """An unquoted field value, or None when it is not a line protocol literal."""
    last = tok[-1]
    if last == "i" or last == "u":
        digits = tok[:-1]
        body = digits[1:] if last == "i" and digits[:1] == "-" else digits
        if not (0 < len(body) <= 20 and body.isascii() and body.isdigit()):
            return None
        n = int(digits)
        if (last == "i" and _INT64_MIN <= n <= _INT64_MAX) or (last == "u" and n <= _UINT64_MAX):
            return n
        return None
    if not tok.strip(_FLOAT_CHARS):
        try:
            return float(tok)
        except ValueError:
            return None
    b = _BOOLS.get(tok)
    if b is not None:
        return b
    return _NON_FINITE.get(tok.lower())


def _unescape_key(raw: str) -> str:
    if "\\" not in raw:
        return raw
    return raw.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")


def _parse_slow(line: str) -> Parsed:
    """The careful scanner: escapes, quoted strings, and the exact error."""
    n = len(line)
    m = _MEASUREMENT.match(line)
    if m is None:
        raise LineError(1, "missing measurement name")
    pos = m.end()
    sensor: str | None = None
    while pos < n and line[pos] == ",":
        pos += 1
        k = _KEY.match(line, pos)
        if k is None:
            raise LineError(pos + 1, "empty tag key")
        pos = k.end()
        if pos >= n or line[pos] != "=":
            raise LineError(pos + 1, f"tag key {_unescape_key(k.group())!r} has no '=value'")
        pos += 1
        v = _KEY.match(line, pos)
        if v is None:
            raise LineError(pos + 1, f"tag {_unescape_key(k.group())!r} has an empty value")
        if k.group() == "sensor":
            if sensor is not None:
                raise LineError(k.start() + 1, "duplicate tag 'sensor'")
            sensor = _unescape_key(v.group())
        pos = v.end()
    if pos >= n:
        raise LineError(pos + 1, "line has no fields")
    if line[pos] != " ":
        raise LineError(pos + 1, f"unexpected {line[pos]!r} in the measurement or tags "
                                 "(escape ',', '=' and ' ' with a backslash)")
    s = _SPACES.match(line, pos)
    assert s is not None
    pos = s.end()
    value: Scalar | None = None
    quality: Scalar | None = None
    while True:
        k = _KEY.match(line, pos)
        if k is None:
            raise LineError(pos + 1, "empty field key")
        key = _unescape_key(k.group())
        pos = k.end()
        if pos >= n or line[pos] != "=":
            raise LineError(pos + 1, f"field key {key!r} has no '=value'")
        pos += 1
        col = pos + 1
        scalar: Scalar | None
        if pos < n and line[pos] == '"':
            q = _STRING.match(line, pos)
            if q is None:
                raise LineError(col, f"string value of field {key!r} has no closing quote")
            scalar = _STRING_ESCAPE.sub(r"\1", q.group()[1:-1])
            pos = q.end()
        else:
            b = _BARE.match(line, pos)
            if b is None:
                raise LineError(col, f"field {key!r} has an empty value")
            scalar = _bare_scalar(b.group())
            if scalar is None:
                raise LineError(col, f"field {key!r} has an invalid value {b.group()!r} "
                                     "(expected a number, 1i, 1u, a boolean or a quoted string)")
            pos = b.end()
        if key == "value":
            if value is not None:
                raise LineError(k.start() + 1, "duplicate field 'value'")
            value = scalar
        elif key == "quality":
            if quality is not None:
                raise LineError(k.start() + 1, "duplicate field 'quality'")
            quality = scalar
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        break
    if pos >= n:
        return sensor, value, quality, None
    if line[pos] != " ":
        raise LineError(pos + 1, f"unexpected {line[pos]!r} after field {key!r}")
    s = _SPACES.match(line, pos)
    assert s is not None
    pos = s.end()
    end = line.find(" ", pos)
    if end != -1:
        raise LineError(end + 1, "unescaped space after the timestamp")
    return sensor, value, quality, line[pos:] or None


def _parse_fast(line: str) -> Parsed | None:
    """The common line (no backslash, no quote, single spaces); None: ask the slow path.

    Anything odd, even legal (a repeated field), is left to the slow path.
    Hand-written because it was measured faster than the obvious alternatives
    (docs/benchmarks.md, "Design measurements").
    """
    key, _, rest = line.partition(" ")
    fields, _, ts = rest.partition(" ")
    if not fields or " " in ts:
        return None
    tags = key.split(",")
    if not tags[0]:
        return None
    sensor: str | None = None
    for tag in tags[1:]:
        k, _, v = tag.partition("=")
        if not k or not v or "=" in v:
            return None
        if k == "sensor":
            if sensor is not None:
                return None
            sensor = v
    value: Scalar | None = None
    quality: Scalar | None = None
    for field in fields.split(","):
        k, _, v = field.partition("=")
        if not k or not v or "=" in v:
            return None
        scalar = _bare_scalar(v)
        if scalar is None:
            return None
        if k == "value":
            if value is not None:
                return None
            value = scalar
        elif k == "quality":
            if quality is not None:
                return None
            quality = scalar
    return sensor, value, quality, ts or None


def parse_line(line: str) -> Parsed:
    """Parse one stripped, non-comment line; raise :class:`LineError` when malformed."""
    if "\\" not in line and '"' not in line:
        parsed = _parse_fast(line)
        if parsed is not None:
            return parsed
    return _parse_slow(line)


def _timestamp(tok: str) -> int | None:
    body = tok[1:] if tok[:1] == "-" else tok
    if not (0 < len(body) <= 19 and body.isascii() and body.isdigit()):
        return None
    t = int(tok)
    return t if _INT64_MIN <= t <= _INT64_MAX else None


def _to_ms(t: int, precision: str) -> int:
    if precision == "auto":
        a = -t if t < 0 else t
        precision = (
            "ns" if a >= 10**17 else "us" if a >= _MS_END else "ms" if a >= _MS_MIN else "s"
        )
    if precision == "ms":
        return t
    if precision == "ns":
        return t // 1_000_000
    if precision == "us":
        return t // 1_000
    return t * 1_000


def decode_line_protocol(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits = _DEFAULT_LIMITS,
    *,
    precision: str = "auto",
    plant_index: Mapping[str, int] | None = None,
) -> DecodeResult:
    """Decode and validate one line protocol message into a batch of its own."""
    out = BatchBuilder()
    rejections = decode_line_protocol_into(
        payload, sensor_index, now_ms, limits, out, precision=precision, plant_index=plant_index
    )
    return DecodeResult(out.build(), rejections)


def decode_line_protocol_into(
    payload: bytes,
    sensor_index: dict[str, int],
    now_ms: int,
    limits: DecodeLimits,
    out: BatchBuilder,
    *,
    precision: str = "auto",
    plant_index: Mapping[str, int] | None = None,
) -> list[Rejection]:
    """Decode one message, appending its valid readings to ``out``; return the rejections.

    Parameters
    ----------
    payload : bytes
        The MQTT message body: line protocol, one reading per line.
    sensor_index : dict
        Sensor id → row in the sensor table, for the sensors this message may
        carry (those of the topic's site).
    now_ms : int
        Wall-clock time of arrival, ms: bounds timestamps, and is the timestamp
        of a line that has none.
    limits : DecodeLimits
        The same limits as the JSON decoder (``max_readings`` counts data lines).
    out : BatchBuilder
        Valid readings are appended here; a message rejected whole appends nothing.
    precision : str
        Unit of the timestamps: ``"ns"``, ``"us"``, ``"ms"``, ``"s"`` or
        ``"auto"`` (inferred per line from the magnitude). Any other value
        raises :class:`ValueError`.
    plant_index : mapping, optional
        Every sensor of the plant: one here but not in ``sensor_index`` is
        rejected ``wrong_site``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if len(payload) > limits.max_payload_bytes:
        return [Rejection(
            "payload_too_large",
            f"{len(payload)} bytes is above the limit of {limits.max_payload_bytes} bytes; "
            "split the gateway's message",
        )]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Rejection("bad_encoding", f"line protocol must be UTF-8: {exc}")]
    lines = text.split("\n")
    if len(lines) > limits.max_readings:
        n_data = sum(1 for x in lines if (y := x.strip(" \t\r")) and y[0] != "#")
        if n_data > limits.max_readings:
            return [Rejection(
                "too_many_readings",
                f"{n_data} lines is above the limit of {limits.max_readings} per message",
            )]

    rejections: list[Rejection] = []
    reject = rejections.append
    ms, auto = precision == "ms", precision == "auto"
    ts_min = now_ms - limits.max_age_ms
    ts_max = now_ms + limits.max_future_skew_ms
    lookup = sensor_index.get
    add_sensor, add_ts = out.sensor.append, out.ts.append
    add_value, add_quality = out.value.append, out.quality.append
    for i, raw in enumerate(lines):
        line = raw.strip(" \t\r")
        if not line or line[0] == "#":
            continue
        try:
            # parse_line, inlined: one call less per line on the fast path.
            parsed = None
            if "\\" not in line and '"' not in line:
                parsed = _parse_fast(line)
            if parsed is None:
                parsed = _parse_slow(line)
        except LineError as exc:
            lead = len(raw) - len(raw.lstrip(" \t\r"))
            reject(Rejection(
                "malformed_line",
                f"not line protocol at column {exc.column + lead}: {exc.problem}",
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        sid, v, q, ts_text = parsed
        s = lookup(sid) if sid is not None else None
        if s is None:
            reason, detail = (("unknown_sensor", "line has no 'sensor' tag") if sid is None
                              else wrong_site_or_unknown(sid, plant_index, limits))
            reject(Rejection(reason, detail, i, raw[:_MAX_LINE_IN_READING]))
            continue
        if type(v) is float:
            fv = v
        elif type(v) is int:
            fv = float(v)  # at most 2**64: always finite as a float
        else:
            reject(Rejection(
                "bad_value",
                f"line has no 'value' field for sensor {sid}" if v is None
                else f"value {short(v)} of sensor {sid} is not a number",
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        if ts_text is None:
            t = now_ms
        else:
            t_raw = (int(ts_text) if ts_text.isdigit() and len(ts_text) <= 18 and ts_text.isascii()
                     else _timestamp(ts_text))
            if t_raw is None:
                reject(Rejection(
                    "bad_timestamp",
                    f"timestamp {ts_text[:40]!r} of sensor {sid} must be an integer "
                    f"({precision} precision)",
                    i, raw[:_MAX_LINE_IN_READING],
                ))
                continue
            t = t_raw if (ms or (auto and _MS_MIN <= t_raw < _MS_END)) else _to_ms(t_raw, precision)
        if q is None:
            q = 0
        elif type(q) is not int or not 0 <= q <= 3:
            reject(Rejection(
                "bad_quality", f"quality {q!r} of sensor {sid} must be an integer 0–3 (e.g. 0i)",
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        if not isfinite(fv):
            reject(Rejection(
                "non_finite_value", f"value {v!r} of sensor {sid} is not finite",
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        if t > ts_max:
            reject(Rejection(
                "timestamp_in_future",
                f"timestamp {t} ms of sensor {sid} is {(t - now_ms) / 1000:.0f} s ahead of this "
                f"server's clock (allowed {limits.max_future_skew_ms / 1000:.0f} s); "
                f"check the gateway clock and the precision ({precision})"
                + _precision_hint(t, now_ms, precision),
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        if t < ts_min:
            reject(Rejection(
                "timestamp_too_old",
                f"timestamp {t} ms of sensor {sid} is older than the "
                f"{limits.max_age_ms / 86_400_000:.0f}-day retention "
                f"(precision {precision})" + _precision_hint(t, now_ms, precision),
                i, raw[:_MAX_LINE_IN_READING],
            ))
            continue
        add_sensor(s)
        add_ts(t)
        add_value(fv)
        add_quality(q)
    return rejections
