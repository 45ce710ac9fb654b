"""The ``plantwatch`` command line: ``app``, with every command registered on it.

One module per command — ``run``, ``demo``, ``simulate``, ``backtest``,
``replay``, ``kpi``, ``backup``/``restore`` — and per sub-app — ``evaluate``,
``token``, ``mspc``, ``audit``, ``gateway``;
importing a module registers its command on the root app
(:mod:`plantwatch.cli.root`). Shared loaders and helpers are in
:mod:`plantwatch.cli.common`, shared options in :mod:`plantwatch.cli.options`.
The console script (``plantwatch.cli:app``) and ``python -m plantwatch``
(:mod:`plantwatch.__main__`) run ``app``.
"""

# Imported for their side effect, in the order ``plantwatch --help`` lists the
# commands (the order they register in): keep the order, do not sort.
# isort: off
from plantwatch.cli import run, demo, simulate, backtest, replay, kpi  # noqa: F401
from plantwatch.cli import evaluate, token, mspc, audit, gateway, backup  # noqa: F401
# isort: on
from plantwatch.cli.root import app

__all__ = ["app"]
