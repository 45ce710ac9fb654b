"""Fuzzing the whole pipeline: hostile traffic in, the loop alive and every message accounted.

Generated message sequences (``tests/fuzz_strategies.py``) go through the real
pipeline: an in-memory source (``MemorySource`` of ``tests/test_pipeline.py``),
the real decoders, detectors and alarm system, and a real SQLite store. After
each run:

* the pipeline task is alive (no exception escaped ``Pipeline.handle``; the
  regression payloads of nested ``[`` once killed it with ``RecursionError``);
* every message was acknowledged, the valid and the hostile alike;
* the store holds exactly the valid readings, and nothing else;
* every dead letter parses as JSON, names a reason and is at most 64 KiB; none
  is an ``internal_error`` (a safety net that catches an exception is a bug found);
* ``plantwatch_dead_letters`` equals the dead letters published, and the rejected
  counters (messages + readings, per reason) add up to the rejections the
  generator knows of, with at most ``MAX_DEAD_LETTERS_PER_MESSAGE`` letters per
  message and one ``more_rejections`` summary past that;
* hostile topics and Sparkplug node ids do not grow the pipeline's or the
  host's state past a bound, and unknown nodes are never asked to rebirth;
* readings on another site's topic are not stored, but dead-lettered ``wrong_site``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given

from decoders.sparkplug_host import SparkplugHost
from ingest.pipeline import PipelineConfig
from simulators.sparkplug_edge import EdgeNodeMessages
from sparkplug import DataType, MessageType, Metric, Payload, bd_seq_metric, encode_payload
from tests.fuzz_strategies import (
    AREA,
    DAY_MS,
    DEADLETTER_TOPIC,
    GATEWAY,
    MAX_LETTER_BYTES,
    NOW_MS,
    PLANT_NODES,
    REGRESSION_DEPTHS,
    SENSORS,
    SITE,
    Message,
    Reading,
    SparkplugTraffic,
    at_service_recursion_limit,
    dead_letters_for,
    deep_json_payload,
    expand_by_reason,
    fuzz_settings,
    plant_host,
    render_json,
    sparkplug_traffic,
    traffic,
)
from tests.test_pipeline import Rig

STATE_BOUND = 10_000
"""Most entries the pipeline's topic cache or the Sparkplug host's node table may hold
whatever the broker delivers (each entry is memory an anonymous publisher can claim)."""
SETTLE_TIMEOUT_S = 60.0
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
"""Where hypothesis examples keep their store: each example fsyncs a SQLite file, a journal
and a checkpoint, which costs more than the run on a disk (durability is tested elsewhere)."""


@dataclass(slots=True)
class Outcome:
    """What a pipeline run left behind, gathered at one instant (no await in between)."""

    fed: list[int]
    acked: list[int]
    published: list[tuple[str, bytes]]
    counters: dict[tuple[str, str], float]
    rows: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    @property
    def letters(self) -> list[dict[str, Any]]:
        """The dead letters, parsed (each checked by :func:`check_letters`)."""
        return [orjson.loads(p) for t, p in self.published if t == DEADLETTER_TOPIC]

    def counter(self, name: str, reason: str = "") -> float:
        return self.counters.get((name, reason), 0.0)

    def rejected_by_reason(self) -> dict[str, int]:
        """Messages and readings rejected, per reason, as the metrics count them."""
        out: dict[str, int] = {}
        for (name, reason), value in self.counters.items():
            if name in ("plantwatch_messages_rejected_total",
                        "plantwatch_readings_rejected_total") and value:
                out[reason] = out.get(reason, 0) + int(value)
        return out


def counters_of(rig: Rig) -> dict[tuple[str, str], float]:
    """Every ``*_total`` counter of the rig's registry, by (name, reason label)."""
    return {(s.name, s.labels.get("reason", "")): s.value
            for family in rig.metrics.registry.collect() for s in family.samples
            if s.name.endswith("_total")}


