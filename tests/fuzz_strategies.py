"""Hypothesis strategies for the fuzz suites: hostile MQTT traffic that knows its own answer.

The decoders and the pipeline are fed by MQTT, so every byte is hostile. The
strategies here are structure-aware: they build JSON gateway messages, line
protocol and Sparkplug B protobuf the way gateways (and attackers) do, mixing
valid readings with invalid ones, and every generated :class:`Message` carries
what the service must make of it: the readings it must store and how many
rejections it must dead-letter and count. Used by ``test_fuzz_decoders.py``
and ``test_fuzz_pipeline.py``.

Rules the generators keep, so that the expected answer is exact:

* A valid reading has a known sensor of site ``s1``, a finite value, an
  integer ms timestamp within the window the store keeps, and quality 0–3.
* An invalid reading has at least one defect, so it is exactly one rejection
  (the decoders stop at the first); the rest of its message is unaffected.
* Nesting in a *mixed* message stays shallow (:data:`MAX_MIXED_DEPTH`): a
  message nested past a sane whole-message depth limit may be refused whole,
  which would take its valid siblings with it. Deep nesting comes in
  messages of its own (:func:`deep_json_messages`), where it is one
  rejection whatever the decoder decides.
* Timestamps are relative to :data:`NOW_MS`, taken when this module is
  imported: valid ones at most a minute ahead of it (the service allows five),
  invalid ones a day ahead or a month behind, so a slow run changes nothing.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from hypothesis import Phase, settings
from hypothesis import strategies as st

from decoders.json_gateway import DecodeLimits
from decoders.sparkplug_host import SparkplugHost
from ingest import dead_letter
from ingest.pipeline import MAX_DEAD_LETTERS_PER_MESSAGE, PipelineConfig
from model.batch import ReadingBatch
from model.sensor_table import SensorTable
from simulators.sparkplug_edge import EdgeNodeMessages
from sparkplug import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    MessageType,
    Metric,
    Payload,
    encode_payload,
)
from sparkplug import sparkplug_b_pb2 as pb
from store.line_protocol import (
    encode_readings,
    escape_measurement,
    escape_string_field,
    escape_tag,
    series_prefixes,
)
from tests.plants import small_plant

P = ParamSpec("P")
R = TypeVar("R")

PLANT = small_plant()
TABLE = SensorTable.from_config(PLANT)
INDEX: dict[str, int] = dict(TABLE.index)
SENSORS: tuple[str, ...] = tuple(TABLE.ids)
SITE = "s1"
GATEWAY = TABLE.places[0].gateway  # gw-tf-a: the small plant's one gateway / edge node
AREA = TABLE.places[0].area  # tf-a: its one Sparkplug device
PLANT_NODES: frozenset[tuple[str, str]] = frozenset((p.site, p.gateway) for p in TABLE.places)
PREFIXES = series_prefixes(TABLE)
LIMITS = DecodeLimits()
DEADLETTER_TOPIC = PipelineConfig().deadletter_topic

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000
MAX_LETTER_BYTES = 64 * 1024
"""A dead letter is for a person to read: no input may make one larger than this."""
MAX_MIXED_DEPTH = 6
"""Deepest list/object nesting inside a reading of a mixed message (the envelope adds 3)."""
REGRESSION_DEPTHS = (100, 500, 1000, 1023, 1024, 1025, 10_000)
"""The issue's nesting depths: 1,000 crashed the service; orjson.dumps gives up past 254,
repr() near the recursion limit (1,000), orjson.loads near 1,024."""


def fuzz_settings(max_examples: int) -> settings:
    """Examples per test, scaled by ``PLANTWATCH_FUZZ_SCALE`` (e.g. 20 for a nightly run).

    No deadline: one pipeline example starts a SQLite store and an event loop,
    and a 2-core machine shared with other jobs makes timing noisy. No explain
    phase: it re-runs a failing example under coverage tracing, which costs
    more than it tells when one example is a whole pipeline run.
    """
    scale = float(os.environ.get("PLANTWATCH_FUZZ_SCALE", "1"))
    return settings(max_examples=max(1, round(max_examples * scale)), deadline=None,
                    phases=[p for p in Phase if p is not Phase.explain])


SERVICE_RECURSION_LIMIT = sys.getrecursionlimit()
"""The interpreter's limit, as the service runs with it (read before any test runs)."""


def at_service_recursion_limit(test: Callable[P, R]) -> Callable[P, R]:
    """Run a hypothesis test body at the service's recursion limit.

    Hypothesis raises the limit while it runs a test (to keep its own stack
    overflows non-flaky), and input nested ~1,000 deep crashes the ingest loop at
    the interpreter's limit but not at hypothesis's: without this the regression
    payloads pass in a fuzz test. Put it under ``@given``; the limit is restored
    before hypothesis looks at it again.
    """

    @functools.wraps(test)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        saved = sys.getrecursionlimit()
        sys.setrecursionlimit(min(saved, SERVICE_RECURSION_LIMIT))
        try:
            return test(*args, **kwargs)
        finally:
            sys.setrecursionlimit(saved)

    return wrapper


def letter_bytes(letter: dict[str, Any]) -> bytes:
    """A dead letter serialised as the service writes it (``ingest.dead_letter.encode``:
    bounded, never raising; a letter it could not write comes out as ``internal_error``,
    which the tests refuse)."""
    return dead_letter.encode(letter)


