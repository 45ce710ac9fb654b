"""Process models for scenarios: how a plant's true values move in an incident.

Each model is a pure function of time (seconds since the event started, any
array shape, negative meaning "not yet") returning the *deviation* from normal
operation, so a scenario adds it to :class:`simulators.plant.PlantSimulator`'s
normal readings. Closed forms only: no integrator state, so a reading can be
computed at any time, in any order, twice, and always comes out the same.

The shapes are the ones real incidents have, because trend detectors and
alarm delays are only tested honestly by them:

* gas at a detector builds up as the release grows and reaches the detector
  through its first-order response (T90 ≈ 30 s, docs/domain.md §3): a ramp, never
  a step (:func:`gas_release`);
* a blocked-in vessel's pressure approaches the source's pressure (a pump's
  shut-off head) exponentially; a working relief valve caps it a little above
  its set pressure, a stuck one does not (:func:`vessel_pressure`);
* an exothermic reactor that lost its cooling heats slowly at first, then
  faster and faster: with an Arrhenius heat release, ``dT/dt = r0 exp(ΔT/θ)``
  (Semenov / Frank-Kamenetskii), whose solution ``ΔT = -θ ln(1 - t/TMR)``
  reaches its maximum rate at the *time to maximum rate* TMR, until the
  reactants are spent (:func:`runaway_rise`);
* lost cooling water warms with the basin's time constant, and what it cools
  follows through a second, slower lag (:func:`first_order_step`,
  :func:`two_lag_step`);
* drives tripped by a power dip push pressures and flows away within seconds,
  and the control loops overshoot when the drives restart
  (:func:`underdamped_step`).
"""

from __future__ import annotations

import math

import numpy as np

from model.batch import F64
from simulators.leak import DETECTOR_T90_S

__all__ = [
    "TAU_S",
    "first_order_step",
    "gas_release",
    "lagged_quadratic",
    "lagged_ramp",
    "relief_cap",
    "runaway_rise",
    "two_lag_step",
    "underdamped_step",
    "vessel_pressure",
]

ArrayLike = float | F64

TAU_S = DETECTOR_T90_S / math.log(10.0)
"""Time constant of a gas detector's first-order response, seconds (T90 / ln 10)."""
# Past this many time constants a lag's residue is below 3e-9 of its input:
# the response returns an exact zero, so a scenario long after an event reads
# byte-identical to one without it.
_SETTLED_TAUS = 20.0