def stored_rows(db: Path) -> dict[tuple[str, int], tuple[float, int]]:
    """The readings table of a closed SQLite store: (sensor, ts) → (value, quality)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {(s, t): (v, q) for s, t, v, q in
                conn.execute("SELECT sensor, ts, value, quality FROM readings")}


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[asyncio.Task[None]]:
    """The rig's store, writer and pipeline, running; yields the pipeline task so a test
    can tell a dead loop from a slow one (``Rig.running`` keeps its tasks to itself)."""
    await rig.store.start()
    writer = asyncio.create_task(rig.writer.run())
    pipeline = asyncio.create_task(rig.pipeline.run())
    try:
        yield pipeline
    finally:
        for task in (pipeline, writer):
            task.cancel()
        await asyncio.gather(pipeline, writer, return_exceptions=True)
        await rig.store.close()
        rig.spool.close()


async def settle(rig: Rig, pipeline: asyncio.Task[None], n_messages: int) -> None:
    """Wait until ``n_messages`` are acknowledged; fail at once if the pipeline died."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while len(rig.source.acked) < n_messages:
        if pipeline.done():
            exc = None if pipeline.cancelled() else pipeline.exception()
            if exc is None:
                raise AssertionError(f"the pipeline task ended: {pipeline!r}")
            # Raised as it is, so hypothesis tells one cause of death from another.
            exc.add_note("(it killed the pipeline task: the ingest loop is dead)")
            raise exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rig.source.acked)} of {n_messages} messages "
                                 f"acknowledged after {SETTLE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.005)
    assert not pipeline.done(), f"the pipeline task ended: {pipeline!r}"


EVERY_LETTER = PipelineConfig(flush_interval_s=0.02, letters_per_s=1e12, letter_burst=1e12)
"""These tests count every rejection's dead letter, so the per-topic rate limit of dead
letters is lifted here; it has tests of its own (tests/test_hostile_input.py)."""


async def run_messages(tmp: Path, messages: Sequence[tuple[str, bytes]],
                       sparkplug: SparkplugHost | None = None) -> Outcome:
    """Feed the messages to a fresh rig in ``tmp``; return what it left behind."""
    rig = Rig(tmp, sparkplug=sparkplug, config=EVERY_LETTER)
    async with running(rig) as pipeline:
        fed = [rig.source.feed(topic, payload) for topic, payload in messages]
        await settle(rig, pipeline, len(fed))
        outcome = Outcome(fed, list(rig.source.acked), list(rig.source.published),
                          counters_of(rig))
    outcome.rows = stored_rows(tmp / "db.sqlite3")
    return outcome


def run_in_tempdir(messages: Sequence[tuple[str, bytes]],
                   sparkplug: SparkplugHost | None = None) -> Outcome:
    """:func:`run_messages` for a hypothesis example: a directory and event loop of its own
    (hypothesis runs many examples in one test, so ``tmp_path`` cannot be used)."""
    with tempfile.TemporaryDirectory(prefix="pw-fuzz-", dir=FAST_TMP) as tmp:
        return asyncio.run(run_messages(Path(tmp), messages, sparkplug))


def check_letters(out: Outcome) -> list[dict[str, Any]]:
    """Every dead letter: at most 64 KiB, a JSON object, a reason, not an internal error;
    and the dead-letter counter says how many were published."""
    bodies = [p for t, p in out.published if t == DEADLETTER_TOPIC]
    for body in bodies:
        assert len(body) <= MAX_LETTER_BYTES, f"a {len(body)}-byte dead letter: {body[:300]!r}"
        letter = orjson.loads(body)
        assert isinstance(letter, dict), body[:300]
        assert isinstance(letter.get("reason"), str) and letter["reason"], body[:300]
        assert letter["reason"] != "internal_error", (
            f"handling a message raised and the safety net caught it: {body[:500]!r}")
    assert out.counter("plantwatch_dead_letters_total") == len(bodies)
    letters = out.letters
    assert out.rejected_by_reason() == expand_by_reason(letters)
    return letters


def check_stored(out: Outcome, valid: Sequence[Reading]) -> None:
    """The store holds exactly the valid readings. Two valid readings of one sensor at one
    time overwrite each other; the writers may run concurrently, so either may be kept."""
    expected: dict[tuple[str, int], set[tuple[float, int]]] = {}
    for r in valid:
        expected.setdefault((r.sensor, r.ts), set()).add((float(r.value), r.quality))
    missing = sorted(set(expected) - set(out.rows))[:10]
    extra = sorted(set(out.rows) - set(expected))[:10]
    assert not missing and not extra, f"missing from the store: {missing}; not valid: {extra}"
    wrong = [(k, v, expected[k]) for k, v in out.rows.items() if v not in expected[k]][:10]
    assert not wrong, f"stored with another value or quality: {wrong}"


