"""Important periods: validation, activity at the boundaries and in a timezone,
priority raise, risk floors, limit tightening and the next change time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from alarms.periods import (
    ImportantPeriod,
    active_periods,
    applies_to,
    limit_factor,
    next_change_ms,
    period_problems,
    raised_priority,
    risk_floors,
    tightened_limits,
)
from alarms.risk import DEFAULT_RISK_RULES, grade_areas
from model.plant import Limits, RiskColour


def ms(iso: str) -> int:
    """ms since the epoch of an ISO time with an offset."""
    moment = datetime.fromisoformat(iso)
    assert moment.utcoffset() is not None
    return round(moment.timestamp() * 1000)


def period(**fields: Any) -> ImportantPeriod:
    data: dict[str, Any] = {"id": "p1", "name": "test"}
    data.update(fields)
    return ImportantPeriod.model_validate(data)


NATIONAL_DAY = period(
    id="national-day", kind="holiday", dates=["2026-10-01", "2026-10-02", "2026-10-03"],
    raise_priority=1, risk_floor="yellow",
)
HOT_WORK = period(
    id="hw-0917", kind="hot_work", areas=["tf-group-a"],
    start="2026-09-17T08:00:00+08:00", end="2026-09-17T17:30:00+08:00",
    raise_priority=2, risk_floor="orange", tighten_limits_pct=20,
)


# --- validation ----------------------------------------------------------------------


def test_naive_datetime_is_rejected_with_advice_to_add_an_offset() -> None:
    with pytest.raises(ValidationError) as err:
        period(start="2026-10-01T08:00:00", end="2026-10-01T18:00:00+08:00")
    text = str(err.value)
    assert "start" in text
    assert "has no timezone" in text
    assert "+08:00" in text


def test_end_must_be_after_start() -> None:
    with pytest.raises(ValidationError, match="must be after start"):
        period(start="2026-10-01T08:00:00+08:00", end="2026-10-01T08:00:00+08:00")
    # Same instant in two zones is still not after.
    with pytest.raises(ValidationError, match="must be after start"):
        period(start="2026-10-01T08:00:00+08:00", end="2026-10-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give either start and end, or dates"),
        (
            {"dates": ["2026-10-01"], "start": "2026-10-01T08:00:00+08:00",
             "end": "2026-10-01T09:00:00+08:00"},
            "not both",
        ),
        ({"start": "2026-10-01T08:00:00+08:00"}, "end is missing"),
        ({"end": "2026-10-01T08:00:00+08:00"}, "start is missing"),
        ({"dates": []}, "dates is empty"),
        ({"dates": ["2026-10-01"], "timezone": "Mars/Olympus"}, "unknown timezone"),
    ],
)
def test_schedule_must_be_exactly_one_of_span_or_dates(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        period(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "bad id"},
        {"id": "a/b"},
        {"kind": "party"},
        {"raise_priority": 4},
        {"raise_priority": -1},
        {"tighten_limits_pct": 51},
        {"risk_floor": "green"},
        {"colour": "red"},
    ],
)
def test_field_limits_are_enforced(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        period(dates=["2026-10-01"], **fields)


def test_period_is_frozen() -> None:
    with pytest.raises(ValidationError):
        NATIONAL_DAY.raise_priority = 3  # type: ignore[misc]


def test_period_problems_name_duplicates_and_unknown_areas() -> None:
    other = period(id="hw-0917", dates=["2026-10-01"], areas=["tf-group-a", "tf-grup-b"])
    problems = period_problems([NATIONAL_DAY, HOT_WORK, other], ["tf-group-a", "tf-group-b"])
    assert problems == [
        "periods[2].id: 'hw-0917' is already used by periods[1]",
        "periods[2].areas[1]: 'tf-grup-b' is not an area of the plant "
        "(known: tf-group-a, tf-group-b)",
    ]
    assert period_problems([NATIONAL_DAY, HOT_WORK], ["tf-group-a"]) == []


# --- activity ------------------------------------------------------------------------


def test_start_is_inclusive_and_end_exclusive() -> None:
    start, end = ms("2026-09-17T08:00:00+08:00"), ms("2026-09-17T17:30:00+08:00")
    assert HOT_WORK.intervals_ms() == ((start, end),)
    assert active_periods([HOT_WORK], start - 1) == []
    assert active_periods([HOT_WORK], start) == [HOT_WORK]
    assert active_periods([HOT_WORK], end - 1) == [HOT_WORK]
    assert active_periods([HOT_WORK], end) == []


def test_holiday_dates_are_whole_days_in_shanghai() -> None:
    assert active_periods([NATIONAL_DAY], ms("2026-10-01T00:30:00+08:00")) == [NATIONAL_DAY]
    assert active_periods([NATIONAL_DAY], ms("2026-09-30T23:30:00+08:00")) == []
    # 2026-09-30 17:00 UTC is already 01:00 on 1 October in Shanghai.
    assert active_periods([NATIONAL_DAY], ms("2026-09-30T17:00:00+00:00")) == [NATIONAL_DAY]
    assert active_periods([NATIONAL_DAY], ms("2026-10-03T23:59:59+08:00")) == [NATIONAL_DAY]
    assert active_periods([NATIONAL_DAY], ms("2026-10-04T00:00:00+08:00")) == []


def test_dates_in_another_timezone() -> None:
    utc_day = period(dates=["2026-10-01"], timezone="UTC")
    assert not utc_day.is_active(ms("2026-10-01T00:30:00+08:00"))
    assert utc_day.is_active(ms("2026-10-01T08:30:00+08:00"))


def test_consecutive_dates_merge_and_gaps_stay() -> None:
    p = period(dates=["2026-10-03", "2026-10-01", "2026-10-02", "2026-10-02", "2026-10-05"])
    assert p.intervals_ms() == (
        (ms("2026-10-01T00:00:00+08:00"), ms("2026-10-04T00:00:00+08:00")),
        (ms("2026-10-05T00:00:00+08:00"), ms("2026-10-06T00:00:00+08:00")),
    )
    assert not p.is_active(ms("2026-10-04T12:00:00+08:00"))


def test_dst_day_is_23_hours_long() -> None:
    p = period(dates=["2026-03-29"], timezone="Europe/Berlin")
    ((lo, hi),) = p.intervals_ms()
    assert hi - lo == 23 * 3600 * 1000


def test_active_periods_keep_config_order() -> None:
    both = period(id="all-sept", start="2026-09-01T00:00:00+08:00",
                  end="2026-10-31T00:00:00+08:00")
    ts = ms("2026-10-01T12:00:00+08:00")
    assert active_periods([NATIONAL_DAY, HOT_WORK, both], ts) == [NATIONAL_DAY, both]
    assert active_periods([both, NATIONAL_DAY], ts) == [both, NATIONAL_DAY]


def test_applies_to_listed_areas_or_whole_plant() -> None:
    assert applies_to(HOT_WORK, "tf-group-a")
    assert not applies_to(HOT_WORK, "tf-group-b")
    assert applies_to(NATIONAL_DAY, "anything")


# --- effects -------------------------------------------------------------------------


def test_priority_raise_takes_the_largest_step_and_caps_at_highest() -> None:
    active = [NATIONAL_DAY, HOT_WORK]
    assert raised_priority("low", "tf-group-b", active) == "medium"  # holiday only: +1
    assert raised_priority("low", "tf-group-a", active) == "high"  # max(1, 2), not 3
    assert raised_priority("high", "tf-group-a", active) == "highest"  # capped
    assert raised_priority("highest", "tf-group-a", active) == "highest"
    assert raised_priority("medium", "tf-group-a", []) == "medium"
    top = period(id="top", dates=["2026-10-01"], raise_priority=3)
    assert raised_priority("low", "x", [top]) == "highest"


def test_risk_floors_take_the_highest_floor_per_area() -> None:
    no_floor = period(id="no-floor", dates=["2026-10-01"], raise_priority=1)
    areas = ["tf-group-a", "tf-group-b"]
    assert risk_floors([NATIONAL_DAY, HOT_WORK, no_floor], areas) == {
        "tf-group-a": "orange",
        "tf-group-b": "yellow",
    }
    assert risk_floors([HOT_WORK], areas) == {"tf-group-a": "orange"}
    assert risk_floors([no_floor], areas) == {}


def test_floors_feed_risk_grading() -> None:
    inherent: dict[str, RiskColour] = {"tf-group-a": "blue", "tf-group-b": "blue"}
    ts = ms("2026-09-17T09:00:00+08:00")
    floors = risk_floors(active_periods([NATIONAL_DAY, HOT_WORK], ts), inherent)
    g = grade_areas(inherent, [], DEFAULT_RISK_RULES, floors)
    assert g["tf-group-a"].colour == "orange"
    assert g["tf-group-b"].colour == "blue"


def test_limit_factor_uses_largest_tightening_covering_the_area() -> None:
    mild = period(id="mild", dates=["2026-10-01"], tighten_limits_pct=5)
    assert limit_factor([mild, HOT_WORK], "tf-group-a") == pytest.approx(0.8)
    assert limit_factor([mild, HOT_WORK], "tf-group-b") == pytest.approx(0.95)
    assert limit_factor([], "tf-group-a") == 1.0


def test_tightening_gas_limits_scales_from_zero() -> None:
    lel = tightened_limits(Limits(h=25, hh=50), (0, 100), 0.8)
    assert lel.h == pytest.approx(20.0)
    assert lel.hh == pytest.approx(40.0)


def test_tightening_moves_both_sides_toward_the_middle_of_the_band() -> None:
    o2 = tightened_limits(Limits(l=19.5, h=23.5), (0, 25), 0.5)
    assert o2.l == pytest.approx(20.5)
    assert o2.h == pytest.approx(22.5)
    # Negative gauge pressures tighten too (x * 1.2 would have loosened ll).
    blanket = tightened_limits(Limits(ll=-0.4, l=0.2, h=2.0, hh=2.4), (-2, 6), 0.5)
    # Normal point (0.2 + 2.0) / 2 = 1.1 kPa; each limit keeps half its distance.
    assert blanket.ll == pytest.approx(0.35)
    assert blanket.l == pytest.approx(0.65)
    assert blanket.h == pytest.approx(1.55)
    assert blanket.hh == pytest.approx(1.75)


def test_tightening_low_only_limits_moves_up_from_range_top() -> None:
    low = tightened_limits(Limits(ll=20, l=40), (0, 100), 0.5)
    assert low.ll == pytest.approx(60.0)
    assert low.l == pytest.approx(70.0)


def test_no_tightening_returns_limits_unchanged_and_bad_factor_is_refused() -> None:
    limits = Limits(h=25, hh=50)
    assert tightened_limits(limits, (0, 100), 1.0) is limits
    with pytest.raises(ValueError, match="factor"):
        tightened_limits(limits, (0, 100), 0.0)
    with pytest.raises(ValueError, match="factor"):
        tightened_limits(limits, (0, 100), 1.2)


# --- scheduling ----------------------------------------------------------------------


def test_next_change_is_the_next_start_or_end_strictly_after() -> None:
    periods = [NATIONAL_DAY, HOT_WORK]
    hw_start, hw_end = HOT_WORK.intervals_ms()[0]
    nd_start, nd_end = NATIONAL_DAY.intervals_ms()[0]
    assert next_change_ms(periods, hw_start - 1) == hw_start
    assert next_change_ms(periods, hw_start) == hw_end
    assert next_change_ms(periods, hw_end) == nd_start
    # Midnight between holiday days is not a change.
    assert next_change_ms(periods, nd_start) == nd_end
    assert nd_end == ms("2026-10-04T00:00:00+08:00")
    assert next_change_ms(periods, nd_end) is None
    assert next_change_ms([], 0) is None
