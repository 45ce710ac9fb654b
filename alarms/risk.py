"""Four-colour risk grading of areas (安全风险分级管控, docs/domain.md §5).

Every area has an inherent colour from its hazard assessment (``risk`` in
config). Its live colour is the highest of that inherent colour, any floor set
by an important period (:mod:`alarms.periods`) and the colour of every rule that
matches the area's active alarm points. Colours rank red > orange > yellow >
blue, so a rule or floor can only raise an area, never lower it below what its
hazard assessment says.

Grading is a pure function of its arguments; :class:`RiskTracker` remembers
the last colours so the service can emit an event only when a colour changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.plant import Priority, RiskColour, SensorKind

__all__ = [
    "COLOURS",
    "DEFAULT_RISK_RULES",
    "ActivePoint",
    "AlarmLimit",
    "AreaRisk",
    "Category",
    "RiskRule",
    "RiskTracker",
    "colour_rank",
    "grade_areas",
    "max_colour",
]

AlarmLimit = Literal[
    "ll", "l", "h", "hh", "rate", "trend", "drift", "stuck", "range", "spike", "nodata", "mspc"
]
Category = Literal["alarm", "warning", "fault"]

# Lowest first, so a colour's index is its rank.
COLOURS: tuple[RiskColour, ...] = ("blue", "yellow", "orange", "red")
_RANK: dict[str, int] = {c: i for i, c in enumerate(COLOURS)}


def colour_rank(colour: RiskColour) -> int:
    """0 for blue up to 3 for red, so colours compare as numbers."""
    return _RANK[colour]


def max_colour(first: RiskColour, *others: RiskColour) -> RiskColour:
    """The highest of the given colours."""
    return max((first, *others), key=_RANK.__getitem__)


@dataclass(frozen=True, slots=True)
class ActivePoint:
    """One active alarm point (raised, not yet cleared) and what grading needs of it."""

    alarm_id: str
    sensor: str
    area: str
    kind: SensorKind
    limit: AlarmLimit
    category: Category
    priority: Priority


class RiskRule(BaseModel):
    """Raise an area to ``colour`` while enough of its active points match.

    A point matches when every match field that is given contains the point's
    value; a field left out matches anything. The rule fires when at least
    ``min_count`` distinct *sensors* in the area have a matching point: counting
    sensors, not points, keeps one detector's ``h`` and ``hh`` from confirming
    each other. ``name`` is what operators read in the reasons.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    limits: list[AlarmLimit] | None = None
    kinds: list[SensorKind] | None = None
    categories: list[Category] | None = None
    priorities: list[Priority] | None = None
    colour: RiskColour
    min_count: int = Field(default=1, ge=1)

    @field_validator("limits", "kinds", "categories", "priorities")
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        # An empty list would silently match nothing: almost surely a config slip.
        if value is not None and not value:
            raise ValueError("an empty list matches nothing; leave the field out to match any")
        return value

    def matches(self, point: ActivePoint) -> bool:
        """Whether every given match field contains the point's value."""
        return (
            (self.limits is None or point.limit in self.limits)
            and (self.kinds is None or point.kind in self.kinds)
            and (self.categories is None or point.category in self.categories)
            and (self.priorities is None or point.priority in self.priorities)
        )

    def label(self) -> str:
        """``name``, or a description built from the match fields when unnamed."""
        if self.name:
            return self.name
        parts = [
            f"{key}={'/'.join(values)}"
            for key, values in (
                ("limits", self.limits),
                ("kinds", self.kinds),
                ("categories", self.categories),
                ("priorities", self.priorities),
            )
            if values is not None
        ]
        if self.min_count > 1:
            parts.append(f"min_count={self.min_count}")
        return "rule " + (" ".join(parts) or "matching any point")


_GAS: list[SensorKind] = ["combustible_lel", "toxic_ppm"]

# Defaults, strongest first (order only breaks ties between equal colours in
# the reasons; the colour is the maximum whatever the order).
DEFAULT_RISK_RULES: tuple[RiskRule, ...] = (
    # GB/T 50493 second level: the leak is real and large; docs/domain.md §5 names
    # this as the example that makes an area red until cleared.
    RiskRule(
        name="second-level gas alarm", limits=["hh"], kinds=_GAS, categories=["alarm"],
        colour="red",
    ),
    # Two detectors at first level is a confirmed, spreading release, not one
    # drifting cell: treat it like a second-level alarm.
    RiskRule(
        name="two or more first-level gas alarms", limits=["h"], kinds=_GAS,
        categories=["alarm"], min_count=2, colour="red",
    ),
    RiskRule(
        name="first-level gas alarm", limits=["h"], kinds=_GAS, categories=["alarm"],
        colour="orange",
    ),
    # Oxygen presets have one level each way: 19.5 %VOL (deficiency) and
    # 23.5 %VOL (enrichment). Both mean nobody enters without breathing
    # apparatus or until ventilated, yet neither is immediately lethal (that
    # is below ~16 %VOL), so significant (orange) rather than major (red).
    RiskRule(
        name="oxygen alarm", kinds=["oxygen_pct"], categories=["alarm"], colour="orange"
    ),
    # A second limit (hh/ll) means the first limit's operator action did not
    # hold the process: the margin to a trip or a loss of containment is gone.
    RiskRule(name="hh/ll alarm", limits=["hh", "ll"], categories=["alarm"], colour="orange"),
    # Any other alarm (h, l, rate): a deviation the operator is handling.
    RiskRule(name="process alarm", categories=["alarm"], colour="yellow"),
    # A predicted limit crossing (超前预警) is an early warning: the area gets
    # attention before the alarm, which is the point of warning ahead.
    RiskRule(name="trend warning", limits=["trend"], categories=["warning"], colour="yellow"),
    # A unit out of statistical control (MSPC): its sensors no longer move the way
    # normal operation moves them, although each may still be inside its limits.
    RiskRule(name="unit out of statistical control", limits=["mspc"], categories=["warning"],
             colour="yellow"),
    # No rule for drift: it is as often an ageing cell as a slow leak, so it
    # goes to hazard investigation (docs/domain.md §6), not the risk map; and a
    # "blue" rule could never change anything, blue being the lowest colour.
    # No rule for faults (stuck, range, spike, nodata): a blind sensor says
    # nothing about gas or pressure in the area; it is a hazard (隐患) to
    # rectify, not a risk level. Raising colours on faults would also paint a
    # whole area orange whenever its gateway drops, and the map would stop
    # meaning "process condition". A site that wants blind areas shown can add
    # e.g. RiskRule(categories=["fault"], kinds=[...], min_count=3, colour="yellow").
)


