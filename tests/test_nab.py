"""NAB v1.1 scorer: hand-made cases, a plain reference implementation, the
published Windowed Gaussian scores, and the ``evaluate nab`` command.

The NAB checkout is read from ``<repo>/../shared/data/nab``; a missing
checkout is a failure, never a skip.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from detectors.evaluation.nab import (
    DEFAULT_PROFILES,
    NO_DETECTION_THRESHOLD,
    CostProfile,
    FileOutput,
    NabResult,
    WindowLimits,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    threshold_curve,
)
from detectors.evaluation.nab_data import load_corpus, load_profiles, load_results, load_windows
from plantwatch.cli.evaluate_nab import nab, score_detectors

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
STANDARD, LOW_FP, LOW_FN = DEFAULT_PROFILES
MINUTE_MS = 60_000


def sigma(x: float) -> float:
    """NAB's scaled sigmoid, scalar, straight from its definition."""
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


MAX_TP = sigma(-1.0)


@pytest.fixture(scope="module")
def nab_dir() -> Path:
    if not (NAB_DIR / "labels" / "combined_windows.json").is_file():
        pytest.fail(
            f"the NAB checkout is missing: expected {NAB_DIR} (<repo>/../shared/data/nab) "
            "with data/, labels/, config/, results/windowedGaussian and results_scores/",
            pytrace=False,
        )
    return NAB_DIR


# ---------------------------------------------------------------------------
# Tiny hand-made files
# ---------------------------------------------------------------------------


def times(n: int) -> npt.NDArray[np.int64]:
    return np.arange(n, dtype=np.int64) * MINUTE_MS


def one_file(
    n: int, rows: Mapping[int, float], windows: list[tuple[int, int]]
) -> tuple[dict[str, FileOutput], dict[str, WindowLimits]]:
    """A file of ``n`` one-minute rows scoring ``rows``; windows as row ranges."""
    ts = times(n)
    scores = np.zeros(n)
    for row, value in rows.items():
        scores[row] = value
    limits: WindowLimits = [(int(ts[a]), int(ts[b])) for a, b in windows]
    return {"f.csv": FileOutput(ts, scores)}, {"f.csv": limits}


def score_at(
    outputs: Mapping[str, FileOutput],
    windows: Mapping[str, WindowLimits],
    threshold: float,
    profile: CostProfile = STANDARD,
) -> float:
    curve = threshold_curve(outputs, windows, profile)
    (index,) = np.flatnonzero(curve.thresholds == threshold)
    return float(curve.scores[index])


# n = 100 rows: probation is rows 0..14; the window is rows 40..49 (width 10).
N = 100
WINDOW = (40, 49)


def test_scaled_sigmoid_matches_nab_landmarks() -> None:
    got = scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.5, 100.0, -100.0])
    assert got == pytest.approx(
        [0.98661, 0.84828, 0.0, -0.98661, sigma(3.0), -1.0, -1.0, 1.0], abs=1e-5
    )


@pytest.mark.parametrize(
    ("n", "rows"), [(0, 0), (6, 0), (7, 1), (100, 15), (4999, 749), (5000, 750), (22695, 750)]
)
def test_probation_is_15_percent_capped_at_750_rows(n: int, rows: int) -> None:
    assert probation_rows(n) == rows


def test_detection_at_window_start_is_worth_tp_weight() -> None:
    outputs, windows = one_file(N, {40: 1.0}, [WINDOW])
    result = score_corpus(outputs, windows).profiles["standard"]
    assert result.threshold == 1.0
    assert result.raw_score == pytest.approx(STANDARD.tp_weight)
    assert result.null_score == -1.0 and result.perfect_score == 1.0
    assert result.normalized_score == pytest.approx(100.0)
    (file,) = result.files
    assert (file.tp, file.fp, file.fn, file.tn) == (1, 0, 9, 75)
    assert (file.windows, file.windows_detected) == (1, 1)


