"""PCA-based MSPC: control limits, fault directions, contributions, and the streaming contract."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.mspc import MspcDetector, PcaMonitor, hysteresis_alarm
from model.batch import ReadingBatch

P = 6


def correlated(rng: np.random.Generator, n: int) -> np.ndarray:
    """Six sensors driven by two latent factors plus independent noise, in mixed units."""
    loadings = np.array([[1.0, 0.9, 0.8, 0.0, 0.1, 0.5], [0.0, 0.2, -0.4, 1.0, 0.9, 0.6]])
    latent = rng.standard_normal((n, 2))
    noise = 0.3 * rng.standard_normal((n, P))
    units = np.array([1.0, 10.0, 0.1, 5.0, 100.0, 2.0])
    out: np.ndarray = (latent @ loadings + noise) * units + np.arange(P) * 7.0
    return out


@pytest.fixture(scope="module")
def fitted() -> tuple[PcaMonitor, np.ndarray]:
    rng = np.random.default_rng(11)
    train = correlated(rng, 3000)
    return PcaMonitor(explained_variance=0.90, alpha=0.01).fit(train), train


def test_limits_give_about_alpha_false_alarms(fitted: tuple[PcaMonitor, np.ndarray]) -> None:
    monitor, _ = fitted
    assert monitor.n_components_ == 2
    t2, spe = monitor.score(correlated(np.random.default_rng(12), 40_000))
    assert 0.006 < np.mean(t2 > monitor.t2_limit_) < 0.016
    assert 0.006 < np.mean(spe > monitor.spe_limit_) < 0.016


def test_empirical_limit_is_the_training_quantile(fitted: tuple[PcaMonitor, np.ndarray]) -> None:
    _, train = fitted
    monitor = PcaMonitor(alpha=0.05, limit="empirical").fit(train)
    t2, spe = monitor.score(train)
    assert np.mean(t2 > monitor.t2_limit_) == pytest.approx(0.05, abs=0.002)
    assert np.mean(spe > monitor.spe_limit_) == pytest.approx(0.05, abs=0.002)


def test_broken_correlation_raises_spe_and_contributions_name_the_sensor(
    fitted: tuple[PcaMonitor, np.ndarray],
) -> None:
    monitor, _ = fitted
    x = correlated(np.random.default_rng(13), 2000)
    x[:, 2] += 4 * 0.3 * 0.1  # 4 noise sigmas on sensor 2 alone: its partners do not follow
    t2, spe = monitor.score(x)
    assert np.mean(spe > monitor.spe_limit_) > 0.5
    assert np.mean(t2 > monitor.t2_limit_) < 0.1
    t2c, spec = monitor.contributions(x)
    np.testing.assert_allclose(spec.sum(axis=1), spe, rtol=1e-10)
    np.testing.assert_allclose(t2c.sum(axis=1), t2, rtol=1e-10)
    assert np.all(t2c >= 0) and np.all(spec >= 0)
    alarmed = spe > monitor.spe_limit_
    assert np.mean(np.argmax(spec[alarmed], axis=1) == 2) > 0.9


def test_shift_along_a_principal_direction_raises_t2(
    fitted: tuple[PcaMonitor, np.ndarray],
) -> None:
    monitor, _ = fitted
    steps = np.linspace(5.0, 8.0, 50)[:, None]
    direction = monitor.components_[0] * np.sqrt(monitor.explained_variance_[0])
    x = monitor.mean_ + steps * direction * monitor.scale_
    t2, spe = monitor.score(x)
    assert np.all(t2 > monitor.t2_limit_)
    assert np.all(spe < 1e-9 * t2)


def test_constant_sensor_does_not_divide_by_zero() -> None:
    rng = np.random.default_rng(15)
    x = correlated(rng, 500)
    x[:, 3] = 4.2
    monitor = PcaMonitor().fit(x)
    assert monitor.scale_[3] == 1.0
    t2, spe = monitor.score(x)
    assert np.all(np.isfinite(t2)) and np.all(np.isfinite(spe))
    moved = x[:5].copy()
    moved[:, 3] = 6.2
    assert np.all(monitor.score(moved)[1] > monitor.spe_limit_)


def test_ewma_and_drift_options_make_a_small_shift_visible() -> None:
    rng = np.random.default_rng(16)
    train = correlated(rng, 1000)
    test = correlated(rng, 1000)
    test[500:, 0] += 0.5 * train[:, 0].std()
    plain = PcaMonitor().fit(train)
    smooth = PcaMonitor(ewma_lambda=0.1, drift_horizon=600).fit(train)
    before = [np.mean(m.index(*m.score(test))[100:500] > 1) for m in (plain, smooth)]
    after = [np.mean(m.index(*m.score(test))[600:] > 1) for m in (plain, smooth)]
    assert before[1] < 0.1  # EWMA statistics are autocorrelated: alarms come in runs
    assert after[1] > 0.9 > 0.2 > after[0]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="ewma_lambda"):
        PcaMonitor(ewma_lambda=0.0)
    with pytest.raises(ValueError, match="NaN"):
        PcaMonitor().fit(np.full((20, 3), np.nan))
    with pytest.raises(ValueError, match="too few"):
        PcaMonitor().fit(np.ones((3, 3)))


# -- streaming wrapper ---------------------------------------------------------
ROWS = np.array([7, 2, 11, 4, 9, 0])  # the group's sensors, in monitor column order
OUTSIDER = 5  # a table row not in the group


def monitor_for(lam: float, drift: float = 0.0) -> PcaMonitor:
    train = correlated(np.random.default_rng(20), 400)
    return PcaMonitor(ewma_lambda=lam, drift_horizon=drift).fit(train)


def aligned_stream(rows: int, seed: int) -> tuple[np.ndarray, ReadingBatch]:
    """An aligned table and the same data as readings, sensors shuffled within each ts."""
    rng = np.random.default_rng(seed)
    table = correlated(rng, rows)
    sensor, ts, value = [], [], []
    for i in range(rows):
        for j in rng.permutation(P):
            sensor.append(ROWS[j])
            ts.append(1_000 * (i + 1))
            value.append(table[i, j])
    return table, ReadingBatch.from_columns(sensor, ts, value)


def chunks(batch: ReadingBatch, cuts: list[int]) -> list[ReadingBatch]:
    edges = [0, *sorted(c for c in cuts if 0 < c < len(batch)), len(batch)]
    return [batch.take(np.arange(a, b)) for a, b in itertools.pairwise(edges)]


def run(det: MspcDetector, parts: list[ReadingBatch]) -> np.ndarray:
    return np.concatenate([det.update(b) for b in parts]) if parts else np.empty(0)


@pytest.mark.parametrize(("lam", "drift"), [(1.0, 0.0), (0.3, 0.0), (0.2, 600.0)])
def test_streaming_equals_tabular_reference(lam: float, drift: float) -> None:
    monitor = monitor_for(lam, drift)
    table, batch = aligned_stream(60, seed=1)
    scores = MspcDetector(ROWS, monitor).update(batch)
    last_of_ts = np.r_[batch.ts[1:] != batch.ts[:-1], True]
    reference = MspcDetector(ROWS, monitor).score(table)
    np.testing.assert_allclose(scores[last_of_ts], reference, rtol=1e-12, atol=1e-12)
    # before the first row is complete every reading is warming up
    assert np.all(np.isnan(scores[: P - 1]))
    assert np.all(np.isfinite(scores[P - 1 :]))


@pytest.mark.parametrize("size", [1, 7, 10_000])
@pytest.mark.parametrize("lam", [1.0, 0.25])
def test_chunk_invariance(size: int, lam: float) -> None:
    monitor = monitor_for(lam)
    _, batch = aligned_stream(40, seed=2)
    whole = MspcDetector(ROWS, monitor)
    expected = whole.update(batch)
    chunked = MspcDetector(ROWS, monitor)
    got = run(chunked, chunks(batch, list(range(size, len(batch), size))))
    np.testing.assert_array_equal(got, expected)
    for name, arr in whole.get_state().items():
        np.testing.assert_array_equal(arr, chunked.get_state()[name])


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 6 * 25), max_size=12), lam=st.sampled_from([1.0, 0.5, 0.1]))
def test_chunk_invariance_random_splits(cuts: list[int], lam: float) -> None:
    monitor = monitor_for(lam)
    _, batch = aligned_stream(25, seed=3)
    expected = MspcDetector(ROWS, monitor).update(batch)
    got = run(MspcDetector(ROWS, monitor), chunks(batch, cuts))
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 6 * 25), lam=st.sampled_from([1.0, 0.2]))
def test_state_round_trip_and_pickle_mid_stream(cut: int, lam: float) -> None:
    monitor = monitor_for(lam)
    _, batch = aligned_stream(25, seed=4)
    head, tail = chunks(batch, [cut]) if 0 < cut < len(batch) else (batch, ReadingBatch.empty())
    a = MspcDetector(ROWS, monitor)
    a.update(head)
    b = MspcDetector(ROWS, monitor)
    b.set_state(pickle.loads(pickle.dumps(a.get_state())))
    np.testing.assert_array_equal(a.update(tail), b.update(tail))


def test_set_state_refuses_another_group() -> None:
    det = MspcDetector(ROWS, monitor_for(1.0))
    state = det.get_state()
    state["hold"] = np.zeros(P + 1)
    with pytest.raises(ValueError, match="another sensor group"):
        det.set_state(state)


def test_input_not_mutated() -> None:
    _, batch = aligned_stream(20, seed=5)
    copy = ReadingBatch(batch.sensor.copy(), batch.ts.copy(), batch.value.copy(),
                        batch.quality.copy())
    MspcDetector(ROWS, monitor_for(0.2)).update(batch)
    for got, want in zip((batch.sensor, batch.ts, batch.value, batch.quality),
                         (copy.sensor, copy.ts, copy.value, copy.quality), strict=True):
        np.testing.assert_array_equal(got, want)


def test_warm_up_late_missing_and_outsider_readings() -> None:
    monitor = monitor_for(0.2)
    det = MspcDetector(ROWS, monitor)
    mean = monitor.mean_
    # five of six sensors report: warming up; an outsider scores NaN too
    first = ReadingBatch.from_columns([*ROWS[:5], OUTSIDER], [1000] * 6, [*mean[:5], 1.0])
    assert np.all(np.isnan(det.update(first)))
    state = det.get_state()
    # a late reading of a sensor that reported, and a NaN reading: NaN, nothing moves
    stale = ReadingBatch.from_columns([ROWS[0], ROWS[5]], [1000, 2000], [99.0, np.nan])
    assert np.all(np.isnan(det.update(stale)))
    for name, arr in state.items():
        np.testing.assert_array_equal(arr, det.get_state()[name])
    # the sixth sensor completes the vector
    done = det.update(ReadingBatch.from_columns([ROWS[5]], [2000], [mean[5]]))
    assert np.isfinite(done[0])
    # a duplicate of that reading is late
    assert np.isnan(det.update(ReadingBatch.from_columns([ROWS[5]], [2000], [mean[5]]))[0])


def test_exact_zero_readings_count_as_reported() -> None:
    rng = np.random.default_rng(6)
    train = correlated(rng, 400) - correlated(rng, 400).mean(axis=0)  # sensors around 0.0
    det = MspcDetector(ROWS, PcaMonitor().fit(train))
    scores = det.update(ReadingBatch.from_columns(ROWS, np.full(P, 5_000), np.zeros(P)))
    assert np.all(np.isnan(scores[:-1])) and np.isfinite(scores[-1])
    assert det.seen.all()


def test_permuting_readings_of_one_timestamp_permutes_nothing_but_partial_scores() -> None:
    monitor = monitor_for(1.0)
    _, batch = aligned_stream(10, seed=7)
    a = MspcDetector(ROWS, monitor)
    b = MspcDetector(ROWS, monitor)
    reversed_batch = batch.take(np.arange(len(batch))[::-1])
    a.update(batch)
    b.update(reversed_batch)  # sorted by ts inside update: the same final state
    for name, arr in a.get_state().items():
        np.testing.assert_array_equal(arr, b.get_state()[name])


def test_contributions_of_the_current_vector() -> None:
    monitor = monitor_for(1.0)
    det = MspcDetector(ROWS, monitor)
    assert np.all(np.isnan(det.contributions()[0]))
    x = monitor.mean_.copy()
    x[3] += 8 * monitor.scale_[3]
    det.update(ReadingBatch.from_columns(ROWS, np.full(P, 1000), x))
    t2c, spec = det.contributions()
    t2, spe = monitor.score(x[None, :])
    assert t2c.sum() == pytest.approx(t2[0]) and spec.sum() == pytest.approx(spe[0])
    assert np.argmax(t2c + spec) == 3


# -- deciding step -------------------------------------------------------------
def hysteresis_reference(score: list[float], on: float, off: float) -> list[bool]:
    state, out = False, []
    for s in score:
        if s > on:
            state = True
        elif s < off:
            state = False
        out.append(state)
    return out


@settings(max_examples=200, deadline=None)
@given(score=st.lists(
    st.one_of(st.floats(0, 5), st.just(float("nan")), st.sampled_from([1.0, 2.0])), max_size=60
))
def test_hysteresis_alarm_equals_reference(score: list[float]) -> None:
    assert hysteresis_alarm(score, 2.0, 1.0).tolist() == hysteresis_reference(score, 2.0, 1.0)