def check_traffic(out: Outcome, messages: Sequence[Message]) -> None:
    """All the promises, for messages whose rejections the generator knows exactly."""
    assert sorted(out.acked) == out.fed, "not every message was acknowledged exactly once"
    check_stored(out, [r for m in messages for r in m.valid])
    letters = check_letters(out)
    assert sum(out.rejected_by_reason().values()) == sum(m.rejections for m in messages)
    assert len(letters) == sum(dead_letters_for(m.rejections) for m in messages)


# -- JSON and line protocol traffic -----------------------------------------------


REGRESSION = [Message(f"deep_{where}_1000", f"plant/{SITE}/{GATEWAY}",
                      deep_json_payload(1000, where), (), 1) for where in ("reading", "value")]
"""The payloads that crashed the service, as explicit examples of the fuzz test."""


@fuzz_settings(60)
@example(REGRESSION)
@given(traffic())
@at_service_recursion_limit
def test_pipeline_survives_fuzzed_traffic(messages: list[Message]) -> None:
    """Valid and mixed JSON and line protocol, junk, floods past the dead-letter cap, the
    regression payloads and foreign topics, in any order."""
    out = run_in_tempdir([(m.topic, m.payload) for m in messages])
    check_traffic(out, messages)


@pytest.mark.parametrize("where", ["reading", "value"])
@pytest.mark.parametrize("depth", REGRESSION_DEPTHS)
async def test_regression_payloads_are_dead_lettered_and_the_loop_goes_on(
        tmp_path: Path, depth: int, where: str) -> None:
    """``[`` × depth as a reading (1,000 crashed the service) or as a reading's value, on
    ``plant/<site>/<gw>``, then a valid message: one dead letter, and the next is stored."""
    after = Reading("LEL-1", NOW_MS - 1, 1.5)
    messages = [
        Message("deep", f"plant/{SITE}/{GATEWAY}", deep_json_payload(depth, where), (), 1),
        Message("valid", f"plant/{SITE}/{GATEWAY}", render_json(
            {"readings": [{"sensor": after.sensor, "value": after.value, "ts": after.ts}]}),
            (after,), 0),
    ]
    out = await run_messages(tmp_path, [(m.topic, m.payload) for m in messages])
    check_traffic(out, messages)


EXTREME = [1.7976931348623157e308, -1.7976931348623157e308, 1e308, 5e-324, -0.0, 2.0**63]


async def test_extreme_finite_values_are_stored_and_the_loop_goes_on(tmp_path: Path) -> None:
    """Any finite value is a valid reading (the decoders take them); the detectors must take
    them too, without an overflow (a warning is an error in this suite, as it should be in
    a safety system: an ``inf`` z-score is a wrong answer, not a big one)."""
    readings = [Reading("LEL-1", NOW_MS - 60_000 + k, v) for k, v in enumerate(EXTREME)]
    messages = [Message("extreme", f"plant/{SITE}/{GATEWAY}", render_json({"readings": [
        {"sensor": r.sensor, "value": r.value, "ts": r.ts}]}), (r,), 0) for r in readings]
    out = await run_messages(tmp_path, [(m.topic, m.payload) for m in messages])
    check_traffic(out, messages)


HUGE = 100_000


def oversized_messages() -> dict[str, Message]:
    """One field longer than a dead letter may be, in each place input is echoed."""
    big = "x" * HUGE
    base = {"sensor": "LEL-1", "value": 1.0, "ts": NOW_MS - 1}
    docs: dict[str, Any] = {
        "reading": {"readings": [big]},
        "sensor": {"readings": [{**base, "sensor": big}]},
        "value": {"readings": [{**base, "value": big}]},
        "ts": {"readings": [{**base, "ts": big}]},
        "quality": {"readings": [{**base, "quality": big}]},
        "extra_field": {"readings": [{**base, "sensor": "NOPE", "note": big}]},
        "message_ts": {"readings": [], "ts": big},
        "int_beyond_64_bits": {"readings": [{**base, "sensor": "NOPE", "value": 2**70}]},
    }
    out = {f"json_{k}": Message("huge", f"plant/{SITE}/{GATEWAY}", render_json(d), (), 1)
           for k, d in docs.items()}
    out["lp_sensor"] = Message("huge", f"plant/{SITE}/lp",
                               f"m,sensor={'Z' * HUGE} value=1 {NOW_MS}".encode(), (), 1)
    out["lp_field"] = Message("huge", f"plant/{SITE}/lp",
                              f"m,sensor=LEL-1 value=1,note={'n' * HUGE}x {NOW_MS}".encode(),
                              (), 1)
    return out


