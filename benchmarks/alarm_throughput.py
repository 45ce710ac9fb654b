"""How many detector transitions per second the alarm lifecycle applies.

Feeds 100,000 raise/clear records of the sample plant's first-level alarms
(config/plant.yaml + config/alarms.yaml; a raise every 100 ms, so its posts
stay flooded: the slow path) through ``AlarmManager.apply``, beside a
baseline that only decodes each record into an ``AlarmEvent`` (the floor any
per-record Python step pays). Alarm transitions are rare next to readings
(a plant day with three leaks had 56), so this is headroom, not a hot path.

    .venv/bin/python benchmarks/alarm_throughput.py [--records 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarms.config import load_alarm_config  # noqa: E402
from model.alarm_events import AlarmEvent  # noqa: E402
from model.plant import load_plant  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    plant = load_plant(ROOT / "config" / "plant.yaml")
    config = load_alarm_config(ROOT / "config" / "alarms.yaml", plant)
    places = plant.places()
    t0 = 1_780_000_000_000
    records = []
    for i in range(args.records):
        pl = places[i % len(places)]
        action = "raise" if (i // len(places)) % 2 == 0 else "clear"
        records.append(AlarmEvent(
            alarm_id=f"{pl.sensor.id}:h", sensor=pl.sensor.id, limit="h",
            action=action, ts=t0 + i * 100, value=1.0, setpoint=1.0,  # type: ignore[arg-type]
            priority=pl.sensor.priority, site=pl.site, workshop=pl.workshop, area=pl.area,
            team=pl.team, post=pl.post, kind=pl.sensor.kind, unit="u").to_dict())

    start = time.perf_counter()
    for r in records:
        AlarmEvent.from_dict(r)
    baseline = time.perf_counter() - start

    manager = config.manager(plant)
    start = time.perf_counter()
    changes = sum(len(manager.apply(r)) for r in records)
    elapsed = time.perf_counter() - start
    n = len(records)
    print(f"alarm lifecycle: {n / elapsed:,.0f} records/s ({changes:,} changes, "
          f"{len(manager.floods.history)} floods)")
    print(f"baseline (decode only): {n / baseline:,.0f} records/s; "
          f"lifecycle costs {elapsed / baseline:.1f}x the decode")


if __name__ == "__main__":
    main()
