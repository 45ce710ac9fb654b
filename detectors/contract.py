"""The detector contract as checks: one plain function per promise of :mod:`detectors.base`.

Why a module and not only tests: the contract is what makes a detector
usable by the suite (chunk invariance is what lets a restart resume without
re-alarming; a state that round-trips is the checkpoint), so it ships with the
detectors, like scikit-learn's ``check_estimator``/``parametrize_with_checks``
and river's ``check_estimator``. A test parametrizes over every declared
detector (:data:`detectors.registry.EVERY`) × :func:`checks`, so a new
detector is checked by being declared, and a detector of one's own can be
checked the same way::

    for name, check in checks(my_spec):
        check()  # raises AssertionError saying which promise broke

Each check takes a :class:`~detectors.registry.DetectorSpec`, builds its
detector with :meth:`~detectors.registry.DetectorSpec.build_checked` over the
check plant (:func:`check_table`) and raises :class:`AssertionError` with a
message naming the detector, the promise and the stream. The streams are
generated from a seed (:func:`sample_streams`): time-ordered and not, with
duplicates, late readings, gaps of hours, NaN and ±inf, exact zeros, flat
runs, spikes, values at the limits and beyond the range, ramps across the
limits, and settled whole-table snapshots that take the detectors' fast
paths. Checks that walk streams take ``streams=`` to run on others (property
tests feed generated ones).

Pure logic: NumPy and the standard library only, no test framework.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, State
from detectors.reference import Reading
from detectors.registry import DetectorSpec, SuiteParams
from model.batch import F64, ReadingBatch
from model.plant import PlantConfig, parse_plant
from model.sensor_table import SensorTable

__all__ = [
    "USES_STREAMS",
    "Stream",
    "batch_of",
    "check_chunk_invariance",
    "check_decision",
    "check_foreign_state_refused",
    "check_input_untouched",
    "check_late_readings_ignored",
    "check_protocol",
    "check_reference",
    "check_rows_permute",
    "check_state_is_a_snapshot",
    "check_state_round_trip",
    "check_table",
    "check_table_order",
    "checks",
    "sample_streams",
    "time_ordered",
]

Stream = Sequence[Reading]
"""Readings ``(sensor row, ts ms, value)`` in the order a batch lists them."""

T0 = 1_764_000_000_000
"""Streams start here: real epoch magnitudes, where ``float(ts)`` loses precision."""
SCORE_RTOL, SCORE_ATOL = 1e-12, 1e-9
"""Scores against a reference: the references keep the vectorized arithmetic's order, so
they agree to a few ulps (absolute 1e-9 for ETAs of thousands of seconds)."""
STATE_RTOL, STATE_ATOL = 1e-12, 1e-12


# -- the check plant -----------------------------------------------------------------


def _check_plant_data() -> dict[str, Any]:
    """Six sensors covering what detectors read from the table: gas presets and explicit
    limits, a low-side oxygen cell, four-level pressure with short delays, and a process
    temperature with a rate limit, a stuck time, drift detection and a short horizon."""
    sensors: list[dict[str, Any]] = [
        {"id": "LEL-1", "kind": "combustible_lel", "range": [0, 100], "deadband": 2.0},
        {"id": "LEL-2", "kind": "combustible_lel", "range": [0, 100],
         "limits": {"h": 20, "hh": 40}, "on_delay_s": 2.0, "off_delay_s": 3.0},
        {"id": "H2S-1", "kind": "toxic_ppm", "gas": "H2S", "range": [0, 100]},
        {"id": "O2-1", "kind": "oxygen_pct", "range": [0, 25]},
        {"id": "PT-1", "kind": "pressure_kpa", "range": [0, 1000],
         "limits": {"ll": 50, "l": 100, "h": 800, "hh": 900},
         "on_delay_s": 0.005, "off_delay_s": 0.01},
        {"id": "TT-1", "kind": "temperature_c", "range": [0, 200],
         "limits": {"l": 20, "h": 95, "hh": 120}, "trend_horizon_s": 120.0,
         "max_rate_per_min": 5.0, "stuck_after_s": 30.0, "drift_detection": True},
    ]
    return {
        "enterprise": {"id": "acme", "name": "Acme Chemicals"},
        "sites": [{"id": "s1", "workshops": [{
            "id": "tank-farm", "teams": [{"id": "team-a", "posts": [{"id": "post-tf"}]}],
            "areas": [{"id": "tf-a", "post": "post-tf", "risk": "orange",
                       "sensors": sensors}],
        }]}],
    }


@functools.cache
def _check_plant(order: tuple[int, ...] | None) -> PlantConfig:
    data = _check_plant_data()
    if order is not None:
        area = data["sites"][0]["workshops"][0]["areas"][0]
        area["sensors"] = [area["sensors"][i] for i in order]
    return parse_plant(data, "detectors/contract.py")


def check_table(order: Sequence[int] | None = None) -> SensorTable:
    """The sensor table the checks run on, a new one each call (a detector may keep it);
    ``order`` lists the plant's sensors in another order."""
    return SensorTable.from_config(_check_plant(None if order is None else tuple(order)))


