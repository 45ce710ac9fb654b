"""A whole plant's sensors, in normal operation and during gas leaks.

The simulator exists so that everything downstream — ingest, detectors,
alarms, the dashboard — can be exercised end to end without a plant: it must
look normal when nothing happens (no nuisance alarm, ever) and look like a real
leak when one is asked for (a ramp through both gas levels and back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.plant import PlantConfig, SensorConfig
from simulators.errors import LeakSpecError
from simulators.leak import LeakSpec, leak_response, parse_leak

__all__ = ["LeakSpec", "PlantSimulator", "parse_leak"]

_DAY_MS = 86_400_000
_GAS_KINDS = ("combustible_lel", "toxic_ppm")
_O2_AMBIENT_PCT = 20.9
# Gaussian noise is truncated at this many standard deviations: a transmitter's
# noise is bounded, and only a bound lets us promise "never a nuisance alarm".
_NOISE_CLIP_SIGMA = 3.0
# Shape of normal operation per kind, as fractions of the sensor's normal band
# (from its low first-level limit, or range low, to its high first-level limit,
# or range high): baseline position drawn uniformly in [lo, hi], amplitude of
# the daily swing, noise sigma. The worst case baseline ± swing ± 3 sigma stays
# at least 20 % of the band away from either first-level limit.
_SHAPE: dict[str, tuple[float, float, float, float]] = {
    # gas: a clean plant reads near zero (≈ 0.5–2 %LEL, a few tenths of a ppm)
    "combustible_lel": (0.02, 0.05, 0.01, 0.004),
    "toxic_ppm": (0.02, 0.05, 0.01, 0.004),
    # oxygen: ambient 20.9 %VOL (placed separately), barely moving
    "oxygen_pct": (0.5, 0.5, 0.01, 0.005),
    # process values: mid band, a daily swing with ambient temperature and
    # load, and transmitter noise small enough for rate-of-change detectors
    "pressure_kpa": (0.4, 0.6, 0.1, 0.005),
    "temperature_c": (0.4, 0.6, 0.1, 0.005),
    "level_pct": (0.4, 0.6, 0.1, 0.01),
    "flow_m3h": (0.4, 0.6, 0.1, 0.02),
}
# A leak seen by detectors at different distances from the release: each gas
# detector gets a fraction of the peak and a transport delay.
_LEAK_GAIN = (0.85, 1.0)
_LEAK_DELAY_S = (0.0, 10.0)
_TOXIC_PEAK_X_HH = 3.0


def _normal_band(sensor: SensorConfig) -> tuple[float, float]:
    """Where a sensor reads when nothing is wrong: between its first-level limits."""
    limits = sensor.effective_limits()
    lo, hi = sensor.range
    low = limits.l if limits.l is not None else limits.ll if limits.ll is not None else lo
    high = limits.h if limits.h is not None else limits.hh if limits.hh is not None else hi
    return low, high


def _toxic_peak(sensor: SensorConfig) -> float:
    """Peak reading of a toxic detector in a leak: well past its second level."""
    limits = sensor.effective_limits()
    top = limits.hh if limits.hh is not None else limits.h
    return _TOXIC_PEAK_X_HH * top if top is not None else sensor.range[1]


class PlantSimulator:
    """Readings of every sensor of a plant at any event time.

    ``values_at(ts_ms)`` is a pure function of ``ts_ms``: the noise of a step
    is drawn from a generator keyed by the seed and the timestamp, so a
    simulator can be sampled in any order, twice at the same time, or
    resumed, and always gives the same readings. Leaks only add to the
    readings of their area's gas detectors; every other reading is identical
    to a run without leaks.

    Parameters
    ----------
    plant : PlantConfig
        The plant; sensors are simulated in ``plant.places()`` order.
    rng : numpy.random.Generator
        Source of every random choice (baselines, phases, leak geometry, the
        noise key). Consumed only here, in a fixed order.
    start_ms : int
        Event time of the simulation's start, ms since the Unix epoch, UTC;
        leak times are counted from it.
    leaks : sequence of LeakSpec
        Gas releases to play.

    Raises
    ------
    LeakSpecError
        If a leak names an area the plant does not have.

    Attributes
    ----------
    sensor_ids : tuple of str, length n_sensors
        Ids in row order.
    baseline_ : float64 array, shape (n_sensors,)
        Centre of each sensor's normal reading, in its unit.
    swing_ : float64 array, shape (n_sensors,)
        Amplitude of the daily swing, in the sensor's unit.
    noise_sigma_ : float64 array, shape (n_sensors,)
        Standard deviation of the (truncated) noise, in the sensor's unit.
    """

    def __init__(
        self,
        plant: PlantConfig,
        rng: np.random.Generator,
        start_ms: int,
        leaks: Sequence[LeakSpec] = (),
    ) -> None:
        places = plant.places()
        n = len(places)
        self.plant = plant
        self.start_ms = int(start_ms)
        self.sensor_ids: tuple[str, ...] = tuple(p.sensor.id for p in places)
        self._range_lo = np.array([p.sensor.range[0] for p in places], dtype=np.float64)
        self._range_hi = np.array([p.sensor.range[1] for p in places], dtype=np.float64)

        bands = np.array([_normal_band(p.sensor) for p in places], dtype=np.float64)
        bands = bands.reshape(n, 2)
        band_lo = bands[:, 0]
        width = bands[:, 1] - bands[:, 0]
        shape = np.array([_SHAPE[p.sensor.kind] for p in places], dtype=np.float64)
        shape = shape.reshape(n, 4)

        # Every draw is made for every sensor, whatever its kind and whatever
        # the leaks: adding a leak must not change any other reading.
        position = rng.uniform(0.0, 1.0, n)
        phase = rng.uniform(0.0, 2.0 * math.pi, n)
        leak_gain = rng.uniform(*_LEAK_GAIN, n)
        leak_delay_s = rng.uniform(*_LEAK_DELAY_S, n)
        self._noise_key = int(rng.integers(0, 2**63 - 1))

        frac = shape[:, 0] + position * (shape[:, 1] - shape[:, 0])
        baseline = band_lo + frac * width
        is_o2 = np.array([p.sensor.kind == "oxygen_pct" for p in places], dtype=bool)
        # Oxygen sits at ambient unless a site has configured a band that
        # excludes it (then mid band, like any process value).
        o2_position = (_O2_AMBIENT_PCT - band_lo) / np.where(width > 0, width, 1.0)
        o2_ok = is_o2 & (o2_position >= 0.25) & (o2_position <= 0.75)
        baseline[o2_ok] = _O2_AMBIENT_PCT
        self.baseline_ = baseline
        self.swing_ = shape[:, 2] * width
        self.noise_sigma_ = shape[:, 3] * width
        self._phase = phase

        self.leaks = tuple(leaks)
        self._leak_rows: list[tuple[LeakSpec, npt.NDArray[np.intp], npt.NDArray[np.float64],
                                    npt.NDArray[np.float64]]] = []
        areas = sorted({p.area for p in places})
        for leak in self.leaks:
            if leak.area not in areas:
                raise LeakSpecError(
                    f"{leak.area}@{leak.at_s:g}",
                    f"area {leak.area!r} is not in the plant (known areas: {', '.join(areas)})",
                )
            rows = np.array(
                [p.index for p in places if p.area == leak.area and p.sensor.kind in _GAS_KINDS],
                dtype=np.intp,
            )
            peak = np.array(
                [
                    leak.peak_pct_lel
                    if places[i].sensor.kind == "combustible_lel"
                    else _toxic_peak(places[i].sensor)
                    for i in rows
                ],
                dtype=np.float64,
            )
            self._leak_rows.append((leak, rows, peak * leak_gain[rows], leak_delay_s[rows]))

    @property
    def n_sensors(self) -> int:
        return len(self.sensor_ids)

    def _noise(self, ts_ms: int) -> npt.NDArray[np.float64]:
        """Truncated standard-normal noise for one step, keyed by the timestamp."""
        step_rng = np.random.default_rng([self._noise_key, ts_ms & 0xFFFF_FFFF_FFFF_FFFF])
        z = step_rng.standard_normal(self.n_sensors)
        return np.clip(z, -_NOISE_CLIP_SIGMA, _NOISE_CLIP_SIGMA)

    def normal_values_at(self, ts_ms: int) -> npt.NDArray[np.float64]:
        """Readings at ``ts_ms`` as if no leak were happening.

        Returns
        -------
        float64 array, shape (n_sensors,)
            One reading per sensor, in its unit, in ``plant.places()`` order.
        """
        ts_ms = int(ts_ms)
        day_fraction = (ts_ms % _DAY_MS) / _DAY_MS
        swing = self.swing_ * np.sin(2.0 * math.pi * day_fraction + self._phase)
        values = self.baseline_ + swing + self.noise_sigma_ * self._noise(ts_ms)
        return np.clip(values, self._range_lo, self._range_hi)

    def values_at(self, ts_ms: int) -> npt.NDArray[np.float64]:
        """Readings of every sensor at event time ``ts_ms`` (ms since epoch, UTC).

        Returns
        -------
        float64 array, shape (n_sensors,)
            One reading per sensor, in its unit, in ``plant.places()`` order,
            clipped to each sensor's range as a real transmitter would.
        """
        ts_ms = int(ts_ms)
        values = self.normal_values_at(ts_ms)
        if not self._leak_rows:
            return values
        t_s = (ts_ms - self.start_ms) / 1000.0
        for leak, rows, peak, delay_s in self._leak_rows:
            values[rows] += peak * leak_response(t_s - leak.at_s - delay_s, leak.duration_s)
        return np.clip(values, self._range_lo, self._range_hi)