def dead_letters_for(rejections: int) -> int:
    """How many dead letters a message with this many rejections publishes (the cap, then
    one ``more_rejections`` summary)."""
    cap = MAX_DEAD_LETTERS_PER_MESSAGE
    return min(rejections, cap) + (1 if rejections > cap else 0)


def plant_host(**kwargs: Any) -> SparkplugHost:
    """The Sparkplug host for the small plant, built as ``plantwatch.service`` builds it:
    told the plant's edge nodes and each site's sensors."""
    kwargs.setdefault("nodes", TABLE.nodes())
    kwargs.setdefault("site_index", TABLE.by_site())
    return SparkplugHost("pw-fuzz", INDEX, **kwargs)


# -- what a message must become ------------------------------------------------


def short_repr(data: bytes, limit: int = 400) -> str:
    """Bytes as hypothesis should print them in a falsifying example: replayable when
    small, cut when large (a 90 kB repr is no help, and hypothesis warns about it)."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r} + …({len(data) - limit} more bytes)"


class ShortRepr:
    """Makes hypothesis print a falsifying example with the class's own (short) ``__repr__``
    rather than field by field, which it does for dataclasses."""

    __slots__ = ()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, slots=True)
class Blob(ShortRepr):
    """A payload for a decoder, printed short (see :func:`short_repr`)."""

    data: bytes

    def __repr__(self) -> str:
        return f"Blob({short_repr(self.data)})"


@dataclass(frozen=True, slots=True)
class Reading:
    """A valid reading: the service must store exactly this."""

    sensor: str
    ts: int
    value: float
    quality: int = 0

    @property
    def row(self) -> tuple[int, int, float, int]:
        """As a decoded batch holds it: (sensor row, ts, value, quality)."""
        return INDEX[self.sensor], self.ts, float(self.value), self.quality


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a message (a JSON reading, a line) and what it must become."""

    data: Any
    reading: Reading | None
    rejections: int


@dataclass(frozen=True, slots=True)
class Message(ShortRepr):
    """One MQTT message, with the readings it must store and the rejections it must count."""

    kind: str
    topic: str
    payload: bytes
    valid: tuple[Reading, ...]
    rejections: int
    rejected_at: tuple[int, ...] = ()
    """Positions of the rejected readings (JSON) or lines (line protocol), if known."""

    def __repr__(self) -> str:
        return (f"Message({self.kind!r}, {self.topic!r}, {short_repr(self.payload)}, "
                f"valid={len(self.valid)}, rejections={self.rejections})")


def _message(kind: str, topic: str, payload: bytes, items: Sequence[Item]) -> Message:
    return Message(kind, topic, payload,
                   tuple(i.reading for i in items if i.reading is not None),
                   sum(i.rejections for i in items),
                   tuple(k for k, i in enumerate(items) if i.rejections))


# -- building blocks -----------------------------------------------------------

VALID_TS = st.integers(NOW_MS - 7 * DAY_MS, NOW_MS + 60_000)
TOO_OLD_TS = st.integers(0, NOW_MS - 31 * DAY_MS)
FUTURE_TS = st.integers(NOW_MS + DAY_MS, 2**63 - 1)
VALUES = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
"""Every value a decoder must accept: any finite float, down to 5e-324 and up to 1.8e308."""
PLAUSIBLE = st.floats(-1e9, 1e9) | st.integers(-(10**9), 10**9)
"""Values for pipeline fuzzing: finite values of extreme magnitude make the detectors
overflow, which ``tests/test_fuzz_pipeline.py`` checks once, deterministically, so that a
fuzz failure is about ingest and shrinks fast."""
QUALITIES = st.integers(0, 3)
BAD_QUALITIES = (st.integers(max_value=-1) | st.integers(min_value=4) | st.text(max_size=3)
                 | st.floats() | st.booleans() | st.none())
SHORT_TEXT = st.text(max_size=16)
UNKNOWN_IDS = st.text(max_size=24).filter(lambda s: s not in INDEX)
HUGE_TEXT = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", '"', "\\", "\u2603", "\0"]),
                      st.integers(MAX_LETTER_BYTES + 1, 90_000))
"""One string longer than a dead letter may be (two choices for hypothesis, not 70,000)."""
GATEWAYS = st.sampled_from([GATEWAY, "gw-1", "gw-b"]) | st.from_regex(r"[a-z0-9-]{1,12}",
                                                                       fullmatch=True)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False) | SHORT_TEXT)


def nested_lists(depth: int, leaf: Any = None) -> Any:
    """``[[…[leaf]…]]``, ``depth`` lists deep (built iteratively: any depth)."""
    value: Any = [] if leaf is None else [leaf]
    for _ in range(depth - 1):
        value = [value]
    return value