# -- streams -------------------------------------------------------------------------


def _specials(table: SensorTable, s: int) -> list[float]:
    """Values where detectors decide something: range ends and margins, limits, limits
    less and plus the deadband, zero, mid-range."""
    lo, hi = float(table.range_lo[s]), float(table.range_hi[s])
    span, db = hi - lo, float(table.deadband[s])
    out = [lo, hi, 0.0, 0.0, (lo + hi) / 2, lo - 0.02 * span, hi + 0.02 * span,
           hi + 0.025 * span]
    for name in ("ll", "l", "h", "hh"):
        lim = float(table.limit(name)[s])
        if math.isfinite(lim):
            out += [lim, lim - db, lim + db]
    return out


_ODD = (1e4, -1e4, 1e6, 5e-324, -0.0, math.nan, math.nan, math.inf, -math.inf)


def _values(table: SensorTable, rng: np.random.Generator,
            sensors: Sequence[int]) -> list[float]:  # fmt: skip
    """One value per reading of ``sensors``: anywhere in and around the range, a
    special value, the sensor's previous value again (flat runs), or an odd one."""
    lo, hi = table.range_lo, table.range_hi
    previous: dict[int, float] = {}
    out = []
    for s in sensors:
        u = rng.random()
        span = float(hi[s] - lo[s])
        if u < 0.45:
            v = float(rng.uniform(lo[s] - 0.1 * span, hi[s] + 0.1 * span))
        elif u < 0.7:
            v = float(rng.choice(_specials(table, s)))
        elif u < 0.88 and s in previous:
            v = previous[s]
        else:
            v = float(rng.choice(_ODD))
        previous[s] = v
        out.append(v)
    return out


def _irregular(table: SensorTable, rng: np.random.Generator) -> list[Reading]:
    """Time-ordered readings of random sensors at irregular steps: ties (a duplicate when
    the sensor repeats), 1 ms, 1 s, up to 3 s, and gaps of two hours."""
    n = int(rng.integers(0, 120))
    steps = rng.choice([0, 1, 1000, -1, 7_200_000], n, p=[0.15, 0.1, 0.3, 0.4, 0.05])
    steps = np.where(steps < 0, rng.integers(0, 3000, n), steps)
    ts = T0 + np.cumsum(steps)
    sensors = rng.integers(0, len(table), n).tolist()
    return list(zip(sensors, ts.tolist(), _values(table, rng, sensors), strict=True))