@dataclass(frozen=True, slots=True)
class AreaRisk:
    """An area's live colour, its inherent colour and why, strongest reason first."""

    area: str
    colour: RiskColour
    inherent: RiskColour
    reasons: list[str] = field(default_factory=list)

    @property
    def raised(self) -> bool:
        """Whether live conditions put the area above its inherent colour."""
        return self.colour != self.inherent

    def to_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "colour": self.colour,
            "inherent": self.inherent,
            "reasons": list(self.reasons),
        }


def _grade_one(
    area: str,
    inherent: RiskColour,
    points: list[ActivePoint],
    rules: Sequence[RiskRule],
    floor: RiskColour | None,
) -> AreaRisk:
    # Each point is explained once, by the strongest rule it helped fire, so a
    # red area's reasons are not padded with "… → yellow" for the same alarm.
    fired: list[tuple[int, RiskRule, list[ActivePoint]]] = []
    for index, rule in enumerate(rules):
        matched = [p for p in points if rule.matches(p)]
        if matched and len({p.sensor for p in matched}) >= rule.min_count:
            fired.append((index, rule, matched))
    best: dict[str, tuple[int, int]] = {}  # alarm_id -> (-rank, rule index)
    for index, rule, matched in fired:
        for p in matched:
            key = (-_RANK[rule.colour], index)
            if p.alarm_id not in best or key < best[p.alarm_id]:
                best[p.alarm_id] = key

    colour = inherent
    ranked: list[tuple[int, int, str]] = []  # (-rank, order, text)
    for index, rule, matched in fired:
        colour = max_colour(colour, rule.colour)
        own = [p.alarm_id for p in matched if best[p.alarm_id][1] == index]
        if own:
            text = f"{', '.join(own)} active: {rule.label()} → {rule.colour}"
            ranked.append((-_RANK[rule.colour], index, text))
    if floor is not None:
        colour = max_colour(colour, floor)
        ranked.append((-_RANK[floor], len(rules), f"important-period risk floor {floor}"))
    ranked.append((-_RANK[inherent], len(rules) + 1, f"inherent risk {inherent}"))
    ranked.sort()
    return AreaRisk(area=area, colour=colour, inherent=inherent, reasons=[t for *_, t in ranked])


def grade_areas(
    inherent: Mapping[str, RiskColour],
    active: Iterable[ActivePoint],
    rules: Sequence[RiskRule] = DEFAULT_RISK_RULES,
    floors: Mapping[str, RiskColour] | None = None,
) -> dict[str, AreaRisk]:
    """Live colour of every area: max of inherent colour, floor and matching rules.

    Areas come in ``inherent``'s order, then any area that has active points
    but no inherent colour (graded from blue, sorted by id): an active alarm
    must never drop off the map because config changed under it. Floors for
    areas not graded are ignored. Within an area, points are taken in
    ``alarm_id`` order, so the result does not depend on ``active``'s order.
    """
    by_area: dict[str, list[ActivePoint]] = {}
    for point in active:
        by_area.setdefault(point.area, []).append(point)
    for points in by_area.values():
        points.sort(key=lambda p: p.alarm_id)
    floors = floors or {}
    order = list(inherent) + sorted(a for a in by_area if a not in inherent)
    return {
        area: _grade_one(
            area, inherent.get(area, "blue"), by_area.get(area, []), rules, floors.get(area)
        )
        for area in order
    }


class RiskTracker:
    """Remembers each area's last colour and reports the areas whose colour changed.

    An area seen for the first time is compared with its inherent colour: a
    fresh start with a quiet plant reports nothing, one that starts with an
    area already raised reports that area. Reasons changing while the colour
    stays put is not a change: the map only moves on colours. ``colours()`` and
    the ``last`` argument round-trip the state across a restart.
    """

    def __init__(self, last: Mapping[str, RiskColour] | None = None) -> None:
        self._last: dict[str, RiskColour] = dict(last or {})

    def colours(self) -> dict[str, RiskColour]:
        """A copy of the last colour of every area seen."""
        return dict(self._last)

    def update(self, grades: Mapping[str, AreaRisk]) -> list[AreaRisk]:
        """Record ``grades``; return those whose colour differs from last time, in order.

        Areas missing from ``grades`` are forgotten (they left the config).
        """
        changed = [
            g for area, g in grades.items() if g.colour != self._last.get(area, g.inherent)
        ]
        self._last = {area: g.colour for area, g in grades.items()}
        return changed
