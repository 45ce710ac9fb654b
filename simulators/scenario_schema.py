"""The schema of a scenario file (``config/scenarios/*.yaml``).

A scenario is a timeline of events over the plant of ``config/plant.yaml``::

    name: h2s-leak-tank-farm
    description: P-301A seal starts weeping sour water ...
    duration_s: 1500          # plant time covered
    rate_hz: 1                # readings per sensor per second
    seed: 301                 # same seed, same bytes
    start: 2026-06-01T09:00:00+08:00
    events:
      - kind: leak
        at_s: 240
        area: tf-sour-water
        gases: [toxic_ppm]
        ramp_s: 600             # the release builds up over 10 min
        duration_s: 300         # held at its peak until isolated
        peak_ppm: 24
        gains: {TF-SW-H2S-02: 1.0, TF-SW-H2S-03: 0.55, TF-SW-H2S-01: 0.2}
        incident: {id: h2s-p301a, kind: leak}

Every event has ``kind`` and ``at_s`` (seconds after ``start``); an event
that is (part of) an incident carries ``incident: {id, kind}``, and the
incident's ground truth (affected sensors, first-level crossing time) is
computed from the generated true signal, never written by hand. Events with
the same incident id form one incident. The models here check the shape of
the file; :func:`simulators.scenario.parse_scenario` also checks every sensor,
area, post and gateway against the plant, and reports problems with the file
and key path (``events[2].sensors[1]``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from model.plant import ID_PATTERN

__all__ = [
    "DEFAULT_START",
    "EVENT_KINDS",
    "GATEWAY_FAULT_KINDS",
    "PROCESS_KINDS",
    "RAMP_KINDS",
    "SENSOR_FAULT_KINDS",
    "ClockSkewEvent",
    "CoolingLossEvent",
    "DriftEvent",
    "DropoutEvent",
    "DuplicatesEvent",
    "Event",
    "GatewayFaultEvent",
    "GatewaySilentEvent",
    "IncidentLabel",
    "LeakEvent",
    "NoiseBurstEvent",
    "OffsetEvent",
    "OutOfOrderEvent",
    "OverpressureEvent",
    "PowerDipEvent",
    "RunawayEvent",
    "Scenario",
    "SealDp",
    "SealLeakEvent",
    "SensorFaultEvent",
    "SpikesEvent",
    "StuckEvent",
]

DEFAULT_START = datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=8)))
"""Start of a scenario that names none: 2026-06-01T00:00:00+08:00."""

GasKind = Literal["combustible_lel", "toxic_ppm"]
ProcessKind = Literal["pressure_kpa", "temperature_c", "level_pct", "flow_m3h"]
Direction = Literal["up", "down"]
Seconds = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Gain = Annotated[float, Field(gt=0, le=1.5)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class IncidentLabel(_Model):
    """Ground-truth label of an event: which incident it belongs to.

    ``kind`` defaults to the event's kind; ``sensors`` overrides the affected
    sensors derived from the event(s); ``ramp`` overrides whether the incident
    builds up slowly enough to be warned ahead (derived from the event kinds).
    """

    id: str = Field(pattern=ID_PATTERN)
    kind: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,39}$")
    sensors: list[str] | None = Field(default=None, min_length=1)
    ramp: bool | None = None


class _Event(_Model):
    at_s: Seconds
    incident: IncidentLabel | None = None


# -- process events: they change the true values ---------------------------------


class LeakEvent(_Event):
    """A gas release in one area, seen by its gas detectors (:func:`process.gas_release`).

    ``ramp_s`` is how long the release takes to build up (30 s: a flange
    letting go; many minutes: a seal or valve packing weeping more and more).
    Each detector sees ``gain`` × the peak (explicit, or drawn from 0.85–1.0
    as :class:`simulators.plant.PlantSimulator` does) after a transport delay
    of 0–10 s. Toxic detectors peak at ``peak_ppm``, by default three times
    their second level.
    """

    kind: Literal["leak"]
    area: str
    gases: list[GasKind] = Field(default=["combustible_lel", "toxic_ppm"], min_length=1)
    sensors: list[str] | None = Field(default=None, min_length=1)
    ramp_s: Positive = 30.0
    duration_s: Seconds = 120.0
    clear_s: Positive = 60.0
    peak_pct_lel: float = Field(default=70.0, gt=0, le=100)
    peak_ppm: Positive | None = None
    gains: dict[str, Gain] = {}


class SealDp(_Model):
    """The seal-gas differential pressure, which falls as the seal's leak path widens."""

    sensor: str
    drop: Positive