def _settled(table: SensorTable, rng: np.random.Generator) -> list[Reading]:
    """Forty whole-table snapshots of noisy ramps (every sensor listed in one order,
    Δt one second or jittered), then an irregular tail: warm-ups end, filters
    settle, and the snapshot fast paths are taken before the odd readings come."""
    m = len(table)
    order = rng.permutation(m) if rng.random() < 0.5 else np.arange(m)
    span = table.range_hi - table.range_lo
    base = table.range_lo + span * rng.uniform(0.1, 0.6, m)
    slope = span * rng.choice([0.0, 0.0, 0.002, -0.001, 0.01], m)
    noise = span * rng.choice([0.0, 0.001, 0.01], m)
    jitter = rng.random() < 0.5
    out: list[Reading] = []
    t = T0
    for k in range(40):
        t += 1000 + (int(rng.integers(0, 300)) if jitter else 0)
        for s in order.tolist():
            out.append((s, t, float(base[s] + slope[s] * k + noise[s] * rng.normal())))
    return out + [(s, ts - T0 + t + 1000, v) for s, ts, v in _irregular(table, rng)[:40]]


def _ramps(table: SensorTable, rng: np.random.Generator) -> list[Reading]:
    """A few sensors at one reading a second, ramping up or down through their limits
    with noise and the odd spike or NaN: limit alarms, ETAs and CUSUMs that move."""
    m = len(table)
    sensors = sorted(rng.choice(m, int(rng.integers(1, m + 1)), replace=False).tolist())
    span = table.range_hi - table.range_lo
    start = table.range_lo + span * rng.uniform(0.0, 1.0, m)
    rate = span * rng.uniform(-0.02, 0.02, m)
    out: list[Reading] = []
    for k in range(int(rng.integers(20, 90))):
        for s in sensors:
            v = float(start[s] + rate[s] * k + 0.002 * span[s] * rng.normal())
            u = rng.random()
            if u < 0.02:
                v += float(span[s])  # a spike
            elif u < 0.03:
                v = math.nan
            out.append((s, T0 + 1000 * k, v))
    return out


