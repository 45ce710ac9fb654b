"""Important periods (重要时段): times when areas need more care than usual.

Holidays (thin staffing), start-ups and shutdowns (the process away from its
steady state), hot work (an ignition source on purpose): while such a period is
active, the areas it covers can have their alarm priorities raised, a floor put
under their risk colour (:mod:`alarms.risk`), and their limits tightened so
alarms come earlier. Periods are validated once from config; everything else
here is a pure function of the periods and a time in ms since the epoch (UTC).

A period is either ``start``/``end`` (timezone-aware; start inclusive, end
exclusive) or whole ``dates`` in ``timezone``. Consecutive dates merge into one
interval, so midnight between two holiday days is not a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from alarms.risk import colour_rank
from model.plant import ID_PATTERN, Limits, Priority, RiskColour

__all__ = [
    "PRIORITIES",
    "ImportantPeriod",
    "PeriodKind",
    "active_periods",
    "applies_to",
    "limit_factor",
    "next_change_ms",
    "period_problems",
    "raised_priority",
    "risk_floors",
    "tightened_limits",
]

PeriodKind = Literal["holiday", "startup", "shutdown", "hot_work", "other"]
# Lowest first, so raising a priority is adding to its index.
PRIORITIES: tuple[Priority, ...] = ("low", "medium", "high", "highest")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _to_ms(moment: datetime) -> int:
    # Exact integer arithmetic; .timestamp() * 1000 can be off by one ms.
    return (moment - _EPOCH) // _MS


class ImportantPeriod(BaseModel):
    """One important period from config; ``areas`` empty means the whole plant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    kind: PeriodKind = "other"
    areas: list[str] = []
    start: datetime | None = None
    end: datetime | None = None
    dates: list[date] | None = None
    timezone: str = "Asia/Shanghai"
    raise_priority: int = Field(default=0, ge=0, le=3)
    risk_floor: RiskColour | None = None
    tighten_limits_pct: float = Field(default=0.0, ge=0, le=50)

    # Merged [start_ms, end_ms) intervals, computed once at validation.
    _intervals: tuple[tuple[int, int], ...] = PrivateAttr(default=())

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Guessing the zone is how a holiday starts 8 hours late: the server
        # may run in UTC, where a naive 08:00 is 16:00 in Shanghai.
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                f"{value.isoformat()} has no timezone; add an offset such as +08:00 "
                f"(e.g. {value.isoformat()}+08:00)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as 'Asia/Shanghai'"
            ) from exc
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> ImportantPeriod:
        has_span = self.start is not None or self.end is not None
        if has_span and self.dates is not None:
            raise ValueError("give either start and end, or dates, not both")
        if not has_span and self.dates is None:
            raise ValueError("give either start and end, or dates")
        if self.dates is not None and not self.dates:
            raise ValueError("dates is empty; list at least one date")
        if has_span:
            if self.start is None or self.end is None:
                missing = "end" if self.end is None else "start"
                raise ValueError(f"{missing} is missing; a start/end period needs both")
            if not self.end > self.start:
                raise ValueError(
                    f"end {self.end.isoformat()} must be after start {self.start.isoformat()}"
                )
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._intervals = self._merged_intervals()

    def _merged_intervals(self) -> tuple[tuple[int, int], ...]:
        if self.start is not None and self.end is not None:
            return ((_to_ms(self.start), _to_ms(self.end)),)
        zone = ZoneInfo(self.timezone)
        raw = sorted(
            # Midnight to next midnight in the zone: 23 or 25 hours on DST days.
            (
                _to_ms(datetime.combine(d, time(), tzinfo=zone)),
                _to_ms(datetime.combine(d + timedelta(days=1), time(), tzinfo=zone)),
            )
            for d in set(self.dates or ())
        )
        merged: list[tuple[int, int]] = []
        for lo, hi in raw:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return tuple(merged)

    def intervals_ms(self) -> tuple[tuple[int, int], ...]:
        """The period as merged ``[start_ms, end_ms)`` intervals, in time order."""
        return self._intervals

    def is_active(self, ts_ms: int) -> bool:
        """Whether ``ts_ms`` falls in the period: start inclusive, end exclusive."""
        return any(lo <= ts_ms < hi for lo, hi in self._intervals)


def active_periods(periods: Iterable[ImportantPeriod], ts_ms: int) -> list[ImportantPeriod]:
    """The periods active at ``ts_ms``, in the given order."""
    return [p for p in periods if p.is_active(ts_ms)]


