"""Recorded data replay: a SKAB file mapped onto plant sensors."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from model.plant import ConfigError, load_plant, parse_plant
from offline.replay import csv_messages, load_csv_map, replay_start_ms
from tests.plants import small_plant_data

ROOT = Path(__file__).resolve().parents[1]
PLANT = load_plant(ROOT / "config" / "plant.yaml")
SKAB = ROOT.parent / "shared" / "data" / "skab"


def test_skab_file_becomes_gateway_messages_on_plant_sensors(tmp_path: Path) -> None:
    cmap = load_csv_map(ROOT / "config" / "replay" / "skab.yaml", PLANT)
    csv_file = tmp_path / "bench.csv"
    csv_file.write_text(
        "datetime;Pressure;Thermocouple;Temperature\n"
        "2020-03-09 10:14:33;0.382638;26.85;90.6\n"
        "2020-03-09 10:14:34;bad;26.86;90.7\n"
        "2020-03-09 10:14:36;0.1;26.87;90.8\n")
    messages, duration = csv_messages(csv_file, cmap, PLANT, start_ms=1_000_000)
    assert duration == 3.0
    assert [m[2] for m in messages] == [1_000_000, 1_001_000, 1_003_000]  # shifted, spaced
    assert [m[3] for m in messages] == [3, 2, 3]  # the bad cell skips one reading only
    first = orjson.loads(messages[0][1])
    assert first["ts"] == 1_000_000 and messages[0][0] == "plant/nanhai/gw-skab-bench"
    values = {r["sensor"]: r["value"] for r in first["readings"]}
    assert values["RX-PI-120"] == pytest.approx(438.2638)
    assert values["RX-TI-121"] == pytest.approx(35.6)


def test_real_skab_file_replays_every_row() -> None:
    cmap = load_csv_map(ROOT / "config" / "replay" / "skab.yaml", PLANT)
    messages, duration = csv_messages(SKAB / "valve1" / "1.csv", cmap, PLANT, start_ms=0)
    assert len(messages) > 1000 and duration > 1000
    assert all(m[3] == 3 for m in messages)


def test_map_errors_name_the_file_and_the_column(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("columns:\n  Pressure: {sensor: NOPE-1}\n")
    with pytest.raises(ConfigError, match=r"map.yaml: columns.Pressure.sensor: 'NOPE-1'"):
        load_csv_map(bad, PLANT)


def test_replay_start_puts_event_time_in_the_past_so_it_ends_at_now() -> None:
    # 1000 s at 10x: the replay lasts 100 s; it starts 900 s in the past.
    assert replay_start_ms(1000, 10, now_ms=5_000_000) == 5_000_000 - 900_000
    assert replay_start_ms(1000, 1, now_ms=5_000_000) == 5_000_000


def test_a_map_spanning_two_sites_is_refused(tmp_path: Path) -> None:
    """The topic names the site and readings of another site's sensors are refused, so
    one replayed gateway cannot carry two sites' sensors."""
    data = small_plant_data()
    other = copy.deepcopy(data["sites"][0])
    other["id"] = "s2"
    for ws in other["workshops"]:
        for area in ws["areas"]:
            area["id"] += "-2"
            for sensor in area["sensors"]:
                sensor["id"] += "-S2"
    data["sites"].append(other)
    plant = parse_plant(data, tmp_path / "plant.yaml")
    two = tmp_path / "map.yaml"
    two.write_text("columns:\n  Pressure: {sensor: LEL-1}\n  Temperature: {sensor: LEL-1-S2}\n")
    with pytest.raises(ConfigError, match=r"sites s1, s2; a gateway publishes one site"):
        load_csv_map(two, plant)
