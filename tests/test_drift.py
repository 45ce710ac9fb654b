"""Drift detector: the signed score against the plain reference, and the plant cases
it exists for (a slow leak, a calibration step, a steady day without a false call).

The contract (chunks, state, input, late readings, the reference at the parameters
declared for checking) is tests/test_detector_contract.py's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from detectors.drift import DriftDetector
from detectors.reference import DriftRef
from model.batch import ReadingBatch
from tests.test_health import LEL, T0, TABLE, Stream, as_batch, lel_noise, one_sensor, readings


def make() -> DriftDetector:
    """Small time constant and thresholds, so short streams warm up, detect and freeze."""
    return DriftDetector(TABLE, baseline_tau_s=20.0, k_sigmas=0.5, h_sigmas=3.0, warmup=3)


def make_ref(signed: bool = False) -> DriftRef:
    return DriftRef(TABLE, baseline_tau_s=20.0, k_sigmas=0.5, h_sigmas=3.0, warmup=3,
                    signed=signed)


@settings(max_examples=80, deadline=None)
@given(stream=readings)
def test_signed_scores_equal_reference(stream: Stream) -> None:
    got = make().update_signed(as_batch(stream))
    want = np.array(make_ref(signed=True).run(stream))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.abs(got), make().update(as_batch(stream)), strict=False)


def test_warm_up_counts_readings_even_at_exactly_zero() -> None:
    det = DriftDetector(TABLE, warmup=5)
    score = det.update(one_sensor(LEL, np.arange(8), np.zeros(8)))
    assert np.isnan(score[:5]).all()
    assert (score[5:] == 0.0).all()  # a sensor reading 0.0 is scored, and steady
    assert det.count[LEL] == 8


@pytest.mark.parametrize("bad", [{"warmup": 1}, {"h_sigmas": 0.0}, {"baseline_tau_s": -1.0},
                                 {"k_sigmas": math.nan}, {"freeze_fraction": 0.0},
                                 {"clip_sigmas": 0.5}, {"clip_sigmas": math.inf}])
def test_bad_parameters_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="DriftDetector"):
        DriftDetector(TABLE, **bad)


# -- the plant cases -----------------------------------------------------------------

GAS = [LEL, TABLE.index["LEL-2"], TABLE.index["H2S-1"]]  # 0–100 range each


def run_hours(det: DriftDetector, rng: np.random.Generator, hours: float,
              offset: Callable[[np.ndarray], np.ndarray] | None = None,
              from_hour: int = 0) -> np.ndarray:
    """Feed 1 Hz readings of 0.5 ± 0.3 %LEL (plus ``offset(t_s)``) to the GAS sensors,
    an hour per batch; return signed scores, shape (seconds, sensors)."""
    out = []
    for start in range(from_hour * 3600, int((from_hour + hours) * 3600), 3600):
        t = np.arange(start, start + 3600)
        extra = np.zeros(3600) if offset is None else offset(t)
        values = lel_noise(rng, 3600 * len(GAS)).reshape(3600, len(GAS)) + extra[:, None]
        batch = ReadingBatch.from_columns(
            np.tile(GAS, 3600), np.repeat(T0 + 1000 * t, len(GAS)), values.ravel())
        out.append(det.update_signed(batch).reshape(3600, len(GAS)))
    return np.concatenate(out)


def first_detection(scores: np.ndarray) -> np.ndarray:
    hit = np.abs(np.nan_to_num(scores)) >= 1
    return np.where(hit.any(axis=0), hit.argmax(axis=0), -1)


def test_a_steady_day_gives_no_detection() -> None:
    det = DriftDetector(TABLE)
    scores = run_hours(det, np.random.default_rng(2024), 24)
    assert np.isnan(scores[:120]).all() and not np.isnan(scores[120:]).any()
    assert (first_detection(scores) == -1).all()
    assert np.nanmax(np.abs(scores)) < 1
    # the scale learnt is the noise, the baseline its mean
    np.testing.assert_allclose(det.mean_step[GAS] * math.sqrt(math.pi) / 2, 0.29, rtol=0.1)
    np.testing.assert_allclose(det.baseline[GAS], 0.52, atol=0.05)


def test_a_slow_leak_of_1_pct_lel_per_hour_is_detected_within_hours() -> None:
    det = DriftDetector(TABLE)
    start = 2 * 3600
    scores = run_hours(det, np.random.default_rng(7), 6,
                       lambda t: np.where(t >= start, (t - start) / 3600.0, 0.0))
    found = first_detection(scores)
    assert (found > start).all() and (found < start + 3 * 3600).all(), found - start
    assert (scores[found, range(len(GAS))] > 0).all()  # upwards
    assert (scores[-1] > 1).all()  # and still detected: the baseline did not chase it


@pytest.mark.parametrize("offset", [1.0, -0.4])
def test_a_calibration_step_is_detected_with_its_direction(offset: float) -> None:
    det = DriftDetector(TABLE)
    start = 2 * 3600
    scores = run_hours(det, np.random.default_rng(9), 4,
                       lambda t: np.where(t >= start, offset, 0.0))
    found = first_detection(scores)
    assert (found >= start).all() and (found < start + 600).all(), found - start
    assert (np.sign(scores[found, range(len(GAS))]) == np.sign(offset)).all()
    assert (np.abs(scores[-1]) > 1).all()  # held while the offset lasts


def test_rebaseline_accepts_a_new_level() -> None:
    det = DriftDetector(TABLE, warmup=10)
    rng = np.random.default_rng(1)
    run_hours(det, rng, 1)
    scores = run_hours(det, rng, 1, lambda t: np.full(len(t), 2.0), from_hour=1)
    assert (scores[-1] > 1).all()
    det.rebaseline(GAS)
    after = run_hours(det, rng, 1, lambda t: np.full(len(t), 2.0), from_hour=2)
    assert np.isnan(after[:10]).all()
    assert np.nanmax(np.abs(after)) < 1


def _quiet_head_with_blips(blips: dict[int, float], n: int = 3600) -> ReadingBatch:
    """A combustible head in clean air: exactly 0 %LEL, with one-reading blips."""
    values = np.zeros(n)
    for at, value in blips.items():
        values[at] = value
    return one_sensor(LEL, np.arange(n), values)


BLIPS = {221: 2.0, 603: 1.0, 971: 1.0, 1581: 2.0, 1886: 3.0, 2736: 3.0, 2976: 2.0, 3416: 3.0}


@pytest.mark.parametrize("clip_sigmas", [4.0, 1e9])
def test_one_reading_cannot_make_a_drift(clip_sigmas: float) -> None:
    # The scale of a head reading 0.0 sits at its floor (0.1 %LEL): unclipped,
    # a single 2 %LEL blip is z = 20 and a drift on its own.
    scores = DriftDetector(TABLE, clip_sigmas=clip_sigmas).update(
        _quiet_head_with_blips(BLIPS))
    if clip_sigmas == 1e9:
        assert np.nanmax(scores) >= 1  # what the clip is for
    else:
        assert np.nanmax(scores) < 0.25  # 3.5 of h = 16 at most, fading at k


def test_a_quiet_head_that_settles_one_pct_lel_higher_is_still_a_drift() -> None:
    values = np.r_[np.zeros(1800), np.ones(1800)]  # zero drift of the cell by 1 %LEL
    scores = DriftDetector(TABLE).update(one_sensor(LEL, np.arange(3600), values))
    found = int(np.argmax(np.nan_to_num(scores) >= 1))
    assert 1800 <= found <= 1810, found - 1800  # h/(c − k) ≈ 5 readings
