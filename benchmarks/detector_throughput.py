"""Detector throughput: the vectorized univariate suite beside its plain-Python reference.

For 100, 10,000 and 100,000 sensors, with 1 and 10 readings per sensor per
batch, it feeds the full univariate suite (limits + rate + trend + drift +
health, and the deciding step) and prints samples/s, µs per batch, and bytes
of detector state per sensor. The baseline, measured in the same run, is the
per-reading Python reference implementations the contract checks the
vectorized detectors against (``detectors/reference.py``), run over the same kind of
stream.

Targets on one core: ≥ 30 million samples/s at 10,000 sensors, ≥ 20× the
reference, ≤ 2 KiB of state per sensor, under 50 µs per batch at 100 sensors.

A second table gives the floor those targets meet on the machine running it:
the cost of one elementwise NumPy pass over the sensors (measured in the same
run), how many passes the suite's round is worth, and how many the targets
leave room for.

The suite runs with freed memory kept, as every ``plantwatch`` command runs
it (:mod:`plantwatch.allocator`); ``--default-malloc`` measures glibc's
defaults instead, under which batch temporaries fault their pages in anew.

Usage: ``python benchmarks/detector_throughput.py [--quick] [--default-malloc]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.suite import DetectorSuite  # noqa: E402
from model.batch import ReadingBatch  # noqa: E402
from model.plant import parse_plant  # noqa: E402
from model.sensor_table import SensorTable  # noqa: E402
from plantwatch.allocator import keep_freed_memory  # noqa: E402

KINDS = (
    {"kind": "combustible_lel", "range": [0, 100]},
    {"kind": "toxic_ppm", "gas": "H2S", "range": [0, 100]},
    {"kind": "oxygen_pct", "range": [0, 25]},
    {"kind": "pressure_kpa", "range": [0, 1000], "limits": {"l": 100, "h": 800, "hh": 900}},
    {"kind": "temperature_c", "range": [0, 500], "limits": {"h": 380, "hh": 400},
     "max_rate_per_min": 2.0},
)
BASE = {"combustible_lel": 1.0, "toxic_ppm": 0.5, "oxygen_pct": 20.9, "pressure_kpa": 450.0,
        "temperature_c": 300.0}


def make_table(m: int) -> SensorTable:
    sensors = [{"id": f"S{i}", **KINDS[i % len(KINDS)]} for i in range(m)]
    data = {"enterprise": {"id": "e"}, "sites": [{"id": "s", "workshops": [{
        "id": "w", "teams": [{"id": "t", "posts": [{"id": "p"}]}],
        "areas": [{"id": "a", "post": "p", "sensors": sensors}]}]}]}
    return SensorTable.from_config(parse_plant(data))


def make_batches(table: SensorTable, per_sensor: int, n_batches: int,
                 rng: np.random.Generator) -> list[ReadingBatch]:
    m = len(table)
    base = np.array([BASE[p.sensor.kind] for p in table.places])
    sigma = 0.01 * (table.range_hi - table.range_lo)
    out = []
    t0 = 1_764_000_000_000
    for b in range(n_batches):
        k = np.repeat(np.arange(per_sensor), m) + b * per_sensor
        sensor = np.tile(np.arange(m, dtype=np.int32), per_sensor)
        ts = t0 + k * 1000
        value = base[sensor] + rng.normal(0, 1, len(sensor)) * sigma[sensor]
        out.append(ReadingBatch.from_columns(sensor, ts, value))
    return out


def time_suite(m: int, per_sensor: int, min_seconds: float) -> tuple[float, float, float]:
    """(samples/s, µs per batch, state bytes per sensor) of the vectorized suite.

    Batches are made before the clock starts; every batch carries newer
    timestamps than the last (old ones would be skipped as late readings).
    """
    table = make_table(m)
    suite = DetectorSuite(table)
    rng = np.random.default_rng(0)
    batches = make_batches(table, per_sensor, 40, rng)
    for b in batches[:30]:  # past every detector's warm-up
        suite.update(b)
    t0 = time.perf_counter()
    for b in batches[30:]:
        suite.update(b)
    per_batch_s = (time.perf_counter() - t0) / 10
    n = max(10, min(2000, int(min_seconds / per_batch_s)))
    ts_shift = 40 * per_sensor * 1000
    timed = [ReadingBatch(b.sensor, b.ts + ts_shift * (1 + i // 40), b.value, b.quality)
             for i, b in enumerate((batches * (n // 40 + 1))[:n])]
    t0 = time.perf_counter()
    for b in timed:
        suite.update(b)
    elapsed = time.perf_counter() - t0
    samples = sum(len(b) for b in timed)
    state_bytes = sum(a.nbytes for a in suite.get_state().values()) / m
    return samples / elapsed, 1e6 * elapsed / n, state_bytes


def pass_us(m: int) -> float:
    """µs of one elementwise NumPy pass over ``m`` values (``a * b`` into a
    preallocated array), the cheapest step any vectorized detector takes."""
    rng = np.random.default_rng(1)
    a, b, out = rng.random(m), rng.random(m), np.empty(m)
    reps = max(200, 2_000_000 // m)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            np.multiply(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best * 1e6


def reference_rate(n_readings: int = 3000) -> float:
    """samples/s of the plain per-reading references of every detector in the suite.

    The references are the ones the contract holds the vectorized detectors to
    (each declaration's ``reference`` in ``detectors/registry.py``), run on the
    sample plant; a sample costs the sum of what each reference spends on it.
    """
    from detectors.registry import DECLARED, LIMITS, NODATA
    from model.plant import load_plant

    table = SensorTable.from_config(load_plant(ROOT / "config" / "plant.yaml"))
    rng = np.random.default_rng(0)
    m = len(table)
    stream = [(int(i % m), 1_764_000_000_000 + 1000 * (i // m), float(v))
              for i, v in enumerate(rng.normal(10.0, 1.0, n_readings))]
    runs: list[Callable[[], object]] = [
        (lambda make=spec.reference: make(table).run(stream))
        for spec in (LIMITS, *DECLARED, NODATA) if spec.reference is not None
    ]
    t0 = time.perf_counter()
    for run in runs:
        run()
    return n_readings / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timings, no 100k sensors")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it starts (plantwatch's CLI tunes it)")
    args = ap.parse_args()
    kept = False if args.default_malloc else keep_freed_memory()
    print("allocator: " + ("freed memory kept, as the plantwatch CLI runs (plantwatch.allocator)"
                           if kept else "glibc's defaults (batch temporaries fault in anew)"))
    min_s = 0.5 if args.quick else 2.0
    sizes = (100, 10_000) if args.quick else (100, 10_000, 100_000)
    ref = reference_rate()
    print(f"plain-Python reference (all detectors, per reading): {ref:,.0f} samples/s\n")
    hdr = (f"{'sensors':>8} {'readings/sensor':>16} {'samples/s':>14} {'µs/batch':>10} "
           f"{'× reference':>12} {'state B/sensor':>15}")
    print(hdr)
    print("-" * len(hdr))
    per_round: dict[int, float] = {}
    for m in sizes:
        for per in (1, 10):
            rate, us, state = time_suite(m, per, min_s)
            per_round[m] = min(per_round.get(m, math.inf), us / per)
            print(f"{m:>8,} {per:>16} {rate:>14,.0f} {us:>10,.1f} {rate / ref:>12,.0f} "
                  f"{state:>15,.0f}")
    print("\ntargets: ≥30 M samples/s at 10,000 sensors, ≥20× reference, ≤2 KiB state/sensor, "
          "<50 µs per batch at 100 sensors")
    # The floor: what one NumPy pass over a round's sensors costs on this
    # machine, how many of them the suite's round is worth, and how many the
    # targets leave room for (a round is one reading of every sensor).
    budget_us = {100: 50.0, 10_000: 10_000 / 30e6 * 1e6}
    print(f"\n{'sensors':>8} {'µs/pass':>9} {'µs/round':>10} {'suite, passes':>14} "
          f"{'target, µs/round':>17} {'target, passes':>15}")
    for m in sizes:
        one = pass_us(m)
        target = budget_us.get(m)
        room = f"{target:>17,.0f} {target / one:>15,.0f}" if target else f"{'-':>17} {'-':>15}"
        print(f"{m:>8,} {one:>9,.2f} {per_round[m]:>10,.1f} {per_round[m] / one:>14,.0f} {room}")
    print("(µs/pass: one elementwise multiply over the sensors into a preallocated array; "
          "µs/round: the suite's best of 1 and 10 readings per sensor)")


if __name__ == "__main__":
    main()