JSON_CONTAINERS = st.recursive(
    st.lists(JSON_SCALARS, max_size=3) | st.dictionaries(SHORT_TEXT, JSON_SCALARS, max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(SHORT_TEXT, inner, max_size=2),
    max_leaves=MAX_MIXED_DEPTH - 1,
) | st.integers(1, MAX_MIXED_DEPTH).map(nested_lists)
"""Lists and objects no deeper than :data:`MAX_MIXED_DEPTH`."""


def depth_of(value: Any) -> int:
    """Nesting depth of a JSON value (0 for a scalar), iteratively."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d + 1)
            stack.extend((c, d + 1) for c in (node.values() if isinstance(node, dict) else node))
    return deepest


# -- JSON gateway messages -----------------------------------------------------


@st.composite
def valid_json_items(draw: st.DrawFn, msg_ts: int | None,
                     values: st.SearchStrategy[float | int] = VALUES) -> Item:
    """A valid reading, written the ways gateways write them (own or message ts, extras)."""
    sensor = draw(st.sampled_from(SENSORS))
    value = draw(values)
    doc: dict[str, Any] = {"sensor": sensor, "value": value}
    if msg_ts is not None and draw(st.booleans()):
        ts = msg_ts  # inherited from the message
    else:
        ts = draw(VALID_TS)
        doc["ts"] = ts
    quality = 0
    if draw(st.booleans()):
        quality = draw(QUALITIES)
        doc["quality"] = quality
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["unit", "note", "gw"]))] = draw(SHORT_TEXT)
    keys = draw(st.permutations(list(doc)))
    return Item({k: doc[k] for k in keys}, Reading(sensor, ts, float(value), quality), 0)


@st.composite
def invalid_json_items(draw: st.DrawFn) -> Item:
    """A reading with at least one defect: one rejection, whatever the defect."""
    good: dict[str, Any] = {"sensor": draw(st.sampled_from(SENSORS)), "value": draw(VALUES),
                            "ts": draw(VALID_TS)}
    defect = draw(st.sampled_from([
        "not_an_object", "unknown_sensor", "no_sensor", "bad_value", "no_value", "nested_value",
        "bad_ts", "too_old", "future", "bad_quality", "non_finite",
    ]))
    doc: Any = dict(good)
    if defect == "not_an_object":
        doc = draw(JSON_SCALARS | JSON_CONTAINERS.filter(lambda v: not isinstance(v, dict)))
    elif defect == "unknown_sensor":
        doc["sensor"] = draw(UNKNOWN_IDS | st.integers() | st.none() | st.booleans()
                             | st.lists(SHORT_TEXT, max_size=2))
    elif defect == "no_sensor":
        del doc["sensor"]
    elif defect == "bad_value":
        doc["value"] = draw(SHORT_TEXT | st.booleans() | st.none())
    elif defect == "no_value":
        del doc["value"]
    elif defect == "nested_value":
        doc["value"] = draw(JSON_CONTAINERS)
    elif defect == "bad_ts":
        doc["ts"] = draw(SHORT_TEXT | st.floats() | st.booleans() | st.none()
                         | st.lists(VALID_TS, max_size=2))
    elif defect == "too_old":
        doc["ts"] = draw(TOO_OLD_TS)
    elif defect == "future":
        doc["ts"] = draw(FUTURE_TS | st.integers(2**64, 2**70))  # beyond 64 bits, too
    elif defect == "bad_quality":
        doc["quality"] = draw(BAD_QUALITIES)
    elif defect == "non_finite":
        doc["value"] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400]))
    return Item(doc, None, 1)


@st.composite
def huge_json_items(draw: st.DrawFn) -> Item:
    """A reading carrying one string longer than a dead letter may be: one rejection."""
    huge = draw(HUGE_TEXT)
    where = draw(st.sampled_from(["item", "sensor", "value", "ts", "quality", "extra_unknown"]))
    doc: Any = {"sensor": draw(st.sampled_from(SENSORS)), "value": 1.0, "ts": draw(VALID_TS)}
    if where == "item":
        doc = huge
    elif where == "extra_unknown":
        doc.update(sensor="NOPE", blob=huge)
    else:
        doc[where] = huge
    return Item(doc, None, 1)


def json_items(msg_ts: int | None,
               values: st.SearchStrategy[float | int] = VALUES) -> st.SearchStrategy[Item]:
    return valid_json_items(msg_ts, values) | invalid_json_items()


def render_json(doc: Any, indent: int | None = None) -> bytes:
    """JSON as gateways write it: the stdlib writes NaN/Infinity, which orjson refuses."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=True, indent=indent).encode()


@st.composite
def json_messages(draw: st.DrawFn, site: str = SITE, huge: bool = True,
                  values: st.SearchStrategy[float | int] = VALUES) -> Message:
    """A gateway message mixing valid and invalid readings, on ``plant/<site>/<gateway>``."""
    msg_ts = draw(st.none() | VALID_TS)
    items = draw(st.lists(json_items(msg_ts, values), max_size=12))
    if huge and draw(st.integers(0, 4)) == 0:
        items.insert(draw(st.integers(0, len(items))), draw(huge_json_items()))
    doc: dict[str, Any] = {"readings": [i.data for i in items]}
    if msg_ts is not None:
        doc["ts"] = msg_ts
    if draw(st.booleans()):
        doc["gateway"] = draw(GATEWAYS)
    keys = draw(st.permutations(list(doc)))
    payload = render_json({k: doc[k] for k in keys}, draw(st.none() | st.integers(0, 2)))
    topic = f"plant/{site}/{draw(GATEWAYS.filter(lambda g: g != 'lp'))}"
    return _message("json", topic, payload, items)


def _is_envelope(payload: bytes) -> bool:
    """Whether bytes are a JSON object holding 'readings' (then they are not junk)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "readings" in doc


@st.composite
def junk_json_messages(draw: st.DrawFn) -> Message:
    """A message that is not the gateway envelope at all: rejected whole, once."""
    payload = draw(st.one_of(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=100).map(str.encode),
            (JSON_SCALARS | JSON_CONTAINERS).map(render_json),
        ).filter(lambda p: not _is_envelope(p)),
        st.builds(lambda r: render_json({"readings": r}),  # 'readings' not a list
                  JSON_SCALARS | st.dictionaries(SHORT_TEXT, JSON_SCALARS, max_size=2)),
        st.builds(lambda ts: render_json({"ts": ts, "readings": []}),  # 'ts' not integer ms
                  SHORT_TEXT | st.floats() | st.booleans() | st.lists(VALID_TS, max_size=1)),
        st.just(b" " * (LIMITS.max_payload_bytes + 1)),
    ))
    topic = f"plant/{SITE}/{draw(GATEWAYS.filter(lambda g: g != 'lp'))}"
    return Message("junk_json", topic, payload, (), 1)


def deep_json_payload(depth: int, where: str) -> bytes:
    """The regression payloads: lists ``depth`` deep as a reading, or as a reading's value."""
    opened, closed = b"[" * depth, b"]" * depth
    if where == "reading":
        return b'{"readings":[' + opened + closed + b"]}"
    return b'{"readings":[{"sensor":"LEL-1","value":' + opened + closed + b"}]}"


@st.composite
def deep_json_messages(draw: st.DrawFn) -> Message:
    """Nesting deep enough to break ``repr``, ``orjson.dumps`` or the parser: one rejection."""
    # Where parsers, repr() and orjson.dumps give up (255, ~1000, 1024) is well covered.
    depth = draw(st.sampled_from(REGRESSION_DEPTHS) | st.integers(1, 1100)
                 | st.integers(1, 20_000))
    where = draw(st.sampled_from(["reading", "value"]))
    topic = f"plant/{SITE}/{draw(GATEWAYS.filter(lambda g: g != 'lp'))}"
    return Message(f"deep_{where}_{depth}", topic, deep_json_payload(depth, where), (), 1)


@st.composite
def flood_json_messages(draw: st.DrawFn) -> Message:
    """More bad readings than a message may dead-letter one by one, around valid ones."""
    n_bad = draw(st.integers(MAX_DEAD_LETTERS_PER_MESSAGE - 5, 2 * MAX_DEAD_LETTERS_PER_MESSAGE
                             + 60))
    good = draw(st.lists(valid_json_items(None, PLAUSIBLE), max_size=3))
    items = [Item({"sensor": f"X{i}", "value": 1.0, "ts": NOW_MS}, None, 1) for i in range(n_bad)]
    for g in good:
        items.insert(draw(st.integers(0, len(items))), g)
    payload = render_json({"readings": [i.data for i in items]})
    return _message("flood_json", f"plant/{SITE}/{GATEWAY}", payload, items)


# -- line protocol -------------------------------------------------------------


def representable(text: str) -> bool:
    """What line protocol can carry in a name: no line break, no trailing backslash, and
    no backslash before a character it escapes (``a\\ b`` reads as ``a\\`` + separator)."""
    return (bool(text) and "\n" not in text and "\r" not in text and not text.endswith("\\")
            and not any(f"\\{c}" in text for c in " ,="))


LP_NAMES = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1,
                   max_size=12).filter(representable)
