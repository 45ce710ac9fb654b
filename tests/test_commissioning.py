"""Commissioning: a stray test reading records a fault but opens no hazard ticket."""

from __future__ import annotations

import pytest

from alarms.config import parse_alarm_config
from alarms.journal import MemoryJournal
from model.plant import ConfigError, parse_plant
from tests.clock import T0
from tests.plants import small_plant_data
from tests.test_alarm_lifecycle import condition


@pytest.mark.parametrize("commissioning", [{"areas": ["tf-a"]}, {"sensors": ["LEL-1"]}])
def test_a_fault_while_commissioning_is_recorded_without_a_ticket(
        commissioning: dict[str, list[str]]) -> None:
    plant = parse_plant(small_plant_data())
    live = parse_alarm_config({}, plant).system(plant, MemoryJournal())
    new = parse_alarm_config({"commissioning": commissioning}, plant).system(
        plant, MemoryJournal())
    for system in (live, new):
        out = system.commit([condition("LEL-1:range", "raise", T0)], T0)
        assert [c.change for c in out.changes] == ["raised"]  # recorded and shown either way
    assert [h.source for h in live.hazards.list()] == ["sensor_fault"]
    assert new.hazards.list() == []


def test_commissioning_names_only_what_the_plant_has() -> None:
    plant = parse_plant(small_plant_data())
    with pytest.raises(ConfigError, match=r"commissioning\.areas\[0\]: 'tf-x' is not an area"):
        parse_alarm_config({"commissioning": {"areas": ["tf-x"]}}, plant)
    with pytest.raises(ConfigError, match=r"commissioning\.sensors\[0\]: 'LEL-9' is not a sensor"):
        parse_alarm_config({"commissioning": {"sensors": ["LEL-9"]}}, plant)
