"""The alarm philosophy, loaded from ``config/alarms.yaml``.

Where ``config/plant.yaml`` says what the plant is, this file says how its
alarms are managed (EEMUA 191 calls it the alarm philosophy): rationalization
of alarm points (priority, latching, re-alarm, shelve limit, cause,
consequence, corrective action, time to respond), suppression-by-design rules,
flood and nuisance thresholds, risk-colour rules, important periods, hazard
rules and the fire-control destination. Every section is optional; the
defaults are the EEMUA 191 / ISA-18.2 numbers in docs/domain.md §7.

Validated at load against the plant: a rule naming a sensor or area the plant
does not have fails with the file, the key path and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alarms.catalogue import AlarmCatalogue, Rationalization
from alarms.escalation import LEVELS, EscalationPolicy, Level
from alarms.floods import FloodPolicy
from alarms.hazards import HazardJournal, HazardRules
from alarms.journal import Journal
from alarms.lifecycle import AlarmManager, AlarmPolicy
from alarms.periods import ImportantPeriod, period_problems
from alarms.risk import DEFAULT_RISK_RULES, RiskRule
from alarms.suppression import SuppressionRule
from alarms.system import AlarmSystem, period_priority
from detectors.registry import CATEGORY_OF
from model.plant import ID_PATTERN, ConfigError, PlantConfig, key_path, read_yaml

__all__ = ["AlarmConfig", "load_alarm_config", "parse_alarm_config"]

Priority = Literal["highest", "high", "medium", "low"]


class _Model(BaseModel):
    # No inf or nan anywhere: an infinite response time or re-alarm interval
    # would overflow at the first tick and stop the service in a crash loop.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)


class RationalizationEntry(_Model):
    """Fields for the alarm points whose id matches ``match`` (a glob: ``TF-*-LEL-*:hh``)."""

    match: str = Field(min_length=1)
    priority: Priority | None = None
    latched: bool | None = None
    realarm_s: float | None = Field(default=None, ge=0)
    max_shelve_min: float | None = Field(default=None, gt=0)
    cause: str | None = None
    consequence: str | None = None
    corrective_action: str | None = None
    max_response_s: float | None = Field(default=None, gt=0, le=7 * 86_400)
    alarm_class: str | None = Field(default=None, alias="class")

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("priority", "latched", "realarm_s", "cause", "consequence",
                     "corrective_action", "max_response_s", "alarm_class"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.max_shelve_min is not None:
            out["max_shelve_s"] = self.max_shelve_min * 60
        return out


class Defaults(_Model):
    max_shelve_min: float = Field(default=480.0, gt=0)  # one shift
    realarm_s: dict[Priority, float] = Field(
        default_factory=lambda: {"highest": 300.0, "high": 600.0})  # type: ignore[arg-type]
    annunciate_in_flood: list[Priority] = Field(
        default_factory=lambda: ["high", "highest"])  # type: ignore[arg-type]


class Floods(_Model):
    start_above: int = Field(default=10, ge=1)
    end_below: int = Field(default=5, ge=1)
    window_min: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Floods:
        if self.end_below > self.start_above:
            raise ValueError(f"end_below ({self.end_below}) must not exceed start_above "
                             f"({self.start_above}), or a flood could never end")
        return self


class Nuisance(_Model):
    chatter_count: int = Field(default=3, ge=2)
    chatter_window_s: float = Field(default=60.0, gt=0)
    fleeting_s: float = Field(default=5.0, gt=0)
    stale_h: float = Field(default=24.0, gt=0)


class Hazards(_Model):
    repeated_alarm_count: int = Field(default=5, ge=2)
    repeated_alarm_window_h: float = Field(default=24.0, gt=0)


class When(_Model):
    sensor: str
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _one(self) -> When:
        if self.below is None and self.above is None:
            raise ValueError("give 'below' or 'above' (the state sensor's value that puts "
                             "the rule in force)")
        return self


class Suppression(_Model):
    id: str = Field(pattern=ID_PATTERN)
    description: str = ""
    when: When
    areas: list[str] = []
    sensors: list[str] = []
    limits: list[str] = []


class Escalation(_Model):
    """Who hears of an alarm nobody acknowledged within its ``max_response_s``."""

    enabled: bool = True
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS), min_length=1)
    repeat_min: float = Field(default=5.0, ge=0.1, le=1440)

    @field_validator("levels")
    @classmethod
    def _upwards(cls, levels: list[Level]) -> list[Level]:
        ranks = [LEVELS.index(level) for level in levels]
        if ranks != sorted(set(ranks)):
            raise ValueError(f"levels must go up the hierarchy without repeats, in the order "
                             f"{', '.join(LEVELS)}; got {', '.join(levels)}")
        return levels


class Commissioning(_Model):
    """Areas and sensors being commissioned: their alarms and faults are recorded and
    shown as usual, but open no automatic hazard ticket (a stray test reading or a
    detector not yet wired is not a hazard)."""

    areas: list[str] = []
    sensors: list[str] = []


class FireControl(_Model):
    """Where second-level combustible gas alarms also go (GB/T 50493 §5.1.2)."""

    # Under plantwatch/: the broker's ACL lets plantwatch publish there and
    # nowhere else (deploy/mosquitto/acl.example); MQTT 3.1.1 gives no sign when a
    # publish is denied, so a topic elsewhere would lose every fire notice.
    mqtt_topic: str = Field(default="plantwatch/fire-control/{site}",
                            pattern=r"^plantwatch/[^#+]*$")
    kinds: list[str] = Field(default_factory=lambda: ["combustible_lel"])
    limits: list[str] = Field(default_factory=lambda: ["hh"])


class AlarmConfig(_Model):
    defaults: Defaults = Field(default_factory=Defaults)
    rationalization: list[RationalizationEntry] = []
    suppression: list[Suppression] = []
    floods: Floods = Field(default_factory=Floods)
    nuisance: Nuisance = Field(default_factory=Nuisance)
    hazards: Hazards = Field(default_factory=Hazards)
    risk_rules: list[RiskRule] | None = None
    periods: list[ImportantPeriod] = []
    fire_control: FireControl = Field(default_factory=FireControl)
    escalation: Escalation = Field(default_factory=Escalation)
    commissioning: Commissioning = Field(default_factory=Commissioning)

    # ------------------------------------------------------------ built objects
    def policy(self) -> AlarmPolicy:
        return AlarmPolicy(
            flood=FloodPolicy(start_above=self.floods.start_above,
                              end_below=self.floods.end_below,
                              window_ms=int(self.floods.window_min * 60_000)),
            chatter_count=self.nuisance.chatter_count,
            chatter_window_ms=int(self.nuisance.chatter_window_s * 1000),
            stale_ms=int(self.nuisance.stale_h * 3_600_000),
            fleeting_ms=int(self.nuisance.fleeting_s * 1000),
            annunciate_in_flood=tuple(self.defaults.annunciate_in_flood),
        )

    def manager(self, plant: PlantConfig) -> AlarmManager:
        """The alarm lifecycle this philosophy describes, for ``plant``."""
        return AlarmManager(self.catalogue(plant), self.policy(), self.suppression_rules(),
                            priority_at=period_priority(self.periods))

    def system(self, plant: PlantConfig, journal: Journal,
               hazard_journal: HazardJournal | None = None) -> AlarmSystem:
        """The whole alarm system this config describes: the service and every offline
        run build it here, so a backtest judges alarms exactly as the plant does."""
        return AlarmSystem(
            self.manager(plant), journal,
            hazard_journal=hazard_journal,
            hazard_rules=self.hazard_rules(),
            inherent_risk={area.id: area.risk for _, area in plant.areas()},
            risk_rules=self.rules_for_risk(),
            periods=self.periods,
            escalation=self.escalation_policy(plant),
            commissioning=(frozenset(self.commissioning.areas),
                           frozenset(self.commissioning.sensors)),
        )

    def escalation_policy(self, plant: PlantConfig) -> EscalationPolicy | None:
        e = self.escalation
        if not e.enabled:
            return None
        return EscalationPolicy(tuple(e.levels), int(e.repeat_min * 60_000),
                                enterprise=plant.enterprise.id,
                                quiet_areas=frozenset(self.commissioning.areas),
                                quiet_sensors=frozenset(self.commissioning.sensors))

    def catalogue(self, plant: PlantConfig) -> AlarmCatalogue:
        return AlarmCatalogue(
            plant,
            [Rationalization(e.match, e.fields()) for e in self.rationalization],
            realarm_s={str(k): v for k, v in self.defaults.realarm_s.items()},
            max_shelve_s=self.defaults.max_shelve_min * 60,
        )

    def suppression_rules(self) -> list[SuppressionRule]:
        return [
            SuppressionRule(id=s.id, when_sensor=s.when.sensor, below=s.when.below,
                            above=s.when.above, areas=tuple(s.areas),
                            sensors=tuple(s.sensors), limits=tuple(s.limits),
                            description=s.description)
            for s in self.suppression
        ]

    def rules_for_risk(self) -> list[RiskRule]:
        return list(DEFAULT_RISK_RULES if self.risk_rules is None else self.risk_rules)

    def hazard_rules(self) -> HazardRules:
        return HazardRules(
            repeated_alarm_count=self.hazards.repeated_alarm_count,
            repeated_alarm_window_ms=int(self.hazards.repeated_alarm_window_h * 3_600_000),
        )

    def problems(self, plant: PlantConfig) -> list[str]:
        """References to sensors, areas and conditions the plant does not have."""
        sensors = {p.sensor.id for p in plant.places()}
        areas = {area.id for _, area in plant.areas()}
        out: list[str] = []
        for i, rule in enumerate(self.suppression):
            where = f"suppression[{i}]"
            if rule.when.sensor not in sensors:
                out.append(f"{where}.when.sensor: {rule.when.sensor!r} is not a sensor of "
                           "the plant")
            for j, s in enumerate(rule.sensors):
                if s not in sensors:
                    out.append(f"{where}.sensors[{j}]: {s!r} is not a sensor of the plant")
            for j, a in enumerate(rule.areas):
                if a not in areas:
                    out.append(f"{where}.areas[{j}]: {a!r} is not an area of the plant "
                               f"(known: {', '.join(sorted(areas))})")
            for j, c in enumerate(rule.limits):
                if c not in CATEGORY_OF:
                    out.append(f"{where}.limits[{j}]: {c!r} is not a condition (known: "
                               f"{', '.join(CATEGORY_OF)})")
        ids = [r.id for r in self.suppression]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(f"suppression: rule id {dup!r} appears more than once")
        out += period_problems(self.periods, areas)
        for j, a in enumerate(self.commissioning.areas):
            if a not in areas:
                out.append(f"commissioning.areas[{j}]: {a!r} is not an area of the plant "
                           f"(known: {', '.join(sorted(areas))})")
        for j, s in enumerate(self.commissioning.sensors):
            if s not in sensors:
                out.append(f"commissioning.sensors[{j}]: {s!r} is not a sensor of the plant")
        for i, entry in enumerate(self.rationalization):
            _, sep, _ = entry.match.rpartition(":")
            if not sep:
                out.append(f"rationalization[{i}].match: {entry.match!r} must look like "
                           "'SENSOR:CONDITION' (globs allowed, e.g. 'TF-*-LEL-*:hh')")
        return out


def parse_alarm_config(data: Any, plant: PlantConfig,
                       source: str | Path = "<alarm config>") -> AlarmConfig:
    """Validate parsed YAML against the schema and the plant; errors name ``source``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of alarm-philosophy sections"])
    try:
        config = AlarmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [
            f"{key_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]) from exc
    problems = config.problems(plant)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_alarm_config(path: str | Path | None, plant: PlantConfig) -> AlarmConfig:
    """Load ``config/alarms.yaml``; a missing path (None) gives the defaults."""
    if path is None:
        return AlarmConfig()
    return parse_alarm_config(read_yaml(path), plant, path)
