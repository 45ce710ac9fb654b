"""SKAB metrics on hand-computed cases, the full SKAB protocol on the real data, and
``evaluate table`` on small CSVs and on SKAB files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from detectors.evaluation.skab import (
    NabScores,
    SkabConfig,
    calibrate_threshold,
    load_anomaly_free,
    load_skab,
    nab_scores,
    normal_runs,
    outlier_counts,
    predicted_changepoints,
    rms_horizon,
    run_skab,
)
from detectors.evaluation.table import detection_delays, evaluate_table
from detectors.evaluation.tabular_data import TableError
from plantwatch.cli.evaluate_tabular import skab, table

SKAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skab"


@pytest.fixture(scope="module")
def skab_dir() -> Path:
    if not (SKAB_DIR / "valve1").is_dir():
        pytest.fail(f"SKAB data not found at {SKAB_DIR}; the benchmark tests always run",
                    pytrace=False)
    return SKAB_DIR


def cli() -> typer.Typer:
    app = typer.Typer()
    evaluate_app = typer.Typer()
    evaluate_app.command("skab")(skab)
    evaluate_app.command("table")(table)
    app.add_typer(evaluate_app, name="evaluate")
    return app


# -- metrics on hand-computed cases ------------------------------------------
def test_outlier_metrics_pool_counts_over_files() -> None:
    c = outlier_counts([[1, 1, 0], [0, 1]], [[1, 0, 1], [0, 1]])
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert c.f1 == pytest.approx(2 / (2 + (1 + 1) / 2))
    assert c.far == pytest.approx(50.0)
    assert c.mar == pytest.approx(100 / 3)


def test_predicted_changepoints_are_where_the_prediction_changes() -> None:
    assert predicted_changepoints([1, 1, 0, 0, 1]).tolist() == [True, False, True, False, True]
    assert predicted_changepoints([0, 0, 1]).tolist() == [False, False, True]


def sigmoid(position: float, a_tp: float, a_fp: float) -> float:
    """SKAB's scaled tanh, written out for one point."""
    x = -math.pi / 2 + math.pi * min(int(position * 1000), 999) / 999
    return (a_tp - a_fp) / 2 * (-math.tanh(x) / math.tanh(math.pi / 2)) + (a_tp - a_fp) / 2 + a_fp


def nab_one(cp_at: list[int], pred_on: list[tuple[int, int]], n: int = 200) -> NabScores:
    times = np.arange(n) * 1.0
    cp = np.isin(np.arange(n), cp_at).astype(int)
    pred = np.zeros(n, int)
    for a, b in pred_on:
        pred[a:b] = 1
    return nab_scores([cp], [times], [pred])


def test_nab_detection_at_the_changepoint_is_perfect() -> None:
    r = nab_one([10], [(10, 100)])  # rises at 10 (in window [10, 70]), falls at 100 (outside)
    raw = 1.0 - 0.11
    assert r.standard == pytest.approx(100 * (raw + 1) / 2)
    assert (r.windows, r.detected, r.false_positives) == (1, 1, 1)


def test_nab_late_detection_scores_on_the_sigmoid() -> None:
    r = nab_one([10], [(40, 200)])  # halfway through the 60 s window, never falls
    for name, (a_tp, a_fp, a_fn) in {"standard": (1, -0.11, -1), "low_fp": (1, -0.22, -1),
                                     "low_fn": (1, -0.11, -2)}.items():
        expected = 100 * (sigmoid(0.5, a_tp, a_fp) - a_fn) / (a_tp - a_fn)
        assert getattr(r, name) == pytest.approx(expected)


def test_nab_missed_window_and_false_positives() -> None:
    r = nab_one([10], [(2, 5)])  # up at 2 and down at 5: two false changepoints, window missed
    assert r.standard == pytest.approx(100 * (2 * -0.11 - 1 + 1) / 2)
    assert r.low_fn == pytest.approx(100 * (2 * -0.11 - 2 + 2) / 3)
    assert nab_one([10], []).standard == pytest.approx(0.0)


def test_nab_overlapping_windows_are_cut_and_share_the_boundary() -> None:
    # windows [10, 70] and [40, 100] -> [10, 70], [70, 100]; a rise at 70 is the last
    # point of the first window and the first of the second
    r = nab_one([10, 40], [(70, 200)])
    raw = sigmoid(1.0, 1, -0.11) + sigmoid(0.0, 1, -0.11)
    assert sigmoid(1.0, 1, -0.11) == pytest.approx(-0.11)
    assert r.standard == pytest.approx(100 * (raw + 2) / 4)


