"""A simulated plant day through the real pipeline, and the alarm KPI report it produces.

Starts a private Mosquitto and plantwatch (SQLite store, config/plant.yaml and
config/alarms.yaml), publishes 24 hours of plant time as fast as the pipeline
takes it (one reading per sensor every 5 s by default) with three gas leaks
(tank group A at 09:00, the sour-water tank at 14:30, the compressor seal at
20:00), then prints the KPIs per post and for the enterprise, as
``GET /api/v1/kpi`` returns them. The figures go in the alarm issue's note.

    .venv/bin/python benchmarks/alarm_day.py [--rate 0.2] [--seed 11]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devservers.localservers import Mosquitto  # noqa: E402
from model.plant import load_plant  # noqa: E402
from offline.kpi_report import kpi_tables  # noqa: E402
from plantwatch.service import Service  # noqa: E402
from plantwatch.settings import load_settings  # noqa: E402
from simulators import LeakSpec, run_simulation  # noqa: E402

DAY_MS = 86_400_000
LEAKS = [
    LeakSpec("tf-group-a", at_s=9 * 3600, duration_s=600),
    LeakSpec("tf-sour-water", at_s=14.5 * 3600, duration_s=300),
    LeakSpec("cp-seal", at_s=20 * 3600, duration_s=900),
]


async def simulated_day(rate_hz: float, seed: int, work: Path) -> None:
    plant_file = ROOT / "config" / "plant.yaml"
    plant = load_plant(plant_file)
    console = Console()
    with Mosquitto.start(work / "mosquitto", persistence=False) as mosq:
        settings = load_settings(
            plant=plant_file, store="sqlite", state_dir=work / "state",
            mqtt={"url": mosq.url, "client_id": "pw-alarm-day"},
            sqlite={"path": work / "state" / "pw.sqlite3"},
            api={"host": "127.0.0.1", "port": 0},
        )
        service = Service(settings, plant)
        runner = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        # The day ends an hour ago (UTC midnight to midnight of plant time).
        day_start = (int(time.time() * 1000) - DAY_MS - 3_600_000) // DAY_MS * DAY_MS
        t0 = time.perf_counter()
        report = await asyncio.to_thread(
            run_simulation, plant, mosq.url, rate_hz=rate_hz, duration_s=86_400, seed=seed,
            leaks=LEAKS, start_ms=day_start, realtime=False)
        while await service.store.count_readings() < report.readings_published:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a tick or two: floods end, nothing pending
        elapsed = time.perf_counter() - t0
        console.print(f"{report.readings_published:,} readings of one plant day "
                      f"({len(plant.places())} sensors, {rate_hz} Hz) through the pipeline in "
                      f"{elapsed:.0f} s; leaks: "
                      + ", ".join(f"{lk.area} at {lk.at_s / 3600:g} h" for lk in LEAKS))
        base = f"http://127.0.0.1:{service.api_port}/api/v1"
        async with httpx.AsyncClient(timeout=30) as api:
            posts = [p.id for s in plant.sites for w in s.workshops for t in w.teams
                     for p in t.posts]
            for scope in ["enterprise", *[f"post:{p}" for p in posts]]:
                kpi = (await api.get(f"{base}/kpi", params={
                    "scope": scope, "start": day_start, "end": day_start + DAY_MS})).json()
                if scope == "enterprise" or kpi["counts"]["alarms"] or kpi["counts"]["warnings"]:
                    console.print(kpi_tables(kpi))
            risk = (await api.get(f"{base}/risk")).json()
            hazards = (await api.get(f"{base}/hazards")).json()
            floods = (await api.get(f"{base}/floods")).json()
        console.print(f"floods: {floods['history'] or 'none'}")
        console.print(f"hazards raised automatically: {len(hazards)}")
        for h in hazards:
            console.print(f"  {h['id']} {h['source']}: {h['title']}")
        console.print("risk now: " + ", ".join(f"{a['area']}={a['colour']}"
                                                 for a in risk["areas"]))
        service.stop()
        await runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=0.2, help="readings per sensor per second")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-alarm-day-") as tmp:
        asyncio.run(simulated_day(args.rate, args.seed, Path(tmp)))


if __name__ == "__main__":
    main()