def _f(x: ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def lagged_ramp(t_s: ArrayLike, tau_s: float = TAU_S) -> F64:
    """First-order lag's response to a unit-slope ramp starting at 0 s.

    ``y = t - τ (1 - exp(-t/τ))`` for ``t ≥ 0``, else 0.
    """
    t = np.maximum(_f(t_s), 0.0)
    return t - tau_s * -np.expm1(-t / tau_s)


def lagged_quadratic(t_s: ArrayLike, tau_s: float = TAU_S) -> F64:
    """First-order lag's response to ``u = t²`` starting at 0 s.

    ``y = t² - 2τt + 2τ² (1 - exp(-t/τ))`` for ``t ≥ 0``, else 0.
    """
    t = np.maximum(_f(t_s), 0.0)
    return t * t - 2.0 * tau_s * t + 2.0 * tau_s * tau_s * -np.expm1(-t / tau_s)


def gas_release(
    t_s: ArrayLike,
    ramp_s: float,
    hold_s: float,
    clear_s: float,
    *,
    quadratic: bool = False,
    tau_s: float = TAU_S,
) -> F64:
    """A gas detector's normalised reading during a release.

    The concentration at the detector head rises from 0 to 1 over ``ramp_s``
    — linearly for a release that opens at a steady rate, as ``(t/ramp)²``
    for a seal or gasket whose leak path widens as it wears — holds until the
    release is isolated at ``ramp_s + T90 + hold_s``, then falls linearly to
    0 over ``clear_s`` as ventilation clears the cloud. The detector sees it
    through its first-order lag. The input is a sum of shifted ramps and
    parabolas, so the reading is a sum of their closed-form lagged responses.

    With ``ramp_s = 30``, ``clear_s = 60`` and a linear rise this is exactly
    :func:`simulators.leak.leak_response` with ``duration_s = hold_s``.

    Parameters
    ----------
    t_s : float or float64 array
        Seconds since the release started at this detector.
    ramp_s, hold_s, clear_s : float
        Build-up time (> 0), hold at the peak after the build-up and the
        detector's lag (≥ 0), dispersion time after isolation (> 0), seconds.
    quadratic : bool
        Rise as ``(t/ramp)²`` instead of linearly.
    tau_s : float
        Detector time constant.

    Returns
    -------
    float64 array, shape of ``t_s``
        Fraction of the peak reading, in [0, 1].
    """
    t = _f(t_s)
    iso = ramp_s + DETECTOR_T90_S + hold_s
    if quadratic:
        up = (
            lagged_quadratic(t, tau_s)
            - lagged_quadratic(t - ramp_s, tau_s)
            - 2.0 * ramp_s * lagged_ramp(t - ramp_s, tau_s)
        ) / (ramp_s * ramp_s)
    else:
        up = (lagged_ramp(t, tau_s) - lagged_ramp(t - ramp_s, tau_s)) / ramp_s
    down = (lagged_ramp(t - iso, tau_s) - lagged_ramp(t - iso - clear_s, tau_s)) / clear_s
    r = np.clip(up - down, 0.0, 1.0)
    settled = (t <= 0.0) | (t > iso + clear_s + _SETTLED_TAUS * tau_s)
    return np.where(settled, 0.0, r)


def relief_cap(excess: ArrayLike, cap: ArrayLike, accumulation: ArrayLike) -> F64:
    """A pressure rise as a modulating relief valve lets it through.

    Below ``cap`` (the set pressure, as a rise over the operating point) the
    valve is shut and the rise passes unchanged; above it the valve opens in
    proportion and the rise saturates at ``cap + accumulation`` (the
    overpressure a relief valve needs to reach full lift, a few per cent of
    set). Smooth, with slope 1 at the set pressure.
    """
    x, c, a = _f(excess), _f(cap), _f(accumulation)
    over = np.maximum(x - c, 0.0)
    return np.where(x <= c, x, c + a * -np.expm1(-over / a))


def vessel_pressure(
    t_s: ArrayLike,
    rise: ArrayLike,
    tau_s: float,
    *,
    cap: ArrayLike | None = None,
    accumulation: ArrayLike = 0.0,
    duration_s: float | None = None,
) -> F64:
    """Pressure rise of a blocked-in vessel fed by a pump or a higher-pressure source.

    The vessel fills towards the source pressure, ``rise`` above the
    operating point, as a first-order process with time constant ``tau_s``
    (vessel capacity over the source's flow stiffness): the initial rate is
    ``rise / tau_s`` and the rise slows as the pump climbs its curve. With a
    working relief valve (``cap`` given: the set pressure as a rise over the
    operating point, a scalar or per time) it saturates near the set pressure
    (:func:`relief_cap`); a stuck valve (``cap`` None) lets it go to the
    source pressure. After ``duration_s`` the cause is removed (a block valve
    reopened) and the pressure decays from where it stood with the same time
    constant.

    Returns
    -------
    float64 array, broadcast of ``t_s`` and ``rise``
        Rise over the operating point, in the unit of ``rise``; 0 before the event.
    """
    t = _f(t_s)

    def capped(x: F64) -> F64:
        drive = _f(rise) * -np.expm1(-np.maximum(x, 0.0) / tau_s)
        return drive if cap is None else relief_cap(drive, cap, accumulation)

    if duration_s is None:
        return capped(t)
    at_end = capped(np.asarray(duration_s, dtype=np.float64))
    after = at_end * np.exp(-np.maximum(t - duration_s, 0.0) / tau_s)
    return np.where(t <= duration_s, capped(t), after)


def runaway_rise(
    t_s: ArrayLike, tmr_s: ArrayLike, theta: float, adiabatic_rise: float
) -> F64:
    """Temperature rise of an exothermic reactor after its cooling is lost.

    With the heat release ``∝ exp(-E/RT)`` linearised around the operating
    temperature (Frank-Kamenetskii), the adiabatic heating rate is
    ``dT/dt = r0 exp(ΔT/θ)`` with ``θ = R T0²/E`` (about 30 °C for
    E ≈ 100 kJ/mol at 320 °C). Its solution ``ΔT = -θ ln(1 - t/TMR)``, with
    the time to maximum rate ``TMR = θ/r0``, creeps at first (``r0``) and
    runs away near TMR. The reactants run out at ``adiabatic_rise`` above the
    start, where the rise stops.

    Parameters
    ----------
    t_s : float or float64 array
        Seconds since the cooling was lost.
    tmr_s : float or float64 array
        Time to maximum rate, seconds (per sensor: a hot spot runs ahead).
    theta : float
        ``R T0² / E``, in the temperature's unit.
    adiabatic_rise : float
        Rise at which the reactants are spent.

    Returns
    -------
    float64 array, broadcast of ``t_s`` and ``tmr_s``
        Rise over the operating temperature; 0 before the event.
    """
    t = np.maximum(_f(t_s), 0.0)
    left = 1.0 - t / _f(tmr_s)
    floor = math.exp(-adiabatic_rise / theta)  # where the rise reaches the cap
    safe = np.maximum(left, floor)
    return np.minimum(-theta * np.log(safe), adiabatic_rise)


def first_order_step(t_s: ArrayLike, tau_s: float) -> F64:
    """Unit step through a first-order lag: ``1 - exp(-t/τ)`` for ``t ≥ 0``, else 0."""
    return -np.expm1(-np.maximum(_f(t_s), 0.0) / tau_s)


def two_lag_step(t_s: ArrayLike, tau1_s: float, tau2_s: float) -> F64:
    """Unit step through two first-order lags in series (0 before ``t = 0``).

    What a reactor temperature does when its cooling water warms: the water
    follows the loss with ``tau1``, the reactor follows the water with
    ``tau2``, so the reactor starts flat (zero slope) and lags behind.
    """
    t = np.maximum(_f(t_s), 0.0)
    if math.isclose(tau1_s, tau2_s, rel_tol=1e-9):
        x = t / tau1_s
        return -np.expm1(-x) - x * np.exp(-x)
    a = tau1_s * -np.expm1(-t / tau1_s)
    b = tau2_s * -np.expm1(-t / tau2_s)
    return (a - b) / (tau1_s - tau2_s)


def underdamped_step(t_s: ArrayLike, period_s: ArrayLike, damping: ArrayLike) -> F64:
    """Unit step response of a second-order loop (0 before ``t = 0``).

    ``period_s`` is the natural period ``2π/ωn``; ``damping`` is ζ in (0, 1).
    A control loop bringing a value back after a disturbance overshoots by
    ``exp(-ζπ/√(1-ζ²))`` (37 % at ζ = 0.3) and rings at the damped period.
    """
    t = np.maximum(_f(t_s), 0.0)
    zeta = _f(damping)
    wn = 2.0 * math.pi / _f(period_s)
    root = np.sqrt(1.0 - zeta * zeta)
    wd = wn * root
    decay = np.exp(-zeta * wn * t)
    return 1.0 - decay * (np.cos(wd * t) + zeta / root * np.sin(wd * t))