OVERSIZED = oversized_messages()


@pytest.mark.parametrize("case", sorted(OVERSIZED))
async def test_oversized_fields_make_bounded_dead_letters(tmp_path: Path, case: str) -> None:
    """A dead letter echoes what was refused; the echo of a 100 kB field is cut to size."""
    msg = OVERSIZED[case]
    out = await run_messages(tmp_path, [(msg.topic, msg.payload)])
    check_traffic(out, [msg])


def oversized_sparkplug() -> dict[str, list[tuple[str, bytes]]]:
    """A 100 kB metric name in an unknown node's birth; a 100 kB text value in the plant
    node's data."""
    node = EdgeNodeMessages(SITE, GATEWAY, {AREA: list(SENSORS)})
    births = [(m.topic, m.payload) for m in node.births(NOW_MS - 1000)]
    text = encode_payload(Payload(timestamp=NOW_MS, seq=node.next_seq, metrics=(
        Metric(alias=node.alias["LEL-1"], datatype=DataType.String, value="v" * HUGE),)))
    name = encode_payload(Payload(timestamp=NOW_MS, seq=0, metrics=(
        bd_seq_metric(0), Metric(name="n" * HUGE, datatype=DataType.Double, value=1.0))))
    return {"text_value": [*births, (node.topic(MessageType.DDATA, AREA), text)],
            "metric_name": [(f"spBv1.0/{SITE}/NBIRTH/gw-x", name)]}


OVERSIZED_SPARKPLUG = oversized_sparkplug()


@pytest.mark.parametrize("case", sorted(OVERSIZED_SPARKPLUG))
async def test_oversized_sparkplug_fields_make_bounded_dead_letters(tmp_path: Path,
                                                                    case: str) -> None:
    """The same for Sparkplug B: the metric echoed in a dead letter is cut to size."""
    out = await run_messages(tmp_path, OVERSIZED_SPARKPLUG[case], sparkplug=plant_host())
    assert sorted(out.acked) == out.fed
    assert out.rows == {}
    assert check_letters(out), "the oversized metric was not dead-lettered"


# -- Sparkplug B traffic ------------------------------------------------------------


@fuzz_settings(25)
@given(sparkplug_traffic())
@at_service_recursion_limit
def test_pipeline_survives_fuzzed_sparkplug_traffic(sp: SparkplugTraffic) -> None:
    """The plant's edge node publishing cleanly among junk from unknown nodes (births, data,
    deaths and commands with odd fields, cut-short protobuf, garbage): the node's readings
    all stored and nothing else, every message acknowledged, every letter accounted for,
    and the clean node never asked to rebirth."""
    out = run_in_tempdir(sp.messages, sparkplug=plant_host())
    assert sorted(out.acked) == out.fed
    check_stored(out, sp.valid)
    check_letters(out)
    assert f"spBv1.0/{SITE}/NCMD/{GATEWAY}" not in {t for t, _ in out.published}


# -- bounded state -------------------------------------------------------------------


def hostile_topics(n: int) -> list[tuple[str, bytes]]:
    """``n`` messages on as many new topics: ours, other sites', foreign ones, long ones."""
    shapes = ("plant/{site}/gw-{i}", "plant/site-{i}/lp", "elsewhere/{i}/x",
              "plant/{site}/" + "g" * 180 + "{i}")
    return [(shapes[i % len(shapes)].format(site=SITE, i=i), b'{"readings": [1]}')
            for i in range(n)]


