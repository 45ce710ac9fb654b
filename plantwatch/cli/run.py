"""``plantwatch run``: the service itself, in production, against the real
broker and store named in the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from plantwatch.cli.common import (
    load_alarm_config_or_exit,
    load_mspc_or_exit,
    load_plant_or_exit,
    serve,
    settings_or_exit,
    setup_logging,
)
from plantwatch.cli.root import app
from plantwatch.settings import load_settings

__all__ = ["run"]


@app.command()
def run(
    settings_file: Annotated[
        Path | None, typer.Option("--settings", help="TOML settings file")
    ] = None,
    plant: Annotated[
        Path | None, typer.Option(help="plant config (default config/plant.yaml)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the service against the real broker and store named in settings."""
    setup_logging(verbose)
    overrides: dict[str, object] = {}
    if plant is not None:
        overrides["plant"] = plant
    settings = settings_or_exit(lambda: load_settings(settings_file, **overrides))
    plant_config = load_plant_or_exit(settings.plant)
    alarm_config = load_alarm_config_or_exit(settings, plant_config)
    mspc = load_mspc_or_exit(settings, plant_config)
    asyncio.run(serve(settings, plant_config, alarm_config=alarm_config, mspc=mspc))
