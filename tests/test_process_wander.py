"""A process value wanders; the trend warning must tell a wander from a runaway.

Through the whole detector suite with a tank temperature of config/plant.yaml
(H 40 °C, trend horizon 300 s), fed a minute per batch. The wander is an
AR(1) process (σ 0.3 °C, correlation time 5 min) on top of 0.1 °C noise,
rounded to 0.1 °C like a transmitter's output.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from tests.suite_runs import PLANT_TABLE, suite_raises

TANK = PLANT_TABLE.index["TF-A-TI-01"]
HOUR = 3600


def wander(n: int, sigma: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    a = np.exp(-1 / 300.0)
    shocks = rng.standard_normal(n) * sigma * np.sqrt(1 - a * a)
    shocks[0] = 0.0  # starts on its mean
    return np.asarray(lfilter([1.0], [1.0, -a], shocks), np.float64)  # w[k] = a·w[k−1] + shock


def trend_raises(values: npt.NDArray[np.float64]) -> list[int]:
    """Seconds at which a trend warning was raised on the tank, a minute per batch."""
    return [t for t, c in suite_raises(TANK, values, per_batch=60) if c == "trend"]


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
