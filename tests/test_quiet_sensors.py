"""A gas head in clean air reads exactly 0 %LEL: its own blips must raise nothing.

Through the whole detector suite, with the plant's presets (a combustible
head of config/plant.yaml: 0–100 %LEL, deadband 1 %LEL, limits 25/50).
Before the drift CUSUM clipped each reading's z and the spike MAD floor was
raised, the hour of blips below raised six drift warnings and seven spike
faults; before the drift on-delay, each of the short puffs raised a drift.
"""

from __future__ import annotations

import numpy as np

from tests.suite_runs import PLANT_TABLE, suite_raises

HEAD = next(i for i, p in enumerate(PLANT_TABLE.places) if p.sensor.kind == "combustible_lel")


def raised(values: np.ndarray) -> list[tuple[int, str]]:
    return suite_raises(HEAD, values)


def test_an_hour_of_one_reading_blips_raises_nothing() -> None:
    rng = np.random.default_rng(1)
    values = np.zeros(3600)
    at = rng.choice(np.arange(100, 3600), 12, replace=False)
    values[at] = rng.choice([1.0, 2.0, 3.0], 12)
    assert (values >= 2.0).sum() >= 6  # blips of 2–3 %LEL among them
    assert raised(values) == []


def test_a_real_spike_is_still_a_fault() -> None:
    values = np.zeros(600)
    values[300] = 15.0  # one reading, under the first gas level
    assert raised(values) == [(301, "spike")]  # decided when the next reading is back


def test_a_head_that_settles_higher_is_still_a_drift() -> None:
    values = np.r_[np.zeros(1800), np.full(600, 2.0)]  # zero drift of the cell
    [(second, condition)] = raised(values)
    assert condition == "drift" and 1815 <= second <= 1825  # ~5 readings, then 15 s on-delay


def test_puffs_of_gas_under_twenty_seconds_are_not_drifts() -> None:
    values = np.zeros(3600)
    for k, start in enumerate(range(200, 3400, 320)):
        values[start : start + (5 if k % 2 else 10)] = 3.0  # 3 %LEL for 5 or 10 s
    assert raised(values) == []
