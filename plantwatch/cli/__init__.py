"""The ``plantwatch`` command line: run, demo, simulate, evaluate, token, mspc."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from alarms.config import AlarmConfig, load_alarm_config
from api.auth import Role, TokenStore
from model.plant import ConfigError, PlantConfig, load_plant
from offline.backtest_view import backtest_table
from plantwatch.allocator import keep_freed_memory
from plantwatch.cli import evaluate_nab, evaluate_tabular
from plantwatch.cli.mspc import mspc_app
from plantwatch.cli.options import SettingsOption, StateDirOption, settings_with_state_dir
from plantwatch.settings import Settings, load_settings
from store.mspc_models import MspcConfig, MspcGroups, load_group_models, load_mspc_config

if TYPE_CHECKING:
    from offline.replay import ReplayResult

app = typer.Typer(
    help="plantwatch: watches a plant's safety sensors and warns before an incident.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
_Config = TypeVar("_Config")

evaluate_app = typer.Typer(
    help="Score plantwatch's detectors on labelled data (SKAB, NAB, your own history).",
    no_args_is_help=True,
)
evaluate_app.command("skab")(evaluate_tabular.skab)
evaluate_app.command("nab")(evaluate_nab.nab)
evaluate_app.command("table")(evaluate_tabular.table)
app.add_typer(evaluate_app, name="evaluate")

token_app = typer.Typer(
    help="API tokens (stored hashed) for operators, engineers and admins.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
app.add_typer(mspc_app, name="mspc")


@app.callback()
def _every_command() -> None:
    """Before any command: the detectors' batch temporaries reuse freed memory
    instead of faulting it in again (plantwatch.allocator: 15–40 % of the
    suite's time at 10,000 sensors)."""
    keep_freed_memory()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "httpx", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config_or_exit(what: str, load: Callable[[], _Config]) -> _Config:
    """``load()``, or exit 2 printing the config error (file, key path, problem)."""
    try:
        return load()
    except ConfigError as exc:
        console.print(f"[red]invalid {what}[/red]\n{exc}")
        raise typer.Exit(2) from exc


def _load_plant_or_exit(path: Path) -> PlantConfig:
    return _config_or_exit("plant config", lambda: load_plant(path))


def _load_alarm_config_or_exit(settings: Settings, plant: PlantConfig) -> AlarmConfig:
    return _config_or_exit("alarm config",
                           lambda: load_alarm_config(settings.alarms_file(), plant))


def _load_mspc_config_or_exit(settings: Settings, plant: PlantConfig) -> MspcConfig:
    return _config_or_exit("MSPC config",
                           lambda: load_mspc_config(settings.mspc_file(), plant))


def _load_mspc_or_exit(settings: Settings, plant: PlantConfig) -> MspcGroups:
    """The fitted MSPC groups; fail at start, with the file and the fix, on a
    bad MSPC config or model."""
    config = _load_mspc_config_or_exit(settings, plant)
    try:
        return load_group_models(config, settings.state_dir)
    except ValueError as exc:
        console.print(f"[red]invalid MSPC model[/red]\n{exc}")
        raise typer.Exit(2) from exc


async def _serve(settings: Settings, plant: PlantConfig, on_ready: object = None,
                 alarm_config: AlarmConfig | None = None, mspc: MspcGroups | None = None
                 ) -> None:  # fmt: skip
    from plantwatch.service import Service

    service = Service(settings, plant, alarm_config, mspc)
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
    _setup_logging(verbose)
    overrides: dict[str, object] = {}
    if plant is not None:
        overrides["plant"] = plant
    settings = load_settings(settings_file, **overrides)
    plant_config = _load_plant_or_exit(settings.plant)
    alarm_config = _load_alarm_config_or_exit(settings, plant_config)
    mspc = _load_mspc_or_exit(settings, plant_config)
    asyncio.run(_serve(settings, plant_config, alarm_config=alarm_config, mspc=mspc))


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

    _setup_logging(verbose)
    plant_config = _load_plant_or_exit(plant)
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
    alarm_config = _load_alarm_config_or_exit(settings, plant_config)
    mspc = _load_mspc_or_exit(settings, plant_config)
    demo_token = _token_store(settings).create("demo", "admin", int(time.time() * 1000))
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
        asyncio.run(_serve(settings, plant_config, announce, alarm_config, mspc))
    finally:
        stop.set()
        broker.stop()


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

    plant_config = _load_plant_or_exit(config)
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


if __name__ == "__main__":
    app()


def _token_store(settings: Settings) -> TokenStore:
    return TokenStore(settings.api.tokens_file or settings.state_dir / "tokens.json")


Format = Literal["json", "lp", "sparkplug"]


def _load_scenario_or_exit(path: Path, plant: PlantConfig) -> Any:
    from simulators.scenario import load_scenario

    try:
        return load_scenario(path, plant)
    except ConfigError as exc:
        console.print(f"[red]invalid scenario[/red]\n{exc}")
        raise typer.Exit(2) from exc


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

    plant_config = _load_plant_or_exit(config)
    settings = load_settings(plant=config, alarms=alarms,
                             **({"state_dir": state_dir} if state_dir is not None else {}))
    alarm_config = _load_alarm_config_or_exit(settings, plant_config)
    sc = _load_scenario_or_exit(scenario, plant_config)
    feed = scenario_feed(sc, plant_config, fmt, start_ms=start)
    if fit_mspc is None:
        groups, unfitted = _load_mspc_or_exit(settings, plant_config)
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

    config = _load_mspc_config_or_exit(settings, plant)
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

    plant_config = _load_plant_or_exit(config)
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
        sc = _load_scenario_or_exit(scenario, plant_config)
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


@app.command()
def kpi(
    api: Annotated[str, typer.Option(help="the running service's API")] = (
        "http://127.0.0.1:8000"),
    scope: Annotated[
        str, typer.Option(help="post:<id>, team:<id>, workshop:<id> or enterprise")
    ] = "enterprise",
    start: Annotated[str, typer.Option(help="ISO-8601, epoch ms or -24h")] = "-24h",
    end: Annotated[str, typer.Option(help="ISO-8601, epoch ms or now")] = "now",
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Alarm KPIs of a scope beside the EEMUA 191 / ISA-18.2 targets."""
    import httpx

    from offline.kpi_report import kpi_tables

    try:
        response = httpx.get(f"{api.rstrip('/')}/api/v1/kpi",
                             params={"scope": scope, "start": start, "end": end}, timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {api}: {exc}[/red] (is `plantwatch run` up?)")
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode())
    else:
        Console().print(kpi_tables(response.json()))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who holds it (shown in the audit trail)")],
    role: Annotated[
        Role, typer.Option(help="viewer < operator < engineer < admin")
    ] = "operator",
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    store = _token_store(settings_with_state_dir(settings_file, state_dir))
    try:
        token = store.create(name, role, int(time.time() * 1000))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"token for [bold]{name}[/bold] ({role}); it is not shown again:")
    typer.echo(token)


@token_app.command("list")
def token_list(settings_file: SettingsOption = None, state_dir: StateDirOption = None) -> None:
    """Names and roles of the tokens (never the tokens)."""
    for row in _token_store(settings_with_state_dir(settings_file, state_dir)).list():
        typer.echo(f"{row['name']}\t{row['role']}\tcreated {row['created_ts']}")


@token_app.command("revoke")
def token_revoke(
    name: str, settings_file: SettingsOption = None, state_dir: StateDirOption = None
) -> None:
    """Revoke a token by its holder's name."""
    if not _token_store(settings_with_state_dir(settings_file, state_dir)).revoke(name):
        console.print(f"[red]no token named {name!r}[/red] (plantwatch token list shows them)")
        raise typer.Exit(1)
    console.print(f"revoked {name}")