MEASUREMENTS = st.sampled_from(sorted({p.sensor.kind for p in TABLE.places})) | LP_NAMES.filter(
    lambda s: s[0] not in "# ")


@st.composite
def lp_lines(draw: st.DrawFn, sensor: str | None, value: str | None, ts: str | None,
             quality: str | None = None) -> str:
    """One line around the given sensor tag, value/quality fields and timestamp text
    (None leaves it out), with extra tags and fields in any order, as Telegraf writes them."""
    tags = [f"{escape_tag(k)}={escape_tag(v)}" for k, v in draw(st.lists(
        st.tuples(LP_NAMES.filter(lambda k: k != "sensor"), LP_NAMES), max_size=2))]
    if sensor is not None:
        tags.insert(draw(st.integers(0, len(tags))), f"sensor={escape_tag(sensor)}")
    fields = [f"{escape_tag(k)}={v}" for k, v in draw(st.lists(st.tuples(
        LP_NAMES.filter(lambda k: k not in ("value", "quality")),
        st.one_of(SHORT_TEXT.filter(lambda s: "\n" not in s).map(escape_string_field),
                  st.sampled_from(["1i", "2u", "true", "F", "-1.5e3"]))), max_size=2))]
    for name, text in (("value", value), ("quality", quality)):
        if text is not None:
            fields.insert(draw(st.integers(0, len(fields))), f"{name}={text}")
    if not fields:
        fields = ["other=1i"]
    line = escape_measurement(draw(MEASUREMENTS)) + "".join("," + t for t in tags)
    line += " " + ",".join(fields) + ("" if ts is None else " " + ts)
    lead = draw(st.sampled_from(["", " ", "\t", "  "]))
    tail = draw(st.sampled_from(["", " ", "\t"]))
    return lead + line + tail


@st.composite
def valid_lp_items(draw: st.DrawFn, plausible: bool = False) -> Item:
    """A valid line: from the writer (:func:`encode_readings`) or hand-written with
    escapes, integer values and extra tags and fields (``plausible``: see :data:`PLAUSIBLE`)."""
    floats = st.floats(-1e9, 1e9) if plausible else st.floats(allow_nan=False,
                                                               allow_infinity=False)
    big = 10**9 if plausible else 2**63 - 1
    sensor = draw(st.sampled_from(SENSORS))
    ts = draw(VALID_TS)
    if draw(st.booleans()):
        value = draw(floats)
        quality = draw(QUALITIES)
        batch = ReadingBatch.from_columns([INDEX[sensor]], [ts], [value], [quality])
        line = encode_readings(batch, PREFIXES).decode().rstrip("\n")
        return Item(line, Reading(sensor, ts, value, quality), 0)
    kind = draw(st.sampled_from(["float", "int", "uint"]))
    if kind == "float":
        number: float | int = draw(floats)
        text = repr(number)
    elif kind == "int":
        number = draw(st.integers(-big - 1, big))
        text = f"{number}i"
    else:
        number = draw(st.integers(0, 2 * big + 1))
        text = f"{number}u"
    quality_text = draw(st.none() | QUALITIES.map(lambda q: f"{q}i"))
    quality = 0 if quality_text is None else int(quality_text[:-1])
    line = draw(lp_lines(sensor, text, str(ts), quality_text))
    return Item(line, Reading(sensor, ts, float(number), quality), 0)