def _unordered(table: SensorTable, rng: np.random.Generator) -> list[Reading]:
    """Readings in any row order over ten minutes, repeated timestamps included."""
    n = int(rng.integers(0, 100))
    ts = (T0 + rng.choice(rng.integers(0, 600_000, max(n // 2, 1)), n)).tolist()
    sensors = rng.integers(0, len(table), n).tolist()
    return list(zip(sensors, ts, _values(table, rng, sensors), strict=True))


_SHAPES = (_irregular, _settled, _ramps, _unordered)


def sample_streams(table: SensorTable, count: int = 24, seed: int = 0) -> list[Stream]:
    """``count`` streams over ``table``'s sensors, the shapes of the module notes in turn.

    The same ``table``, ``count`` and ``seed`` give the same streams; a
    failure message names the stream by its position.
    """
    rng = np.random.default_rng(seed)
    return [tuple(_SHAPES[k % len(_SHAPES)](table, rng)) for k in range(count)]


@functools.cache
def _default_streams() -> tuple[Stream, ...]:
    return tuple(sample_streams(check_table()))


def time_ordered(stream: Stream) -> list[Reading]:
    """``stream`` by timestamp, stable: how it arrives over time."""
    return sorted(stream, key=lambda r: r[1])


def batch_of(stream: Stream) -> ReadingBatch:
    """One batch holding ``stream``'s readings in its order."""
    if not stream:
        return ReadingBatch.empty()
    s, t, v = zip(*stream, strict=True)
    return ReadingBatch.from_columns(s, t, v)


def _feed(det: Detector, stream: Stream, bounds: Sequence[int]) -> F64:
    """Scores of ``stream`` fed in the chunks between ``bounds`` (0 … len)."""
    parts = [det.update(batch_of(stream[a:b])) for a, b in itertools.pairwise(bounds)]
    return np.concatenate(parts) if parts else np.empty(0)


# -- comparing -----------------------------------------------------------------------


def _fail(what: str, detail: str) -> None:
    raise AssertionError(f"{what}: {detail}")


def _same_scores(got: F64, want: F64, what: str, *, close: bool = False) -> None:
    """Same NaN pattern, and equal (bit for bit, or within the reference tolerances)."""
    got, want = np.asarray(got), np.asarray(want, np.float64)
    if got.shape != want.shape:
        _fail(what, f"{got.shape[0] if got.ndim else got.shape} scores for "
                    f"{want.shape[0]} readings (one per row is due)")
    if got.dtype != np.float64:
        _fail(what, f"scores are {got.dtype}, not float64")
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if close:
        differ = ~np.isclose(got, want, rtol=SCORE_RTOL, atol=SCORE_ATOL, equal_nan=True)
    else:
        differ = (got != want) & ~(nan_g & nan_w)
    differ |= nan_g != nan_w
    if differ.any():
        i = int(np.argmax(differ))
        _fail(what, f"{int(differ.sum())} of {len(got)} scores differ; the first at row {i}: "
                    f"{float(got[i])!r}, expected {float(want[i])!r}")


def _same_state(got: State, want: State, what: str, *, close: bool = False) -> None:
    """Same keys, shapes and values (float values within tolerance when ``close``)."""
    if sorted(got) != sorted(want):
        _fail(what, f"state keys {sorted(got)}, expected {sorted(want)}")
    for k in want:
        a, b = np.asarray(got[k]), np.asarray(want[k])
        if a.shape != b.shape:
            _fail(what, f"state {k!r} has shape {a.shape}, expected {b.shape}")
        if not close and a.dtype != b.dtype:
            _fail(what, f"state {k!r} is {a.dtype}, expected {b.dtype}")
        if close and a.dtype.kind == "f":
            ok = np.isclose(a, b, rtol=STATE_RTOL, atol=STATE_ATOL, equal_nan=True)
        elif a.dtype.kind == "f":
            ok = (a == b) | (np.isnan(a) & np.isnan(b))
        else:
            ok = a == b
        if not np.all(ok):
            i = tuple(int(j) for j in np.unravel_index(int(np.argmin(ok)), a.shape))
            _fail(what, f"state {k!r} differs at {i}: {a[i].item()!r}, expected "
                        f"{b[i].item()!r}")


def _where(spec: DetectorSpec, k: int, stream: Stream) -> str:
    return f"{spec.name}: stream {k} ({len(stream)} readings)"


def _streams(streams: Sequence[Stream] | None) -> Sequence[Stream]:
    return _default_streams() if streams is None else streams


def _cuts(n: int, rng: np.random.Generator) -> list[int]:
    return [0, *sorted(set(rng.integers(1, n, 5).tolist())), n] if n > 1 else [0, n]


# -- the checks ------------------------------------------------------------------------


def check_protocol(spec: DetectorSpec) -> None:
    """It is a :class:`~detectors.base.Detector` named as declared, its state plain arrays.

    The suite keys a detector's state by the declared name; a checkpoint
    holds only bool, integer and float arrays.
    """
    det = spec.build_checked(check_table())
    if not isinstance(det, Detector):
        _fail(spec.name, f"a {type(det).__name__} is not a Detector (name, update, "
                         "get_state, set_state)")
    if det.name != spec.name:
        _fail(spec.name, f"the detector is named {det.name!r}, declared {spec.name!r}")
    for key, arr in det.get_state().items():
        if not isinstance(key, str) or not isinstance(arr, np.ndarray):
            _fail(spec.name, f"state {key!r} is a {type(arr).__name__}, not a NumPy array")
        if arr.dtype.kind not in "biuf":
            _fail(spec.name, f"state {key!r} is {arr.dtype}: only bool, integer and float "
                             "arrays can be checkpointed")


def check_decision(spec: DetectorSpec) -> None:
    """Its bank decision gives a threshold per sensor, delays ≥ 0 and a real hysteresis.

    The clear threshold lies on the normal side of the raise threshold (or on
    it): past it the other way, a score would raise and clear at once.
    """
    d = spec.decision
    if d is None:
        return
    if spec.factory is None:
        _fail(spec.name, "a bank-decided detector needs a factory for the suite to build it")
    table, params = check_table(), SuiteParams()
    enter, leave = d.enter(table, params), d.leave(table, params)
    for what, arr in (("enter", enter), ("leave", leave)):
        arr = np.asarray(arr)
        if arr.shape != (len(table),) or arr.dtype.kind != "f":
            _fail(spec.name, f"the {what} threshold is {arr.dtype} {arr.shape}, expected "
                             f"float ({len(table)},): one per sensor")
    for what, delay in (("on", d.on_delay_s(params)), ("off", d.off_delay_s(params))):
        if not (math.isfinite(delay) and delay >= 0):
            _fail(spec.name, f"the {what}-delay is {delay!r} s, expected finite and ≥ 0")
    both = np.isfinite(enter) & np.isfinite(leave)
    wrong = both & ((leave > enter) if d.upper else (leave < enter))
    if wrong.any():
        s = int(np.argmax(wrong))
        _fail(spec.name, f"sensor {s}: clears at {leave[s]!r}, beyond its raise threshold "
                         f"{enter[s]!r} ({'upper' if d.upper else 'lower'} point)")


def check_chunk_invariance(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """A time-ordered stream gives the same scores and final state in chunks of 1, 7,
    at random cuts (with empty batches between) or all at once."""
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        s = time_ordered(stream)
        where = _where(spec, k, s)
        whole = spec.build_checked(table)
        want = whole.update(batch_of(s))
        if want.shape != (len(s),):
            _fail(where, f"{want.shape} scores for {len(s)} readings (one per row is due)")
        n = len(s)
        rng = np.random.default_rng(k)
        for how, bounds in (("1", list(range(n + 1))),
                            ("7", [*range(0, n, 7), n] if n else [0]),
                            ("random cuts", _cuts(n, rng))):
            det = spec.build_checked(table)
            got = _feed(det, s, bounds)
            if how == "random cuts":
                empty = det.update(ReadingBatch.empty())
                if empty.shape != (0,):
                    _fail(where, f"an empty batch gave scores of shape {empty.shape}")
            _same_scores(got, want, f"{where}, in chunks of {how} vs all at once")
            _same_state(det.get_state(), whole.get_state(),
                        f"{where}, final state in chunks of {how} vs all at once")


def check_state_round_trip(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """Resuming from ``set_state(get_state())`` (a deep copy, into a new detector), from
    a pickle of the detector, and after restoring its own state, gives the same
    scores and final state as never stopping."""
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        s = time_ordered(stream)
        where = _where(spec, k, s)
        cut = int(np.random.default_rng(k).integers(0, len(s) + 1))
        first, rest = batch_of(s[:cut]), batch_of(s[cut:])
        a = spec.build_checked(table)
        a.update(first)
        restored = spec.build_checked(table)
        restored.set_state(copy.deepcopy(a.get_state()))
        from_pickle = pickle.loads(pickle.dumps(a))
        state_pickled = spec.build_checked(table)
        state_pickled.set_state(pickle.loads(pickle.dumps(a.get_state())))
        itself = pickle.loads(pickle.dumps(a))
        itself.set_state(itself.get_state())
        want = a.update(rest)
        for how, other in (("set_state(get_state())", restored), ("a pickle", from_pickle),
                           ("a pickled state", state_pickled),
                           ("its own state set again", itself)):
            _same_scores(other.update(rest), want,
                         f"{where}, cut at {cut}: resumed from {how}")
            _same_state(other.get_state(), a.get_state(),
                        f"{where}, cut at {cut}: final state resumed from {how}")


def check_state_is_a_snapshot(spec: DetectorSpec,
                              streams: Sequence[Stream] | None = None) -> None:  # fmt: skip
    """``get_state`` hands out copies and ``set_state`` takes copies: a checkpoint taken
    does not move with later readings, and the caller's arrays stay the caller's."""
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        s = time_ordered(stream)
        where = _where(spec, k, s)
        half = len(s) // 2
        det = spec.build_checked(table)
        det.update(batch_of(s[:half]))
        taken = det.get_state()
        kept = copy.deepcopy(taken)
        det.update(batch_of(s[half:]))
        _same_state(taken, kept, f"{where}: a state taken moved with later readings")
        other = spec.build_checked(table)
        given = copy.deepcopy(kept)
        other.set_state(given)
        for arr in given.values():  # the caller reuses its arrays
            arr[...] = np.ones_like(arr)
        _same_state(other.get_state(), kept,
                    f"{where}: set_state kept the caller's arrays, not copies")


def check_input_untouched(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """``update`` never writes into its batch: the values stay, and a batch of read-only
    arrays is taken without complaint."""
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        where = _where(spec, k, stream)
        batch = batch_of(stream)
        columns: tuple[npt.NDArray[Any], ...] = (batch.sensor, batch.ts, batch.value,
                                                 batch.quality)
        before = [c.copy() for c in columns]
        det = spec.build_checked(table)
        det.update(batch)
        det.update(batch)  # again: every reading now a duplicate
        for name, col, old in zip(("sensor", "ts", "value", "quality"), columns, before,
                                  strict=True):
            if not np.array_equal(col, old, equal_nan=col.dtype.kind == "f"):
                _fail(where, f"update wrote into the batch's {name} column")
        for col in columns:
            col.flags.writeable = False
        try:
            spec.build_checked(table).update(batch)
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            _fail(where, f"update writes into its batch ({exc})")


def check_rows_permute(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """Listing a batch's rows in another order lists the scores in that order.

    Row order matters by design only between readings with equal timestamps:
    of two readings of one sensor the first row counts and the other is a
    duplicate, and a multivariate detector scores each reading against the
    group's values as they stand when it arrives. So each stream is reduced to
    distinct timestamps first.
    """
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        first_at: dict[int, Reading] = {}
        for r in stream:
            first_at.setdefault(r[1], r)
        unique = list(first_at.values())
        where = _where(spec, k, unique)
        batch = batch_of(unique)
        want = spec.build_checked(table).update(batch)
        perm = np.random.default_rng(k).permutation(len(unique))
        got = spec.build_checked(table).update(batch.take(perm))
        _same_scores(got, want[perm], f"{where}, rows permuted")


def check_late_readings_ignored(spec: DetectorSpec) -> None:
    """Late, duplicate and non-finite readings score NaN and move nothing; of two
    readings of a sensor with one timestamp in a batch, the first counts."""
    table = check_table()
    m = len(table)
    span = table.range_hi - table.range_lo
    warm = [(s, T0 + 1000 * k, float(table.range_lo[s] + span[s] * (0.3 + 0.01 * math.sin(k))))
            for k in range(40) for s in range(m)]
    det = spec.build_checked(table)
    det.update(batch_of(warm))
    before = det.get_state()
    last = T0 + 39_000
    odd = [r for s in range(m) for r in (
        (s, last, 5.0), (s, last - 5000, 5.0), (s, T0 - 1, 5.0),
        (s, last + 1000, math.nan), (s, last + 2000, math.inf), (s, last + 3000, -math.inf))]
    scores = det.update(batch_of(odd))
    if not np.isnan(scores).all():
        i = int(np.argmax(~np.isnan(scores)))
        _fail(spec.name, f"the late, duplicate or non-finite reading {odd[i]} scored "
                         f"{float(scores[i])!r}, not NaN")
    _same_state(det.get_state(), before,
                f"{spec.name}: late, duplicate and non-finite readings moved the state")
    fresh = [(s, last + 4000, float(table.range_lo[s] + span[s] * 0.31)) for s in range(m)]
    again = [(s, t, v + 0.2 * float(span[s])) for s, t, v in fresh]
    both = det.update(batch_of([r for pair in zip(fresh, again, strict=True) for r in pair]))
    if not np.isnan(both[1::2]).all():
        _fail(spec.name, "a second reading of a sensor at the same time in one batch was "
                         "scored, not taken as a duplicate")
    only_first = spec.build_checked(table)
    only_first.set_state(before)
    only_first.update(batch_of(fresh))
    _same_state(det.get_state(), only_first.get_state(),
                f"{spec.name}: a duplicate in the batch moved the state")


def check_table_order(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """The order the plant lists its sensors in does not change any score."""
    table = check_table()
    m = len(table)
    rng = np.random.default_rng(7)
    orders = [rng.permutation(m).tolist() for _ in range(3)]
    for k, stream in enumerate(_streams(streams)):
        order = orders[k % len(orders)]
        shuffled = check_table(order)
        remap = {table.index[sid]: shuffled.index[sid] for sid in table.ids}
        moved = [(remap[s], t, v) for s, t, v in stream]
        got = spec.build_checked(shuffled).update(batch_of(moved))
        want = spec.build_checked(table).update(batch_of(stream))
        _same_scores(got, want, f"{_where(spec, k, stream)}, sensors listed as {order}")


def check_foreign_state_refused(spec: DetectorSpec) -> None:
    """A state of another table (any array of another length) or with nothing in it is
    refused with an error that names the array at fault, not taken half-understood."""
    det = spec.build_checked(check_table())
    state = det.get_state()
    for key, arr in state.items():
        if arr.ndim == 0:
            continue
        bad = {**state, key: arr[:-1] if len(arr) else np.zeros((1, *arr.shape[1:]), arr.dtype)}
        try:
            spec.build_checked(check_table()).set_state(bad)
        except ValueError as exc:
            if repr(key) not in str(exc):
                _fail(spec.name, f"a state {key!r} of shape {bad[key].shape} was refused "
                                 f"with a message that does not name it: {exc}")
        else:
            _fail(spec.name, f"a state {key!r} of shape {bad[key].shape} (another table's) "
                             "was accepted")
    try:
        spec.build_checked(check_table()).set_state({})
    except (ValueError, KeyError):
        pass
    else:
        _fail(spec.name, "an empty state was accepted")


def check_reference(spec: DetectorSpec, streams: Sequence[Stream] | None = None) -> None:
    """Scores and final state equal the plain per-reading reference's, in any row order."""
    make_ref = spec.reference
    if make_ref is None:
        return
    table = check_table()
    for k, stream in enumerate(_streams(streams)):
        where = _where(spec, k, stream)
        det = spec.build_checked(table)
        got = det.update(batch_of(stream))
        ref = make_ref(table)
        want = np.array(ref.run(stream), np.float64)
        _same_scores(got, want, f"{where}, against the reference", close=True)
        _same_state(det.get_state(), ref.state(), f"{where}, final state against the "
                                                  "reference", close=True)


StreamCheck = Callable[[DetectorSpec, Sequence[Stream] | None], None]

_PLAIN: dict[str, Callable[[DetectorSpec], None]] = {
    "protocol": check_protocol,
    "decision": check_decision,
    "late_readings_ignored": check_late_readings_ignored,
    "foreign_state_refused": check_foreign_state_refused,
}
_STREAMED: dict[str, StreamCheck] = {
    "chunk_invariance": check_chunk_invariance,
    "state_round_trip": check_state_round_trip,
    "state_is_a_snapshot": check_state_is_a_snapshot,
    "input_untouched": check_input_untouched,
    "rows_permute": check_rows_permute,
    "table_order": check_table_order,
    "reference": check_reference,
}
_ORDER = ("protocol", "decision", "chunk_invariance", "state_round_trip",
          "state_is_a_snapshot", "input_untouched", "rows_permute", "late_readings_ignored",
          "table_order", "foreign_state_refused", "reference")

USES_STREAMS = frozenset(_STREAMED)
"""The checks that walk streams (and take ``streams=``)."""


def checks(
    spec: DetectorSpec, streams: Sequence[Stream] | None = None
) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(check name, check)`` for every promise that applies to ``spec``.

    Each check is called with no arguments and raises :class:`AssertionError`
    when the detector breaks the promise. ``decision`` applies only to
    bank-decided detectors and ``reference`` only to those that declare one.
    Checks that walk streams use ``streams`` when given, else
    :func:`sample_streams` of the check table.
    """
    for name in _ORDER:
        if name == "decision" and spec.decision is None:
            continue
        if name == "reference" and spec.reference is None:
            continue
        if name in _STREAMED:
            yield name, functools.partial(_STREAMED[name], spec, streams)
        else:
            yield name, functools.partial(_PLAIN[name], spec)
