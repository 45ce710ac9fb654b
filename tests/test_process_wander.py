"""A process value wanders; the trend warning must tell a wander from a runaway.

Through the whole detector suite with a tank temperature of config/plant.yaml
(H 40 °C, trend horizon 300 s), fed a minute per batch. The wander is an
AR(1) process (σ 0.3 °C, correlation time 5 min) on top of 0.1 °C noise,
rounded to 0.1 °C like a transmitter's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from detectors.batch import ReadingBatch
from detectors.decide import CONDITIONS
from detectors.sensor_table import SensorTable
from detectors.suite import DetectorSuite
from plantwatch.config import load_plant

ROOT = Path(__file__).resolve().parents[1]
TABLE = SensorTable.from_config(load_plant(ROOT / "config" / "plant.yaml"))
TANK = TABLE.index["TF-A-TI-01"]
T0 = 1_764_000_000_000
HOUR = 3600


def wander(n: int, sigma: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    a = np.exp(-1 / 300.0)
    shocks = rng.standard_normal(n) * sigma * np.sqrt(1 - a * a)
    w = np.zeros(n)
    for k in range(1, n):
        w[k] = a * w[k - 1] + shocks[k]
    return w


def trend_raises(values: npt.NDArray[np.float64]) -> list[int]:
    """Seconds at which a trend warning was raised on the tank."""
    suite = DetectorSuite(TABLE)
    out = []
    for k in range(0, len(values), 60):
        suite.update(ReadingBatch.from_columns(
            np.full(60, TANK), T0 + 1000 * np.arange(k, k + 60), values[k : k + 60]))
        t = suite.transitions
        out += [int(ts - T0) // 1000 for c, a, ts in zip(t.condition, t.active, t.ts, strict=True)
                if a and CONDITIONS[c] == "trend"]
    return out


def test_a_wander_below_the_limit_is_not_a_trend_once_the_sensor_is_known() -> None:
    rng = np.random.default_rng(11)
    n = 5 * HOUR
    values = np.round(38.0 + wander(n, 0.3, rng) + 0.1 * rng.standard_normal(n), 1)
    assert values.max() < 40.0  # never reaches H
    late = [t for t in trend_raises(values) if t >= HOUR]  # the first hour is learning
    assert len(late) <= 4, late  # 23 in these four hours without test 3


def test_a_runaway_after_hours_of_wander_is_still_warned_ahead() -> None:
    rng = np.random.default_rng(3)
    normal, run = 2 * HOUR, 1800
    t = np.arange(run)
    rise = np.minimum(-30.0 * np.log(np.clip(1 - t / 1200.0, 1e-3, None)), 60.0)  # TMR 20 min
    values = np.round(30.0 + wander(normal + run, 0.3, rng)
                      + 0.1 * rng.standard_normal(normal + run) + np.r_[np.zeros(normal), rise], 1)
    crossing = normal + int(np.argmax(values[normal:] >= 40.0))
    warned = [s for s in trend_raises(values) if s >= normal]
    assert warned and crossing - warned[0] >= 200, (crossing - normal, warned[:3])