def test_nab_file_without_changepoints_only_costs_false_positives() -> None:
    times = [np.arange(100.0), np.arange(100.0)]
    cps = [np.zeros(100, int), np.r_[np.zeros(50, int), 1, np.zeros(49, int)]]
    preds = [np.r_[np.zeros(20, int), np.ones(80, int)], np.r_[np.zeros(50, int), np.ones(50, int)]]
    r = nab_scores(cps, times, preds)
    assert r.standard == pytest.approx(100 * (-0.11 + 1 + 1) / 2)


def test_rms_horizon_of_the_protocol() -> None:
    assert rms_horizon(400, 750) == pytest.approx(614, abs=1)


# -- the real benchmark ------------------------------------------------------
# Measured with the defaults (EWMA lambda 0.2, drift widening, hysteresis 1/2,
# 10 % alarmed held-out normal rows): F1 0.734, FAR 13.8 %, MAR 35.1 %,
# NAB 27.3 / 25.2 / 30.5. A regression beyond these margins fails.
def test_skab_protocol_pooled_figures(skab_dir: Path) -> None:
    report = run_skab(skab_dir)
    s = report.summary()
    assert len(report.files) == 34
    assert s["changepoints"] == 127
    assert s["tp"] + s["fn"] == 12771 and s["fp"] + s["tn"] == 11030
    assert s["f1"] >= 0.725
    assert s["far"] <= 14.5
    assert s["mar"] <= 36.0
    assert s["nab_standard"] >= 26.5
    assert s["nab_low_fp"] >= 24.5
    assert s["nab_low_fn"] >= 29.5


def test_threshold_comes_from_normal_data_only(skab_dir: Path) -> None:
    config = SkabConfig()
    files = load_skab(skab_dir)
    runs = normal_runs(config, files, load_anomaly_free(skab_dir))
    c = calibrate_threshold(config, runs)
    # the calibration never sees a test row, nor a label
    assert all(len(r) in (400, 1150) for r, _ in runs)
    scrambled = [
        type(f)(f.name, f.time_s, f.values, np.zeros_like(f.anomaly), np.zeros_like(f.changepoint))
        for f in files
    ]
    assert calibrate_threshold(config, normal_runs(config, scrambled, None)) == pytest.approx(
        calibrate_threshold(config, normal_runs(config, files, None))
    )
    assert 1.0 < c < 10.0


