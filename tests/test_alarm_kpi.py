"""Alarm KPIs: hand-computed values on small histories, scopes, and a brute-force peak."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.history import Activation, FloodInterval
from alarms.kpi import (
    AlarmCount,
    ChatteringAlarm,
    Metric,
    Scope,
    StaleActivation,
    TopAlarm,
    compute_kpis,
    parse_scope,
    posts_in_scope,
)
from model.plant import PlantConfig, parse_plant
from tests.plants import small_plant

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
SEC = 1_000
# Not tests.clock.T0: this one is midnight UTC (2023-11-14 00:00), so that "11:00"
# below is T0 + 11 * HOUR.
T0 = 1_699_920_000_000


def act(
    alarm_id: str,
    raised_ts: int,
    *,
    post: str = "p1",
    cleared_ts: int | None = None,
    category: str = "alarm",
    priority: str = "low",
    annunciable: bool = True,
    flood_held: bool = False,
) -> Activation:
    return Activation(
        alarm_id=alarm_id, sensor=alarm_id.split(":")[0], limit="h", category=category,
        priority=priority, site="s1", workshop="ws1", team="t1", post=post, area="a1",
        raised_ts=raised_ts, cleared_ts=cleared_ts, annunciable=annunciable,
        flood_held=flood_held,
    )


# -- the flood day: one post, 40 alarms in 2 minutes at 11:00, flood 11:00-11:25 --------
def flood_day() -> tuple[list[Activation], list[FloodInterval]]:
    priorities = ["low"] * 32 + ["medium"] * 6 + ["high"] * 2
    acts = [
        act(f"A{i:02d}", T0 + 11 * HOUR + i * 3 * SEC, priority=p, flood_held=i >= 11)
        for i, p in enumerate(priorities)
    ]
    floods = [FloodInterval("p1", T0 + 11 * HOUR, T0 + 11 * HOUR + 25 * MIN, held_back=29)]
    return acts, floods


def test_flood_day_counts_rates_and_peak() -> None:
    acts, floods = flood_day()
    r = compute_kpis(acts, floods, ["p1"], T0, T0 + DAY)
    assert (r.activations, r.alarms, r.flood_held, r.warnings, r.not_annunciated) == (
        40, 40, 29, 0, 0
    )
    assert r.scope_per_day == pytest.approx(40.0)
    assert r.per_day == Metric(pytest.approx(40.0), 150.0, 300.0)
    assert r.per_hour.value == pytest.approx(40 / 24)
    assert r.per_10min.value == pytest.approx(40 / 144)
    assert (r.per_10min.status, r.per_hour.status, r.per_day.status) == ("ok", "ok", "ok")
    # The averages look fine; the peak is what shows the flood.
    assert r.peak_10min.value == 40
    assert r.peak_10min.status == "over"
    assert (r.peak_post, r.peak_window_start_ts) == ("p1", T0 + 11 * HOUR)
    assert r.flood_time.value == pytest.approx(25 / 1440)
    assert r.flood_time.status == "over"


def test_flood_day_priority_mix_and_top10() -> None:
    acts, floods = flood_day()
    r = compute_kpis(acts, floods, ["p1"], T0, T0 + DAY)
    mix = {p.priority: (p.count, p.fraction, p.target) for p in r.priority_mix}
    assert mix == {
        "highest": (0, 0.0, 0.01),
        "high": (2, pytest.approx(0.05), 0.05),
        "medium": (6, pytest.approx(0.15), 0.15),
        "low": (32, pytest.approx(0.80), 0.80),
    }
    # 40 distinct alarms, once each: ties broken by alarm_id.
    assert [t.alarm_id for t in r.top10] == [f"A{i:02d}" for i in range(10)]
    assert all(t.count == 1 and t.share == pytest.approx(1 / 40) for t in r.top10)
    assert r.top10_share.value == pytest.approx(0.25)
    assert r.top10_share.status == "over"


def test_a_quiet_post_in_scope_halves_the_per_post_figures() -> None:
    acts, floods = flood_day()
    r = compute_kpis(acts, floods, ["p1", "p2"], T0, T0 + DAY)
    assert r.scope_per_day == pytest.approx(40.0)
    assert r.per_day.value == pytest.approx(20.0)
    assert r.flood_time.value == pytest.approx(25 / 1440 / 2)
    assert r.peak_10min.value == 40  # the peak is one post's, never averaged
    rows = {p.post: (p.alarms, p.peak_10min, p.flood_fraction) for p in r.per_post}
    assert rows == {"p1": (40, 40, pytest.approx(25 / 1440)), "p2": (0, 0, 0.0)}


def test_what_counts_as_load() -> None:
    start, end = T0, T0 + HOUR
    acts = [
        act("in:start", start),
        act("in:last", end - 1),
        act("in:fault", start + MIN, category="fault"),
        act("in:held", start + MIN, flood_held=True),
        act("out:at-end", end),
        act("out:before", start - 1),
        act("out:other-post", start + MIN, post="p9"),
        act("warn", start + MIN, category="warning"),
        act("shelved:alarm", start + MIN, annunciable=False),
        act("shelved:warning", start + MIN, category="warning", annunciable=False),
    ]
    r = compute_kpis(acts, [], {"p1"}, start, end)
    assert (r.activations, r.alarms, r.flood_held, r.warnings, r.not_annunciated) == (
        7, 4, 1, 1, 2
    )
    assert sorted(t.alarm_id for t in r.top10) == ["in:fault", "in:held", "in:last", "in:start"]


@pytest.mark.parametrize(
    ("count", "status"), [(6, "ok"), (7, "manageable"), (12, "manageable"), (13, "over")]
)
def test_rate_status_against_the_per_post_targets(count: int, status: str) -> None:
    acts = [act(f"X{i}", T0 + i * MIN) for i in range(count)]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + HOUR)
    assert r.per_hour.value == pytest.approx(count)
    assert r.per_10min.value == pytest.approx(count / 6)
    assert r.per_day.value == pytest.approx(count * 24)
    assert (r.per_10min.status, r.per_hour.status, r.per_day.status) == (status,) * 3


def test_rates_per_post_divide_by_the_number_of_posts() -> None:
    acts = [act(f"X{i}", T0 + i * MIN, post=("p1", "p2")[i % 2]) for i in range(12)]
    r = compute_kpis(acts, [], ["p1", "p2"], T0, T0 + HOUR)
    assert r.scope_per_hour == pytest.approx(12.0)
    assert r.per_hour.value == pytest.approx(6.0)
    assert r.per_hour.status == "ok"


@pytest.mark.parametrize(("count", "status"), [(10, "ok"), (11, "over")])
def test_flood_threshold_is_more_than_ten(count: int, status: str) -> None:
    acts = [act(f"X{i}", T0 + i * 30 * SEC) for i in range(count)]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + DAY)
    assert r.peak_10min.value == count
    assert r.peak_10min.status == status


def test_peak_window_is_half_open_and_per_post() -> None:
    # Exactly 10 minutes apart: never in one [t, t + 10 min) window.
    acts = [act("X", T0, post="p2"), act("X", T0 + 10 * MIN, post="p2")]
    # Two posts at the same instant are two operators, not a peak of two.
    acts += [act("Y", T0 + HOUR, post="p1"), act("Y", T0 + HOUR, post="p2")]
    r = compute_kpis(acts, [], ["p1", "p2"], T0, T0 + DAY)
    assert r.peak_10min.value == 1
    # Equal peaks: the earliest window is reported, whichever post comes first.
    assert (r.peak_post, r.peak_window_start_ts) == ("p2", T0)


def test_flood_time_clips_merges_and_ignores_other_posts() -> None:
    start, end = T0, T0 + 10 * HOUR
    floods = [
        FloodInterval("p1", start - HOUR, start + HOUR),  # 1 h inside the range
        FloodInterval("p1", start + 2 * HOUR, start + 4 * HOUR),
        FloodInterval("p1", start + 3 * HOUR, start + 5 * HOUR),  # overlaps: 3 h together
        FloodInterval("p2", end - 2 * HOUR, None),  # still flooding: 2 h
        FloodInterval("p9", start, end),  # not in scope
        FloodInterval("p2", end, None),  # starts at the end: nothing
        FloodInterval("p2", start - 3 * HOUR, start - 2 * HOUR),  # before the range: nothing
    ]
    r = compute_kpis([], floods, ["p1", "p2"], start, end)
    rows = {p.post: p.flood_fraction for p in r.per_post}
    assert rows == {"p1": pytest.approx(0.4), "p2": pytest.approx(0.2)}
    assert r.flood_time.value == pytest.approx(0.3)


def test_top10_ties_at_the_cut_go_by_alarm_id() -> None:
    counts = {"a": 1, "b": 3, "c": 3, "m": 1} | {ch: 2 for ch in "defghijkl"}
    # Raised in reverse id order, so ties cannot come out right by insertion order.
    acts = [act(a, T0 + i * HOUR) for a, n in sorted(counts.items(), reverse=True)
            for i in range(n)]
    # Shelved or warning activations are no load, however many.
    acts += [act("z", T0 + i * MIN, annunciable=False) for i in range(50)]
    acts += [act("w", T0 + i * MIN, category="warning") for i in range(50)]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + DAY)
    assert r.alarms == 26
    assert r.top10 == (
        TopAlarm("b", 3, pytest.approx(3 / 26)),
        TopAlarm("c", 3, pytest.approx(3 / 26)),
        *(TopAlarm(ch, 2, pytest.approx(2 / 26)) for ch in "defghijk"),
    )
    assert r.top10_share.value == pytest.approx(22 / 26)


def test_top10_share_at_the_target_is_ok() -> None:
    acts = [act(f"X{i:03d}", T0 + i * MIN) for i in range(200)]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + DAY)
    assert r.top10_share.value == pytest.approx(0.05)
    assert r.top10_share.status == "ok"


def test_chattering() -> None:
    t = T0 + HOUR
    acts = [
        act("C1", t), act("C1", t + 20 * SEC), act("C1", t + 60 * SEC - 1),
        act("C2", t), act("C2", t + 30 * SEC), act("C2", t + 60 * SEC),  # 2 per 60 s
        *(act("C3", t + i * 2 * SEC, category="warning", annunciable=False) for i in range(4)),
        act("C4", T0 - SEC), act("C4", T0), act("C4", T0 + SEC),  # one is before the range
        act("C5", t, post="p9"), act("C5", t), act("C5", t),  # one is another post's
    ]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + DAY)
    assert r.chattering == (ChatteringAlarm("C3", 4, t), ChatteringAlarm("C1", 3, t))
    r4 = compute_kpis(acts, [], ["p1"], T0, T0 + DAY, chatter_count=2)
    assert {c.alarm_id for c in r4.chattering} == {"C1", "C2", "C3", "C4", "C5"}


def test_fleeting() -> None:
    t = T0 + HOUR
    acts = [
        act("F1", t, cleared_ts=t + SEC),
        act("F1", t + MIN, cleared_ts=t + MIN + 5 * SEC),  # exactly 5 s: still fleeting
        act("F2", t, cleared_ts=t + 5 * SEC + 1),  # just too long
        act("F3", t),  # never cleared
        act("F4", t, cleared_ts=t + 100, annunciable=False),  # shelved, still fleeting
        act("F5", T0 - SEC, cleared_ts=T0),  # raised before the range
    ]
    r = compute_kpis(acts, [], ["p1"], T0, T0 + DAY)
    assert r.fleeting == (AlarmCount("F1", 2), AlarmCount("F4", 1))


def test_stale() -> None:
    start, end = T0 + DAY, T0 + 2 * DAY
    acts = [
        act("S1", T0),  # standing for 2 days, raised before the range
        act("S2", T0 + DAY // 2, cleared_ts=T0 + DAY * 18 // 10),  # long but cleared
        act("S3", T0 + DAY * 9 // 10, cleared_ts=T0 + 3 * DAY),  # clears after end_ts
        act("S4", T0 + DAY * 3 // 2),  # standing half a day
        act("S5", T0 + DAY),  # exactly one day: not longer than it
        act("S6", T0, annunciable=False),  # shelved: not on the display
        act("S7", T0, post="p9"),
        act("S8", end + 1),  # raised after end_ts
    ]
    r = compute_kpis(acts, [], ["p1"], start, end)
    assert r.stale == (
        StaleActivation("S1", "p1", T0, 2 * DAY),
        StaleActivation("S3", "p1", T0 + DAY * 9 // 10, DAY * 11 // 10),
    )
    assert (r.stale_count.value, r.stale_count.status) == (2, "ok")
    many = [act(f"S{i}", T0 + i) for i in range(5)]
    assert compute_kpis(many, [], ["p1"], start, end).stale_count.status == "over"
    assert compute_kpis(many[:4], [], ["p1"], start, end).stale_count.status == "ok"


def test_generators_are_read_once_and_report_is_json() -> None:
    acts, floods = flood_day()
    r = compute_kpis(iter(acts), iter(floods), ["p1"], T0, T0 + DAY)
    d: dict[str, Any] = json.loads(json.dumps(r.to_dict()))
    assert d["counts"]["alarms"] == 40
    assert d["peak_10min"] == {
        "value": 40, "acceptable": 10, "maximum": 10, "status": "over",
        "post": "p1", "window_start_ts": T0 + 11 * HOUR,
    }
    assert d["rates"]["per_post"]["per_hour"]["status"] == "ok"
    assert d["priority_mix"]["low"]["value"] == pytest.approx(0.8)
    assert d["top10"]["share"]["status"] == "over"
    assert d["per_post"][0]["post"] == "p1"


def test_empty_history_reports_zeros() -> None:
    r = compute_kpis([], [], ["p1"], T0, T0 + DAY)
    assert (r.alarms, r.peak_10min.value, r.peak_post, r.top10, r.top10_share.value) == (
        0, 0, None, (), 0.0
    )
    assert all(p.fraction == 0.0 for p in r.priority_mix)
    assert r.per_hour.status == "ok"


@pytest.mark.parametrize(("start", "end"), [(T0, T0), (T0, T0 - 1)])
def test_empty_range_is_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="empty KPI range"):
        compute_kpis([], [], ["p1"], start, end)


def test_no_posts_is_refused() -> None:
    with pytest.raises(ValueError, match="no posts"):
        compute_kpis([], [], [], T0, T0 + DAY)


# -- the sliding-window peak against a brute-force count --------------------------------
def brute_peak(acts: list[Activation], window: int) -> int:
    """Most alarms of one post in a window starting at any alarm (a best one always does)."""
    best = 0
    for a in acts:
        end = a.raised_ts + window
        best = max(best, sum(b.post == a.post and a.raised_ts <= b.raised_ts < end for b in acts))
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3 * HOUR), st.sampled_from(["p1", "p2", "p3"])),
        max_size=60,
    )
)
def test_peak_equals_brute_force(raises: list[tuple[int, str]]) -> None:
    acts = [act(f"X{i % 7}", T0 + off, post=post) for i, (off, post) in enumerate(raises)]
    r = compute_kpis(acts, [], ["p1", "p2", "p3"], T0, T0 + 3 * HOUR + 1)
    assert r.peak_10min.value == brute_peak(acts, 10 * MIN)
    if acts:
        # The reported window really holds that many of the reported post's alarms.
        start = r.peak_window_start_ts
        assert start is not None
        in_window = [
            a for a in acts if a.post == r.peak_post and start <= a.raised_ts < start + 10 * MIN
        ]
        assert len(in_window) == r.peak_10min.value
    assert r.per_post == tuple(sorted(r.per_post, key=lambda p: ["p1", "p2", "p3"].index(p.post)))


# -- scopes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("post:tf-board", Scope("post", "tf-board")),
        ("team:tf-ops", Scope("team", "tf-ops")),
        ("workshop:tank-farm", Scope("workshop", "tank-farm")),
        ("enterprise", Scope("enterprise")),
    ],
)
def test_parse_scope(text: str, scope: Scope) -> None:
    assert parse_scope(text) == scope
    assert str(scope) == text


@pytest.mark.parametrize(
    "text", ["", "post", "post:", "site:s1", "enterprise:acme", "Team:x", "area:a1"]
)
def test_parse_scope_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_scope(text)
    assert repr(text) in str(info.value)
    assert "'post:<id>'" in str(info.value) and "'enterprise'" in str(info.value)


def test_scope_refuses_a_missing_or_extra_id() -> None:
    with pytest.raises(ValueError):
        Scope("team")
    with pytest.raises(ValueError):
        Scope("enterprise", "acme")


def two_site_plant() -> PlantConfig:
    def workshop(ws: str, teams: dict[str, list[str]]) -> dict[str, Any]:
        first = next(iter(teams.values()))[0]
        return {
            "id": ws,
            "teams": [{"id": t, "posts": [{"id": p} for p in ps]} for t, ps in teams.items()],
            "areas": [{"id": f"{ws}-area", "post": first}],
        }

    return parse_plant(
        {
            "enterprise": {"id": "acme"},
            "sites": [
                {"id": "s1", "workshops": [
                    workshop("ws1", {"t1": ["p1", "p2"], "t2": ["p3"]}),
                    workshop("ws2", {"t3": ["p4"]}),
                ]},
                {"id": "s2", "workshops": [workshop("ws3", {"t4": ["p5"]})]},
            ],
        },
        "tests/test_alarm_kpi.py",
    )


@pytest.mark.parametrize(
    ("text", "posts"),
    [
        ("enterprise", ["p1", "p2", "p3", "p4", "p5"]),
        ("workshop:ws1", ["p1", "p2", "p3"]),
        ("workshop:ws3", ["p5"]),
        ("team:t1", ["p1", "p2"]),
        ("team:t2", ["p3"]),
        ("post:p4", ["p4"]),
    ],
)
def test_posts_in_scope(text: str, posts: list[str]) -> None:
    assert posts_in_scope(two_site_plant(), parse_scope(text)) == posts


@pytest.mark.parametrize(
    ("text", "known"),
    [
        ("team:t9", "t1, t2, t3, t4"),
        ("workshop:nope", "ws1, ws2, ws3"),
        ("post:p0", "p1, p2, p3, p4, p5"),
    ],
)
def test_posts_in_scope_names_the_unknown_id_and_the_known_ones(text: str, known: str) -> None:
    with pytest.raises(ValueError) as info:
        posts_in_scope(two_site_plant(), parse_scope(text))
    message = str(info.value)
    assert repr(text.split(":")[1]) in message
    assert known in message


def test_posts_in_scope_of_the_shared_small_plant() -> None:
    assert posts_in_scope(small_plant(), Scope("enterprise")) == ["post-tf"]
    assert posts_in_scope(small_plant(), parse_scope("team:team-a")) == ["post-tf"]
