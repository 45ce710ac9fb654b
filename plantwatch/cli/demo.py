"""``plantwatch demo``: try plantwatch with nothing installed — an embedded
broker, a SQLite store, a simulated plant with a gas leak, and the API and
dashboard, all on defaults (the state directory is wiped at start unless
``--keep-state``). It runs from any directory: the sample plant ships inside
the package (:func:`plantwatch.cli.common.sample_config_dir`). It writes its
settings to ``<state dir>/plantwatch.toml`` and prints the commands that work
on it (more tokens, fitting an MSPC group on what it has stored)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from plantwatch.cli.common import (
    console,
    load_alarm_config_or_exit,
    load_mspc_or_exit,
    load_plant_or_exit,
    sample_config_dir,
    serve,
    settings_or_exit,
    setup_logging,
    token_store,
)
from plantwatch.cli.root import app
from plantwatch.settings import Settings, load_settings

__all__ = ["demo"]


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="API and dashboard port")] = 8000,
    plant: Annotated[
        Path | None, typer.Option(help="plant config (default: the sample plant shipped "
                                       "with plantwatch)")
    ] = None,
    leak: Annotated[
        str | None, typer.Option(help="AREA@SECONDS; default: a gas area, 60 s in")
    ] = None,
    rate: Annotated[float, typer.Option(help="readings per sensor per second")] = 1.0,
    state_dir: Annotated[
        Path, typer.Option(help="demo state (wiped at start), made in the current directory")
    ] = Path("var/demo"),
    keep_state: Annotated[
        bool, typer.Option(help="keep the last run's state (tokens, MSPC models, alarms, "
                                "readings) instead of wiping it")
    ] = False,
    embedded_broker: Annotated[
        bool, typer.Option(help="use amqtt even when mosquitto is installed")
    ] = False,
    seed: int = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Everything on embedded defaults: broker, SQLite store, simulated plant, API."""
    from devservers.demo_broker import DemoBrokerUnavailable, start_demo_broker
    from simulators import LeakSpec, parse_leak, run_simulation

    setup_logging(verbose)
    if plant is None:
        try:
            plant = sample_config_dir() / "plant.yaml"
        except FileNotFoundError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    plant = plant.resolve()
    state_dir = state_dir.resolve()
    plant_config = load_plant_or_exit(plant)
    if leak is None:
        gas_area = next(
            p.area for p in plant_config.places() if p.sensor.kind == "combustible_lel"
        )
        leak_spec: LeakSpec = parse_leak(f"{gas_area}@60")
    else:
        leak_spec = parse_leak(leak)
    if not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # owner-only, as the service wants
    try:
        broker = start_demo_broker(state_dir, prefer_mosquitto=not embedded_broker)
    except DemoBrokerUnavailable as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from exc
    settings_file = state_dir / "plantwatch.toml"
    try:
        settings = settings_or_exit(lambda: load_settings(
            plant=plant,
            store="sqlite",
            state_dir=state_dir,
            mqtt={"url": broker.url, "client_id": "plantwatch-demo",
                  "protocol": broker.mqtt_protocol},
            sqlite={"path": state_dir / "plantwatch.sqlite3"},
            api={"host": "127.0.0.1", "port": port},
        ))
        settings_file.write_text(demo_settings_toml(settings), encoding="utf-8")
        alarm_config = load_alarm_config_or_exit(settings, plant_config)
        mspc = load_mspc_or_exit(settings, plant_config)
        tokens = token_store(settings)
        tokens.revoke("demo")  # a kept state dir has the last run's
        created = tokens.create("demo", "admin", int(time.time() * 1000))
        demo_token = (created.get_secret_value() if isinstance(created, SecretStr)
                      else str(created))  # printed once, for the person running the demo
    except BaseException:
        broker.stop()
        raise
    group = mspc[1][0] if mspc[1] else None  # a group without a model yet
    stop = threading.Event()

    def simulate() -> None:
        try:
            run_simulation(plant_config, broker.url, rate_hz=rate, duration_s=7 * 86_400,
                           seed=seed, leaks=[leak_spec], stop_event=stop)
        except Exception:
            logging.getLogger("plantwatch.demo").exception("simulator stopped")

    def announce(service: object) -> None:
        base = f"http://127.0.0.1:{port}"
        console.print(
            "\n[bold green]plantwatch demo is running[/bold green]\n"
            f"  dashboard      {base}/\n"
            f"  API docs       {base}/docs\n"
            f"  active alarms  {base}/api/v1/alarms\n"
            f"  alarm stream   {base}/api/v1/alarms/stream\n"
            f"  metrics        {base}/metrics\n"
            f"  risk colours   {base}/api/v1/risk\n"
            f"  alarm KPIs     {base}/api/v1/kpi?scope=enterprise&start=-1h\n"
            f"  MQTT broker    {broker.url}  (dead letters on plantwatch/deadletter,\n"
            "                 alarm states retained on plantwatch/alarms/#)\n"
            f"  API token      {demo_token}  (admin; the dashboard asks for it on Ack)\n"
            f"    e.g. curl -X POST -H 'Authorization: Bearer {demo_token}' "
            f"{base}/api/v1/alarms/ALARM_ID/ack\n"
            f"  simulated leak in area [bold]{leak_spec.area}[/bold] "
            f"{leak_spec.at_s:.0f} s after start\n"
            f"  settings       {settings_file}  (for the commands below)\n"
            "  more tokens    plantwatch token create NAME --role operator "
            f"[--workshop W] --settings {settings_file}\n"
            + (f"  MSPC model     after 10 minutes: plantwatch mspc fit {group} --start -10m "
               f"--settings {settings_file}\n"
               "                 then restart with plantwatch demo --keep-state to monitor it\n"
               if group is not None else "")
            + f"  backup         plantwatch backup --to DIR --settings {settings_file}\n"
            "Press Ctrl-C to stop.\n",
            soft_wrap=True,
        )
        threading.Thread(target=simulate, name="simulator", daemon=True).start()

    try:
        asyncio.run(serve(settings, plant_config, announce, alarm_config, mspc))
    finally:
        stop.set()
        broker.stop()


def demo_settings_toml(settings: Settings) -> str:
    """The demo's settings as a TOML file, so that ``token``, ``mspc`` and
    ``backup`` work on the running demo with ``--settings FILE`` from any
    directory (every path in it is absolute)."""

    def s(value: object) -> str:  # a TOML basic string (JSON's escapes are TOML's)
        return json.dumps(str(value))

    return (
        "# Written by plantwatch demo at each start; the demo itself does not read it.\n"
        f"plant = {s(settings.plant)}\n"
        f"store = {s(settings.store)}\n"
        f"state_dir = {s(settings.state_dir)}\n"
        "\n[mqtt]\n"
        f"url = {s(settings.mqtt.url)}\n"
        f"protocol = {s(settings.mqtt.protocol)}\n"
        "\n[sqlite]\n"
        f"path = {s(settings.sqlite.path)}\n"
        "\n[api]\n"
        f"host = {s(settings.api.host)}\n"
        f"port = {settings.api.port}\n"
    )
