"""``plantwatch demo``: try plantwatch with nothing installed — an embedded
broker, a SQLite store, a simulated plant with a gas leak, and the API and
dashboard, all on defaults (the state directory is wiped at start)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from plantwatch.cli.common import (
    console,
    load_alarm_config_or_exit,
    load_mspc_or_exit,
    load_plant_or_exit,
    serve,
    setup_logging,
    token_store,
)
from plantwatch.cli.root import app
from plantwatch.settings import load_settings

__all__ = ["demo"]


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="API and dashboard port")] = 8000,
    plant: Annotated[Path, typer.Option(help="plant config")] = Path("config/plant.yaml"),
    leak: Annotated[
        str | None, typer.Option(help="AREA@SECONDS; default: a gas area, 60 s in")
    ] = None,
    rate: Annotated[float, typer.Option(help="readings per sensor per second")] = 1.0,
    state_dir: Annotated[Path, typer.Option(help="demo state (wiped at start)")] = Path(
        "var/demo"
    ),
    embedded_broker: Annotated[
        bool, typer.Option(help="use amqtt even when mosquitto is installed")
    ] = False,
    seed: int = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Everything on embedded defaults: broker, SQLite store, simulated plant, API."""
    from devservers.demo_broker import start_demo_broker
    from simulators import LeakSpec, parse_leak, run_simulation

    setup_logging(verbose)
    plant_config = load_plant_or_exit(plant)
    if leak is None:
        gas_area = next(
            p.area for p in plant_config.places() if p.sensor.kind == "combustible_lel"
        )
        leak_spec: LeakSpec = parse_leak(f"{gas_area}@60")
    else:
        leak_spec = parse_leak(leak)
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    broker = start_demo_broker(state_dir, prefer_mosquitto=not embedded_broker)
    settings = load_settings(
        plant=plant,
        store="sqlite",
        state_dir=state_dir,
        mqtt={"url": broker.url, "client_id": "plantwatch-demo",
              "protocol": broker.mqtt_protocol},
        sqlite={"path": state_dir / "plantwatch.sqlite3"},
        api={"host": "127.0.0.1", "port": port},
    )
    alarm_config = load_alarm_config_or_exit(settings, plant_config)
    mspc = load_mspc_or_exit(settings, plant_config)
    demo_token = token_store(settings).create("demo", "admin", int(time.time() * 1000))
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
            "Press Ctrl-C to stop.\n"
        )
        threading.Thread(target=simulate, name="simulator", daemon=True).start()

    try:
        asyncio.run(serve(settings, plant_config, announce, alarm_config, mspc))
    finally:
        stop.set()
        broker.stop()
