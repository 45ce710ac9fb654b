"""Typed plant configuration, loaded from ``config/plant.yaml``.

The plant is a hierarchy enterprise → site → workshop → area. Each workshop
declares its teams (班组) and their posts (岗位); each area names the post that
answers its alarms and lists its sensors. Everything is validated once, here,
at load time: a bad file fails with a :class:`ConfigError` naming the file, the
key path and the problem, so the hot path can trust what it is given.

Gas limits follow GB/T 50493-2019 §5.5.2: a ``combustible_lel`` sensor gets
25/50 %LEL unless config says lower; a ``toxic_ppm`` sensor with a known
``gas`` gets 100 %/200 % of its occupational exposure limit (GBZ 2.1),
converted to ppm at 20 °C; an ``oxygen_pct`` sensor gets 19.5/23.5 %VOL.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "OEL_MG_M3",
    "Area",
    "ConfigError",
    "Enterprise",
    "Limits",
    "PlantConfig",
    "Post",
    "SensorConfig",
    "SensorKind",
    "SensorPlace",
    "Site",
    "Team",
    "Workshop",
    "key_path",
    "load_plant",
    "read_yaml",
]

SensorKind = Literal[
    "combustible_lel",
    "toxic_ppm",
    "oxygen_pct",
    "pressure_kpa",
    "temperature_c",
    "level_pct",
    "flow_m3h",
]
RiskColour = Literal["red", "orange", "yellow", "blue"]
Priority = Literal["highest", "high", "medium", "low"]

# Occupational exposure limits in mg/m³ (GBZ 2.1: MAC for H2S and Cl2,
# PC-TWA for CO and NH3) and molar masses in g/mol, for the toxic presets.
OEL_MG_M3: dict[str, tuple[float, float]] = {
    "H2S": (10.0, 34.08),
    "CO": (20.0, 28.01),
    "Cl2": (1.0, 70.90),
    "NH3": (20.0, 17.03),
}
_MOLAR_VOLUME_L_20C = 24.04

_DEFAULT_UNIT: dict[str, str] = {
    "combustible_lel": "%LEL",
    "toxic_ppm": "ppm",
    "oxygen_pct": "%VOL",
    "pressure_kpa": "kPa",
    "temperature_c": "°C",
    "level_pct": "%",
    "flow_m3h": "m³/h",
}
# Deadband as a fraction of the span where config gives none. Gas gets a fast,
# tight default (1 % of span, docs/domain.md §7); process values the ISA-18.2
# starting points (pressure 2 %, temperature 1 %, level and flow 5 %).
_DEFAULT_DEADBAND_FRACTION: dict[str, float] = {
    "combustible_lel": 0.01,
    "toxic_ppm": 0.01,
    "oxygen_pct": 0.01,
    "pressure_kpa": 0.02,
    "temperature_c": 0.01,
    "level_pct": 0.05,
    "flow_m3h": 0.05,
}


def toxic_preset_ppm(gas: str) -> tuple[float, float]:
    """First and second toxic alarm levels in ppm: 100 % and 200 % of the OEL."""
    oel_mg, molar_mass = OEL_MG_M3[gas]
    oel_ppm = oel_mg * _MOLAR_VOLUME_L_20C / molar_mass
    return round(oel_ppm, 1), round(2 * oel_ppm, 1)


class ConfigError(ValueError):
    """A configuration file is invalid; the message names file, key path and problem."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    """Alarm limits in the sensor's unit. ``h``/``hh`` are the first/second high
    levels (for gas: first and second level), ``l``/``ll`` the low ones."""

    ll: float | None = None
    l: float | None = None  # noqa: E741 - ISA-18.2's own name for the low limit
    h: float | None = None
    hh: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        chain = [(n, getattr(self, n)) for n in ("ll", "l", "h", "hh")]
        present = [(n, v) for n, v in chain if v is not None]
        for (n1, v1), (n2, v2) in itertools.pairwise(present):
            if not v1 < v2:
                raise ValueError(f"limit {n1}={v1} must be below {n2}={v2}")
        for n, v in present:
            if not math.isfinite(v):
                raise ValueError(f"limit {n}={v} is not a finite number")
        return self

    def items(self) -> Iterator[tuple[str, float]]:
        for name in ("ll", "l", "h", "hh"):
            value = getattr(self, name)
            if value is not None:
                yield name, value


# Ids become MQTT topic levels and InfluxDB tags: no '/', '+', '#', spaces.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class SensorConfig(_Model):
    id: str = Field(pattern=ID_PATTERN)
    kind: SensorKind
    gas: str | None = None
    unit: str | None = None
    range: tuple[float, float]
    limits: Limits | None = None
    deadband: float | None = Field(default=None, ge=0)
    on_delay_s: float = Field(default=0.0, ge=0)
    off_delay_s: float = Field(default=0.0, ge=0)
    priority: Priority = "medium"
    trend_horizon_s: float = Field(default=300.0, gt=0)
    max_rate_per_min: float | None = Field(default=None, gt=0)
    max_gap_s: float = Field(default=120.0, gt=0)
    stuck_after_s: float | None = Field(default=None, gt=0)
    drift_detection: bool | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> SensorConfig:
        lo, hi = self.range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range {list(self.range)} must be two finite numbers, low < high")
        has_explicit = self.limits is not None and any(True for _ in self.limits.items())
        if self.kind == "toxic_ppm" and not has_explicit:
            if self.gas is None:
                raise ValueError(
                    "a toxic_ppm sensor needs 'gas' (one of "
                    f"{', '.join(OEL_MG_M3)}) for preset limits, or explicit 'limits'"
                )
            if self.gas not in OEL_MG_M3:
                raise ValueError(
                    f"gas {self.gas!r} has no OEL preset (known: {', '.join(OEL_MG_M3)}); "
                    "give explicit 'limits'"
                )
        if self.kind in ("pressure_kpa", "temperature_c", "level_pct", "flow_m3h") and (
            not has_explicit
        ):
            raise ValueError(f"a {self.kind} sensor needs explicit 'limits' (no preset exists)")
        limits = self.effective_limits()
        caps = self._gas_preset()
        if self.kind in ("combustible_lel", "toxic_ppm"):
            for name, cap in caps.items():
                value = getattr(limits, name)
                if value is not None and value > cap:
                    raise ValueError(
                        f"limits.{name}: {value} {self.effective_unit()} is above the "
                        f"GB/T 50493 maximum of {cap} {self.effective_unit()}; "
                        f"set it to {cap} or lower"
                    )
        for name, value in limits.items():
            if not lo <= value <= hi:
                raise ValueError(
                    f"limits.{name}: {value} is outside the sensor range {lo}–{hi} "
                    f"{self.effective_unit()}"
                )
        if self.deadband is not None and self.deadband >= hi - lo:
            raise ValueError(f"deadband {self.deadband} must be smaller than the span {hi - lo}")
        return self

    def effective_unit(self) -> str:
        return self.unit or _DEFAULT_UNIT[self.kind]

    def _gas_preset(self) -> dict[str, float]:
        if self.kind == "combustible_lel":
            return {"h": 25.0, "hh": 50.0}
        if self.kind == "toxic_ppm" and self.gas in OEL_MG_M3:
            h, hh = toxic_preset_ppm(self.gas)
            return {"h": h, "hh": hh}
        if self.kind == "oxygen_pct":
            return {"l": 19.5, "h": 23.5}
        return {}

    def effective_limits(self) -> Limits:
        """Limits from config; for gas kinds the preset fills each limit config leaves out
        (so a gas detector always keeps both alarm levels GB/T 50493 asks for)."""
        merged = self._gas_preset()
        if self.limits is not None:
            merged.update(dict(self.limits.items()))
        return Limits(**merged)

    def effective_stuck_after_s(self) -> float | None:
        """How long an unchanged value means a stuck sensor; None: not judged.

        Process transmitters (pressure, temperature, level, flow) always show
        some noise, so a flat line means a frozen transmitter; gas detectors in
        clean air legitimately read a steady 0, so they are only judged when
        config says so.
        """
        if self.stuck_after_s is not None:
            return self.stuck_after_s
        if self.kind in ("pressure_kpa", "temperature_c", "level_pct", "flow_m3h"):
            return 900.0
        return None

    def effective_drift_detection(self) -> bool:
        """Whether drift warnings are raised; by default for gas detectors only.

        Gas detectors drift (poisoned or ageing cells) and slow leaks show as
        drift; process temperatures and pressures swing with the day and the
        load, which a drift detector on a one-hour baseline rightly sees as
        drift and an operator does not want to hear about.
        """
        if self.drift_detection is not None:
            return self.drift_detection
        return self.kind in ("combustible_lel", "toxic_ppm", "oxygen_pct")

    def effective_deadband(self) -> float:
        if self.deadband is not None:
            return self.deadband
        lo, hi = self.range
        return (hi - lo) * _DEFAULT_DEADBAND_FRACTION[self.kind]


class Post(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""


class Team(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    posts: list[Post]


class Area(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    post: str
    gateway: str | None = Field(default=None, pattern=ID_PATTERN)
    risk: RiskColour = "blue"
    sensors: list[SensorConfig] = []


class Workshop(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    teams: list[Team]
    areas: list[Area]

    @model_validator(mode="after")
    def _posts_exist(self) -> Workshop:
        all_posts = [p.id for t in self.teams for p in t.posts]
        posts = set(all_posts)
        if len(posts) != len(all_posts):
            twice = sorted({p for p in all_posts if all_posts.count(p) > 1})
            raise ValueError(f"post ids {twice} appear in more than one team; "
                             "a post answers to one team")
        for i, area in enumerate(self.areas):
            if area.post not in posts:
                raise ValueError(
                    f"areas[{i}].post: {area.post!r} is not a post of this workshop's teams "
                    f"(known: {', '.join(sorted(posts)) or 'none'})"
                )
        return self


class Site(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
    name: str = ""
    workshops: list[Workshop]


class Enterprise(_Model):
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class SensorPlace:
    """A sensor with where it sits in the plant and who answers its alarms."""

    index: int
    sensor: SensorConfig
    site: str
    workshop: str
    area: str
    team: str
    post: str
    gateway: str


class PlantConfig(_Model):
    enterprise: Enterprise
    sites: list[Site]

    @model_validator(mode="after")
    def _unique_ids(self) -> PlantConfig:
        for i, site in enumerate(self.sites):
            areas = [a.id for ws in site.workshops for a in ws.areas]
            twice = sorted({a for a in areas if areas.count(a) > 1})
            if twice:
                raise ValueError(
                    f"sites[{i}]: area ids {twice} appear more than once; an area's risk "
                    "colour and alarms are keyed by its id, so ids must be unique in a site"
                )
        seen: dict[str, str] = {}
        for place in self.places():
            where = f"{place.site}/{place.workshop}/{place.area}"
            if place.sensor.id in seen:
                raise ValueError(
                    f"sensor id {place.sensor.id!r} appears twice: in {seen[place.sensor.id]} "
                    f"and in {where}; sensor ids must be unique across the plant"
                )
            seen[place.sensor.id] = where
        return self

    def areas(self) -> list[tuple[str, Area]]:
        """Every area with its site id, in file order (areas with no sensors too)."""
        return [(site.id, area) for site in self.sites for ws in site.workshops
                for area in ws.areas]

    def places(self) -> list[SensorPlace]:
        """Every sensor in file order; ``index`` is its row in the sensor table."""
        out: list[SensorPlace] = []
        for site in self.sites:
            for ws in site.workshops:
                team_of = {p.id: t.id for t in ws.teams for p in t.posts}
                for area in ws.areas:
                    for sensor in area.sensors:
                        out.append(
                            SensorPlace(
                                index=len(out),
                                sensor=sensor,
                                site=site.id,
                                workshop=ws.id,
                                area=area.id,
                                team=team_of.get(area.post, ""),
                                post=area.post,
                                gateway=area.gateway or f"gw-{area.id}",
                            )
                        )
        return out


def key_path(loc: Iterable[int | str]) -> str:
    """A pydantic error location as the file's key path: ``sites[0].workshops[1].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def parse_plant(data: Any, source: str | Path = "<plant config>") -> PlantConfig:
    """Validate already-parsed YAML/JSON data; errors name ``source`` and the key path."""
    try:
        return PlantConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key_path(err['loc'])}: {msg}")
        raise ConfigError(source, problems) from exc


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> Any:
    """A config file's parsed YAML; unreadable or not YAML raises ``error`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(path, [f"cannot read the file ({exc.strerror})"]) from exc
    try:
        # libyaml's safe loader when PyYAML has it: the pure-Python one took ~4 s
        # of start-up for a 10,000-sensor plant file (benchmarks/ingest_throughput.py).
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise error(path, [f"not valid YAML: {exc}"]) from exc


def load_plant(path: str | Path) -> PlantConfig:
    """Load and validate a plant file such as ``config/plant.yaml``."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top level): expected a mapping with 'enterprise' and 'sites'"])
    return parse_plant(data, path)
