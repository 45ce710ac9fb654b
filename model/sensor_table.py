"""The sensor table: every configured sensor as a row of NumPy arrays.

Detectors index these arrays with a batch's ``sensor`` column; a missing limit
is NaN, so comparisons against it are simply false.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.plant import PlantConfig, SensorPlace

__all__ = ["LIMIT_NAMES", "SensorTable"]

LIMIT_NAMES = ("ll", "l", "h", "hh")


@dataclass(frozen=True, slots=True)
class SensorTable:
    """Rows of sensors; ``index[sensor_id]`` is the row.

    Attributes
    ----------
    ids : list of str, length m
    places : list of SensorPlace, length m
        Where each sensor sits (site, workshop, area, team, post) and its config.
    ll, l, h, hh : float64 arrays, shape (m,)
        Alarm limits in the sensor's unit; NaN where the sensor has none.
    deadband : float64 array, shape (m,)
        Hysteresis an alarm must fall back through before it clears.
    range_lo, range_hi : float64 arrays, shape (m,)
        Calibrated measuring range.
    on_delay_ms, off_delay_ms : int64 arrays, shape (m,)
        How long a limit condition must persist before the alarm is raised,
        and how long the value must stay back inside before it clears.
    trend_horizon_s : float64 array, shape (m,)
        How far ahead a predicted limit crossing is worth a warning.
    max_rate_per_min : float64 array, shape (m,)
        Fastest allowed change in units per minute; NaN: no rate alarm.
    max_gap_s : float64 array, shape (m,)
        Longest silence before a no-data fault.
    stuck_after_s : float64 array, shape (m,)
        How long an unchanged value means a stuck sensor; NaN: not judged.
    drift_detection : bool array, shape (m,)
        Whether drift warnings are raised for the sensor.
    """

    ids: list[str]
    places: list[SensorPlace]
    index: dict[str, int]
    ll: npt.NDArray[np.float64]
    l: npt.NDArray[np.float64]  # noqa: E741 - ISA-18.2's name for the low limit
    h: npt.NDArray[np.float64]
    hh: npt.NDArray[np.float64]
    deadband: npt.NDArray[np.float64]
    range_lo: npt.NDArray[np.float64]
    range_hi: npt.NDArray[np.float64]
    # Deciding settings; a table built by hand may leave them out (None) and
    # get the defaults of a sensor with nothing configured.
    on_delay_ms: npt.NDArray[np.int64] = None  # type: ignore[assignment]
    off_delay_ms: npt.NDArray[np.int64] = None  # type: ignore[assignment]
    trend_horizon_s: npt.NDArray[np.float64] = None  # type: ignore[assignment]
    max_rate_per_min: npt.NDArray[np.float64] = None  # type: ignore[assignment]
    max_gap_s: npt.NDArray[np.float64] = None  # type: ignore[assignment]
    stuck_after_s: npt.NDArray[np.float64] = None  # type: ignore[assignment]
    drift_detection: npt.NDArray[np.bool_] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        m = len(self.ids)
        defaults = {
            "on_delay_ms": np.zeros(m, np.int64),
            "off_delay_ms": np.zeros(m, np.int64),
            "trend_horizon_s": np.full(m, 300.0),
            "max_rate_per_min": np.full(m, np.nan),
            "max_gap_s": np.full(m, 120.0),
            "stuck_after_s": np.full(m, np.nan),
            "drift_detection": np.zeros(m, np.bool_),
        }
        for name, default in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    def __len__(self) -> int:
        return len(self.ids)

    def by_site(self) -> dict[str, dict[str, int]]:
        """Site id → (sensor id → row): the sensors a topic of that site may carry."""
        out: dict[str, dict[str, int]] = {}
        for place in self.places:
            out.setdefault(place.site, {})[place.sensor.id] = place.index
        return out

    def nodes(self) -> set[tuple[str, str]]:
        """Every ``(site, gateway)`` of the plant: its gateways, its Sparkplug edge nodes."""
        return {(place.site, place.gateway) for place in self.places}

    @classmethod
    def from_config(cls, plant: PlantConfig) -> SensorTable:
        places = plant.places()
        m = len(places)
        limits = {name: np.full(m, np.nan) for name in LIMIT_NAMES}
        for place in places:
            for name, value in place.sensor.effective_limits().items():
                limits[name][place.index] = value
        return cls(
            ids=[p.sensor.id for p in places],
            places=places,
            index={p.sensor.id: p.index for p in places},
            ll=limits["ll"],
            l=limits["l"],
            h=limits["h"],
            hh=limits["hh"],
            deadband=np.array([p.sensor.effective_deadband() for p in places], np.float64),
            range_lo=np.array([p.sensor.range[0] for p in places], np.float64),
            range_hi=np.array([p.sensor.range[1] for p in places], np.float64),
            on_delay_ms=np.array([round(p.sensor.on_delay_s * 1000) for p in places], np.int64),
            off_delay_ms=np.array([round(p.sensor.off_delay_s * 1000) for p in places], np.int64),
            trend_horizon_s=np.array([p.sensor.trend_horizon_s for p in places], np.float64),
            max_rate_per_min=_or_nan([p.sensor.max_rate_per_min for p in places]),
            max_gap_s=np.array([p.sensor.max_gap_s for p in places], np.float64),
            stuck_after_s=_or_nan([p.sensor.effective_stuck_after_s() for p in places]),
            drift_detection=np.array([p.sensor.effective_drift_detection() for p in places],
                                     np.bool_),
        )

    def limit(self, name: str) -> npt.NDArray[np.float64]:
        """The limit column ``ll``, ``l``, ``h`` or ``hh``."""
        arr: npt.NDArray[np.float64] = getattr(self, name)
        return arr


def _or_nan(values: list[float | None]) -> npt.NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in values], np.float64)
