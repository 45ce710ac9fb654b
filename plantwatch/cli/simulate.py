"""``plantwatch simulate``: publish simulated gateway messages for every
sensor of the plant to an MQTT broker, optionally with gas leaks, to feed a
running service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from plantwatch.cli.common import console, load_plant_or_exit
from plantwatch.cli.root import app

__all__ = ["simulate"]


@app.command()
def simulate(
    config: Annotated[Path, typer.Option(help="plant config")] = Path("config/plant.yaml"),
    broker: Annotated[str, typer.Option(help="mqtt://HOST:PORT")] = "mqtt://127.0.0.1:1883",
    rate: Annotated[float, typer.Option(help="readings per sensor per second")] = 1.0,
    duration: Annotated[float, typer.Option(help="seconds of plant time")] = 600.0,
    seed: int = 0,
    leak: Annotated[
        list[str] | None, typer.Option(help="AREA@SECONDS; repeat for several")
    ] = None,
    fast: Annotated[
        bool, typer.Option(help="publish as fast as the broker acknowledges")
    ] = False,
) -> None:
    """Publish simulated gateway messages for every sensor of the plant."""
    from simulators import SimulatorError, parse_leak, run_simulation

    plant_config = load_plant_or_exit(config)
    try:
        leaks = [parse_leak(text) for text in (leak or [])]
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    with Progress(
        TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TimeRemainingColumn(), console=console,
    ) as progress:
        task = progress.add_task("sim", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            report = run_simulation(
                plant_config, broker, rate_hz=rate, duration_s=duration, seed=seed,
                leaks=leaks, realtime=not fast, on_progress=on_progress,
            )
        except (SimulatorError, ValueError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    console.print(
        f"published {report.readings_published} readings in {report.messages_published} "
        f"messages; broker acknowledged {report.acked_readings}"
    )
    if report.acked_readings != report.readings_published:
        raise typer.Exit(1)
