"""Alarm-management KPIs (EEMUA 191, ISA-18.2) for one scope of the plant.

KPIs are judged per post (operator position, docs/domain.md §2) and rolled up per
team, workshop and enterprise, so a report covers a set of posts over the
half-open range ``[start_ts, end_ts)``, times in ms since the epoch. Targets
are the docs/domain.md §7 defaults.

Counting rules:

- An activation is *in scope* when its ``post`` is one of ``posts``, and *in
  range* when ``start_ts <= raised_ts < end_ts``.
- The *alarm load* is the in-scope, in-range activations that are
  annunciable and of category ``"alarm"`` or ``"fault"``, flood-held ones
  included: the flood only moved them to a summary, the post still carried
  them. Annunciable warnings are counted apart (``warnings``), and so are
  activations that were not annunciable at the raise, of any category
  (``not_annunciated``: shelved, suppressed by design or out of service).
- Rates are the load divided by the range length in 10-minute, hour and day
  units, for the whole scope and per post (divided by the number of posts);
  the targets apply per post.
- The peak 10-minute count is the most load activations of one post raised in
  any window ``[t, t + 10 min)``; a flood is more than 10.
- Time in flood is, per post, the fraction of the range covered by its flood
  intervals (an open interval lasts to ``end_ts``); the scope figure is the
  mean over the posts, so a quiet post dilutes a flooded one as it should.
- Top-10 alarms are the ten ``alarm_id`` with the most load activations,
  ties broken by ``alarm_id``; shares are fractions of the load.
- Priority mix: each priority's fraction of the load beside its target.
- Chattering and fleeting describe the alarm point, not what the operator
  saw, so they count every in-scope, in-range activation, shelved or not and
  of any category: chattering is ``chatter_count`` or more raises of one
  ``alarm_id`` within any ``[t, t + chatter_window_ms)``; fleeting is a clear
  within ``fleeting_ms`` (inclusive) of the raise.
- Stale alarms are those standing at ``end_ts`` (raised before it, not
  cleared by it) for longer than ``stale_ms``, whenever they were raised, so
  pass activations raised before ``start_ts`` that may still be standing.
  Only annunciable ones count: shelving or taking a point out of service is
  the sanctioned way to take a standing alarm off the display. For the "on
  any day" target, ask for one-day ranges.

Every metric with a target is a :class:`Metric`: ``"ok"`` when the value is
at most the acceptable figure, ``"manageable"`` when at most the maximum,
``"over"`` beyond. Single-threshold targets have acceptable equal to maximum;
"fewer than 5" stale alarms is an acceptable count of 4. Fractions are 0–1,
not percent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from alarms.history import Activation, FloodInterval
from model.plant import PlantConfig

__all__ = [
    "AlarmCount",
    "ChatteringAlarm",
    "KpiReport",
    "Metric",
    "PostLoad",
    "PriorityShare",
    "Scope",
    "ScopeKind",
    "StaleActivation",
    "TopAlarm",
    "compute_kpis",
    "parse_scope",
    "posts_in_scope",
]

ScopeKind = Literal["post", "team", "workshop", "enterprise"]
Status = Literal["ok", "manageable", "over"]

TEN_MIN_MS = 600_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Per-post targets (acceptable, maximum) from docs/domain.md §7.
RATE_PER_10MIN = (1.0, 2.0)
RATE_PER_HOUR = (6.0, 12.0)
RATE_PER_DAY = (150.0, 300.0)
FLOOD_ABOVE = 10
FLOOD_TIME_FRACTION = 0.01
TOP10_SHARE = 0.05
STALE_COUNT = 4
PRIORITY_TARGETS: dict[str, float] = {"highest": 0.01, "high": 0.05, "medium": 0.15, "low": 0.80}
LOAD_CATEGORIES = frozenset({"alarm", "fault"})

_SCOPE_FORMS = "'post:<id>', 'team:<id>', 'workshop:<id>' or 'enterprise'"


# -- scopes ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scope:
    """A part of the plant a report covers; ``id`` is None only for the enterprise."""

    kind: ScopeKind
    id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(ScopeKind):
            raise ValueError(f"scope kind {self.kind!r} is not one of {_SCOPE_FORMS}")
        if (self.kind == "enterprise") != (self.id is None) or self.id == "":
            raise ValueError(f"scope {self.kind!r} with id {self.id!r}: expected {_SCOPE_FORMS}")

    def __str__(self) -> str:
        return self.kind if self.id is None else f"{self.kind}:{self.id}"


def parse_scope(text: str) -> Scope:
    """Parse a scope as written in a URL or CLI argument, e.g. ``team:tf-ops``."""
    kind, sep, ident = text.strip().partition(":")
    if kind == "enterprise" and not sep:
        return Scope("enterprise")
    if kind in ("post", "team", "workshop") and sep and ident:
        return Scope(cast(ScopeKind, kind), ident)
    raise ValueError(f"scope {text!r} is not understood; expected {_SCOPE_FORMS}")


def posts_in_scope(plant: PlantConfig, scope: Scope) -> list[str]:
    """The post ids of ``scope``, in file order.

    Team and workshop ids are matched across the whole plant: history keys
    activations by post id alone, so two teams sharing an id cannot be told
    apart in it anyway.
    """
    rows = [
        (ws.id, team.id, post.id)
        for site in plant.sites
        for ws in site.workshops
        for team in ws.teams
        for post in team.posts
    ]
    if scope.kind == "enterprise":
        return list(dict.fromkeys(post for _, _, post in rows))
    level = {"workshop": 0, "team": 1, "post": 2}[scope.kind]
    found = [row[2] for row in rows if row[level] == scope.id]
    if not found:
        known = sorted({row[level] for row in rows})
        raise ValueError(
            f"scope {scope}: no {scope.kind} {scope.id!r} in the plant "
            f"(known {scope.kind} ids: {', '.join(known) or 'none'})"
        )
    return list(dict.fromkeys(found))


# -- report types ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Metric:
    """A KPI value beside its targets."""

    value: float
    acceptable: float
    maximum: float

    @property
    def status(self) -> Status:
        if self.value <= self.acceptable:
            return "ok"
        if self.value <= self.maximum:
            return "manageable"
        return "over"

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "acceptable": self.acceptable,
            "maximum": self.maximum,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class TopAlarm:
    alarm_id: str
    count: int
    share: float  # of the load, 0–1


@dataclass(frozen=True, slots=True)
class AlarmCount:
    alarm_id: str
    count: int


@dataclass(frozen=True, slots=True)
class ChatteringAlarm:
    """An alarm point with ``max_count`` raises in the window starting at ``window_start_ts``."""

    alarm_id: str
    max_count: int
    window_start_ts: int


@dataclass(frozen=True, slots=True)
class StaleActivation:
    alarm_id: str
    post: str
    raised_ts: int
    active_ms: int  # as of the report's end_ts


@dataclass(frozen=True, slots=True)
class PriorityShare:
    """One priority's part of the load; ``target`` is None for a priority without one."""

    priority: str
    count: int
    fraction: float
    target: float | None


