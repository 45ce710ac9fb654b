"""Start-up time of the alarm system: from a compaction snapshot vs replaying a year of journal.

Builds a year of alarm journal at the EEMUA 191 ceiling for steady operation
(one alarm per operator post every 10 minutes: 52,560 raise + ack + clear
cycles a year per post) for every post of ``config/plant.yaml``, through the
real alarm system (``config/alarms.yaml``, real record types, hazards
journaled), compacting once a plant day as the service would. Then it times
``AlarmSystem.restore`` twice in the same run: from the latest snapshot (plus
the records after it), and by replaying every segment. Both must give the
same state; the compacted start-up's target is under 5 s.

    .venv/bin/python benchmarks/journal_startup.py [--small] [--json] [--days N]

``--small`` runs 5 days (seconds). Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarms.config import AlarmConfig, load_alarm_config  # noqa: E402
from alarms.hazards import HazardJournal  # noqa: E402
from alarms.journal import AlarmJournal  # noqa: E402
from alarms.records import ActionName, ActionRecord, ConditionRecord, Record  # noqa: E402
from alarms.system import AlarmSystem  # noqa: E402
from model.alarm_events import AlarmEvent  # noqa: E402
from model.plant import PlantConfig, load_plant  # noqa: E402

DAY_MS = 86_400_000
CYCLE_MS = 600_000  # EEMUA 191: at most ~1 alarm per 10 minutes per operator, steady state
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


def post_sensors(plant: PlantConfig) -> dict[str, list[Any]]:
    """The sensors each post answers for (its alarms rotate over them)."""
    out: dict[str, list[Any]] = {}
    for place in plant.places():
        out.setdefault(place.post, []).append(place)
    return out


def event(place: Any, action: str, ts: int, value: float) -> AlarmEvent:
    """The ``h`` condition of ``place``'s sensor, raised or cleared."""
    return AlarmEvent(
        alarm_id=f"{place.sensor.id}:h", sensor=place.sensor.id, limit="h",
        action=action, ts=ts, value=value, setpoint=20.0,  # type: ignore[arg-type]
        priority="medium", site=place.site, workshop=place.workshop,
        area=place.area, team=place.team, post=place.post, kind=place.sensor.kind,
        unit=place.sensor.effective_unit())


def day_records(posts: dict[str, list[Any]], day: int) -> list[Record]:
    """One plant day: per post, a raise every 10 minutes, acked after 1 min, cleared after 2."""
    records: list[tuple[int, int, Record]] = []
    for n, (post, places) in enumerate(sorted(posts.items())):
        for i in range(DAY_MS // CYCLE_MS):
            cycle = day * (DAY_MS // CYCLE_MS) + i
            place = places[cycle % len(places)]
            t = T0 + day * DAY_MS + i * CYCLE_MS + n * 1000
            alarm_id = f"{place.sensor.id}:h"
            records.append((t, 0, ConditionRecord(event(place, "raise", t, 25.0), t)))
            records.append((t + 60_000, 1, ActionRecord(
                ActionName.ACK, alarm_id, f"op-{post}", t + 60_000, "operator", "")))
            cleared = t + 120_000
            records.append((cleared, 2, ConditionRecord(event(place, "clear", cleared, 15.0),
                                                        cleared)))
    records.sort(key=lambda r: (r[0], r[1]))
    return [r for _, _, r in records]


def system(config: AlarmConfig, plant: PlantConfig, state: Path) -> AlarmSystem:
    return config.system(plant, AlarmJournal(state / "alarms.jsonl"),
                         HazardJournal(state / "hazards.jsonl"))


def build(config: AlarmConfig, plant: PlantConfig, state: Path, days: int) -> tuple[int, int]:
    """Write ``days`` of journal, compacting after each day but the last (its records
    are what a start-up replays after the snapshot). Returns (records, now)."""
    live = system(config, plant, state)
    live.restore(T0)
    posts = post_sensors(plant)
    total = 0
    now = T0
    for day in range(days):
        records = day_records(posts, day)
        for hour in range(24):  # one commit (one fsync) per plant hour
            end = T0 + day * DAY_MS + (hour + 1) * 3_600_000
            batch = [r for r in records if end - 3_600_000 <= r.time < end]
            now = end
            live.commit(batch, now)
            total += len(batch)
        if day < days - 1:
            live.compact()
    return total, now


def timed_restore(config: AlarmConfig, plant: PlantConfig, state: Path, now: int,
                  from_snapshot: bool) -> tuple[float, AlarmSystem]:
    fresh = system(config, plant, state)
    t = time.perf_counter()
    fresh.restore(now, from_snapshot=from_snapshot)
    return time.perf_counter() - t, fresh


def comparable(s: AlarmSystem, keep_from: int) -> dict[str, Any]:
    snap = s.manager.snapshot()
    return {**snap,
            "activations": [a for a in snap["activations"]
                            if a[1] >= keep_from or a[2] is None or a[2] >= keep_from],
            "floods": [f for f in snap["floods"] if f[2] is None or f[2] >= keep_from],
            "hazards": [h.id for h in s.hazards.list()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5 days instead of a year")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    days = args.days or (5 if args.small else 365)
    plant = load_plant(ROOT / "config" / "plant.yaml")
    config = load_alarm_config(ROOT / "config" / "alarms.yaml", plant)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        t = time.perf_counter()
        records, now = build(config, plant, state, days)
        build_s = time.perf_counter() - t
        journal = AlarmJournal(state / "alarms.jsonl")
        segments = len(journal.segments())
        size = journal.size()
        snapshot_bytes = journal.snapshot_path.stat().st_size
        compacted_s, compacted = timed_restore(config, plant, state, now, True)
        full_s, full = timed_restore(config, plant, state, now, False)
        saved = json.loads(journal.snapshot_path.read_bytes())
        same = comparable(compacted, int(saved["keep_from_ts"])) == comparable(
            full, int(saved["keep_from_ts"]))
    result = {
        "days": days, "posts": len(post_sensors(plant)), "records": records,
        "journal_bytes": size, "segments": segments, "snapshot_bytes": snapshot_bytes,
        "build_s": round(build_s, 2), "compacted_s": round(compacted_s, 3),
        "full_replay_s": round(full_s, 3), "same_state": same,
        "restored_from": compacted.restored_from,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{days} days x {result['posts']} posts at 1 alarm / 10 min: {records:,} records, "
              f"{size / 1e6:.1f} MB in {segments} segments (built in {build_s:.1f} s)")
        print(f"  start-up from the snapshot ({snapshot_bytes / 1e6:.1f} MB): "
              f"{compacted_s:.3f} s   (target < 5 s)")
        print(f"  start-up replaying everything:        {full_s:.3f} s")
        print(f"  same state: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
