"""``plantwatch evaluate``: score plantwatch's detectors on labelled data.

The sub-app only wires the commands; they live beside it:
``skab`` and ``table`` in :mod:`plantwatch.cli.evaluate_tabular` (the SKAB
benchmark, or your own labelled history), ``nab`` in
:mod:`plantwatch.cli.evaluate_nab` (the Numenta Anomaly Benchmark).
"""

from __future__ import annotations

import typer

from plantwatch.cli import evaluate_nab, evaluate_tabular
from plantwatch.cli.root import app

__all__ = ["evaluate_app"]

evaluate_app = typer.Typer(
    help="Score plantwatch's detectors on labelled data (SKAB, NAB, your own history).",
    no_args_is_help=True,
)
evaluate_app.command("skab")(evaluate_tabular.skab)
evaluate_app.command("nab")(evaluate_nab.nab)
evaluate_app.command("table")(evaluate_tabular.table)
app.add_typer(evaluate_app, name="evaluate")
