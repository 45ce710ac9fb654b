"""Response models of the HTTP API (they are what ``/docs`` shows), and their builders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.plant import (
    Area,
    PlantConfig,
    Priority,
    RiskColour,
    SensorConfig,
    SensorKind,
    SensorPlace,
    Workshop,
)
from store.base import SeriesPoint

__all__ = [
    "AlarmOut",
    "AreaOut",
    "EnterpriseOut",
    "ErrorOut",
    "LimitsOut",
    "OutOfServiceOut",
    "PlantOut",
    "PointOut",
    "PostOut",
    "RationalizationOut",
    "ReadingsOut",
    "SensorDetailOut",
    "SensorOut",
    "ShelveOut",
    "SiteOut",
    "TeamOut",
    "WorkshopOut",
    "plant_model",
    "point_model",
    "sensor_detail_model",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(_Out):
    detail: str = Field(description="What went wrong, naming the thing that did.")


class LimitsOut(_Out):
    """Effective alarm limits in the sensor's unit (config, or the kind's preset)."""

    ll: float | None = Field(None, description="Low-low (second low) limit.")
    l: float | None = Field(None, description="Low (first low) limit.")  # noqa: E741
    h: float | None = Field(None, description="High (first high / first gas level) limit.")
    hh: float | None = Field(None, description="High-high (second high / second gas level).")


class SensorOut(_Out):
    id: str = Field(description="Tag, unique across the plant.", examples=["TF-LEL-001"])
    kind: SensorKind
    gas: str | None = Field(None, description="Gas measured, for toxic sensors.")
    unit: str = Field(examples=["%LEL"])
    range: tuple[float, float] = Field(description="Calibrated range [low, high] in `unit`.")
    limits: LimitsOut
    deadband: float = Field(description="Hysteresis before an alarm clears, in `unit`.")
    on_delay_s: float
    off_delay_s: float
    priority: Priority
    trend_horizon_s: float
    description: str


class SensorDetailOut(SensorOut):
    """A sensor with where it sits and who answers its alarms."""

    site: str
    workshop: str
    area: str
    team: str
    post: str
    gateway: str
    risk: RiskColour = Field(description="Inherent risk colour of the sensor's area.")


class AreaOut(_Out):
    id: str
    name: str
    post: str = Field(description="Post (岗位) that answers this area's alarms.")
    team: str = Field(description="Team (班组) the post belongs to.")
    risk: RiskColour = Field(description="Inherent risk colour (red, orange, yellow, blue).")
    gateway: str
    sensors: list[SensorOut]


class PostOut(_Out):
    id: str
    name: str


class TeamOut(_Out):
    id: str
    name: str
    posts: list[PostOut]


class WorkshopOut(_Out):
    id: str
    name: str
    teams: list[TeamOut]
    areas: list[AreaOut]


class SiteOut(_Out):
    id: str
    name: str
    workshops: list[WorkshopOut]


class EnterpriseOut(_Out):
    id: str
    name: str


class PlantOut(_Out):
    """The plant hierarchy: enterprise → sites → workshops → areas → sensors."""

    enterprise: EnterpriseOut
    sites: list[SiteOut]


class PointOut(_Out):
    """A raw point (``value``, ``quality``) or an aggregate (mean ``value``, ``min``,
    ``max``, ``count`` over the interval starting at ``ts``)."""

    ts: int = Field(description="Milliseconds since the epoch, UTC.")
    value: float | None
    quality: int | None = None
    min: float | None = None
    max: float | None = None
    count: int | None = None


class ReadingsOut(_Out):
    sensor: str
    unit: str
    start: int = Field(description="Start of the window, epoch ms UTC (inclusive).")
    end: int = Field(description="End of the window, epoch ms UTC (exclusive).")
    every_ms: int | None = Field(description="Aggregation interval; null for raw points.")
    limit: int
    order: Literal["desc", "asc"] = Field(
        "desc", description="`desc`: the newest `limit` points, newest first; `asc`: the "
        "oldest `limit` points, oldest first.")
    points: list[PointOut]


class ShelveOut(_Out):
    by: str
    reason: str
    ts: int
    until_ts: int | None = Field(description="Timed shelve: when it ends (epoch ms).")
    oneshot: bool = Field(description="One-shot: ends when the alarm returns to normal.")


class OutOfServiceOut(_Out):
    by: str
    reason: str
    ts: int


class RationalizationOut(_Out):
    priority: Priority
    latched: bool
    realarm_s: float
    max_shelve_s: float
    cause: str
    consequence: str
    corrective_action: str
    max_response_s: float | None
    class_: str = Field(alias="class", serialization_alias="class")


class AlarmOut(_Out):
    """Current state of one alarm point (one condition of one sensor), ISA-18.2."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    alarm_id: str = Field(examples=["TF-LEL-001:hh"])
    sensor: str
    limit: str = Field(
        description="ll, l, h, hh (limits), rate, trend, drift, mspc (warnings), "
        "stuck, range, spike, nodata (sensor faults)."
    )
    category: Literal["alarm", "warning", "fault"] = "alarm"
    state: Literal["normal", "unack", "ack", "rtn_unack", "latched"] = Field(
        description="normal; unack (active, unacknowledged); ack (active, acknowledged); "
        "rtn_unack (returned to normal, unacknowledged); latched (returned to normal, "
        "waiting for a reset)."
    )
    active: bool = Field(description="Whether the process condition is active now.")
    acked: bool
    priority: Priority = Field(description="Effective priority at the latest raise.")
    colour: RiskColour = Field(description="The priority's display colour.")
    eta_s: float | None = Field(
        default=None, description="trend warnings: seconds to the limit when raised"
    )
    contributions: dict[str, float] | None = Field(
        default=None,
        description="mspc warnings: each sensor of the group and its share (0-1) of the "
        "out-of-control statistic when raised; the alarm is on the largest.",
    )
    raised_ts: int | None = Field(description="When it was last raised, epoch ms UTC.")
    raised_value: float | None
    setpoint: float | None
    cleared_ts: int | None
    cleared_value: float | None
    raise_count: int
    annunciated: bool = Field(
        description="Shown to the operator: false while shelved, suppressed, out of "
        "service or held back by a flood of its post."
    )
    shelved: ShelveOut | None
    out_of_service: OutOfServiceOut | None
    suppressed_by: list[str] = Field(description="Suppression rules in force on it.")
    flood_held: bool
    chattering: bool
    stale: bool
    escalation: dict[str, Any] | None = Field(
        None, description="The latest escalation of this unacknowledged activation "
        "(level, to: team|workshop|enterprise, target, ts), or null.")
    site: str
    workshop: str
    area: str
    team: str
    post: str
    kind: str
    unit: str
    rationalization: RationalizationOut


