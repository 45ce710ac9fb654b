"""Sensor faults: what a transmitter does to the true value before we see it.

Each function is pure: the time since the fault started (and, for random
faults, a generator the caller keys by timestamp) in, a change to the
readings out. Scenarios apply them after the process models, so the ground
truth (the true value) is never touched by a fault, and a detector that
trusts a faulty reading can be caught out by the backtest.

The faults are the ones field instruments really have:

* **drift** — the zero creeps (an ageing electrochemical cell, a poisoned
  catalytic bead, a transmitter out of calibration), in unit per hour, until
  the sensor is recalibrated;
* **offset** — a calibration error: zeroed in the presence of gas, or a wrong
  span gas, so every reading is off by a constant;
* **stuck** — the transmitter froze: the reading holds its last value;
* **dropout** — no reading at all (a broken loop, a dead detector head);
* **spikes** — single-sample excursions (EMI from a starting motor, a loose
  terminal);
* **noise burst** — a stretch of extra noise (a failing cable screen).

Values are clipped to the sensor's range by the caller afterwards, as a real
transmitter saturates at its range ends: a downward drift on a gas detector in
clean air therefore shows as a flat 0, which is exactly why such a drift can
hide a leak.
"""

from __future__ import annotations

import numpy as np

from model.batch import F64

__all__ = [
    "FAULT_WINDOW_S",
    "active",
    "drift_offset",
    "noise_burst",
    "spike_offsets",
    "spike_probability",
]


FAULT_WINDOW_S = float("inf")
"""End of a fault that lasts until the scenario ends (no ``duration_s``)."""


def active(t_s: float, at_s: float, duration_s: float | None) -> bool:
    """Whether a fault starting at ``at_s`` and lasting ``duration_s`` covers ``t_s``."""
    end = FAULT_WINDOW_S if duration_s is None else at_s + duration_s
    return at_s <= t_s < end


def drift_offset(t_s: float, at_s: float, rate_per_h: F64, duration_s: float | None) -> F64:
    """Zero drift added to the readings at ``t_s``.

    The error grows linearly at ``rate_per_h`` (unit per hour, signed) from
    ``at_s``; at ``at_s + duration_s`` the sensor is recalibrated and the
    error is gone. Before ``at_s`` it is 0.
    """
    if not active(t_s, at_s, duration_s):
        return np.zeros_like(rate_per_h)
    return rate_per_h * ((t_s - at_s) / 3600.0)


def spike_probability(rate_per_min: float, rate_hz: float) -> float:
    """Chance that one reading is a spike, for ``rate_per_min`` spikes a minute on average."""
    return min(1.0, rate_per_min / (60.0 * rate_hz))


def spike_offsets(
    rng: np.random.Generator, n: int, probability: float, amplitude: F64, sign: str
) -> F64:
    """Offsets of one step's spikes: 0 for most readings, ±(0.5–1)·amplitude for a few.

    Three draws of ``n`` values each are always made, whatever comes out, so
    the outcome for one sensor does not depend on the others'.

    Parameters
    ----------
    rng : numpy.random.Generator
        Keyed by the caller to the fault and the timestamp.
    n : int
        Sensors the fault covers.
    probability : float
        Chance of a spike per reading.
    amplitude : float64 array, shape (n,)
        Largest spike, in the sensor's unit.
    sign : {"up", "down", "both"}
        Direction of the spikes.
    """
    hit = rng.uniform(0.0, 1.0, n) < probability
    size = amplitude * rng.uniform(0.5, 1.0, n)
    up = rng.uniform(0.0, 1.0, n) < 0.5
    if sign == "up":
        direction = np.ones(n)
    elif sign == "down":
        direction = -np.ones(n)
    else:
        direction = np.where(up, 1.0, -1.0)
    return np.where(hit, direction * size, 0.0)


def noise_burst(rng: np.random.Generator, sigma: F64) -> F64:
    """Extra Gaussian noise of one step, ``sigma`` per sensor (shape of ``sigma``)."""
    return sigma * rng.standard_normal(sigma.shape)