JUNK_LINES = st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"]),
                     min_size=1, max_size=60).filter(
    lambda s: bool(s.strip(" \t\r")) and not s.strip(" \t\r").startswith("#")
    and "sensor=" not in s)
"""A line that is data to the decoder (not blank, not a comment) and cannot be a reading."""


@st.composite
def invalid_lp_items(draw: st.DrawFn, huge: bool = True) -> Item:
    """A line with at least one defect: one rejection (``huge``: maybe a sensor tag longer
    than a dead letter may be)."""
    sensor = draw(st.sampled_from(SENSORS))
    ts = str(draw(VALID_TS))
    defect = draw(st.sampled_from([
        "junk", "malformed", "unknown_sensor", "no_sensor", "bad_value", "no_value", "bad_ts",
        "too_old", "future", "bad_quality", "non_finite", *(["huge_sensor"] if huge else []),
    ]))
    if defect == "junk":
        return Item(draw(JUNK_LINES), None, 1)
    if defect == "malformed":
        line = draw(st.sampled_from([
            f"m,sensor={sensor}", f"m,sensor={sensor} value=", f'm,sensor={sensor} value="x',
            f",sensor={sensor} value=1", f"m,sensor={sensor},sensor={sensor} value=1",
            f"m,sensor={sensor} value=1,value=2", f"m,sensor={sensor} value=1 {ts} extra",
            f"m,sensor={sensor} value=1x", "m,sensor= value=1", f"m,sensor={sensor}\\",
        ]))
        return Item(line, None, 1)
    value: str | None = draw(VALUES.map(repr))
    quality: str | None = None
    tag: str | None = sensor
    if defect == "unknown_sensor":
        tag = draw(LP_NAMES.filter(lambda s: s not in INDEX))
    elif defect == "huge_sensor":
        tag = "Z" * draw(st.integers(MAX_LETTER_BYTES + 1, 90_000))
    elif defect == "no_sensor":
        tag = None
    elif defect == "bad_value":
        value = draw(st.sampled_from(['"3.2"', "true", "F", '""']))
    elif defect == "no_value":
        value = None
    elif defect == "bad_ts":
        ts = draw(st.sampled_from(["1.5", "12x", "-", "1e12", "１２３", "9" * 20, "0x10"]))
    elif defect == "too_old":
        ts = draw(st.sampled_from(["1", str(NOW_MS - 40 * DAY_MS)]))
    elif defect == "future":
        ts = str(NOW_MS + DAY_MS)
    elif defect == "bad_quality":
        quality = draw(st.sampled_from(["9i", "-1i", "1.5", '"0"', "true", "4u"]))
    elif defect == "non_finite":
        value = draw(st.sampled_from(["inf", "NaN", "-Infinity", "1e999"]))
    return Item(draw(lp_lines(tag, value, ts, quality)), None, 1)


NON_DATA_LINES = st.sampled_from(["", "   ", "\t", "# a comment", "  # indented comment",
                                  "#sensor=LEL-1 value=1"])


@st.composite
def lp_messages(draw: st.DrawFn, site: str = SITE, huge: bool = True,
                plausible: bool = False) -> Message:
    """Line protocol mixing valid lines, invalid lines, comments and blank lines."""
    items = draw(st.lists(
        valid_lp_items(plausible) | invalid_lp_items(huge)
        | NON_DATA_LINES.map(lambda s: Item(s, None, 0)),
        max_size=12))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(items),
                         max_size=len(items)))
    text = "".join(i.data + e for i, e in zip(items, ends, strict=True))
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")  # no newline after the last line
    return _message("lp", f"plant/{site}/lp", text.encode(), items)


@st.composite
def junk_lp_messages(draw: st.DrawFn) -> Message:
    """Text that is no line protocol (one rejection per data line), or not UTF-8 (one)."""
    if draw(st.booleans()):
        payload = draw(st.binary(min_size=1, max_size=100).filter(_not_utf8))
        return Message("junk_lp", f"plant/{SITE}/lp", payload, (), 1)
    lines = draw(st.lists(JUNK_LINES | NON_DATA_LINES, max_size=8))
    n = sum(1 for x in lines if (y := x.strip(" \t\r")) and not y.startswith("#"))
    return Message("junk_lp", f"plant/{SITE}/lp", "\n".join(lines).encode(), (), n)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def flood_lp_messages(draw: st.DrawFn) -> Message:
    """Past the dead-letter cap in line protocol: many unknown sensors, a few good lines."""
    n_bad = draw(st.integers(MAX_DEAD_LETTERS_PER_MESSAGE - 5, 2 * MAX_DEAD_LETTERS_PER_MESSAGE
                             + 60))
    items = [Item(f"m,sensor=X{i} value=1 {NOW_MS}", None, 1) for i in range(n_bad)]
    for g in draw(st.lists(valid_lp_items(plausible=True), max_size=3)):
        items.insert(draw(st.integers(0, len(items))), g)
    return _message("flood_lp", f"plant/{SITE}/lp", "\n".join(i.data for i in items).encode(),
                    items)


