"""``plantwatch backtest``: score a scenario in-process — decoding, detectors,
MSPC groups and alarms as the service runs them, without a broker or store —
against the scenario's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from model.plant import PlantConfig
from offline.backtest_view import backtest_table
from plantwatch.cli.common import (
    Format,
    console,
    load_alarm_config_or_exit,
    load_mspc_config_or_exit,
    load_mspc_or_exit,
    load_plant_or_exit,
    load_scenario_or_exit,
)
from plantwatch.cli.options import StateDirOption
from plantwatch.cli.root import app
from plantwatch.settings import Settings, load_settings
from store.mspc_models import MspcGroups

__all__ = ["backtest"]


@app.command()
def backtest(
    scenario: Annotated[Path, typer.Argument(help="config/scenarios/NAME.yaml")],
    config: Annotated[Path, typer.Option(help="plant config")] = Path("config/plant.yaml"),
    alarms: Annotated[
        Path | None, typer.Option(help="alarm config (default: alarms.yaml beside the plant)")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="gateway format decoded")] = "json",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    start: Annotated[
        int | None,
        typer.Option(help="move the scenario's start (epoch ms), e.g. to the start a replay "
                     "printed: the daily swing and noise follow the clock"),
    ] = None,
    state_dir: StateDirOption = None,
    fit_mspc: Annotated[
        float | None,
        typer.Option(help="fit every MSPC group on the scenario's first SECONDS (normal "
                      "operation, ending by its first incident) instead of using the models "
                      "in the state directory", metavar="SECONDS"),
    ] = None,
) -> None:
    """Run a scenario through decoding, detectors and alarms in-process; score it.

    MSPC groups are monitored as the service would: those with a model in the
    state directory (``plantwatch mspc fit``), or all of them fitted on the
    scenario's own lead-in with ``--fit-mspc``.
    """
    from offline.backtest import run_backtest
    from offline.scenario_io import scenario_feed

    plant_config = load_plant_or_exit(config)
    settings = load_settings(plant=config, alarms=alarms,
                             **({"state_dir": state_dir} if state_dir is not None else {}))
    alarm_config = load_alarm_config_or_exit(settings, plant_config)
    sc = load_scenario_or_exit(scenario, plant_config)
    feed = scenario_feed(sc, plant_config, fmt, start_ms=start)
    if fit_mspc is None:
        groups, unfitted = load_mspc_or_exit(settings, plant_config)
        source = f"models in {settings.state_dir / 'mspc'}"
    else:
        groups, unfitted = _fit_mspc_on_lead_in_or_exit(settings, plant_config, sc, fmt, start,
                                                        fit_mspc)
        source = f"fitted on the scenario's first {fit_mspc:g} s"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                  console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"backtest {sc.name}", total=sc.duration_s * 1000)
        report = run_backtest(
            sc.name, plant_config, alarm_config, feed.messages, feed.truths,
            start_ms=feed.start_ms, duration_s=sc.duration_s, sparkplug=feed.sparkplug,
            on_progress=lambda done: progress.update(task, completed=done), groups=groups)
    if as_json:
        typer.echo(orjson.dumps(report.to_dict()).decode())
        return
    Console().print(backtest_table(report))
    if groups or unfitted:
        Console().print(f"MSPC groups monitored ({source}): "
                        f"{', '.join(g.id for g in groups) or 'none'}"
                        + (f"; without a model: {', '.join(unfitted)}" if unfitted else ""))


def _fit_mspc_on_lead_in_or_exit(settings: Settings, plant: PlantConfig, sc: Any, fmt: Format,
                                 start: int | None, seconds: float) -> MspcGroups:
    """Every configured group fitted on the scenario's lead-in, or exit naming the problem."""
    from model.sensor_table import SensorTable
    from offline.backtest_mspc import fit_groups_on_lead_in
    from offline.scenario_io import scenario_feed

    config = load_mspc_config_or_exit(settings, plant)
    if not config.groups:
        console.print("[red]--fit-mspc: no MSPC groups configured[/red]: add them to "
                      f"{settings.mspc_file() or settings.plant.parent / 'mspc.yaml'}")
        raise typer.Exit(2)
    feed = scenario_feed(sc, plant, fmt, start_ms=start)
    first = min(feed.truths, key=lambda t: t.start_s, default=None)
    if not seconds > 0 or (first is not None and seconds > first.start_s):
        ends = (f"by the first incident ({first.id} at {first.start_s:g} s)"
                if first is not None else "within the scenario")
        console.print(f"[red]--fit-mspc {seconds:g}[/red]: the lead-in is the normal "
                      f"operation the groups are fitted on; it must be > 0 s and end {ends}")
        raise typer.Exit(2)
    try:
        models = fit_groups_on_lead_in(SensorTable.from_config(plant), config, feed.messages,
                                       feed.start_ms, seconds, feed.sparkplug)
    except ValueError as exc:
        console.print(f"[red]--fit-mspc {seconds:g}[/red]: {exc}")
        raise typer.Exit(2) from exc
    return models, []
