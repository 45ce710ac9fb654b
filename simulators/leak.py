"""Gas leaks as a gas detector sees them.

A real release does not step a detector's reading: the cloud builds up at the
detector head over some tens of seconds, and the detector itself answers with a
first-order lag (T90 ≈ 30 s, docs/domain.md §3). So a leak shows as a ramp, and so
does its end after the release is isolated. Trend detectors and alarm
deadbands are only exercised honestly by that shape, which is why the
simulator models it instead of injecting steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.errors import LeakSpecError

__all__ = [
    "CLEAR_S",
    "DETECTOR_T90_S",
    "RISE_S",
    "SOURCE_RAMP_S",
    "LeakSpec",
    "leak_response",
    "parse_leak",
]

DETECTOR_T90_S = 30.0
"""Time for a detector to show 90 % of a step change, seconds (docs/domain.md §3)."""
_TAU_S = DETECTOR_T90_S / math.log(10.0)
SOURCE_RAMP_S = 30.0
"""Time for the concentration at the detector head to build up to its peak, seconds."""
RISE_S = 60.0
"""Time from leak start until the reading stands near its peak (source ramp plus
detector lag); the hold of ``duration_s`` starts after it."""
CLEAR_S = 60.0
"""Time for the cloud to disperse once the leak is isolated, seconds; slower than
the build-up because nothing pushes gas away but ventilation and wind."""
# Past this many detector time constants after the cloud has gone, the lag's
# residue is below 3e-9 of the peak; returning an exact zero from then on keeps
# readings byte-identical to a run without the leak.
_SETTLED_TAUS = 20.0


@dataclass(frozen=True, slots=True)
class LeakSpec:
    """A gas release in one area.

    Attributes
    ----------
    area : str
        Id of the area whose combustible and toxic gas detectors see the leak.
    at_s : float
        Start of the release, seconds after the simulation's start.
    duration_s : float
        How long the reading holds near its peak before the leak is isolated,
        seconds (counted after the ~60 s rise).
    peak_pct_lel : float
        Peak reading of the combustible detectors, %LEL. Toxic detectors peak
        at three times their second-level limit, clipped to their range.
    """

    area: str
    at_s: float
    duration_s: float = 120.0
    peak_pct_lel: float = 70.0

    def __post_init__(self) -> None:
        text = f"{self.area}@{self.at_s}"
        if not self.area:
            raise LeakSpecError(text, "the area id is empty")
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise LeakSpecError(text, f"at_s={self.at_s} must be a finite number ≥ 0 seconds")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise LeakSpecError(
                text, f"duration_s={self.duration_s} must be a finite number ≥ 0 seconds"
            )
        if not (0 < self.peak_pct_lel <= 100):
            raise LeakSpecError(
                text, f"peak_pct_lel={self.peak_pct_lel} must be above 0 and at most 100 %LEL"
            )

    @property
    def isolated_at_s(self) -> float:
        """When the release is isolated, seconds after the simulation's start."""
        return self.at_s + RISE_S + self.duration_s


def parse_leak(text: str) -> LeakSpec:
    """Parse ``"AREA@SECONDS"`` (as given on a command line) into a :class:`LeakSpec`.

    Raises
    ------
    LeakSpecError
        If the text is not of that form; the message quotes the text.
    """
    area, sep, when = text.strip().partition("@")
    if not sep:
        raise LeakSpecError(text, "expected AREA@SECONDS, e.g. tf-group-a@120")
    area = area.strip()
    if not area:
        raise LeakSpecError(text, "the area id before '@' is empty")
    try:
        at_s = float(when)
    except ValueError:
        raise LeakSpecError(
            text, f"{when.strip()!r} after '@' is not a number of seconds"
        ) from None
    if not (math.isfinite(at_s) and at_s >= 0):
        raise LeakSpecError(text, f"{when.strip()!r} must be a finite number of seconds ≥ 0")
    return LeakSpec(area=area, at_s=at_s)


def _lagged_ramp(x_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Response of the detector's first-order lag to a unit ramp starting at 0 s."""
    xp = np.maximum(x_s, 0.0)
    return xp - _TAU_S * -np.expm1(-xp / _TAU_S)


def leak_response(
    t_s: npt.NDArray[np.float64], duration_s: float
) -> npt.NDArray[np.float64]:
    """Normalised detector reading during a leak.

    The concentration at the detector head is piecewise linear: 0 → 1 over
    :data:`SOURCE_RAMP_S`, held until the leak is isolated at
    ``RISE_S + duration_s``, then 1 → 0 over :data:`CLEAR_S`. The detector
    sees it through a first-order lag with T90 = :data:`DETECTOR_T90_S`. A
    piecewise-linear input through a linear lag is a sum of lagged ramps, so
    the reading has a closed form at any time: no state, any sample order.

    Parameters
    ----------
    t_s : float64 array, any shape
        Seconds since the leak started at this detector (negative: not yet).
    duration_s : float
        Hold time after the rise, seconds.

    Returns
    -------
    float64 array, same shape as ``t_s``
        Fraction of the peak reading, in [0, 1].
    """
    iso = RISE_S + duration_s
    up = (_lagged_ramp(t_s) - _lagged_ramp(t_s - SOURCE_RAMP_S)) / SOURCE_RAMP_S
    down = (_lagged_ramp(t_s - iso) - _lagged_ramp(t_s - iso - CLEAR_S)) / CLEAR_S
    r = np.clip(up - down, 0.0, 1.0)
    settled = (t_s <= 0.0) | (t_s > iso + CLEAR_S + _SETTLED_TAUS * _TAU_S)
    return np.where(settled, 0.0, r)
