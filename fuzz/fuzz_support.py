"""What the three atheris harnesses share: instrumentation, the plant, the clock, the invariants.

The decoders are fed by MQTT, so every byte is hostile. The service relies on
more than "no exception": a rejection must become a dead letter that
``orjson.dumps`` can serialise (a 2 KB message of 1000 nested ``[`` once made
that raise, and the service crash-looped on its own dead letter), and what is
accepted must be a finite value of a known sensor at a time the store keeps.
A harness that finds a broken promise raises :class:`InvariantError`; any
other exception escaping a decoder is a finding as it stands.

Importing this module instruments ``ingest`` and ``sparkplug`` (only them:
instrumenting numpy or protobuf's Python layer would slow every run for
coverage of code that is not ours), so import it before anything else of the
project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import atheris
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.plants is not installed with the package
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["ingest", "sparkplug"]):
    # Every decoder the harnesses drive is imported here, so instrumented, before
    # anything else can import it; detectors and tests stay uninstrumented.
    import decoders.lp_gateway
    import decoders.sparkplug_host  # noqa: F401
    import sparkplug.codec  # noqa: F401
    from decoders.json_gateway import DecodeLimits, DecodeResult, Rejection
    from ingest import dead_letter
    from model.batch import ReadingBatch
    from model.sensor_table import SensorTable
    from tests.plants import small_plant

#: Arrival time of every message (2025-11-28 13:40 UTC); the seeds' timestamps are near it.
NOW_MS = 1_764_337_200_000
LIMITS = DecodeLimits()
#: Sensor id → row, for tests/plants.py's small plant (LEL-1, LEL-2, H2S-1, O2-1, PT-1).
SENSOR_INDEX: dict[str, int] = dict(SensorTable.from_config(small_plant()).index)
_KNOWN_ROWS = frozenset(SENSOR_INDEX.values())


class InvariantError(AssertionError):
    """A decoder returned without raising but broke a promise the service relies on."""


def check_letter(letter: Mapping[str, Any], reason: str) -> None:
    """A dead letter, as the service writes it (``ingest.dead_letter.encode``), keeps its
    reason and is bounded in size, whatever the input (``encode`` never raises, but it
    falls back to a bare ``internal_error`` letter when it cannot write the real one)."""
    body = dead_letter.encode(dict(letter))
    written = orjson.loads(body)
    if written.get("reason") != reason:
        raise InvariantError(
            f"dead letter of a {reason!r} rejection was written as {written!r:.300}")
    if len(body) > dead_letter.MAX_LETTER_BYTES:
        raise InvariantError(f"dead letter of {len(body)} bytes for {reason!r}")


def check_rejections(rejections: Iterable[Rejection], topic: str, payload: bytes) -> None:
    """Every rejection has a reason and becomes a serialisable dead letter."""
    for rej in rejections:
        if not (isinstance(rej.reason, str) and rej.reason and isinstance(rej.detail, str)):
            raise InvariantError(f"rejection without a reason or detail: {rej!r:.300}")
        check_letter(rej.to_dead_letter(topic, payload, NOW_MS), rej.reason)


def check_batch(batch: ReadingBatch, ts_min: int, ts_max: int) -> None:
    """Accepted readings: known sensor rows, finite values, kept timestamps, quality 0–3."""
    if not len(batch):
        return  # most fuzz inputs; numpy's per-call overhead would dominate the run
    if not set(batch.sensor.tolist()) <= _KNOWN_ROWS:
        raise InvariantError(f"reading of an unknown sensor row: {batch.sensor.tolist()[:20]}")
    if not np.isfinite(batch.value).all():
        raise InvariantError(f"non-finite value accepted: {batch.value.tolist()[:20]}")
    if not (ts_min <= int(batch.ts.min()) and int(batch.ts.max()) <= ts_max):
        raise InvariantError(f"timestamp outside [{ts_min}, {ts_max}]: {batch.ts.tolist()[:20]}")
    if int(batch.quality.max()) > 3:
        raise InvariantError(f"quality above 3 accepted: {batch.quality.tolist()[:20]}")


def ts_bounds(first_ms: int, last_ms: int) -> tuple[int, int]:
    """The timestamps a store keeps for messages that arrived from ``first_ms`` to ``last_ms``."""
    return first_ms - LIMITS.max_age_ms, last_ms + LIMITS.max_future_skew_ms


def check_result(result: DecodeResult, topic: str, payload: bytes) -> None:
    """All the invariants of one JSON or line protocol decode (``NOW_MS``, default limits)."""
    check_rejections(result.rejections, topic, payload)
    check_batch(result.batch, *ts_bounds(NOW_MS, NOW_MS))
    if result.message_rejected and len(result.batch):
        raise InvariantError(f"message rejected whole but {len(result.batch)} readings kept")


def records(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Split a Sparkplug fuzz input into ``(op, advance, payload)`` records.

    A record is ``op:u8 advance:u8 length:u16be payload``; a short tail is
    taken as it is, so every byte string is a valid input. The framing is ours
    rather than ``FuzzedDataProvider``'s (which reads integers from the end)
    so that ``make_seeds.py`` can write seeds byte for byte with :func:`record`.
    """
    pos = 0
    while pos + 2 <= len(data):
        op, advance = data[pos], data[pos + 1]
        size = int.from_bytes(data[pos + 2:pos + 4], "big")
        yield op, advance, data[pos + 4:pos + 4 + size]
        pos += 4 + size


def record(op: int, payload: bytes = b"", advance: int = 0) -> bytes:
    """One record of :func:`records` (what the seed generator writes)."""
    return bytes((op, advance)) + len(payload).to_bytes(2, "big") + payload


def fuzz(test_one: Callable[[bytes], None]) -> None:
    """Run libFuzzer on ``test_one`` with this process's command line (corpus dirs, -flags)."""
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
