"""Helpers shared by the commands: logging set-up, the stderr console, the
loaders that exit 2 with the problem on a bad config (plant, alarms, MSPC,
scenario) and the settings, the token store, where the sample plant is, and
the service runner of ``run`` and ``demo``."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import typer
from rich.console import Console

from alarms.config import AlarmConfig, load_alarm_config
from api.auth import TokenStore
from model.plant import ConfigError, PlantConfig, load_plant
from plantwatch.cli.root import report_settings_error
from plantwatch.settings import Settings, SettingsError
from store.mspc_models import MspcConfig, MspcGroups, load_group_models, load_mspc_config

__all__ = [
    "Format",
    "config_or_exit",
    "console",
    "load_alarm_config_or_exit",
    "load_mspc_config_or_exit",
    "load_mspc_or_exit",
    "load_plant_or_exit",
    "load_scenario_or_exit",
    "sample_config_dir",
    "serve",
    "settings_or_exit",
    "setup_logging",
    "token_store",
]

console = Console(stderr=True)
_Config = TypeVar("_Config")

Format = Literal["json", "lp", "sparkplug"]
"""The gateway formats a scenario can be encoded in (``backtest``, ``replay``)."""


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "httpx", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def config_or_exit(what: str, load: Callable[[], _Config]) -> _Config:
    """``load()``, or exit 2 printing the config error (file, key path, problem)."""
    try:
        return load()
    except ConfigError as exc:
        console.print(f"[red]invalid {what}[/red]\n{exc}")
        raise typer.Exit(2) from exc


def settings_or_exit(load: Callable[[], Settings]) -> Settings:
    """``load()``, or exit 2 printing each refused setting on one line (source,
    key path, value, fix)."""
    try:
        return load()
    except SettingsError as exc:
        report_settings_error(exc)
        raise typer.Exit(2) from exc


def sample_config_dir() -> Path:
    """The sample plant (plant.yaml, alarms.yaml, mspc.yaml, scenarios/) that
    ships with plantwatch, wherever the command runs from.

    It is the package ``plantwatch_sample``: the top-level config/ mapped under
    that name (pyproject.toml, package-dir), so a wheel carries a copy and an
    editable install points at config/ itself. A source tree that was never
    installed with that mapping falls back on its own config/.
    """
    spec = importlib.util.find_spec("plantwatch_sample")
    places = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    places.append(Path(__file__).resolve().parents[2] / "config")
    for place in places:
        if (place / "plant.yaml").is_file():
            return place
    raise FileNotFoundError(
        "the sample plant (package plantwatch_sample) is not installed: reinstall "
        "plantwatch (pip install plantwatch), or give --plant FILE")


def load_plant_or_exit(path: Path) -> PlantConfig:
    return config_or_exit("plant config", lambda: load_plant(path))


def load_alarm_config_or_exit(settings: Settings, plant: PlantConfig) -> AlarmConfig:
    return config_or_exit("alarm config",
                          lambda: load_alarm_config(settings.alarms_file(), plant))


def load_mspc_config_or_exit(settings: Settings, plant: PlantConfig) -> MspcConfig:
    return config_or_exit("MSPC config",
                          lambda: load_mspc_config(settings.mspc_file(), plant))


def load_mspc_or_exit(settings: Settings, plant: PlantConfig) -> MspcGroups:
    """The fitted MSPC groups; fail at start, with the file and the fix, on a
    bad MSPC config or model."""
    config = load_mspc_config_or_exit(settings, plant)
    try:
        return load_group_models(config, settings.state_dir)
    except ValueError as exc:
        console.print(f"[red]invalid MSPC model[/red]\n{exc}")
        raise typer.Exit(2) from exc


def load_scenario_or_exit(path: Path, plant: PlantConfig) -> Any:
    from simulators.scenario import load_scenario

    try:
        return load_scenario(path, plant)
    except ConfigError as exc:
        console.print(f"[red]invalid scenario[/red]\n{exc}")
        raise typer.Exit(2) from exc


def token_store(settings: Settings) -> TokenStore:
    return TokenStore(settings.api.tokens_file or settings.state_dir / "tokens.json")


async def serve(settings: Settings, plant: PlantConfig, on_ready: object = None,
                alarm_config: AlarmConfig | None = None, mspc: MspcGroups | None = None
                ) -> None:  # fmt: skip
    """Run the service until SIGINT or SIGTERM; ``on_ready(service)`` once it is up.

    Everything the service creates is owner-only (umask 077): journals, spool,
    checkpoints, tokens, the SQLite store, fitted models (the unit file sets
    ``UMask=0077`` too; this covers a service started by hand)."""
    from ingest.mqtt_source import TlsConfigError
    from plantwatch.service import Service

    os.umask(0o077)
    try:
        service = Service(settings, plant, alarm_config, mspc)
    except TlsConfigError as exc:  # a certificate file: one line, the setting and the fix
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    service.bind_api()
    runner = asyncio.create_task(service.run(), name="service")
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done() and callable(on_ready):
        on_ready(service)
    else:
        ready.cancel()
    await runner
