"""``plantwatch replay``: play a scenario, or a recorded CSV, through the real
broker at N× speed, to exercise a running service end to end."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from model.plant import ConfigError
from plantwatch.cli.common import Format, console, load_plant_or_exit, load_scenario_or_exit
from plantwatch.cli.root import app

if TYPE_CHECKING:
    from offline.replay import ReplayResult

__all__ = ["replay"]


@app.command()
def replay(
    scenario: Annotated[
        Path | None, typer.Argument(help="config/scenarios/NAME.yaml (or use --csv)")
    ] = None,
    broker: Annotated[str, typer.Option(help="mqtt://HOST:PORT")] = "mqtt://127.0.0.1:1883",
    speed: Annotated[float, typer.Option(help="times faster than real time")] = 10.0,
    fmt: Annotated[Format, typer.Option("--format", help="gateway format")] = "json",
    csv_file: Annotated[Path | None, typer.Option("--csv", help="a recorded CSV")] = None,
    csv_map: Annotated[Path | None, typer.Option("--map", help="MAP.yaml for --csv")] = None,
    config: Annotated[Path, typer.Option(help="plant config")] = Path("config/plant.yaml"),
) -> None:
    """Play a scenario (or a recorded CSV) through the real broker at N× speed."""
    from offline.replay import CommandListener, csv_messages, load_csv_map, replay_start_ms
    from offline.scenario_io import scenario_feed

    plant_config = load_plant_or_exit(config)
    if (scenario is None) == (csv_file is None):
        console.print("[red]give a SCENARIO or --csv FILE --map MAP.yaml[/red]")
        raise typer.Exit(2)
    if csv_file is not None:
        if csv_map is None:
            console.print("[red]--csv needs --map MAP.yaml (columns → sensors)[/red]")
            raise typer.Exit(2)
        try:
            cmap = load_csv_map(csv_map, plant_config)
            _, duration = csv_messages(csv_file, cmap, plant_config, start_ms=None)
            start = replay_start_ms(duration, speed)
            messages, duration = csv_messages(csv_file, cmap, plant_config, start_ms=start)
        except (ConfigError, ValueError, OSError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        name = csv_file.name
        paced: Any = messages
    else:
        assert scenario is not None
        sc = load_scenario_or_exit(scenario, plant_config)
        duration = sc.duration_s
        feed = scenario_feed(sc, plant_config, fmt,
                             start_ms=replay_start_ms(duration, speed))
        name = sc.name
        paced = feed.paced
        console.print(f"scenario start moved to {feed.start_ms} (epoch ms); its in-process "
                      f"twin: plantwatch backtest {scenario} --start {feed.start_ms}")
    with contextlib.ExitStack() as stack:
        if csv_file is None and fmt == "sparkplug":
            # The replayed edge nodes answer a host's rebirth requests (the feed's
            # generator reads ``commands`` when the replay starts).
            try:
                feed.commands = stack.enter_context(CommandListener(broker)).drain
            except (OSError, TimeoutError) as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from exc
        result = _replay_with_progress(paced, broker, speed, name, duration)
    console.print(f"replayed {result.readings:,} readings in {result.messages:,} messages "
                  f"({result.acked_readings:,} acknowledged) in {result.wall_s:.0f} s")


def _replay_with_progress(paced: Any, broker: str, speed: float, name: str,
                          duration: float) -> ReplayResult:
    from offline.replay import publish_paced

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task(f"replay {name} at {speed:g}×", total=duration * 1000)
        try:
            result = publish_paced(paced, broker, speed=speed,
                                   on_progress=lambda done: progress.update(task,
                                                                            completed=done))
        except (OSError, TimeoutError, ValueError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    return result