class SealLeakEvent(_Event):
    """A compressor dry-gas seal wearing through: the leak grows as ``(t/ramp)²``.

    ``sensors`` maps each gas detector near the seal to the fraction of the
    peak it sees. The seal vents recycle gas: hydrogen (combustible) with a
    trace of H2S, so toxic detectors peak at ``peak_ppm`` (default: their
    first level × 1.5).
    """

    kind: Literal["seal_leak"]
    sensors: dict[str, Gain] = Field(min_length=1)
    ramp_s: Positive = 600.0
    duration_s: Seconds = 300.0
    clear_s: Positive = 120.0
    peak_pct_lel: float = Field(default=40.0, gt=0, le=100)
    peak_ppm: Positive | None = None
    seal_dp: SealDp | None = None


class OverpressureEvent(_Event):
    """A vessel blocked in while its feed continues (:func:`process.vessel_pressure`).

    ``sensors`` read the same vessel; the first one's operating point is the
    reference for ``relief_set_kpa``. The relief valve lifts at its set
    pressure and holds the vessel within ``accumulation_kpa`` (default 3 % of
    set) above it, unless it is ``stuck``.
    """

    kind: Literal["overpressure"]
    sensors: list[str] = Field(min_length=1)
    rise_kpa: Positive
    tau_s: Positive = 600.0
    relief_set_kpa: float
    accumulation_kpa: Positive | None = None
    stuck: bool = False
    duration_s: Seconds | None = None


class RunawayEvent(_Event):
    """An exothermic reactor after its cooling is lost (:func:`process.runaway_rise`).

    ``sensors`` are bed temperatures, the hot spot first; each further sensor
    reaches its maximum rate ``spread`` × TMR later. ``pressure_kpa_per_c``
    couples pressures to the hot spot's rise (gas expansion).
    """

    kind: Literal["runaway"]
    sensors: list[str] = Field(min_length=1)
    tmr_s: Positive
    theta_c: Positive = 30.0
    adiabatic_rise_c: Positive = 150.0
    spread: float = Field(default=0.1, ge=0, le=2)
    pressure_kpa_per_c: dict[str, float] = {}


class CoolingLossEvent(_Event):
    """Cooling water lost: its temperatures move by ``cooling`` (final change per
    sensor) with ``tau_s``; what it cools follows by ``follow`` through a second lag."""

    kind: Literal["cooling_loss"]
    cooling: dict[str, float] = Field(min_length=1)
    tau_s: Positive = 480.0
    follow: dict[str, float] = {}
    follow_tau_s: Positive = 900.0


class PowerDipEvent(_Event):
    """Voltage sags that trip the drives of one post's equipment.

    At each sag (``shots_s`` after ``at_s``: a recloser's successive shots, or
    a storm's strikes) the drives stop for ``outage_s`` and restart. Each
    process value of the post moves towards ``depth`` normal-band widths past
    its first-level limit (``directions``: default pressures and flows down,
    temperatures and levels up) as a second-order loop with the natural period
    of its kind (``period_s`` overrides it per kind) and damping ζ.
    """

    kind: Literal["power_dip"]
    post: str
    sensors: list[str] | None = Field(default=None, min_length=1)
    shots_s: list[Seconds] = Field(default=[0.0], min_length=1)
    outage_s: Positive = 10.0
    depth: float = Field(default=0.6, gt=0, le=3)
    directions: dict[str, Direction] = {}
    period_s: dict[ProcessKind, Positive] = {}
    damping: float = Field(default=0.35, gt=0, lt=1)


# -- sensor faults: they change the readings, never the truth ----------------------


class SensorFaultEvent(_Event):
    """Base of the sensor faults: they change the readings of ``sensors``, never the truth."""

    sensors: list[str] = Field(min_length=1)
    duration_s: Positive | None = None


class DriftEvent(SensorFaultEvent):
    kind: Literal["drift"]
    rate_per_h: float