FOREIGN = st.builds(
    lambda topic, payload: Message("foreign", topic, payload, (), 0),
    st.sampled_from(["elsewhere/retained", "$SYS/broker/uptime", "plantx/s1/gw",
                     f"spBv1.0/{SITE}/NDATA/{GATEWAY}"]),
    st.binary(max_size=50),
)
"""Messages on topics the pipeline did not subscribe to (amqtt replays retained ones):
not ours to judge, so no dead letter, but acknowledged with the rest."""


def traffic(max_size: int = 10) -> st.SearchStrategy[list[Message]]:
    """A sequence of hostile and valid JSON / line protocol messages for the pipeline.

    Without oversized fields and with :data:`PLAUSIBLE` values: each has a test of its
    own, and here they would be found first in every example and shrunk at length."""
    return st.lists(st.one_of(
        json_messages(huge=False, values=PLAUSIBLE), lp_messages(huge=False, plausible=True),
        junk_json_messages(), junk_lp_messages(),
        deep_json_messages(), flood_json_messages(), flood_lp_messages(), FOREIGN,
    ), min_size=1, max_size=max_size)


# -- Sparkplug B ---------------------------------------------------------------

SP_IDS = st.sampled_from([SITE, GATEWAY, AREA, "evil", "gw-2"]) | st.text(
    st.characters(exclude_characters="/+#", exclude_categories=["Cs"]), min_size=1,
    max_size=10)
UINT64 = st.integers(0, 2**64 - 1)
METRIC_NAMES = (st.sampled_from([*SENSORS, BD_SEQ_METRIC, REBIRTH_METRIC, "Properties/x",
                                 "Device Info/y"]) | SHORT_TEXT | HUGE_TEXT)


@st.composite
def sparkplug_topics(draw: st.DrawFn,
                     nodes: st.SearchStrategy[tuple[str, str]] | None = None) -> str:
    """``spBv1.0/<group>/<verb>/<node>[/<device>]``, STATE topics, or a mangled one."""
    shape = draw(st.sampled_from(["node", "node", "node", "state", "mangled"]))
    if shape == "state":
        return f"spBv1.0/STATE/{draw(SP_IDS)}"
    if shape == "mangled":
        return "spBv1.0/" + draw(st.text(max_size=40))
    verb = draw(st.sampled_from(list(MessageType)))
    group, edge = draw(nodes if nodes is not None else st.tuples(SP_IDS, SP_IDS))
    topic = f"spBv1.0/{group}/{verb}/{edge}"
    if verb.is_device or draw(st.integers(0, 9)) == 0:  # a device on a node verb is an error
        topic += f"/{draw(SP_IDS)}"
    return topic


@st.composite
def wire_metrics(draw: st.DrawFn, names: st.SearchStrategy[str] = METRIC_NAMES,
                 texts: st.SearchStrategy[str] = SHORT_TEXT | HUGE_TEXT) -> bytes:
    """A ``Payload.Metric`` with any fields set, any datatype code, any value field."""
    m = pb.Payload.Metric()
    if (name := draw(st.none() | names)) is not None:
        m.name = name
    if (alias := draw(st.none() | st.integers(0, 12) | UINT64)) is not None:
        m.alias = alias
    if (ts := draw(st.none() | VALID_TS | UINT64)) is not None:
        m.timestamp = ts
    if (dt := draw(st.none() | st.sampled_from([int(d) for d in DataType])
                   | st.integers(0, 2**32 - 1))) is not None:
        m.datatype = dt
    field, value = draw(st.one_of(
        st.tuples(st.just("int_value"), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("long_value"), UINT64),
        st.tuples(st.just("float_value"), st.floats(width=32)),
        st.tuples(st.just("double_value"), st.floats()),
        st.tuples(st.just("boolean_value"), st.booleans()),
        st.tuples(st.just("string_value"), texts),
        st.tuples(st.just("bytes_value"), st.binary(max_size=100)),
        st.tuples(st.just("none"), st.none()),
    ))
    if field != "none":
        setattr(m, field, value)
    m.is_historical = draw(st.booleans())
    m.is_null = draw(st.integers(0, 5)) == 0
    return m.SerializeToString()


@st.composite
def wire_payloads(draw: st.DrawFn, names: st.SearchStrategy[str] = METRIC_NAMES,
                  texts: st.SearchStrategy[str] = SHORT_TEXT | HUGE_TEXT) -> bytes:
    """Protobuf a Sparkplug host may meet: well-formed births and data with odd fields,
    the same cut short or with a byte flipped, and plain garbage."""
    shape = draw(st.sampled_from(["payload", "payload", "birth", "garbage", "mutated"]))
    if shape == "garbage":
        return draw(st.binary(max_size=120))
    p = pb.Payload()
    if (ts := draw(st.none() | VALID_TS | UINT64)) is not None:
        p.timestamp = ts
    if (seq := draw(st.none() | st.integers(0, 255) | UINT64)) is not None:
        p.seq = seq
    if shape == "birth":
        p.seq = draw(st.integers(0, 255))
        bd = p.metrics.add(name=BD_SEQ_METRIC, datatype=int(DataType.Int64))
        bd.long_value = draw(st.integers(0, 255))
    for raw in draw(st.lists(wire_metrics(names, texts), max_size=5)):
        p.metrics.add().MergeFromString(raw)
    data = p.SerializeToString()
    if shape == "mutated" and data:
        cut = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            return data[:cut]
        return data[:cut] + bytes([data[cut] ^ draw(st.integers(1, 255))]) + data[cut + 1:]
    return data