def _sensor_fields(sensor: SensorConfig) -> dict[str, Any]:
    limits = sensor.effective_limits()
    return {
        "id": sensor.id,
        "kind": sensor.kind,
        "gas": sensor.gas,
        "unit": sensor.effective_unit(),
        "range": sensor.range,
        "limits": LimitsOut(ll=limits.ll, l=limits.l, h=limits.h, hh=limits.hh),
        "deadband": sensor.effective_deadband(),
        "on_delay_s": sensor.on_delay_s,
        "off_delay_s": sensor.off_delay_s,
        "priority": sensor.priority,
        "trend_horizon_s": sensor.trend_horizon_s,
        "description": sensor.description,
    }


def _area_model(area: Area, workshop: Workshop) -> AreaOut:
    team_of = {p.id: t.id for t in workshop.teams for p in t.posts}
    return AreaOut(
        id=area.id,
        name=area.name,
        post=area.post,
        team=team_of.get(area.post, ""),
        risk=area.risk,
        gateway=area.gateway or f"gw-{area.id}",
        sensors=[SensorOut(**_sensor_fields(s)) for s in area.sensors],
    )


def plant_model(plant: PlantConfig) -> PlantOut:
    """The whole hierarchy as the API returns it."""
    return PlantOut(
        enterprise=EnterpriseOut(id=plant.enterprise.id, name=plant.enterprise.name),
        sites=[
            SiteOut(
                id=site.id,
                name=site.name,
                workshops=[
                    WorkshopOut(
                        id=ws.id,
                        name=ws.name,
                        teams=[
                            TeamOut(
                                id=t.id,
                                name=t.name,
                                posts=[PostOut(id=p.id, name=p.name) for p in t.posts],
                            )
                            for t in ws.teams
                        ],
                        areas=[_area_model(a, ws) for a in ws.areas],
                    )
                    for ws in site.workshops
                ],
            )
            for site in plant.sites
        ],
    )


def sensor_detail_model(place: SensorPlace, risk: RiskColour) -> SensorDetailOut:
    return SensorDetailOut(
        **_sensor_fields(place.sensor),
        site=place.site,
        workshop=place.workshop,
        area=place.area,
        team=place.team,
        post=place.post,
        gateway=place.gateway,
        risk=risk,
    )


def point_model(point: SeriesPoint) -> PointOut:
    return PointOut(
        ts=point.ts,
        value=point.value,
        quality=point.quality,
        min=point.min,
        max=point.max,
        count=point.count,
    )
