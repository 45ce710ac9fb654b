"""Four-colour risk grading: rule matching, the default rules, floors, and the
tracker that turns grades into colour-change events."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from alarms.risk import (
    DEFAULT_RISK_RULES,
    ActivePoint,
    AlarmLimit,
    AreaRisk,
    Category,
    RiskRule,
    RiskTracker,
    grade_areas,
    max_colour,
)
from detectors.registry import CATEGORY_OF
from model.plant import Priority, RiskColour, SensorKind

CATEGORY: dict[str, Category] = {
    "ll": "alarm", "l": "alarm", "h": "alarm", "hh": "alarm", "rate": "alarm",
    "trend": "warning", "drift": "warning", "mspc": "warning",
    "stuck": "fault", "range": "fault", "spike": "fault", "nodata": "fault",
}
INHERENT: dict[str, RiskColour] = {
    "tf-group-a": "orange",
    "tf-loading": "yellow",
    "rx-cooling": "blue",
    "tf-sour-water": "red",
}


def point(
    sensor: str,
    limit: AlarmLimit,
    kind: SensorKind = "combustible_lel",
    area: str = "tf-loading",
    priority: Priority = "high",
) -> ActivePoint:
    return ActivePoint(
        alarm_id=f"{sensor}:{limit}", sensor=sensor, area=area, kind=kind, limit=limit,
        category=CATEGORY[limit], priority=priority,
    )


def grade(*points: ActivePoint) -> dict[str, AreaRisk]:
    return grade_areas(INHERENT, points, DEFAULT_RISK_RULES)


def test_point_categories_agree_with_the_detector_declarations() -> None:
    assert CATEGORY == CATEGORY_OF


# --- rule matching -------------------------------------------------------------------


def test_rule_matches_when_every_given_field_contains_the_value() -> None:
    rule = RiskRule(limits=["h", "hh"], kinds=["toxic_ppm"], priorities=["high"], colour="red")
    assert rule.matches(point("S1", "hh", kind="toxic_ppm"))
    assert not rule.matches(point("S1", "l", kind="toxic_ppm"))
    assert not rule.matches(point("S1", "hh", kind="combustible_lel"))
    assert not rule.matches(point("S1", "hh", kind="toxic_ppm", priority="low"))


def test_rule_without_match_fields_matches_anything() -> None:
    rule = RiskRule(colour="yellow")
    assert rule.matches(point("S1", "nodata", kind="flow_m3h", priority="low"))
    assert rule.label() == "rule matching any point"


def test_rule_rejects_empty_lists_and_unknown_values() -> None:
    with pytest.raises(ValidationError, match="leave the field out"):
        RiskRule(limits=[], colour="red")
    with pytest.raises(ValidationError):
        RiskRule.model_validate({"kinds": ["methane"], "colour": "red"})
    with pytest.raises(ValidationError):
        RiskRule.model_validate({"colour": "green"})
    with pytest.raises(ValidationError):
        RiskRule.model_validate({"colour": "red", "min_count": 0})
    with pytest.raises(ValidationError):
        RiskRule.model_validate({"colour": "red", "limit": ["hh"]})  # typo: extra field


def test_min_count_counts_distinct_sensors() -> None:
    rule = RiskRule(name="two detectors", limits=["h", "hh"], min_count=2, colour="red")
    one_sensor = grade_areas({"a": "blue"}, [point("S1", "h", area="a"),
                                              point("S1", "hh", area="a")], [rule])
    assert one_sensor["a"].colour == "blue"
    two_sensors = grade_areas({"a": "blue"}, [point("S1", "h", area="a"),
                                               point("S2", "h", area="a")], [rule])
    assert two_sensors["a"].colour == "red"
    assert two_sensors["a"].reasons[0] == "S1:h, S2:h active: two detectors → red"


def test_min_count_is_per_area() -> None:
    rule = RiskRule(limits=["h"], min_count=2, colour="red")
    grades = grade_areas(
        {"a": "blue", "b": "blue"}, [point("S1", "h", area="a"), point("S2", "h", area="b")],
        [rule],
    )
    assert [g.colour for g in grades.values()] == ["blue", "blue"]


def test_unnamed_rule_reason_describes_its_match_fields() -> None:
    rule = RiskRule(limits=["rate"], kinds=["temperature_c"], colour="orange")
    g = grade_areas({"a": "blue"}, [point("TI-1", "rate", kind="temperature_c", area="a")],
                    [rule])["a"]
    assert g.reasons[0] == "TI-1:rate active: rule limits=rate kinds=temperature_c → orange"


# --- default rules -------------------------------------------------------------------


def test_second_level_combustible_alarm_makes_area_red_naming_the_alarm() -> None:
    g = grade(point("TF-L-LEL-01", "hh"))["tf-loading"]
    assert g.colour == "red"
    assert g.inherent == "yellow"
    assert g.raised
    assert g.reasons[0] == "TF-L-LEL-01:hh active: second-level gas alarm → red"


def test_second_level_toxic_alarm_makes_area_red() -> None:
    g = grade(point("RX-H2S-101", "hh", kind="toxic_ppm", area="rx-cooling"))["rx-cooling"]
    assert g.colour == "red"
    assert "RX-H2S-101:hh" in g.reasons[0]


def test_one_first_level_gas_alarm_is_orange() -> None:
    g = grade(point("TF-L-LEL-01", "h"))["tf-loading"]
    assert g.colour == "orange"
    assert g.reasons == [
        "TF-L-LEL-01:h active: first-level gas alarm → orange",
        "inherent risk yellow",
    ]


def test_two_first_level_gas_alarms_in_one_area_are_red() -> None:
    g = grade(point("TF-L-LEL-01", "h"), point("TF-L-LEL-03", "h", kind="combustible_lel"))
    area = g["tf-loading"]
    assert area.colour == "red"
    # Both points are explained once, by the stronger rule they fired together.
    assert area.reasons == [
        "TF-L-LEL-01:h, TF-L-LEL-03:h active: two or more first-level gas alarms → red",
        "inherent risk yellow",
    ]


def test_first_level_gas_alarms_in_different_areas_do_not_add_up() -> None:
    g = grade(point("TF-L-LEL-01", "h"), point("RX-LEL-1", "h", area="rx-cooling"))
    assert g["tf-loading"].colour == "orange"
    assert g["rx-cooling"].colour == "orange"


@pytest.mark.parametrize("limit", ["l", "h"])
def test_oxygen_alarms_are_orange(limit: AlarmLimit) -> None:
    g = grade(point("O2-1", limit, kind="oxygen_pct", area="rx-cooling"))["rx-cooling"]
    assert g.colour == "orange"
    assert g.reasons[0].endswith("oxygen alarm → orange")


@pytest.mark.parametrize("limit", ["hh", "ll"])
def test_second_limit_process_alarm_is_orange(limit: AlarmLimit) -> None:
    g = grade(point("RX-PI-120", limit, kind="pressure_kpa", area="rx-cooling"))
    assert g["rx-cooling"].colour == "orange"


@pytest.mark.parametrize("limit", ["h", "l", "rate"])
def test_other_process_alarms_are_yellow(limit: AlarmLimit) -> None:
    g = grade(point("RX-TI-121", limit, kind="temperature_c", area="rx-cooling"))
    assert g["rx-cooling"].colour == "yellow"


def test_trend_warning_is_yellow() -> None:
    g = grade(point("RX-LEL-1", "trend", area="rx-cooling"))["rx-cooling"]
    assert g.colour == "yellow"
    assert g.reasons[0] == "RX-LEL-1:trend active: trend warning → yellow"


def test_a_unit_out_of_statistical_control_is_yellow() -> None:
    g = grade(point("RX-TI-121", "mspc", kind="temperature_c", area="rx-cooling"))["rx-cooling"]
    assert g.colour == "yellow"
    assert g.reasons[0] == "RX-TI-121:mspc active: unit out of statistical control → yellow"


@pytest.mark.parametrize("limit", ["drift", "stuck", "range", "spike", "nodata"])
def test_drift_and_sensor_faults_do_not_change_colour(limit: AlarmLimit) -> None:
    g = grade(point("RX-LEL-1", limit, area="rx-cooling"), point("RX-LEL-2", limit,
                                                                  area="rx-cooling"))
    assert g["rx-cooling"].colour == "blue"
    assert g["rx-cooling"].reasons == ["inherent risk blue"]
    assert not g["rx-cooling"].raised


def test_inherent_colour_is_a_floor() -> None:
    # A yellow-grade alarm cannot lower a red area.
    g = grade(point("TF-SW-TI-01", "h", kind="temperature_c", area="tf-sour-water"))
    area = g["tf-sour-water"]
    assert area.colour == "red"
    assert not area.raised
    assert area.reasons == [
        "inherent risk red",
        "TF-SW-TI-01:h active: process alarm → yellow",
    ]


def test_areas_without_points_keep_inherent_colour_in_config_order() -> None:
    g = grade(point("TF-L-LEL-01", "hh"))
    assert list(g) == list(INHERENT)
    assert {a: r.colour for a, r in g.items()} == {
        "tf-group-a": "orange", "tf-loading": "red", "rx-cooling": "blue",
        "tf-sour-water": "red",
    }
    assert g["tf-group-a"].reasons == ["inherent risk orange"]


def test_point_in_unknown_area_is_graded_from_blue_after_known_areas() -> None:
    g = grade(point("X-1", "h", area="zz-new"), point("Y-1", "h", area="aa-new"))
    assert list(g)[-2:] == ["aa-new", "zz-new"]
    assert g["zz-new"].inherent == "blue"
    assert g["zz-new"].colour == "orange"


def test_each_point_is_explained_once_by_its_strongest_rule() -> None:
    g = grade(
        point("TF-L-LEL-01", "hh"),
        point("TF-L-LEL-01", "h"),
        point("TF-L-LEL-02", "trend"),
        point("TF-L-LEL-03", "nodata"),
    )["tf-loading"]
    assert g.reasons == [
        "TF-L-LEL-01:hh active: second-level gas alarm → red",
        "TF-L-LEL-01:h active: first-level gas alarm → orange",
        "TF-L-LEL-02:trend active: trend warning → yellow",
        "inherent risk yellow",
    ]


def test_grading_does_not_depend_on_point_order() -> None:
    points = [
        point("TF-L-LEL-01", "h"), point("TF-L-LEL-02", "h"), point("TF-L-LEL-03", "trend"),
        point("RX-PI-120", "ll", kind="pressure_kpa", area="rx-cooling"),
        point("TF-A-TI-01", "rate", kind="temperature_c", area="tf-group-a"),
    ]
    expected = grade(*points)
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(points)
        assert grade(*points) == expected


# --- floors --------------------------------------------------------------------------


def test_floor_raises_quiet_area_and_is_named_in_reasons() -> None:
    g = grade_areas(INHERENT, [], DEFAULT_RISK_RULES, floors={"rx-cooling": "orange"})
    assert g["rx-cooling"].colour == "orange"
    assert g["rx-cooling"].reasons == [
        "important-period risk floor orange",
        "inherent risk blue",
    ]
    assert g["tf-loading"].colour == "yellow"


def test_floor_never_lowers_and_rules_can_exceed_it() -> None:
    g = grade_areas(
        INHERENT, [point("TF-L-LEL-01", "hh")], DEFAULT_RISK_RULES,
        floors={"tf-loading": "orange", "tf-sour-water": "yellow", "unknown": "red"},
    )
    assert g["tf-loading"].colour == "red"
    assert g["tf-sour-water"].colour == "red"
    assert "unknown" not in g


def test_max_colour_ranks_red_orange_yellow_blue() -> None:
    assert max_colour("blue", "yellow") == "yellow"
    assert max_colour("orange", "red", "yellow") == "red"
    assert max_colour("orange", "yellow") == "orange"
    assert max_colour("blue") == "blue"


# --- tracker -------------------------------------------------------------------------


def test_tracker_reports_only_colour_changes() -> None:
    tracker = RiskTracker()
    quiet = grade()
    assert tracker.update(quiet) == []  # first sight compared with the inherent map

    alarm = grade(point("TF-L-LEL-01", "h"))
    changed = tracker.update(alarm)
    assert [(g.area, g.colour) for g in changed] == [("tf-loading", "orange")]

    # Same colour, different reasons: no event.
    assert tracker.update(grade(point("TF-L-LEL-02", "h"))) == []

    worse = tracker.update(grade(point("TF-L-LEL-01", "h"), point("TF-L-LEL-02", "h")))
    assert [(g.area, g.colour) for g in worse] == [("tf-loading", "red")]

    cleared = tracker.update(grade())
    assert [(g.area, g.colour) for g in cleared] == [("tf-loading", "yellow")]
    assert tracker.colours()["tf-loading"] == "yellow"


def test_tracker_reports_areas_raised_at_first_sight() -> None:
    tracker = RiskTracker()
    changed = tracker.update(grade(point("RX-PI-120", "hh", kind="pressure_kpa",
                                         area="rx-cooling")))
    assert [g.area for g in changed] == ["rx-cooling"]


def test_tracker_state_round_trips_across_restart() -> None:
    first = RiskTracker()
    first.update(grade(point("TF-L-LEL-01", "hh")))
    resumed = RiskTracker(first.colours())
    # Still red after restart: no duplicate event.
    assert resumed.update(grade(point("TF-L-LEL-01", "hh"))) == []
    assert [g.area for g in resumed.update(grade())] == ["tf-loading"]


def test_area_risk_to_dict() -> None:
    g = grade(point("TF-L-LEL-01", "hh"))["tf-loading"]
    d = g.to_dict()
    assert d["area"] == "tf-loading"
    assert d["colour"] == "red"
    assert d["inherent"] == "yellow"
    assert d["reasons"][0].startswith("TF-L-LEL-01:hh")