@dataclass(frozen=True, slots=True)
class SpStep(ShortRepr):
    """One Sparkplug message (or a tick when ``topic`` is None) after ``advance_ms``."""

    advance_ms: int
    topic: str | None
    payload: bytes = b""

    def __repr__(self) -> str:
        return f"SpStep({self.advance_ms}, {self.topic!r}, {short_repr(self.payload, 200)})"


@st.composite
def sparkplug_sessions(draw: st.DrawFn, max_steps: int = 20) -> list[SpStep]:
    """The plant's edge node (births, data, device deaths and rebirths, some lost, swapped
    or repeated) interleaved with junk on any topic, and clock ticks."""
    node = EdgeNodeMessages(SITE, GATEWAY, {AREA: list(SENSORS)})
    ts = NOW_MS
    steps: list[SpStep] = []
    for action in draw(st.lists(st.sampled_from(
            ["births", "data", "data", "data", "device_death", "device_birth", "junk", "junk",
             "tick", "new_session"]), max_size=max_steps)):
        advance = draw(st.integers(0, 2500))
        ts += advance
        if action == "junk":
            steps.append(SpStep(advance, draw(sparkplug_topics()), draw(wire_payloads())))
            continue
        if action == "tick":
            steps.append(SpStep(advance, None))
            continue
        if action == "new_session":  # the broker delivers the Will; births are due again
            will = node.will()
            node.new_session()
            steps.append(SpStep(advance, will.topic, will.payload))
            continue
        values = {s: draw(st.floats()) for s in SENSORS
                  if draw(st.booleans())}
        if action == "births" or not node.born:
            msgs = node.births(ts, values)
        elif action == "device_death":
            msgs = [node.device_death(AREA, ts)]
        elif action == "device_birth":
            msgs = [node.device_birth(AREA, ts)]
        else:
            try:
                msgs = node.data(ts, values, historical=draw(st.integers(0, 5)) == 0)
            except ValueError:  # the device is dead: its data waits for its birth
                msgs = [node.device_birth(AREA, ts)]
        for m in msgs:
            fate = draw(st.sampled_from(["send"] * 6 + ["drop", "repeat"]))
            if fate != "drop":
                steps.append(SpStep(advance, m.topic, m.payload))
            if fate == "repeat":
                steps.append(SpStep(0, m.topic, m.payload))
    if len(steps) > 1 and draw(st.booleans()):  # one pair of messages overtaking
        i = draw(st.integers(0, len(steps) - 2))
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return steps


def unknown_nodes() -> st.SearchStrategy[tuple[str, str]]:
    """(group, edge node) pairs that are not an edge node of the plant."""
    return st.tuples(SP_IDS, SP_IDS).filter(lambda n: n not in PLANT_NODES)