@dataclass(frozen=True, slots=True)
class PostLoad:
    """One post's own figures, for finding the post that drives a roll-up."""

    post: str
    alarms: int
    per_hour: float
    peak_10min: int
    flood_fraction: float


@dataclass(frozen=True, slots=True)
class KpiReport:
    """Alarm KPIs of ``posts`` over ``[start_ts, end_ts)``; see the module docstring."""

    posts: tuple[str, ...]
    start_ts: int
    end_ts: int
    activations: int
    alarms: int
    flood_held: int
    warnings: int
    not_annunciated: int
    scope_per_10min: float
    scope_per_hour: float
    scope_per_day: float
    per_10min: Metric
    per_hour: Metric
    per_day: Metric
    peak_10min: Metric
    peak_post: str | None
    peak_window_start_ts: int | None
    flood_time: Metric
    top10: tuple[TopAlarm, ...]
    top10_share: Metric
    priority_mix: tuple[PriorityShare, ...]
    chattering: tuple[ChatteringAlarm, ...]
    fleeting: tuple[AlarmCount, ...]
    stale: tuple[StaleActivation, ...]
    stale_count: Metric
    per_post: tuple[PostLoad, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, for the API and the safety report."""
        return {
            "posts": list(self.posts),
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "counts": {
                "activations": self.activations,
                "alarms": self.alarms,
                "flood_held": self.flood_held,
                "warnings": self.warnings,
                "not_annunciated": self.not_annunciated,
            },
            "rates": {
                "scope": {
                    "per_10min": self.scope_per_10min,
                    "per_hour": self.scope_per_hour,
                    "per_day": self.scope_per_day,
                },
                "per_post": {
                    "per_10min": self.per_10min.to_dict(),
                    "per_hour": self.per_hour.to_dict(),
                    "per_day": self.per_day.to_dict(),
                },
            },
            "peak_10min": {
                **self.peak_10min.to_dict(),
                "post": self.peak_post,
                "window_start_ts": self.peak_window_start_ts,
            },
            "flood_time": self.flood_time.to_dict(),
            "top10": {
                "alarms": [
                    {"alarm_id": a.alarm_id, "count": a.count, "share": a.share}
                    for a in self.top10
                ],
                "share": self.top10_share.to_dict(),
            },
            "priority_mix": {
                p.priority: {"count": p.count, "value": p.fraction, "target": p.target}
                for p in self.priority_mix
            },
            "chattering": [
                {"alarm_id": c.alarm_id, "max_count": c.max_count,
                 "window_start_ts": c.window_start_ts}
                for c in self.chattering
            ],
            "fleeting": [{"alarm_id": f.alarm_id, "count": f.count} for f in self.fleeting],
            "stale": {
                "count": self.stale_count.to_dict(),
                "alarms": [
                    {"alarm_id": s.alarm_id, "post": s.post, "raised_ts": s.raised_ts,
                     "active_ms": s.active_ms}
                    for s in self.stale
                ],
            },
            "per_post": [
                {"post": p.post, "alarms": p.alarms, "per_hour": p.per_hour,
                 "peak_10min": p.peak_10min, "flood_fraction": p.flood_fraction}
                for p in self.per_post
            ],
        }


# -- computation ----------------------------------------------------------------------
def _peak_window(raised_ts: Iterable[int], window_ms: int) -> tuple[int, int | None]:
    """Most times in any ``[t, t + window_ms)``, and the earliest such ``t``.

    A best window can always start at one of the times, so one ``searchsorted``
    over the sorted times finds it in O(n log n).
    """
    ts: npt.NDArray[np.int64] = np.sort(np.fromiter(raised_ts, dtype=np.int64))
    if ts.size == 0:
        return 0, None
    counts = np.searchsorted(ts, ts + window_ms, side="left") - np.arange(ts.size)
    best = int(np.argmax(counts))  # the first maximum: the earliest window
    return int(counts[best]), int(ts[best])


def _covered_ms(spans: list[tuple[int, int]]) -> int:
    """Length of the union of half-open spans; overlaps would otherwise count twice."""
    total = 0
    reach: int | None = None
    for lo, hi in sorted(spans):
        if reach is None or lo > reach:
            total += hi - lo
            reach = hi
        elif hi > reach:
            total += hi - reach
            reach = hi
    return total


def _ranked(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def compute_kpis(
    activations: Iterable[Activation],
    floods: Iterable[FloodInterval],
    posts: Collection[str],
    start_ts: int,
    end_ts: int,
    *,
    fleeting_ms: int = 5_000,
    chatter_count: int = 3,
    chatter_window_ms: int = 60_000,
    stale_ms: int = 86_400_000,
) -> KpiReport:
    """Alarm KPIs of ``posts`` over ``[start_ts, end_ts)`` (rules: module docstring).

    Each input is read once, so generators straight from the history store do.
    """
    if end_ts <= start_ts:
        raise ValueError(f"empty KPI range: end_ts {end_ts} is not after start_ts {start_ts}")
    post_ids = tuple(dict.fromkeys(posts))
    if not post_ids:
        raise ValueError("no posts in scope: per-post KPIs need at least one post")
    if chatter_count < 1 or chatter_window_ms <= 0 or fleeting_ms < 0 or stale_ms < 0:
        raise ValueError(
            f"bad thresholds: chatter_count={chatter_count} (>= 1), chatter_window_ms="
            f"{chatter_window_ms} (> 0), fleeting_ms={fleeting_ms} and stale_ms={stale_ms} (>= 0)"
        )
    in_scope = frozenset(post_ids)

    total = warnings = not_annunciated = flood_held = 0
    load_by_post: dict[str, list[int]] = defaultdict(list)
    load_by_alarm: Counter[str] = Counter()
    load_by_priority: Counter[str] = Counter()
    raises_by_alarm: dict[str, list[int]] = defaultdict(list)
    fleeting: Counter[str] = Counter()
    stale: list[StaleActivation] = []
    for act in activations:
        if act.post not in in_scope:
            continue
        raised = act.raised_ts
        cleared = act.cleared_ts
        standing = raised < end_ts and (cleared is None or cleared > end_ts)
        if standing and act.annunciable and end_ts - raised > stale_ms:
            stale.append(StaleActivation(act.alarm_id, act.post, raised, end_ts - raised))
        if not start_ts <= raised < end_ts:
            continue
        total += 1
        raises_by_alarm[act.alarm_id].append(raised)
        if cleared is not None and cleared - raised <= fleeting_ms:
            fleeting[act.alarm_id] += 1
        if not act.annunciable:
            not_annunciated += 1
        elif act.category in LOAD_CATEGORIES:
            load_by_post[act.post].append(raised)
            load_by_alarm[act.alarm_id] += 1
            load_by_priority[act.priority] += 1
            if act.flood_held:
                flood_held += 1
        elif act.category == "warning":
            warnings += 1

    flood_spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for flood in floods:
        if flood.post not in in_scope:
            continue
        lo = max(flood.start_ts, start_ts)
        hi = end_ts if flood.end_ts is None else min(flood.end_ts, end_ts)
        if lo < hi:
            flood_spans[flood.post].append((lo, hi))

    duration = end_ts - start_ts
    n_posts = len(post_ids)
    load = sum(load_by_alarm.values())

    per_post: list[PostLoad] = []
    peak, peak_post, peak_start = 0, None, None
    for post in post_ids:
        count, window_start = _peak_window(load_by_post.get(post, []), TEN_MIN_MS)
        if window_start is not None and (
            count > peak or (count == peak and peak_start is not None and window_start < peak_start)
        ):
            peak, peak_post, peak_start = count, post, window_start
        per_post.append(
            PostLoad(
                post=post,
                alarms=len(load_by_post.get(post, [])),
                per_hour=len(load_by_post.get(post, [])) * HOUR_MS / duration,
                peak_10min=count,
                flood_fraction=_covered_ms(flood_spans.get(post, [])) / duration,
            )
        )
    flood_fraction = sum(p.flood_fraction for p in per_post) / n_posts

    top = _ranked(load_by_alarm)[:10]
    top10 = tuple(TopAlarm(a, c, c / load) for a, c in top)
    top10_share = sum(c for _, c in top) / load if load else 0.0

    priorities = list(PRIORITY_TARGETS) + sorted(set(load_by_priority) - set(PRIORITY_TARGETS))
    mix = tuple(
        PriorityShare(
            priority=p,
            count=load_by_priority[p],
            fraction=load_by_priority[p] / load if load else 0.0,
            target=PRIORITY_TARGETS.get(p),
        )
        for p in priorities
    )

    chattering: list[ChatteringAlarm] = []
    for alarm_id, times in raises_by_alarm.items():
        if len(times) < chatter_count:
            continue
        count, window_start = _peak_window(times, chatter_window_ms)
        if count >= chatter_count and window_start is not None:
            chattering.append(ChatteringAlarm(alarm_id, count, window_start))
    chattering.sort(key=lambda c: (-c.max_count, c.alarm_id))
    stale.sort(key=lambda s: (-s.active_ms, s.alarm_id, s.post))

    def rate(unit_ms: int) -> float:
        return load * unit_ms / duration

    return KpiReport(
        posts=post_ids,
        start_ts=start_ts,
        end_ts=end_ts,
        activations=total,
        alarms=load,
        flood_held=flood_held,
        warnings=warnings,
        not_annunciated=not_annunciated,
        scope_per_10min=rate(TEN_MIN_MS),
        scope_per_hour=rate(HOUR_MS),
        scope_per_day=rate(DAY_MS),
        per_10min=Metric(rate(TEN_MIN_MS) / n_posts, *RATE_PER_10MIN),
        per_hour=Metric(rate(HOUR_MS) / n_posts, *RATE_PER_HOUR),
        per_day=Metric(rate(DAY_MS) / n_posts, *RATE_PER_DAY),
        peak_10min=Metric(peak, FLOOD_ABOVE, FLOOD_ABOVE),
        peak_post=peak_post,
        peak_window_start_ts=peak_start,
        flood_time=Metric(flood_fraction, FLOOD_TIME_FRACTION, FLOOD_TIME_FRACTION),
        top10=top10,
        top10_share=Metric(top10_share, TOP10_SHARE, TOP10_SHARE),
        priority_mix=mix,
        chattering=tuple(chattering),
        fleeting=tuple(AlarmCount(a, c) for a, c in _ranked(fleeting)),
        stale=tuple(stale),
        stale_count=Metric(len(stale), STALE_COUNT, STALE_COUNT),
        per_post=tuple(per_post),
    )
