"""The hostile messages of ``benchmarks/hostile_load.py``, in one catalogue.

Each :class:`Kind` says how many of the run's hostile messages it gets, how
one is built, and what a hardened service should do with it. Builders are
pure functions of the message's number within its kind and a :class:`Context`
(the plant's real sensors and gateways, and the event-time windows), so a run
is reproducible and the messages can be built lazily by each publisher
instead of holding ~100 MB of payloads in memory at once.

Event-time windows (ms) keep what is counted in the store apart: valid
readings use ``valid_base``; readings on the wrong site's topic use
``wrong_site_base``; every other hostile payload that names a real sensor uses
``hostile_base``. None of them overlap, so a row in one window can only come
from its own kind of message.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from sparkplug import DataType, Metric, Payload, encode_payload

__all__ = [
    "CATALOGUE",
    "CRASH_LOOP_PAYLOAD",
    "LONG_TOPIC_LEVELS",
    "READINGS_PER_WRONG_SITE_MESSAGE",
    "WRONG_SITE_TOPIC",
    "Context",
    "Kind",
    "counts",
]

CRASH_LOOP_PAYLOAD = b'{"readings":[' + b"[" * 1000 + b"]" * 1000 + b"]}"
"""A reading that is a list nested 1,000 deep: parsed fine, then its dead letter's
``repr`` overflows the interpreter's recursion limit (the issue's crash loop)."""

WRONG_SITE_TOPIC = "plant/evilsite/gw-x"
READINGS_PER_WRONG_SITE_MESSAGE = 10
LONG_TOPIC_LEVELS = 190
"""Mosquitto 2.0 disconnects a publisher whose topic has 200 levels or more
("protocol error"), so the deep topics stay just under that and are made long
by their level names instead (~8.5 KB each)."""
BIG_PAYLOAD_BYTES = 10 * 1024 * 1024
NESTED_FIELDS = ("value", "sensor", "ts", "quality")


@dataclass(frozen=True, slots=True)
class Context:
    """What builders need to know about the plant and the run's time windows."""

    site: str
    sensors: tuple[str, ...]
    """Real sensor ids of the plant (site ``site``)."""
    gateways: tuple[str, ...]
    """Real gateway ids of the plant; ``crash_gateway`` is kept for the crash loop."""
    crash_gateway: str
    valid_base: int
    wrong_site_base: int
    hostile_base: int

    @property
    def crash_topic(self) -> str:
        """The topic the crash-loop payloads (and valid messages only) arrive on."""
        return f"plant/{self.site}/{self.crash_gateway}"

    def json_topic(self, k: int) -> str:
        """A real gateway's JSON topic other than the crash loop's, by ``k``."""
        others = [g for g in self.gateways if g != self.crash_gateway] or [self.crash_gateway]
        return f"plant/{self.site}/{others[k % len(others)]}"

    def wrong_site_span_ms(self, messages: int) -> int:
        """How far past ``wrong_site_base`` the wrong-site readings of ``messages`` reach."""
        readings = messages * READINGS_PER_WRONG_SITE_MESSAGE
        return (readings // len(self.sensors) + 1) * 1000


Builder = Callable[[int, Context], tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of hostile message.

    ``share`` is its part of the run's hostile messages; ``fixed`` (if set)
    is instead an absolute count, taken before the shares are handed out.
    """

    name: str
    share: float
    fixed: int | None
    build: Builder
    expect: str


def _rng(k: int, salt: int) -> random.Random:
    """A generator of its own per message, so builders are pure functions of ``k``."""
    return random.Random(k * 1_000_003 + salt)


def _json(doc: object) -> bytes:
    """Compact JSON, as gateways send it."""
    return orjson.dumps(doc)


def _crash_loop(k: int, ctx: Context) -> tuple[str, bytes]:
    """On a topic of its own, so its dead letters can be told from the others'."""
    return ctx.crash_topic, CRASH_LOOP_PAYLOAD


def _nested(depth: int) -> Builder:
    """A reading whose value, sensor, ts or quality (in turn) is a list ``depth`` deep."""

    def build(k: int, ctx: Context) -> tuple[str, bytes]:
        reading = {"sensor": ctx.sensors[k % len(ctx.sensors)], "value": 1.0,
                   "ts": ctx.hostile_base + k}
        field = NESTED_FIELDS[k % len(NESTED_FIELDS)]
        # Spliced as bytes: orjson itself refuses to write more than 254 levels.
        reading[field] = "@NEST@"
        body = _json({"readings": [reading]})
        return ctx.json_topic(k), body.replace(b'"@NEST@"', b"[" * depth + b"]" * depth)

    return build


_NOT_JSON: tuple[bytes, ...] = (
    b"hello, plantwatch",
    b'{"readings":[{"sensor":',
    b"",
    b"\x00" * 64,
    b"\xff\xfe{\x00}\x00",
    b"[[[[[",
    b'{"readings": NaN',
    b"<readings><r sensor='TF-A-LEL-01'/></readings>",
    '{"readings":[]}'.encode("utf-16"),
)


def _not_json(k: int, ctx: Context) -> tuple[str, bytes]:
    """Text, truncated JSON, NUL bytes, UTF-16, or random bytes on a JSON topic."""
    pick = k % (len(_NOT_JSON) + 1)
    if pick == len(_NOT_JSON):
        rng = _rng(k, 1)
        return ctx.json_topic(k), rng.randbytes(rng.randint(1, 2048))
    return ctx.json_topic(k), _NOT_JSON[pick]


def _wrong_types(k: int, ctx: Context) -> tuple[str, bytes]:
    """Well-formed JSON of the wrong shape; every reading in it is invalid."""
    sensor = ctx.sensors[k % len(ctx.sensors)]
    ts = ctx.hostile_base + k
    good = {"sensor": sensor, "value": 1.0, "ts": ts}
    docs: tuple[object, ...] = (
        [good],
        42,
        "readings",
        {"readings": good},
        {"readings": "TF-A-LEL-01=1.0"},
        {"readings": [1, 2.5, None, True, "x"]},
        {"readings": [{**good, "value": "1.0"}]},
        {"readings": [{**good, "value": True}]},
        {"readings": [{**good, "value": None}]},
        {"readings": [{**good, "value": {"v": 1}}]},
        {"readings": [{**good, "ts": str(ts)}]},
        {"readings": [{**good, "ts": ts + 0.5}]},
        {"readings": [{"sensor": sensor, "value": 1.0}], "ts": "now"},
        {"readings": [{**good, "quality": 7}]},
        {"readings": [{**good, "quality": "good"}]},
        {"readings": [{**good, "sensor": 12345}]},
        {"readings": [{**good, "ts": 2**63 - 1}]},
        {"readings": [{**good, "ts": -(10**12)}]},
        {"readings": [{"value": 1.0, "ts": ts}]},
    )
    pick = k % (len(docs) + 2)
    if pick == len(docs):  # an integer beyond float range, and a non-finite value
        return ctx.json_topic(k), (b'{"readings":[{"sensor":"%s","value":1%s,"ts":%d}]}'
                                   % (sensor.encode(), b"0" * 400, ts))
    if pick == len(docs) + 1:
        return ctx.json_topic(k), (b'{"readings":[{"sensor":"%s","value":Infinity,"ts":%d}]}'
                                   % (sensor.encode(), ts))
    return ctx.json_topic(k), _json(docs[pick])


def _unknown_sensor(k: int, ctx: Context) -> tuple[str, bytes]:
    """Five sensors no plant has: five dead letters per message."""
    readings = [{"sensor": f"GHOST-{k}-{j}", "value": 1.0, "ts": ctx.hostile_base + k}
                for j in range(5)]
    return ctx.json_topic(k), _json({"readings": readings})


def _huge_sensor_id(k: int, ctx: Context) -> tuple[str, bytes]:
    """A 10 KB sensor id: echoed whole in a dead letter unless the service cuts it."""
    sensor = "X" * 10_240 + str(k)
    return ctx.json_topic(k), _json({"readings": [
        {"sensor": sensor, "value": 1.0, "ts": ctx.hostile_base + k}]})


def _wrong_site(k: int, ctx: Context) -> tuple[str, bytes]:
    """Valid readings of real sensors, on a site that is not the plant's: never stored."""
    m = len(ctx.sensors)
    n = READINGS_PER_WRONG_SITE_MESSAGE
    readings = [{"sensor": ctx.sensors[i % m], "value": 1.0,
                 "ts": ctx.wrong_site_base + (i // m) * 1000}
                for i in range(k * n, (k + 1) * n)]
    return WRONG_SITE_TOPIC, _json({"gateway": "gw-x", "readings": readings})


def _bad_line_protocol(k: int, ctx: Context) -> tuple[str, bytes]:
    """One bad line, random bytes, or 500 bad lines in one message (500 dead letters)."""
    sensor = ctx.sensors[k % len(ctx.sensors)]
    ts = ctx.hostile_base + k
    lines = (
        "this is not line protocol",
        f'gas,sensor={sensor} value="high" {ts}',
        f"gas,sensor=NO-SUCH-SENSOR value=1 {ts}",
        f"gas,sensor={sensor} value=1 12abc",
        f"gas,sensor={sensor} value=1,quality=9i {ts}",
        f"gas,sensor={sensor} value=1e999 {ts}",
        f"gas,sensor={sensor}",
        f"gas,sensor={sensor} value=t {ts}",
        f"gas,sensor={sensor} value=1 {ts * 10**12}",
        "gas," + ",".join(f"t{i}=v" for i in range(2000)) + f" value=1 {ts}",
        f'gas,sensor={sensor} value=1,note="unterminated {ts}',
        f"gas,sensor=\\{sensor}\\ value=\\=1 {ts}",
    )
    pick = k % (len(lines) + 2)
    if pick == len(lines):
        return f"plant/{ctx.site}/lp", _rng(k, 2).randbytes(512)
    if pick == len(lines) + 1:  # many bad lines in one message
        return f"plant/{ctx.site}/lp", "\n".join(lines[i % 9] for i in range(500)).encode()
    return f"plant/{ctx.site}/lp", lines[pick].encode()


def _sparkplug_random(k: int, ctx: Context) -> tuple[str, bytes]:
    """Random bytes on Sparkplug topics of real nodes, the host's STATE, and bad topics."""
    rng = _rng(k, 3)
    gateway = ctx.gateways[k % len(ctx.gateways)]
    topics = (
        f"spBv1.0/{ctx.site}/NDATA/{gateway}",
        f"spBv1.0/{ctx.site}/NBIRTH/{gateway}",
        f"spBv1.0/{ctx.site}/DDATA/{gateway}/area-x",
        f"spBv1.0/{ctx.site}/DBIRTH/{gateway}/area-x",
        f"spBv1.0/{ctx.site}/NDEATH/{gateway}",
        "spBv1.0/STATE/plantwatch",
        f"spBv1.0/{ctx.site}/NOPE/{gateway}",
        "spBv1.0/bad group/NDATA/x",
    )
    return topics[k % len(topics)], rng.randbytes(rng.randint(1, 2048))


def _fresh_node_payload(ts: int) -> bytes:
    """A well-formed NDATA (seq 0, alias 1): only the missing birth makes it hostile."""
    metric = Metric(alias=1, timestamp=ts, datatype=DataType.Double, value=1.0)
    return encode_payload(Payload(timestamp=ts, seq=0, metrics=(metric,)))


def _sparkplug_fresh_node(k: int, ctx: Context) -> tuple[str, bytes]:
    """NDATA of a node nobody has seen born: each earns a rebirth request today."""
    return (f"spBv1.0/{ctx.site}/NDATA/evil-node-{k:06d}",
            _fresh_node_payload(ctx.hostile_base + k))


def _long_topic(k: int, ctx: Context) -> tuple[str, bytes]:
    """A distinct ~8.5 KB topic each: a cache keyed by topic would keep them all."""
    levels = [f"L{i:03d}" + "x" * 40 for i in range(LONG_TOPIC_LEVELS - 3)]
    topic = f"plant/{ctx.site}/" + "/".join(levels) + f"/{k}"
    return topic, _json({"readings": [
        {"sensor": "NO-SUCH-SENSOR", "value": 1.0, "ts": ctx.hostile_base + k}]})


def _big(k: int, ctx: Context) -> tuple[str, bytes]:
    """10 MB of well-formed JSON: refused by its size, but it still passes through memory."""
    one = _json({"sensor": "NO-SUCH-SENSOR", "value": 1.0, "ts": ctx.hostile_base + k})
    n = BIG_PAYLOAD_BYTES // (len(one) + 1)
    return ctx.json_topic(k), b'{"readings":[' + b",".join([one] * n) + b"]}"


CATALOGUE: tuple[Kind, ...] = (
    Kind("crash_loop", 0.0, 5, _crash_loop,
         "a reading nested 1,000 deep: dead-lettered and acked, never a crash"),
    Kind("big_10mb", 0.0, 5, _big, "10 MB JSON: payload_too_large, without reading it"),
    Kind("nested_100", 0.01, None, _nested(100), "bad_value/unknown_sensor/…: dead-lettered"),
    Kind("nested_500", 0.01, None, _nested(500), "dead-lettered"),
    Kind("nested_1000", 0.01, None, _nested(1000), "dead-lettered (today: RecursionError)"),
    Kind("nested_10000", 0.01, None, _nested(10000), "malformed_json"),
    Kind("not_json", 0.12, None, _not_json, "malformed_json / bad_envelope"),
    Kind("wrong_types", 0.22, None, _wrong_types, "bad_envelope / bad_value / bad_timestamp …"),
    Kind("unknown_sensor", 0.10, None, _unknown_sensor, "unknown_sensor, 5 per message"),
    Kind("huge_sensor_id", 0.02, None, _huge_sensor_id, "unknown_sensor (10 KB id)"),
    Kind("wrong_site", 0.10, None, _wrong_site, "real sensors on plant/evilsite/…: not stored"),
    Kind("bad_lp", 0.10, None, _bad_line_protocol, "malformed_line / bad_value … per line"),
    Kind("sparkplug_random", 0.05, None, _sparkplug_random, "bad_payload / bad_topic"),
    Kind("sparkplug_fresh_node", 0.20, None, _sparkplug_fresh_node,
         "NDATA before any birth, 1 node each: bounded rebirths and memory"),
    Kind("long_topic", 0.05, None, _long_topic, "190-level, ~8.5 KB topics: dead-lettered"),
)
"""Every hostile kind; the shares add up to 1 and the largest share absorbs the fixed counts."""

_FILLER = "wrong_types"


def counts(n_hostile: int, overrides: dict[str, int] | None = None) -> dict[str, int]:
    """How many messages of each kind make ``n_hostile`` in all.

    Fixed kinds come first (``overrides`` may change their counts, e.g. the
    number of 10 MB payloads); the share kinds get ``floor(n × share)`` each,
    so 100,000 hostile messages make exactly 20,000 fresh Sparkplug nodes,
    and ``wrong_types`` takes up the difference.
    """
    overrides = overrides or {}
    out: dict[str, int] = {}
    left = n_hostile
    for kind in CATALOGUE:
        if kind.fixed is not None:
            out[kind.name] = min(left, max(0, overrides.get(kind.name, kind.fixed)))
            left -= out[kind.name]
    for kind in CATALOGUE:
        if kind.fixed is None and kind.name != _FILLER:
            out[kind.name] = min(left, int(n_hostile * kind.share))
            left -= out[kind.name]
    out[_FILLER] = left
    return {kind.name: out[kind.name] for kind in CATALOGUE}