def applies_to(period: ImportantPeriod, area: str) -> bool:
    """Whether ``period`` covers ``area`` (an empty area list covers the whole plant)."""
    return not period.areas or area in period.areas


def raised_priority(
    priority: Priority, area: str, active: Iterable[ImportantPeriod]
) -> Priority:
    """``priority`` raised by the largest step of the active periods covering ``area``.

    Overlapping periods take the maximum, not the sum: a holiday with hot work
    is one reason for care, and summing would push every alarm to ``highest``
    and wreck the priority mix (docs/domain.md §7: under 1 % highest). Capped at
    ``highest``.
    """
    steps = max((p.raise_priority for p in active if applies_to(p, area)), default=0)
    return PRIORITIES[min(PRIORITIES.index(priority) + steps, len(PRIORITIES) - 1)]


def risk_floors(
    active: Iterable[ImportantPeriod], areas: Iterable[str]
) -> dict[str, RiskColour]:
    """The highest risk floor of the active periods for each area that has one."""
    with_floor = [p for p in active if p.risk_floor is not None]
    floors: dict[str, RiskColour] = {}
    for area in areas:
        for p in with_floor:
            floor = p.risk_floor
            if floor is None or not applies_to(p, area):
                continue
            if area not in floors or colour_rank(floor) > colour_rank(floors[area]):
                floors[area] = floor
    return floors


def limit_factor(active: Iterable[ImportantPeriod], area: str) -> float:
    """How far limits stay from the normal point: ``1 - pct/100`` for the largest
    ``tighten_limits_pct`` of the active periods covering ``area``; 1.0 if none.

    See :func:`tightened_limits` for how the factor moves limits.
    """
    pct = max((p.tighten_limits_pct for p in active if applies_to(p, area)), default=0.0)
    return 1.0 - pct / 100.0


def _normal_point(limits: Limits, sensor_range: tuple[float, float]) -> float:
    lows = [v for n, v in limits.items() if n in ("ll", "l")]
    highs = [v for n, v in limits.items() if n in ("h", "hh")]
    if lows and highs:
        return (max(lows) + min(highs)) / 2.0
    # Gas reads the bottom of its range in clean air; a value guarded only
    # from below normally sits at the top.
    return sensor_range[0] if highs else sensor_range[1]


def tightened_limits(
    limits: Limits, sensor_range: tuple[float, float], factor: float
) -> Limits:
    """Limits moved toward the sensor's normal point, keeping ``factor`` of the distance.

    The normal point is the middle of the band between the innermost low and
    high limits; the bottom of the range if only high limits exist (gas), the
    top if only low ones. So a combustible gas h of 25 %LEL with factor 0.8
    becomes 20 %LEL (plain ``h × factor``), oxygen 19.5/23.5 %VOL closes in on
    21.5 from both sides, and unlike scaling by ``1 ± pct`` this works for
    negative pressures and °C, keeps ``ll < l < h < hh`` and stays in range.
    """
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor {factor} must be in (0, 1]")
    if factor == 1.0:
        return limits
    ref = _normal_point(limits, sensor_range)
    return Limits(**{n: ref + (v - ref) * factor for n, v in limits.items()})


def next_change_ms(periods: Iterable[ImportantPeriod], ts_ms: int) -> int | None:
    """The first start or end of any period strictly after ``ts_ms``; None if none.

    A scheduler sleeps until then and re-evaluates ``active_periods``.
    """
    edges = (
        edge for p in periods for interval in p.intervals_ms() for edge in interval
        if edge > ts_ms
    )
    return min(edges, default=None)


def period_problems(periods: Sequence[ImportantPeriod], areas: Iterable[str]) -> list[str]:
    """What is wrong with a list of periods against the plant's areas, as messages
    naming ``periods[i]``: duplicate ids and unknown area ids. Empty when fine."""
    known = set(areas)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(periods):
        if p.id in seen:
            problems.append(f"periods[{i}].id: {p.id!r} is already used by periods[{seen[p.id]}]")
        seen.setdefault(p.id, i)
        for j, area in enumerate(p.areas):
            if area not in known:
                problems.append(
                    f"periods[{i}].areas[{j}]: {area!r} is not an area of the plant "
                    f"(known: {', '.join(sorted(known)) or 'none'})"
                )
    return problems
