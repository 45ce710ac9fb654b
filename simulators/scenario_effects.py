"""Compiling a scenario's events into effects on the plant's values.

A *process effect* moves true values: a closed-form deviation (from
:mod:`simulators.process`) of some rows at any times. A *sensor fault*
(from :mod:`simulators.faults`) rewrites one step's readings in place.
:class:`EffectCompiler` turns each event of a checked scenario into them,
drawing its random choices (leak geometry, fault keys) from a generator of
that event alone, so adding an event never changes another's readings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.batch import F64
from model.plant import PlantConfig, SensorConfig, SensorPlace
from simulators import faults as flt
from simulators import process as proc
from simulators.scenario_schema import (
    CoolingLossEvent,
    DriftEvent,
    DropoutEvent,
    Event,
    LeakEvent,
    OffsetEvent,
    OverpressureEvent,
    PowerDipEvent,
    RunawayEvent,
    SealLeakEvent,
    SensorFaultEvent,
    SpikesEvent,
    StuckEvent,
)

__all__ = [
    "DIP_PERIOD_S",
    "Apply",
    "Delta",
    "Effect",
    "EffectCompiler",
    "Fault",
    "PlantIndex",
    "first_level",
]

Rows = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]

_PROCESS_SENSOR_KINDS = ("pressure_kpa", "temperature_c", "level_pct", "flow_m3h")
_LEAK_GAIN = (0.85, 1.0)
_LEAK_DELAY_S = (0.0, 10.0)
_SEAL_DELAY_S = (0.0, 5.0)
_TOXIC_LEAK_X_HH = 3.0
_TOXIC_SEAL_X_H = 1.5
_RELIEF_ACCUMULATION = 0.03
DIP_PERIOD_S: dict[str, float] = {
    # How fast a value answers its drives tripping and restarting: pressures
    # and flows within seconds, levels over minutes; temperatures over a
    # minute or two (a reactor bed losing its recycle gas heats at some
    # °C/s, much slower than its pressure falls).
    "pressure_kpa": 20.0,
    "flow_m3h": 12.0,
    "level_pct": 120.0,
    "temperature_c": 90.0,
}
"""Natural period of each kind's loop in a power dip, seconds (override per event)."""
_DIP_DIRECTION = {"pressure_kpa": -1.0, "flow_m3h": -1.0, "level_pct": 1.0, "temperature_c": 1.0}


def first_level(sensor: SensorConfig) -> tuple[float, float]:
    """(high, low) first-level limits; the second level where no first exists, else ±inf."""
    limits = sensor.effective_limits()
    high = limits.h if limits.h is not None else limits.hh
    low = limits.l if limits.l is not None else limits.ll
    return (np.inf if high is None else high), (-np.inf if low is None else low)


def _band(sensor: SensorConfig) -> tuple[float, float]:
    """Where a sensor reads when nothing is wrong (as :mod:`simulators.plant` places it)."""
    limits = sensor.effective_limits()
    lo, hi = sensor.range
    low = limits.l if limits.l is not None else limits.ll if limits.ll is not None else lo
    high = limits.h if limits.h is not None else limits.hh if limits.hh is not None else hi
    return low, high


class PlantIndex:
    """Rows of the plant's sensors by id, area, post and gateway (``plant.places()`` order)."""

    def __init__(self, plant: PlantConfig) -> None:
        self.places: list[SensorPlace] = plant.places()
        self.by_id: dict[str, SensorPlace] = {p.sensor.id: p for p in self.places}
        self.area_rows: dict[str, list[int]] = {}
        self.post_rows: dict[str, list[int]] = {}
        self.gateway_rows: dict[str, list[int]] = {}
        for p in self.places:
            self.area_rows.setdefault(p.area, []).append(p.index)
            self.post_rows.setdefault(p.post, []).append(p.index)
            self.gateway_rows.setdefault(p.gateway, []).append(p.index)

    def rows(self, sensors: Any) -> Rows:
        """Rows of the named sensors, in plant order, each once."""
        return np.array(sorted({self.by_id[s].index for s in sensors}), dtype=np.intp)