class OffsetEvent(SensorFaultEvent):
    kind: Literal["offset"]
    offset: float


class StuckEvent(SensorFaultEvent):
    """The reading freezes at ``value``, or at its reading at the first step at or after
    ``at_s``."""

    kind: Literal["stuck"]
    value: float | None = None


class DropoutEvent(SensorFaultEvent):
    kind: Literal["dropout"]


class SpikesEvent(SensorFaultEvent):
    kind: Literal["spikes"]
    rate_per_min: Positive
    amplitude: Positive
    sign: Literal["up", "down", "both"] = "both"


class NoiseBurstEvent(SensorFaultEvent):
    kind: Literal["noise_burst"]
    sigma: Positive


# -- gateway faults: they change the messages -------------------------------------


class GatewayFaultEvent(_Event):
    """Base of the gateway faults: they change what ``gateway`` publishes."""

    gateway: str
    duration_s: Positive | None = None


class GatewaySilentEvent(GatewayFaultEvent):
    kind: Literal["gateway_silent"]


class ClockSkewEvent(GatewayFaultEvent):
    """The gateway's clock is ``skew_s`` off: every timestamp it writes is shifted."""

    kind: Literal["clock_skew"]
    skew_s: float


class DuplicatesEvent(GatewayFaultEvent):
    """Each message is sent twice with ``probability``, the copy ``delay_s`` later."""

    kind: Literal["duplicates"]
    probability: float = Field(default=1.0, gt=0, le=1)
    delay_s: Seconds = 0.0


class OutOfOrderEvent(GatewayFaultEvent):
    """A message is held back ``delay_s`` (default 1.5 steps) with ``probability``,
    so it arrives after later ones."""

    kind: Literal["out_of_order"]
    probability: float = Field(default=0.5, gt=0, le=1)
    delay_s: Positive | None = None


Event = Annotated[
    LeakEvent
    | SealLeakEvent
    | OverpressureEvent
    | RunawayEvent
    | CoolingLossEvent
    | PowerDipEvent
    | DriftEvent
    | OffsetEvent
    | StuckEvent
    | DropoutEvent
    | SpikesEvent
    | NoiseBurstEvent
    | GatewaySilentEvent
    | ClockSkewEvent
    | DuplicatesEvent
    | OutOfOrderEvent,
    Field(discriminator="kind"),
]

PROCESS_KINDS = ("leak", "seal_leak", "overpressure", "runaway", "cooling_loss", "power_dip")
SENSOR_FAULT_KINDS = ("drift", "offset", "stuck", "dropout", "spikes", "noise_burst")
GATEWAY_FAULT_KINDS = ("gateway_silent", "clock_skew", "duplicates", "out_of_order")
EVENT_KINDS = PROCESS_KINDS + SENSOR_FAULT_KINDS + GATEWAY_FAULT_KINDS
RAMP_KINDS = frozenset({"leak", "seal_leak", "overpressure", "runaway", "cooling_loss"})
"""Event kinds that build up over minutes, so a trend detector can warn ahead of them."""


class Scenario(_Model):
    """A scenario file, validated for shape (see :func:`simulators.scenario.parse_scenario`)."""

    name: str = Field(pattern=ID_PATTERN)
    description: str = ""
    duration_s: Positive
    rate_hz: float = Field(default=1.0, gt=0, le=1000)
    seed: int = Field(default=0, ge=0)
    start: AwareDatetime = DEFAULT_START
    events: list[Event] = []

    @property
    def start_ms(self) -> int:
        """``start`` in ms since the Unix epoch, UTC (exact, no float rounding)."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return (self.start - epoch) // timedelta(milliseconds=1)

    @property
    def n_steps(self) -> int:
        """Steps of the scenario: ``floor(duration_s × rate_hz)``, at least one."""
        return max(1, int(self.duration_s * self.rate_hz + 1e-9))

    @property
    def period_ms(self) -> float:
        return 1000.0 / self.rate_hz

    def step_times_ms(self) -> list[int]:
        """Event times of the steps: ``start + k / rate_hz``, rounded to whole ms."""
        start, period = self.start_ms, self.period_ms
        return [start + round(k * period) for k in range(self.n_steps)]