def test_detection_at_window_end_is_worth_sigmoid_of_one_row() -> None:
    outputs, windows = one_file(N, {49: 1.0}, [WINDOW])
    # Position of the last row is -(49 - 49 + 1)/10: NAB never reaches 0 inside a window.
    assert score_at(outputs, windows, 1.0) == pytest.approx(sigma(-0.1) / MAX_TP)
    assert sigma(-0.1) / MAX_TP == pytest.approx(0.2482, abs=1e-4)


def test_detection_inside_probation_is_ignored() -> None:
    outputs, windows = one_file(N, {5: 1.0}, [WINDOW])
    curve = threshold_curve(outputs, windows, STANDARD)
    # The row is not even a candidate threshold: only "nothing" and "everything" remain.
    assert list(curve.thresholds) == [NO_DETECTION_THRESHOLD, 0.0]
    assert curve.scores[0] == -1.0 and curve.fp[-1] == N - 15 - 10
    # The same detection right after probation is a full false positive.
    outputs, windows = one_file(N, {15: 1.0}, [WINDOW])
    assert score_at(outputs, windows, 1.0) == pytest.approx(-1.0 - STANDARD.fp_weight)


def test_false_positive_after_window_is_weighted_by_distance() -> None:
    for row, distance in ((50, 1 / 9), (53, 4 / 9), (90, 41 / 9)):
        outputs, windows = one_file(N, {row: 1.0}, [WINDOW])
        expected = -STANDARD.fn_weight + STANDARD.fp_weight * sigma(distance)
        assert score_at(outputs, windows, 1.0) == pytest.approx(expected)
    # Just behind the window a false positive costs about a quarter of fpWeight ...
    assert sigma(1 / 9) == pytest.approx(-0.2708, abs=1e-4)
    # ... and a full fpWeight before the first window, whatever the distance.
    outputs, windows = one_file(N, {30: 1.0}, [WINDOW])
    assert score_at(outputs, windows, 1.0, LOW_FP) == pytest.approx(-1.0 - LOW_FP.fp_weight)


def test_missed_window_costs_fn_weight() -> None:
    outputs, windows = one_file(N, {}, [WINDOW, (70, 79)])
    for profile in DEFAULT_PROFILES:
        result = score_corpus(outputs, windows, [profile]).profiles[profile.name]
        assert result.raw_score == -2 * profile.fn_weight == result.null_score
        assert result.normalized_score == 0.0
        assert result.threshold == NO_DETECTION_THRESHOLD
        (file,) = result.files
        assert (file.windows, file.windows_detected, file.tp, file.fn) == (2, 0, 0, 20)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    alone, windows = one_file(N, {42: 1.0}, [WINDOW])
    both, _ = one_file(N, {42: 1.0, 47: 1.0}, [WINDOW])
    assert score_at(both, windows, 1.0) == score_at(alone, windows, 1.0)
    # Lowering the threshold to reach an earlier row raises the window's worth,
    # reaching a later one changes nothing.
    later_first, _ = one_file(N, {47: 0.9, 42: 0.6}, [WINDOW])
    curve = threshold_curve(later_first, windows, STANDARD)
    assert curve.scores[1] == pytest.approx(sigma(-3 / 10) / MAX_TP)  # threshold 0.9: row 47
    assert curve.scores[2] == pytest.approx(sigma(-8 / 10) / MAX_TP)  # threshold 0.6: row 42
    result = score_corpus(both, windows).profiles["standard"]
    assert (result.files[0].tp, result.files[0].windows_detected) == (2, 1)