Delta = Callable[[F64, F64], F64]
"""``delta(t_s, normal)``: deviation of an effect's rows at times ``t_s`` (seconds from
the scenario start), shape ``t_s.shape + (n_rows,)``, given the normal values of every
sensor at those times (shape ``t_s.shape + (n_sensors,)``)."""
Apply = Callable[[float, int, F64, Bools], None]
"""A sensor fault applied in place to one step's readings and presence flags."""


@dataclass(frozen=True, slots=True)
class Effect:
    """Deviation ``delta(t_s, normal)`` of the true values of ``rows``, from event ``event``."""

    event: int
    rows: Rows
    delta: Delta


@dataclass(frozen=True, slots=True)
class Fault:
    """Sensor fault of event ``event`` on ``rows``, applied to one step's readings."""

    event: int
    rows: Rows
    apply: Apply


class EffectCompiler:
    """Turns events into :class:`Effect` s and :class:`Fault` s, in file order.

    Parameters
    ----------
    index : PlantIndex
    baseline : float64 array, shape (n_sensors,)
        Centre of each sensor's normal reading (``PlantSimulator.baseline_``):
        the operating point a relief valve's set pressure and a power dip's
        excursion are measured from.
    rate_hz : float
        The scenario's step rate (spike probability per reading).
    frozen_reading : callable (StuckEvent, rows) -> float64 array
        What a stuck transmitter holds; called after every earlier fault is
        compiled, so it can read them.

    Attributes
    ----------
    effects, faults : list
        What was compiled, in event order.
    affected : dict of event index -> rows
        Sensors each event moves or fakes.
    """

    def __init__(
        self,
        index: PlantIndex,
        baseline: F64,
        rate_hz: float,
        frozen_reading: Callable[[StuckEvent, Rows], F64],
    ) -> None:
        self.index = index
        self.baseline = baseline
        self.rate_hz = rate_hz
        self.frozen_reading = frozen_reading
        self.sensor_ids = tuple(p.sensor.id for p in index.places)
        self.effects: list[Effect] = []
        self.faults: list[Fault] = []
        self.affected: dict[int, Rows] = {}

    def _add(self, event: int, sensors: Any, delta: Delta) -> None:
        rows = self.index.rows(sensors)
        self.effects.append(Effect(event, rows, delta))
        previous = self.affected.get(event, np.empty(0, dtype=np.intp))
        self.affected[event] = np.union1d(previous, rows).astype(np.intp)

    def _sensor(self, row: int) -> SensorConfig:
        return self.index.places[row].sensor

    def process(self, i: int, event: Event, rng: np.random.Generator) -> None:
        """Compile event ``i`` if it is a process event (else do nothing)."""
        if isinstance(event, LeakEvent):
            self._leak(i, event, rng)
        elif isinstance(event, SealLeakEvent):
            self._seal_leak(i, event, rng)
        elif isinstance(event, OverpressureEvent):
            self._overpressure(i, event)
        elif isinstance(event, RunawayEvent):
            self._runaway(i, event)
        elif isinstance(event, CoolingLossEvent):
            self._cooling_loss(i, event)
        elif isinstance(event, PowerDipEvent):
            self._power_dip(i, event)

    def _leak(self, i: int, event: LeakEvent, rng: np.random.Generator) -> None:
        if event.sensors is not None:
            names = list(event.sensors)
        else:
            names = [self.index.places[r].sensor.id for r in self.index.area_rows[event.area]
                     if self.index.places[r].sensor.kind in event.gases]
        rows = self.index.rows(names)
        # Drawn for every row whatever is given explicitly: the draws of one
        # sensor never depend on what the file says about another.
        drawn_gain = rng.uniform(*_LEAK_GAIN, len(rows))
        delay_s = rng.uniform(*_LEAK_DELAY_S, len(rows))
        peak = np.empty(len(rows))
        for j, r in enumerate(rows):
            sensor = self._sensor(int(r))
            gain = event.gains.get(sensor.id, float(drawn_gain[j]))
            if sensor.kind == "combustible_lel":
                top = event.peak_pct_lel
            else:
                limits = sensor.effective_limits()
                second = limits.hh if limits.hh is not None else limits.h
                default = _TOXIC_LEAK_X_HH * second if second is not None else sensor.range[1]
                top = event.peak_ppm if event.peak_ppm is not None else default
            peak[j] = gain * top
        at, ramp, hold, clear = event.at_s, event.ramp_s, event.duration_s, event.clear_s

        def delta(t: F64, normal: F64) -> F64:
            return peak * proc.gas_release(t[..., None] - at - delay_s, ramp, hold, clear)

        self._add(i, names, delta)

    def _seal_leak(self, i: int, event: SealLeakEvent, rng: np.random.Generator) -> None:
        rows = self.index.rows(event.sensors)
        delay_s = rng.uniform(*_SEAL_DELAY_S, len(rows))
        peak = np.empty(len(rows))
        for j, r in enumerate(rows):
            sensor = self._sensor(int(r))
            gain = event.sensors[sensor.id]
            if sensor.kind == "combustible_lel":
                peak[j] = gain * event.peak_pct_lel
            else:
                h, _ = first_level(sensor)
                default = _TOXIC_SEAL_X_H * h if np.isfinite(h) else sensor.range[1]
                peak[j] = gain * (event.peak_ppm if event.peak_ppm is not None else default)
        at, ramp, hold, clear = event.at_s, event.ramp_s, event.duration_s, event.clear_s

        def delta(t: F64, normal: F64) -> F64:
            x = t[..., None] - at - delay_s
            return peak * proc.gas_release(x, ramp, hold, clear, quadratic=True)

        self._add(i, [self.sensor_ids[r] for r in rows], delta)
        if event.seal_dp is not None:
            drop = event.seal_dp.drop

            def dp_delta(t: F64, normal: F64) -> F64:
                # The leak path, not the cloud: no detector lag, and a worn
                # seal stays worn after the compressor is isolated.
                wear = np.clip((t[..., None] - at) / ramp, 0.0, 1.0)
                return -drop * wear * wear

            self._add(i, [event.seal_dp.sensor], dp_delta)

    def _overpressure(self, i: int, event: OverpressureEvent) -> None:
        first = self.index.by_id[event.sensors[0]].index
        accumulation = (event.accumulation_kpa if event.accumulation_kpa is not None
                        else _RELIEF_ACCUMULATION * abs(event.relief_set_kpa))
        n = len(set(event.sensors))
        at, set_kpa, stuck = event.at_s, event.relief_set_kpa, event.stuck

        def delta(t: F64, normal: F64) -> F64:
            # The valve lifts on the vessel's actual pressure, which swings
            # with the day: its margin is measured from the normal reading.
            cap = None if stuck else set_kpa - normal[..., first, None]
            rise = proc.vessel_pressure(
                t[..., None] - at, event.rise_kpa, event.tau_s, cap=cap,
                accumulation=accumulation, duration_s=event.duration_s,
            )
            return np.broadcast_to(rise, (*t.shape, n)).astype(np.float64)

        self._add(i, event.sensors, delta)

    def _runaway(self, i: int, event: RunawayEvent) -> None:
        # tmr per sensor in the file's order (hot spot first), then plant order.
        order = {s: k for k, s in enumerate(event.sensors)}
        rows = self.index.rows(event.sensors)
        rank = np.array([order[self.sensor_ids[r]] for r in rows], dtype=np.float64)
        tmr = event.tmr_s * (1.0 + event.spread * rank)
        at, theta, cap = event.at_s, event.theta_c, event.adiabatic_rise_c

        def delta(t: F64, normal: F64) -> F64:
            return proc.runaway_rise(t[..., None] - at, tmr, theta, cap)

        self._add(i, event.sensors, delta)
        if event.pressure_kpa_per_c:
            p_rows = self.index.rows(event.pressure_kpa_per_c)
            gain = np.array([event.pressure_kpa_per_c[self.sensor_ids[r]] for r in p_rows])

            def p_delta(t: F64, normal: F64) -> F64:
                return gain * proc.runaway_rise(t[..., None] - at, event.tmr_s, theta, cap)

            self._add(i, event.pressure_kpa_per_c, p_delta)

    def _cooling_loss(self, i: int, event: CoolingLossEvent) -> None:
        at = event.at_s
        rows = self.index.rows(event.cooling)
        change = np.array([event.cooling[self.sensor_ids[r]] for r in rows])

        def delta(t: F64, normal: F64) -> F64:
            return change * proc.first_order_step(t[..., None] - at, event.tau_s)

        self._add(i, event.cooling, delta)
        if event.follow:
            f_rows = self.index.rows(event.follow)
            f_change = np.array([event.follow[self.sensor_ids[r]] for r in f_rows])

            def f_delta(t: F64, normal: F64) -> F64:
                x = t[..., None] - at
                return f_change * proc.two_lag_step(x, event.tau_s, event.follow_tau_s)

            self._add(i, event.follow, f_delta)

    def _power_dip(self, i: int, event: PowerDipEvent) -> None:
        if event.sensors is not None:
            names = list(event.sensors)
        else:
            names = [self.index.places[r].sensor.id for r in self.index.post_rows[event.post]
                     if self.index.places[r].sensor.kind in _PROCESS_SENSOR_KINDS]
        rows = self.index.rows(names)
        step = np.empty(len(rows))
        period = np.empty(len(rows))
        periods = dict(DIP_PERIOD_S)
        for kind_name, seconds in event.period_s.items():
            periods[kind_name] = seconds
        for j, r in enumerate(rows):
            sensor = self._sensor(int(r))
            low, high = _band(sensor)
            width = high - low
            kind = sensor.kind
            way = event.directions.get(sensor.id)
            sign = _DIP_DIRECTION.get(kind, -1.0) if way is None else (1.0 if way == "up" else -1.0)
            target = high + event.depth * width if sign > 0 else low - event.depth * width
            step[j] = target - float(self.baseline[r])
            period[j] = periods.get(kind, 20.0)
        shots = np.array(event.shots_s, dtype=np.float64) + event.at_s
        outage, zeta = event.outage_s, event.damping

        def delta(t: F64, normal: F64) -> F64:
            x = t[..., None, None] - shots[:, None]  # (..., shots, rows)
            pulse = (proc.underdamped_step(x, period, zeta)
                     - proc.underdamped_step(x - outage, period, zeta))
            out: F64 = step * pulse.sum(axis=-2)
            return out

        self._add(i, names, delta)

    def fault(self, i: int, event: Event, rng: np.random.Generator) -> None:
        """Compile event ``i`` if it is a sensor fault (else do nothing)."""
        if not isinstance(event, SensorFaultEvent):
            return
        rows = self.index.rows(event.sensors)
        self.affected[i] = rows
        key = int(rng.integers(0, 2**63 - 1))
        at, duration = event.at_s, event.duration_s
        n = len(rows)
        apply: Apply
        if isinstance(event, DriftEvent):
            rate = np.full(n, event.rate_per_h)

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                v[rows] += flt.drift_offset(t_s, at, rate, duration)

        elif isinstance(event, OffsetEvent):
            offset = event.offset

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                if flt.active(t_s, at, duration):
                    v[rows] += offset

        elif isinstance(event, StuckEvent):
            frozen = self.frozen_reading(event, rows)

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                if flt.active(t_s, at, duration):
                    v[rows] = frozen

        elif isinstance(event, DropoutEvent):

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                if flt.active(t_s, at, duration):
                    present[rows] = False

        elif isinstance(event, SpikesEvent):
            p = flt.spike_probability(event.rate_per_min, self.rate_hz)
            amplitude = np.full(n, event.amplitude)
            sign = event.sign

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                if flt.active(t_s, at, duration):
                    step_rng = np.random.default_rng([key, ts_ms & 0xFFFF_FFFF_FFFF_FFFF])
                    v[rows] += flt.spike_offsets(step_rng, n, p, amplitude, sign)

        else:
            sigma = np.full(n, event.sigma)

            def apply(t_s: float, ts_ms: int, v: F64, present: Bools) -> None:
                if flt.active(t_s, at, duration):
                    step_rng = np.random.default_rng([key, ts_ms & 0xFFFF_FFFF_FFFF_FFFF])
                    v[rows] += flt.noise_burst(step_rng, sigma)

        self.faults.append(Fault(i, rows, apply))
