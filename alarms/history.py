"""What the alarm history keeps for KPIs and nuisance analysis.

The lifecycle manager (:mod:`alarms.lifecycle`) appends one :class:`Activation`
per raise of an alarm point and closes it on clear, and one
:class:`FloodInterval` per flood of a post. KPI reports (:mod:`alarms.kpi`)
and hazard rules read these; they never see the journal itself.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Activation", "FloodInterval"]


@dataclass(slots=True)
class Activation:
    """One activation (raise) of one alarm point, closed when it clears.

    ``annunciable`` is False when the point was shelved, suppressed by design
    or out of service at the raise: recorded, never shown, and not counted in
    alarm-rate KPIs. ``flood_held`` is True when a flood of its post held the
    annunciation back (it was shown in the flood summary instead); such
    activations still count in KPIs, since they are load the post carried.
    Times are ms since the epoch, UTC.
    """

    alarm_id: str
    sensor: str
    limit: str
    category: str  # "alarm" | "warning" | "fault"
    priority: str  # "highest" | "high" | "medium" | "low"
    site: str
    workshop: str
    team: str
    post: str
    area: str
    raised_ts: int
    cleared_ts: int | None = None
    annunciable: bool = True
    flood_held: bool = False


@dataclass(slots=True)
class FloodInterval:
    """A flood of one post: from the start to the end (None while it lasts)."""

    post: str
    start_ts: int
    end_ts: int | None = None
    held_back: int = 0  # activations recorded but not annunciated during it