def test_sweep_picks_the_corpus_best_threshold() -> None:
    ts = times(N)
    a = np.zeros(N)
    a[40] = 0.8  # detects the window at its first row
    a[20:30] = 0.5  # ten false positives before the window
    b = np.zeros(N)
    b[60] = 0.9  # a false positive in a file without windows
    outputs = {"a.csv": FileOutput(ts, a), "b.csv": FileOutput(ts, b)}
    windows: dict[str, WindowLimits] = {"a.csv": [(int(ts[40]), int(ts[49]))], "b.csv": []}
    curve = threshold_curve(outputs, windows, STANDARD)
    assert list(curve.thresholds[:4]) == [NO_DETECTION_THRESHOLD, 0.9, 0.8, 0.5]
    assert curve.scores[:4] == pytest.approx([-1.0, -1.11, 0.89, -0.21])
    result = score_corpus(outputs, windows).profiles["standard"]
    assert result.threshold == 0.8
    assert result.raw_score == pytest.approx(0.89)
    assert result.normalized_score == pytest.approx(100 * 1.89 / 2)
    assert sum(f.score for f in result.files) == pytest.approx(result.raw_score)
    assert [(f.file, f.tp, f.fp) for f in result.files] == [("a.csv", 1, 0), ("b.csv", 0, 1)]


def test_equal_scores_switch_on_together_and_ties_keep_the_higher_threshold() -> None:
    together, windows = one_file(N, {40: 0.7, 30: 0.7}, [WINDOW])
    curve = threshold_curve(together, windows, STANDARD)
    assert list(curve.thresholds) == [NO_DETECTION_THRESHOLD, 0.7, 0.0]
    assert curve.scores[1] == pytest.approx(1.0 - STANDARD.fp_weight)
    # A later row of an already detected window adds nothing: 0.8 and 0.6 tie.
    tied, windows = one_file(N, {40: 0.8, 45: 0.6}, [WINDOW])
    curve = threshold_curve(tied, windows, STANDARD)
    assert curve.scores[1] == curve.scores[2]
    assert score_corpus(tied, windows).profiles["standard"].threshold == 0.8


def test_bad_inputs_are_named() -> None:
    outputs, windows = one_file(N, {40: 1.5}, [WINDOW])
    with pytest.raises(ValueError, match=r"f\.csv: anomaly scores must be finite and in \[0, 1\]"):
        score_corpus(outputs, windows)
    outputs, _ = one_file(N, {}, [])
    with pytest.raises(ValueError, match="holds no row"):
        score_corpus(outputs, {"f.csv": [(10**12, 10**12 + 1)]})
    with pytest.raises(KeyError, match="no labelled windows"):
        score_corpus(outputs, {})


# ---------------------------------------------------------------------------
# The vectorized sweep equals a plain per-threshold, per-row reference
# ---------------------------------------------------------------------------


def reference_score(
    scores: list[float], windows: list[tuple[int, int]], threshold: float, profile: CostProfile
) -> float:
    """One file at one threshold, row by row, as NAB's Sweeper walks it."""
    first = probation_rows(len(scores))
    total = 0.0
    best: dict[int, float] = {}
    prev_right: int | None = None
    prev_width = 0
    for i, value in enumerate(scores):
        current = next((k for k, (a, b) in enumerate(windows) if a <= i <= b), None)
        if current is None:
            for a, b in windows:
                if b < i:
                    prev_right, prev_width = b, b - a + 1
        if i < first or value < threshold:
            continue
        if current is not None:
            left, right = windows[current]
            worth = sigma(-(right - i + 1) / (right - left + 1)) / MAX_TP
            best[current] = max(best.get(current, -math.inf), worth)
        elif prev_right is None:
            total -= profile.fp_weight
        else:
            total += profile.fp_weight * sigma((i - prev_right) / max(prev_width - 1, 1))
    scorable = {k for k, (a, b) in enumerate(windows) if b >= first}
    total += sum(profile.tp_weight * best[k] if k in best else -profile.fn_weight for k in scorable)
    return total


@st.composite
def corpora(draw: st.DrawFn) -> list[tuple[list[float], list[tuple[int, int]]]]:
    files = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(8, 60))
        scores = draw(
            st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n)
        )
        cuts = sorted(draw(st.sets(st.integers(0, n - 1), max_size=6)))
        windows = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
        # Keep windows apart so each is a separate labelled window.
        windows = [w for k, w in enumerate(windows) if k == 0 or w[0] > windows[k - 1][1] + 1]
        files.append((scores, windows))
    return files


