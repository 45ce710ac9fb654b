"""``plantwatch mspc``: fit and list the models of multivariate (MSPC) sensor groups."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.timeparse import TimeParamError, parse_time_ms
from detectors.mspc import PcaMonitor
from model.plant import ConfigError, load_plant
from model.sensor_table import SensorTable
from plantwatch.cli.common import settings_or_exit
from plantwatch.cli.options import SettingsOption, StateDirOption, settings_with_state_dir
from plantwatch.cli.root import app
from plantwatch.settings import Settings
from store.errors import StoreUnavailable
from store.mspc_models import (
    MspcConfig,
    fit_group,
    load_mspc_config,
    model_path,
    model_size,
    save_group_model,
)

__all__ = ["mspc_app"]

console = Console(stderr=True)
mspc_app = typer.Typer(
    help="Multivariate monitoring (MSPC) of sensor groups (config/mspc.yaml): fit, list.",
    no_args_is_help=True,
)
app.add_typer(mspc_app, name="mspc")


def _config_or_exit(settings: Settings) -> tuple[SensorTable, MspcConfig]:
    try:
        plant = load_plant(settings.plant)
        config = load_mspc_config(settings.mspc_file(), plant)
    except ConfigError as exc:
        console.print(f"[red]invalid config[/red]\n{exc}")
        raise typer.Exit(2) from exc
    if not config.groups:
        console.print(f"[red]no MSPC groups configured[/red]: add them to "
                      f"{settings.mspc_file() or settings.plant.parent / 'mspc.yaml'}")
        raise typer.Exit(2)
    return SensorTable.from_config(plant), config


@mspc_app.command("fit")
def fit(
    group: Annotated[str, typer.Argument(help="group id from config/mspc.yaml")],
    start: Annotated[str, typer.Option(help="start of normal operation: ISO-8601, epoch ms "
                                            "or -24h")],
    end: Annotated[str, typer.Option(help="end: ISO-8601, epoch ms or now")] = "now",
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Fit a group's model on a period of normal operation read from the store.

    Whatever the period holds is what "normal" will mean: pick one without
    upsets, start-ups or maintenance. Restart the service to monitor it.
    """
    from plantwatch.service import make_store

    settings = settings_or_exit(lambda: settings_with_state_dir(settings_file, state_dir))
    table, config = _config_or_exit(settings)
    try:
        group_config = config.group(group)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from exc
    now = int(time.time() * 1000)
    try:
        start_ms = parse_time_ms(start, now_ms=now, param="start")
        end_ms = parse_time_ms(end, now_ms=now, param="end")
    except TimeParamError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    async def run() -> tuple[PcaMonitor, dict[str, Any]]:
        store = make_store(settings, table)
        await store.start()
        try:
            return await fit_group(store, table, group_config, start_ms, end_ms)
        finally:
            await store.close()

    try:
        monitor, info = asyncio.run(run())
    except (ValueError, StoreUnavailable) as exc:
        console.print(f"[red]cannot fit {group}:[/red] {exc}")
        raise typer.Exit(1) from exc
    path = model_path(settings.state_dir, group)
    save_group_model(path, group_config, monitor, info)
    typer.echo(f"{group}: fitted on {info['rows']} rows of {len(group_config.sensors)} sensors, "
               f"{monitor.n_components_} components; T² limit {monitor.t2_limit_:.2f}, "
               f"SPE limit {monitor.spe_limit_:.2f} (alpha {group_config.alpha:g})")
    typer.echo(f"saved {path}; restart plantwatch to monitor the group")


@mspc_app.command("list")
def list_groups(settings_file: SettingsOption = None, state_dir: StateDirOption = None) -> None:
    """The configured groups, their sensors and whether each has a fitted model."""
    settings = settings_or_exit(lambda: settings_with_state_dir(settings_file, state_dir))
    _, config = _config_or_exit(settings)
    out = Table("group", "sensors", "model")
    for g in config.groups:
        size = model_size(model_path(settings.state_dir, g.id))
        if size is not None:
            status = f"fitted ({size[0]} rows, {size[1]} comp.)"
        else:
            status = "not fitted: plantwatch mspc fit " + g.id + " --start ... --end ..."
        out.add_row(g.id, ", ".join(g.sensors), status)
    Console().print(out)

