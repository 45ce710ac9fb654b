"""The shipped plant file, and how bad plant files are reported."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from model.plant import ConfigError, PlantConfig, load_plant, toxic_preset_ppm
from tests.plants import PLANT_YAML

FIVE_KINDS = {"combustible_lel", "toxic_ppm", "oxygen_pct", "pressure_kpa", "temperature_c"}
# Where things sit in the shipped file (asserted below, so a reshuffle fails loudly).
FIRST_SENSORS = ("sites", 0, "workshops", 0, "areas", 0, "sensors")


@pytest.fixture()
def raw() -> dict[str, Any]:
    data = yaml.safe_load(PLANT_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _write(tmp_path: Path, data: Any, name: str = "plant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_plant(path)
    message = str(info.value)
    assert str(path) in message, "the message must name the file"
    assert info.value.path == str(path)
    return message


# -- the shipped file ---------------------------------------------------------


def test_shipped_plant_loads_with_about_sixty_sensors_of_all_five_kinds(
    plant: PlantConfig,
) -> None:
    places = plant.places()
    assert 55 <= len(places) <= 65
    kinds = Counter(p.sensor.kind for p in places)
    assert set(kinds) == FIVE_KINDS
    assert [p.index for p in places] == list(range(len(places)))
    assert len({p.sensor.id for p in places}) == len(places)


def test_shipped_plant_hierarchy(plant: PlantConfig) -> None:
    assert plant.enterprise.id
    assert [s.id for s in plant.sites] == ["nanhai"]
    workshops = {ws.id: ws for ws in plant.sites[0].workshops}
    assert set(workshops) == {"tank-farm", "reactor-unit", "compressor-house"}
    for ws in workshops.values():
        assert ws.teams and all(team.posts for team in ws.teams)
        posts = {p.id for t in ws.teams for p in t.posts}
        assert ws.areas and all(area.post in posts for area in ws.areas)
        assert all(area.sensors for area in ws.areas)
    areas = {a.id for ws in workshops.values() for a in ws.areas}
    assert {"tf-group-a", "tf-group-b", "tf-loading", "tf-sour-water"} <= areas
    assert {"rx-r101", "rx-feed", "rx-cooling", "cp-k201", "cp-seal"} <= areas
    assert len(areas) == sum(len(ws.areas) for ws in workshops.values()), "area ids unique"
    colours = {a.risk for ws in workshops.values() for a in ws.areas}
    assert {"red", "orange"} <= colours
    # every place knows its team and post, and gateways default to gw-<area>
    by_id = {p.sensor.id: p for p in plant.places()}
    assert by_id["TF-A-LEL-01"].gateway == "gw-tank-a"
    assert by_id["TF-A-LEL-01"].team == "tf-ops"
    assert by_id["RX-TI-120"].gateway == "gw-rx-cooling"
    assert all(p.team and p.post for p in plant.places())


def test_shipped_plant_gas_presets(plant: PlantConfig) -> None:
    h2s_h, h2s_hh = toxic_preset_ppm("H2S")
    assert (h2s_h, h2s_hh) == (7.1, 14.1)
    seen: set[str] = set()
    for place in plant.places():
        sensor = place.sensor
        limits = sensor.effective_limits()
        if sensor.kind == "combustible_lel":
            assert (limits.h, limits.hh) == (25.0, 50.0), sensor.id
            assert sensor.range == (0.0, 100.0)
            assert sensor.priority == "high"
        elif sensor.kind == "toxic_ppm":
            assert sensor.gas == "H2S"
            assert (limits.h, limits.hh) == (h2s_h, h2s_hh), sensor.id
            assert sensor.priority == "high"
        elif sensor.kind == "oxygen_pct":
            assert (limits.l, limits.h) == (19.5, 23.5), sensor.id
            assert sensor.range == (0.0, 25.0)
        else:
            assert sensor.limits is not None and limits.h is not None and limits.hh is not None
            lo, hi = sensor.range
            assert all(lo <= v <= hi for _, v in limits.items()), sensor.id
        seen.add(sensor.kind)
    assert seen == FIVE_KINDS
    sour = [p for p in plant.places() if p.area == "tf-sour-water"]
    assert any(p.sensor.kind == "toxic_ppm" for p in sour)


def test_shipped_plant_descriptions_and_units(plant: PlantConfig) -> None:
    for place in plant.places():
        assert place.sensor.description, place.sensor.id
    units = {p.sensor.kind: p.sensor.effective_unit() for p in plant.places()}
    assert units["combustible_lel"] == "%LEL"
    assert units["oxygen_pct"] == "%VOL"


# -- bad files ------------------------------------------------------------------


def test_combustible_second_level_above_gb50493_is_refused(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    sensor = _at(raw, (*FIRST_SENSORS, 0))
    assert sensor["kind"] == "combustible_lel"
    sensor["limits"] = {"h": 25, "hh": 60}
    message = _load_error(_write(tmp_path, raw))
    assert "sites[0].workshops[0].areas[0].sensors[0]" in message
    assert "limits.hh" in message
    assert "60" in message and "50" in message


def test_limit_outside_the_range_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    sensors = _at(raw, FIRST_SENSORS)
    i = next(i for i, s in enumerate(sensors) if s["kind"] == "temperature_c")
    sensors[i]["limits"] = {"h": 40, "hh": 120}  # range is -20..80
    message = _load_error(_write(tmp_path, raw))
    assert f"sensors[{i}]" in message
    assert "limits.hh" in message and "120" in message and "outside the sensor range" in message


def test_unordered_limits_are_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    sensors = _at(raw, FIRST_SENSORS)
    i = next(i for i, s in enumerate(sensors) if s["kind"] == "temperature_c")
    sensors[i]["limits"] = {"h": 45, "hh": 40}
    message = _load_error(_write(tmp_path, raw))
    assert f"sensors[{i}].limits" in message and "must be below" in message


def test_area_post_must_exist_in_the_workshop(tmp_path: Path, raw: dict[str, Any]) -> None:
    _at(raw, ("sites", 0, "workshops", 0, "areas", 1))["post"] = "nobody"
    message = _load_error(_write(tmp_path, raw))
    assert "sites[0].workshops[0]" in message
    assert "areas[1].post" in message and "'nobody'" in message
    assert "tf-board" in message, "the message lists the known posts"


def test_duplicate_sensor_id_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    first = _at(raw, (*FIRST_SENSORS, 0))
    other_area = _at(raw, ("sites", 0, "workshops", 1, "areas", 0, "sensors"))
    other_area.append({**first})
    message = _load_error(_write(tmp_path, raw))
    assert f"{first['id']!r} appears twice" in message
    assert "nanhai/tank-farm/tf-group-a" in message and "nanhai/reactor-unit/rx-r101" in message


def test_unknown_key_is_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    _at(raw, (*FIRST_SENSORS, 2))["colour"] = "red"
    message = _load_error(_write(tmp_path, raw))
    assert "sensors[2].colour" in message
    assert "Extra inputs are not permitted" in message


def test_toxic_sensor_without_gas_or_limits_is_refused(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    sour = _at(raw, ("sites", 0, "workshops", 0, "areas", 3))
    assert sour["id"] == "tf-sour-water"
    del sour["sensors"][0]["gas"]
    message = _load_error(_write(tmp_path, raw))
    assert "areas[3].sensors[0]" in message and "needs 'gas'" in message


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text("enterprise: {id: x\nsites: [", encoding="utf-8")
    message = _load_error(path)
    assert "not valid YAML" in message


def test_non_mapping_and_missing_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    assert "expected a mapping" in _load_error(path)
    missing = tmp_path / "missing.yaml"
    assert "cannot read the file" in _load_error(missing)


def test_every_problem_is_reported_at_once(tmp_path: Path, raw: dict[str, Any]) -> None:
    sensors = _at(raw, FIRST_SENSORS)
    sensors[0]["limits"] = {"hh": 60}
    sensors[1]["range"] = [100, 0]
    with pytest.raises(ConfigError) as info:
        load_plant(_write(tmp_path, raw))
    assert len(info.value.problems) == 2
    assert "sensors[0]" in info.value.problems[0] and "sensors[1]" in info.value.problems[1]
