"""``plantwatch evaluate skab`` and ``plantwatch evaluate table``: MSPC on labelled tables.

Attach with ``evaluate_app.command("skab")(skab)`` and
``evaluate_app.command("table")(table)``. The numbers come from
:mod:`detectors.evaluation.skab` and :mod:`detectors.evaluation.table`; this
module only parses options and prints.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from detectors.evaluation.skab import (
    PUBLISHED_CHANGEPOINT,
    PUBLISHED_OUTLIER,
    SkabConfig,
    SkabReport,
    run_skab,
)
from detectors.evaluation.table import TableConfig, TableReport, evaluate_table
from detectors.evaluation.tabular_data import TableError

__all__ = ["DEFAULT_SKAB_DIR", "skab", "table"]

DEFAULT_SKAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"
"""``<repo>/../shared/data/skab``: where the SKAB data sits beside the repository."""

_err = Console(stderr=True)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _print_json(payload: dict[str, object]) -> None:
    typer.echo(json.dumps(_clean(payload), indent=2, allow_nan=False))


def _clean(obj: object) -> object:
    """NaN becomes null: JSON has no NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _skab_tables(report: SkabReport, seconds: float) -> None:
    out = Console()
    s = report.summary()
    outlier = Table(title="SKAB outlier detection (pooled test parts)")
    for col in ("detector", "F1", "FAR %", "MAR %"):
        outlier.add_column(col, justify="left" if col == "detector" else "right")
    outlier.add_row("[bold]plantwatch MSPC (T²+Q, EWMA)[/bold]", _fmt(float(s["f1"])),
                    _fmt(float(s["far"])), _fmt(float(s["mar"])))
    for name, (f1, far, mar) in PUBLISHED_OUTLIER.items():
        outlier.add_row(f"{name} (published)", _fmt(f1), _fmt(far), _fmt(mar))
    cp = Table(title="SKAB changepoint detection (NAB, 60 s window right of each changepoint)")
    for col in ("detector", "standard", "low FP", "low FN"):
        cp.add_column(col, justify="left" if col == "detector" else "right")
    cp.add_row("[bold]plantwatch MSPC (T²+Q, EWMA)[/bold]", _fmt(float(s["nab_standard"])),
               _fmt(float(s["nab_low_fp"])), _fmt(float(s["nab_low_fn"])))
    for name, (std, low_fp, low_fn) in PUBLISHED_CHANGEPOINT.items():
        cp.add_row(f"{name} (published)", _fmt(std), _fmt(low_fp), _fmt(low_fn))
    out.print(outlier)
    out.print(cp)
    cfg = report.config
    out.print(
        f"changepoints {s['changepoints']}, missed {s['changepoints_missed']}, "
        f"false {s['false_changepoints']}; alarm above {report.threshold:.2f} × control limit, "
        f"clear below {report.threshold * cfg.off_ratio:.2f} (calibrated on normal data to "
        f"{cfg.target_alarm_fraction:.0%} alarmed rows); EWMA λ={cfg.ewma_lambda}; "
        f"{seconds:.1f} s"
    )


def skab(
    data: Annotated[Path, typer.Option("--data", help="SKAB data directory")] = DEFAULT_SKAB_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    ewma_lambda: Annotated[float, typer.Option(help="EWMA weight of the newest row")] = 0.2,
    target_alarm_fraction: Annotated[
        float, typer.Option(help="alarmed share of held-out normal rows")
    ] = 0.10,
    no_anomaly_free: Annotated[
        bool, typer.Option("--no-anomaly-free", help="calibrate on training parts only")
    ] = False,
) -> None:
    """Score plantwatch's MSPC with the SKAB leaderboard protocol."""
    config = SkabConfig(ewma_lambda=ewma_lambda, target_alarm_fraction=target_alarm_fraction)
    started = time.perf_counter()
    try:
        report = run_skab(data, config, use_anomaly_free=not no_anomaly_free)
    except (TableError, ValueError) as exc:
        _err.print(f"[red]cannot evaluate SKAB[/red]: {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        _print_json(report.as_json())
    else:
        _skab_tables(report, time.perf_counter() - started)


def _table_print(report: TableReport) -> None:
    out = Console()
    t = Table(title=f"MSPC on {len(report.sensors)} sensors, alarm above "
                    f"{report.threshold:.2f} × control limit")
    for col in ("file", "detection rate", "false-alarm rate", "F1",
                f"delay mean ({report.unit})", f"delay median ({report.unit})", "missed"):
        t.add_column(col, justify="left" if col == "file" else "right")
    for r in [*report.files, report.pooled]:
        d = r.delay_summary(report.unit)
        mean, median = d["mean"], d["median"]
        t.add_row(
            f"[bold]{r.file}[/bold]" if r.file == "pooled" else r.file,
            _fmt(r.detection_rate, 3), _fmt(r.false_alarm_rate, 3), _fmt(r.f1, 3),
            _fmt(mean if isinstance(mean, float) else None, 1),
            _fmt(median if isinstance(median, float) else None, 1),
            f"{d['missed']}/{d['segments']}",
        )
    out.print(t)


def table(
    train: Annotated[Path, typer.Option("--train", help="CSV of normal operation")],
    test: Annotated[list[Path], typer.Option("--test", help="labelled CSV (repeatable)")],
    label_column: Annotated[str, typer.Option(help="0/1 anomaly label column")] = "anomaly",
    time_column: Annotated[str | None, typer.Option(help="time column (s or ISO)")] = None,
    sep: Annotated[str, typer.Option(help="field separator")] = ",",
    ignore_column: Annotated[
        list[str] | None, typer.Option(help="a column that is not a sensor (repeatable)")
    ] = None,
    ewma_lambda: Annotated[float, typer.Option(help="EWMA weight of the newest row")] = 1.0,
    target_alarm_fraction: Annotated[
        float, typer.Option(help="alarmed share of held-out normal rows")
    ] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Fit MSPC on a normal file and score labelled test files."""
    config = TableConfig(ewma_lambda=ewma_lambda, target_alarm_fraction=target_alarm_fraction)
    try:
        report = evaluate_table(train, test, label_column, time_column, sep, config,
                                exclude=tuple(ignore_column or ()))
    except (TableError, ValueError) as exc:
        _err.print(f"[red]cannot evaluate[/red]: {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        _print_json(report.as_json())
    else:
        _table_print(report)