def test_skab_cli_json(skab_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["evaluate", "skab", "--data", str(skab_dir), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    for key in ("f1", "far", "mar", "nab_standard", "nab_low_fp", "nab_low_fn"):
        assert isinstance(payload["summary"][key], float)
    assert len(payload["files"]) == 34
    assert payload["files"][0]["file"] == "valve1/0.csv"


def test_skab_cli_table_and_missing_data(tmp_path: Path, skab_dir: Path) -> None:
    result = CliRunner().invoke(cli(), ["evaluate", "skab", "--data", str(skab_dir)])
    assert result.exit_code == 0, result.output
    assert "T-squared+Q (PCA) (published)" in result.output
    missing = CliRunner().invoke(cli(), ["evaluate", "skab", "--data", str(tmp_path)])
    assert missing.exit_code == 2


# -- evaluate table ----------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


def plant_rows(rng: np.random.Generator, n: int, fault: slice | None = None) -> list[list[object]]:
    latent = rng.standard_normal(n)
    flow = 50 + 5 * latent + 0.5 * rng.standard_normal(n)
    current = 10 + 1 * latent + 0.1 * rng.standard_normal(n)
    temp = 80 + 0.5 * rng.standard_normal(n)
    label = np.zeros(n, int)
    if fault is not None:
        current[fault] += 1.0  # current no longer follows flow
        label[fault] = 1
    return [[1000 + 2 * i, f"{flow[i]:.4f}", f"{current[i]:.4f}", f"{temp[i]:.4f}", label[i]]
            for i in range(n)]


HEADER = ["t", "flow", "current", "temp", "anomaly"]


def test_table_detects_a_broken_correlation(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = write_csv(tmp_path / "normal.csv", HEADER, plant_rows(rng, 600))
    a = write_csv(tmp_path / "a.csv", HEADER, plant_rows(rng, 300, slice(100, 200)))
    b = write_csv(tmp_path / "b.csv", HEADER, plant_rows(rng, 300, slice(250, 300)))
    report = evaluate_table(train, [a, b], "anomaly", time_column="t")
    assert report.sensors == ("flow", "current", "temp")
    pooled = report.pooled
    assert pooled.detection_rate > 0.9
    assert pooled.false_alarm_rate < 0.05
    assert pooled.segments == 2 and len(pooled.delays) == 2
    assert all(d % 2 == 0 and d <= 10 for d in pooled.delays)  # seconds, rows are 2 s apart
    result = CliRunner().invoke(cli(), ["evaluate", "table", "--train", str(train), "--test",
                                        str(a), "--test", str(b), "--time-column", "t", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [f["file"] for f in payload["files"]] == ["a.csv", "b.csv"]
    assert set(payload["files"][0]) >= {"file", "detection_rate", "false_alarm_rate", "f1",
                                        "first_detection_delay"}
    assert payload["summary"]["first_detection_delay"]["unit"] == "s"
    printed = CliRunner().invoke(cli(), ["evaluate", "table", "--train", str(train),
                                         "--test", str(a)])
    assert printed.exit_code == 0 and "pooled" in printed.output


def test_detection_delays_in_rows_and_missed_segments() -> None:
    delays, segments = detection_delays([0, 1, 1, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0, 0])
    assert (delays, segments) == ([2.0], 2)


@pytest.mark.parametrize(
    ("test_header", "test_row", "column", "message"),
    [
        (["t", "flow", "current", "temp"], [1, 1, 1, 1], "anomaly", "no such column"),
        (["t", "flow", "current", "temp", "anomaly"], [1, 1, "high", 1, 0], "current",
         "not numeric"),
        (["t", "flow", "temp", "anomaly"], [1, 1, 1, 0], "current", "missing"),
        (["t", "flow", "current", "temp", "level", "anomaly"], [1, 1, 1, 1, 1, 0], "level",
         "not a sensor"),
    ],
)
def test_table_errors_name_file_and_column(
    tmp_path: Path, test_header: list[str], test_row: list[object], column: str, message: str
) -> None:
    train = write_csv(tmp_path / "normal.csv", HEADER, plant_rows(np.random.default_rng(2), 100))
    bad = write_csv(tmp_path / "bad.csv", test_header, [test_row] * 3)
    with pytest.raises(TableError, match=message) as info:
        evaluate_table(train, [bad], "anomaly", time_column="t")
    assert info.value.column == column and info.value.path == bad
    assert "bad.csv" in str(info.value) and repr(column) in str(info.value)
    result = CliRunner().invoke(cli(), ["evaluate", "table", "--train", str(train), "--test",
                                        str(bad), "--time-column", "t"])
    assert result.exit_code == 2


def test_table_empty_and_non_numeric_training_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    good = write_csv(tmp_path / "a.csv", HEADER, plant_rows(np.random.default_rng(3), 50))
    with pytest.raises(TableError, match="empty"):
        evaluate_table(empty, [good], "anomaly")
    header_only = write_csv(tmp_path / "h.csv", HEADER, [])
    with pytest.raises(TableError, match="no data rows"):
        evaluate_table(good, [header_only], "anomaly")
    rows = [["north", *r] for r in plant_rows(np.random.default_rng(4), 50)]
    text = write_csv(tmp_path / "text.csv", ["site", *HEADER], rows)
    with pytest.raises(TableError, match=r"'site'.*not numeric"):
        evaluate_table(text, [good], "anomaly")


def test_table_on_skab_files(skab_dir: Path) -> None:
    report = evaluate_table(
        skab_dir / "anomaly-free" / "anomaly-free.csv",
        [skab_dir / "other" / "6.csv", skab_dir / "other" / "9.csv"],
        "anomaly", time_column="datetime", sep=";", exclude=("changepoint",),
    )
    assert len(report.sensors) == 8 and report.unit == "s"
    # rotor imbalance shows in the vibration sensors at once
    assert report.pooled.detection_rate > 0.95
    assert len(report.pooled.delays) == report.pooled.segments == 2
    assert max(report.pooled.delays) <= 5.0