def expand_by_reason(letters: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rejections per reason that published dead letters stand for (a ``more_rejections``
    summary stands for its ``by_reason`` counts)."""
    out: dict[str, int] = {}
    for letter in letters:
        if letter.get("reason") == "more_rejections":
            for reason, n in letter.get("by_reason", {}).items():
                out[reason] = out.get(reason, 0) + int(n)
        else:
            out[letter["reason"]] = out.get(letter["reason"], 0) + 1
    return out


def mutated(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid-looking payloads with a few bytes flipped, cut, repeated or dropped."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(payloads))
        for _ in range(draw(st.integers(1, 4))):
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            op = draw(st.sampled_from(["flip", "cut", "repeat", "drop", "insert"]))
            if op == "flip":
                data[at] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del data[at:]
            elif op == "repeat":
                data[at:at] = data[at:at + draw(st.integers(1, 16))]
            elif op == "drop":
                del data[at:at + draw(st.integers(1, 16))]
            else:
                data[at:at] = draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\n", b"\xff",
                                                    b",", b"=", b" ", b"NaN", b"1e999"]))
        return bytes(data)

    return mutate()


# -- Sparkplug B: one DDATA mixing valid and invalid metrics ------------------


@dataclass(frozen=True, slots=True)
class SparkplugMixed(ShortRepr):
    """The plant's edge node born, then one DDATA of valid and invalid metrics."""

    births: tuple[tuple[str, bytes], ...]
    topic: str
    payload: bytes
    valid: tuple[Reading, ...]
    rejected_at: tuple[int, ...]

    def __repr__(self) -> str:
        return (f"SparkplugMixed({self.topic!r}, {short_repr(self.payload)}, "
                f"valid={self.valid!r}, rejected_at={self.rejected_at!r})")


_SP_NUMERIC = st.one_of(
    st.tuples(st.just(DataType.Double), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just(DataType.Float), st.floats(width=32, allow_nan=False,
                                                 allow_infinity=False)),
    st.tuples(st.just(DataType.Int32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(DataType.Int64), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(DataType.UInt32), st.integers(0, 2**32 - 1)),
    st.tuples(st.none(), st.floats(allow_nan=False, allow_infinity=False)),  # data omit it
)


def _bad_metric(draw: st.DrawFn, kind: str, alias: int, ts: int | None) -> Metric:
    """A metric of a born node that must be rejected once (``kind`` says why)."""
    if kind == "unknown_alias":
        return Metric(alias=draw(st.integers(len(SENSORS) + 1, 2**64 - 1)), timestamp=ts,
                      value=1.0)
    if kind == "text":
        return Metric(alias=alias, timestamp=ts, datatype=DataType.String,
                      value=draw(SHORT_TEXT | HUGE_TEXT))
    if kind == "bool":
        return Metric(alias=alias, timestamp=ts, datatype=DataType.Boolean,
                      value=draw(st.booleans()))
    if kind == "bytes":
        return Metric(alias=alias, timestamp=ts, datatype=DataType.Bytes,
                      value=draw(st.binary(max_size=200)))
    if kind == "non_finite":
        return Metric(alias=alias, timestamp=ts, datatype=DataType.Double,
                      value=draw(st.sampled_from([float("nan"), float("inf"), -float("inf")])))
    if kind == "too_old":
        return Metric(alias=alias, timestamp=draw(TOO_OLD_TS), value=1.0)
    if kind == "future":
        return Metric(alias=alias, timestamp=draw(st.integers(NOW_MS + DAY_MS, 2**64 - 1)),
                      value=1.0)
    assert kind == "no_ts", kind
    return Metric(alias=alias, value=1.0)


@st.composite
def sparkplug_mixed(draw: st.DrawFn) -> SparkplugMixed:
    """Valid metrics (by alias or by name, any numeric type, own or payload timestamp) among
    invalid ones (unknown alias, text/bool/bytes value, NaN/inf, timestamp out of the window,
    no timestamp at all) and nulls (neither a reading nor a rejection)."""
    node = EdgeNodeMessages(SITE, GATEWAY, {AREA: list(SENSORS)})
    births = tuple((m.topic, m.payload) for m in node.births(NOW_MS - DAY_MS))
    payload_ts = draw(st.none() | VALID_TS)
    metrics: list[Metric] = []
    valid: list[Reading] = []
    rejected: list[int] = []
    for _ in range(draw(st.integers(0, 10))):
        sensor = draw(st.sampled_from(SENSORS))
        alias = node.alias[sensor]
        ts = draw(st.none() | VALID_TS) if payload_ts is not None else draw(VALID_TS)
        kind = draw(st.sampled_from(["valid", "valid", "valid", "by_name", "unknown_alias",
                                     "text", "bool", "bytes", "non_finite", "too_old", "future",
                                     "no_ts", "null"]))
        if kind in ("valid", "by_name"):
            datatype, value = draw(_SP_NUMERIC)
            m = (Metric(alias=alias, timestamp=ts, datatype=datatype, value=value)
                 if kind == "valid" else
                 Metric(name=sensor, timestamp=ts, datatype=datatype, value=value))
            valid.append(Reading(sensor, ts if ts is not None else payload_ts or 0,
                                 float(value)))
        elif kind == "null":
            m = Metric(alias=alias, timestamp=ts, is_null=True)
        else:
            rejected.append(len(metrics))
            m = _bad_metric(draw, kind, alias, ts)
            if kind == "no_ts" and payload_ts is not None:  # it takes the payload's: valid
                rejected.pop()
                valid.append(Reading(sensor, payload_ts, 1.0))
        metrics.append(m)
    payload = encode_payload(Payload(timestamp=payload_ts, seq=node.next_seq,
                                     metrics=tuple(metrics)))
    return SparkplugMixed(births, node.topic(MessageType.DDATA, AREA), payload, tuple(valid),
                          tuple(rejected))


# -- Sparkplug B through the pipeline -------------------------------------------

JUNK_METRIC_NAMES = st.sampled_from([BD_SEQ_METRIC, REBIRTH_METRIC, "Properties/x"]) | UNKNOWN_IDS
"""Names for junk nodes' metrics in pipeline runs: never a plant sensor, so junk stores no
reading and the store must hold exactly the plant node's (the host fuzz covers the rest).
Oversized names and values have a test of their own (see :func:`traffic`)."""


@dataclass(frozen=True, slots=True)
class SparkplugTraffic(ShortRepr):
    """The plant's edge node publishing cleanly, interleaved with junk of unknown nodes."""

    messages: tuple[tuple[str, bytes], ...]
    valid: tuple[Reading, ...]

    def __repr__(self) -> str:
        shown = ", ".join(f"({t!r}, {short_repr(p, 80)})" for t, p in self.messages)
        return f"SparkplugTraffic([{shown}], valid={len(self.valid)})"


@st.composite
def sparkplug_traffic(draw: st.DrawFn) -> SparkplugTraffic:
    node = EdgeNodeMessages(SITE, GATEWAY, {AREA: list(SENSORS)})
    finite = st.floats(-1e9, 1e9)  # see PLAUSIBLE
    ts = NOW_MS - 2 * DAY_MS + draw(st.integers(0, DAY_MS))
    values = draw(st.dictionaries(st.sampled_from(SENSORS), finite))
    clean = [(m.topic, m.payload) for m in node.births(ts, values)]
    valid = [Reading(s, ts, v) for s, v in values.items()]
    for _ in range(draw(st.integers(0, 4))):
        ts += draw(st.integers(1, 60_000))
        values = draw(st.dictionaries(st.sampled_from(SENSORS), finite, min_size=1))
        clean += [(m.topic, m.payload) for m in node.data(ts, values,
                                                           historical=draw(st.booleans()))]
        valid += [Reading(s, ts, v) for s, v in values.items()]
    junk = draw(st.lists(st.tuples(sparkplug_topics(nodes=unknown_nodes()),
                                   wire_payloads(JUNK_METRIC_NAMES, SHORT_TEXT)),
                         max_size=12))
    messages = list(clean)
    for j in junk:
        messages.insert(draw(st.integers(0, len(messages))), j)
    return SparkplugTraffic(tuple(messages), tuple(valid))