@settings(max_examples=150, deadline=None)
@given(corpora(), st.sampled_from(DEFAULT_PROFILES))
def test_sweep_equals_reference(
    corpus: list[tuple[list[float], list[tuple[int, int]]]], profile: CostProfile
) -> None:
    outputs: dict[str, FileOutput] = {}
    windows: dict[str, WindowLimits] = {}
    for f, (scores, rows) in enumerate(corpus):
        ts = times(len(scores))
        outputs[f"{f}.csv"] = FileOutput(ts, np.asarray(scores))
        windows[f"{f}.csv"] = [(int(ts[a]), int(ts[b])) for a, b in rows]
    curve = threshold_curve(outputs, windows, profile)
    for threshold, got in zip(curve.thresholds, curve.scores, strict=True):
        expected = sum(reference_score(s, w, threshold, profile) for s, w in corpus)
        assert got == pytest.approx(expected, abs=1e-9)
    result = score_corpus(outputs, windows, [profile]).profiles[profile.name]
    assert result.raw_score == pytest.approx(float(curve.scores.max()), abs=1e-12)
    assert sum(f.score for f in result.files) == pytest.approx(result.raw_score, abs=1e-9)


# ---------------------------------------------------------------------------
# The published Windowed Gaussian detector, from its raw rows
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def windowed_gaussian(nab_dir: Path) -> NabResult:
    outputs = load_results(nab_dir / "results", "windowedGaussian")
    assert len(outputs) == 58
    return score_corpus(outputs, load_windows(nab_dir), load_profiles(nab_dir))


def test_windowed_gaussian_reproduces_published_scores(
    nab_dir: Path, windowed_gaussian: NabResult
) -> None:
    scores = windowed_gaussian.normalized()
    published = {"standard": 39.6, "reward_low_FP_rate": 20.9, "reward_low_FN_rate": 47.4}
    for profile, value in published.items():
        assert abs(scores[profile] - value) <= 0.1, (profile, scores[profile], value)
    # NAB's own unrounded numbers, from the checkout's final_results.json.
    final = json.loads((nab_dir / "results_scores" / "final_results.json").read_text())
    assert scores == pytest.approx(final["windowedGaussian"], abs=1e-6)


@pytest.mark.parametrize("profile", [p.name for p in DEFAULT_PROFILES])
def test_windowed_gaussian_file_scores_match_nab_score_files(
    nab_dir: Path, windowed_gaussian: NabResult, profile: str
) -> None:
    ours = windowed_gaussian.profiles[profile]
    path = (
        nab_dir / "results_scores" / "windowedGaussian" / f"windowedGaussian_{profile}_scores.csv"
    )
    with path.open(newline="") as handle:
        rows = {row["File"]: row for row in csv.DictReader(handle) if row["File"]}
    assert {f.file for f in ours.files} == set(rows)
    for f in ours.files:
        row = rows[f.file]
        assert float(row["Threshold"]) == ours.threshold
        assert f.score == pytest.approx(float(row["Score"]), abs=1e-9), f.file
        counts = (int(row["TP"]), int(row["TN"]), int(row["FP"]), int(row["FN"]))
        assert (f.tp, f.tn, f.fp, f.fn) == counts, f.file


# ---------------------------------------------------------------------------
# Running a registry of adapters, and the command
# ---------------------------------------------------------------------------