def hostile_nodes(n: int) -> list[tuple[str, bytes]]:
    """``n`` Sparkplug messages from as many unknown edge nodes: data before any birth,
    valid births (a born node is the most state), device births and deaths."""
    data = encode_payload(Payload(timestamp=NOW_MS, seq=1, metrics=(
        Metric(alias=1, value=1.0),)))
    birth = encode_payload(Payload(timestamp=NOW_MS, seq=0, metrics=(
        bd_seq_metric(0), Metric(name="junk", alias=1, value=1.0))))
    death = encode_payload(Payload(metrics=(bd_seq_metric(0),)))
    shapes = ((f"spBv1.0/{SITE}/NDATA/node-{{i}}", data),
              ("spBv1.0/site-{i}/NBIRTH/gw", birth),
              (f"spBv1.0/{SITE}/DBIRTH/n{{i}}/dev", data),
              ("spBv1.0/g{i}/NDEATH/" + GATEWAY, death))
    return [(shapes[i % len(shapes)][0].format(i=i), shapes[i % len(shapes)][1])
            for i in range(n)]


def size_of(obj: object, attribute: str) -> int:
    """How many entries a private table holds (the bound is on today's attribute names;
    if the hardening renames one, follow it here)."""
    assert hasattr(obj, attribute), f"{type(obj).__name__}.{attribute} is gone: follow it"
    return len(getattr(obj, attribute))


async def test_hostile_topics_and_node_ids_do_not_grow_the_state(tmp_path: Path) -> None:
    """More new topics and Sparkplug node ids than the bound: the pipeline's per-topic cache
    and the host's node table stay within it, and no unknown node is sent a command."""
    host = plant_host()
    rig = Rig(tmp_path, sparkplug=host)
    n = STATE_BOUND + 1_000
    async with running(rig) as pipeline:
        for topic, payload in hostile_topics(n) + hostile_nodes(n):
            rig.source.feed(topic, payload)
        await settle(rig, pipeline, 2 * n)
        topics_cached = size_of(rig.pipeline, "_topic_ours")
        nodes_known = size_of(host, "_nodes")
        commanded = {tuple(t.split("/")[1:4:2]) for t, _ in rig.source.published
                     if t.startswith("spBv1.0/") and "/NCMD/" in t}
    problems = []  # all three are reported, not just the first
    if topics_cached > STATE_BOUND:
        problems.append(f"{topics_cached} topics cached by the pipeline")
    if nodes_known > STATE_BOUND:
        problems.append(f"{nodes_known} Sparkplug nodes kept by the host")
    if unknown := commanded - PLANT_NODES:
        problems.append(f"{len(unknown)} unknown nodes asked to rebirth, e.g. "
                        f"{sorted(unknown)[:3]}")
    assert not problems, f"bound {STATE_BOUND}: " + "; ".join(problems)


# -- another site's topic ------------------------------------------------------------

@pytest.mark.parametrize("site", ["evilsite", "S1"])
@pytest.mark.parametrize("fmt", ["json", "lp"])
async def test_readings_on_another_sites_topic_are_dead_lettered_wrong_site(
        tmp_path: Path, site: str, fmt: str) -> None:
    """``plant/<other site>/…`` carrying this site's sensors: a gateway (or anyone) cannot
    file readings under a site they do not belong to. Nothing stored, each reading
    dead-lettered ``wrong_site`` (or the message once); a message of the right site still
    is stored."""
    readings = [(s, NOW_MS - 3 * DAY_MS - k, 10.0 + k) for k, s in enumerate(SENSORS)]
    if fmt == "json":
        topic = f"plant/{site}/gw"
        payload = render_json({"readings": [{"sensor": s, "value": v, "ts": t}
                                            for s, t, v in readings]})
    else:
        topic = f"plant/{site}/lp"
        payload = "\n".join(f"m,sensor={s} value={v!r} {t}" for s, t, v in readings).encode()
    control = Reading("PT-1", NOW_MS - 1, 500.0)
    good = render_json({"readings": [{"sensor": control.sensor, "value": control.value,
                                      "ts": control.ts}]})
    out = await run_messages(tmp_path, [(topic, payload), (f"plant/{SITE}/{GATEWAY}", good)])
    assert sorted(out.acked) == out.fed
    check_stored(out, [control])
    letters = check_letters(out)
    reasons = [x["reason"] for x in letters if x.get("topic") == topic]
    assert reasons in (["wrong_site"], ["wrong_site"] * len(readings)), reasons