def never_alarms(
    timestamps_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Test fixture: NAB's null detector."""
    return np.zeros(values.shape)


def step_size(
    timestamps_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Test fixture: the size of each step, scaled to [0, 1] per file."""
    steps = np.abs(np.diff(values, prepend=values[:1]))
    top = steps.max()
    return steps / top if top > 0 else steps


def window_starts_by_file(nab_dir: Path) -> dict[bytes, set[int]]:
    """Test fixture data: each corpus file's window starts (epoch ms), keyed by its values."""
    windows = load_windows(nab_dir)
    corpus = load_corpus(nab_dir, sorted(windows))
    starts: dict[bytes, set[int]] = {}
    for name, series in corpus.items():
        key = series.values.tobytes()
        assert key not in starts, f"{name}: same values as another file"
        starts[key] = {
            int(np.asarray(start, dtype="datetime64[ms]").astype(np.int64))
            for start, _ in windows[name]
        }
    return starts


def test_score_detectors_runs_a_registry(nab_dir: Path) -> None:
    starts = window_starts_by_file(nab_dir)

    def perfect(
        timestamps_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Test fixture: flags exactly the first row of each of its file's windows."""
        return np.isin(timestamps_ms, list(starts[values.tobytes()])).astype(np.float64)

    results = score_detectors(
        {"never": never_alarms, "step": step_size, "perfect": perfect}, nab_dir
    )
    assert results["never"].normalized() == {p.name: 0.0 for p in DEFAULT_PROFILES}
    assert results["perfect"].normalized() == pytest.approx(
        {p.name: 100.0 for p in DEFAULT_PROFILES}
    )
    step = results["step"].normalized()
    assert all(-100.0 < v < 100.0 for v in step.values())
    assert len(results["step"].profiles["standard"].files) == 58


def test_score_detectors_rejects_bad_adapter_output(nab_dir: Path) -> None:
    def too_short(
        timestamps_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        return np.zeros(values.size - 1)

    with pytest.raises(ValueError, match=r"detector 'short' on .*scores for"):
        score_detectors({"short": too_short}, nab_dir)


def cli() -> typer.Typer:
    app = typer.Typer()
    evaluate = typer.Typer()
    app.add_typer(evaluate, name="evaluate")
    evaluate.command("nab")(nab)
    return app


def test_command_scores_a_results_directory_as_json(nab_dir: Path) -> None:
    run = CliRunner().invoke(
        cli(),
        [
            "evaluate",
            "nab",
            "--data",
            str(nab_dir),
            "--results",
            str(nab_dir / "results"),
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert set(report) == {"summary", "detectors", "files"}
    summary = report["summary"]
    assert summary == pytest.approx(
        {"standard": 39.65, "reward_low_fp_rate": 20.87, "reward_low_fn_rate": 47.41}, abs=0.005
    )
    assert report["detectors"]["windowedGaussian"]["standard"] == summary["standard"]
    assert len(report["files"]) == 58 * 3


def test_command_table_shows_the_published_scoreboard(nab_dir: Path) -> None:
    run = CliRunner().invoke(
        cli(),
        [
            "evaluate",
            "nab",
            "--data",
            str(nab_dir),
            "--results",
            str(nab_dir / "results"),
            "--detector",
            "windowedGaussian",
        ],
        env={"COLUMNS": "120"},
    )
    assert run.exit_code == 0, run.output
    assert "scored here" in run.stdout and "39.65" in run.stdout
    assert "ARTime" in run.stdout and "74.9" in run.stdout


def test_command_runs_plantwatch_adapters(nab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("detectors.evaluation.univariate")
    module.NAB_DETECTORS = {"never": never_alarms}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "detectors.evaluation.univariate", module)
    run = CliRunner().invoke(cli(), ["evaluate", "nab", "--data", str(nab_dir), "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["detectors"] == {
        "never": {
            "standard": 0.0,
            "reward_low_fp_rate": 0.0,
            "reward_low_fn_rate": 0.0,
            "thresholds": dict.fromkeys(
                ("standard", "reward_low_fp_rate", "reward_low_fn_rate"), 1.1
            ),
            "raw_scores": {
                "standard": -116.0,
                "reward_low_fp_rate": -116.0,
                "reward_low_fn_rate": -232.0,
            },
        }
    }


def test_command_without_adapters_says_so(nab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "detectors.evaluation.univariate", None)
    run = CliRunner().invoke(cli(), ["evaluate", "nab", "--data", str(nab_dir)])
    assert run.exit_code == 2
    assert "NAB adapters are not available" in run.stderr


def test_command_rejects_a_directory_that_is_not_nab(tmp_path: Path) -> None:
    run = CliRunner().invoke(cli(), ["evaluate", "nab", "--data", str(tmp_path)])
    assert run.exit_code == 2
    assert "not a NAB checkout" in run.stderr
