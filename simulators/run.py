"""Play a simulated plant into an MQTT broker, step by step.

Event time and wall time are separate on purpose: with ``realtime=True`` the
run is a live demo plant; with ``realtime=False`` it is a load generator and a
test fixture that pushes hours of plant data in seconds, with the same event
timestamps it would have had live.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model.plant import PlantConfig
from simulators.gateway_json import GatewayLayout
from simulators.leak import LeakSpec
from simulators.plant import PlantSimulator
from simulators.publisher import MqttPublisher, parse_broker_url

__all__ = ["SimulationReport", "run_simulation"]

# One event-time step per millisecond at most: timestamps are integer ms and
# every (sensor, ts) pair must be unique.
_MAX_RATE_HZ = 1000.0


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What a run published and what the broker acknowledged.

    Attributes
    ----------
    steps : int
        Steps published (fewer than planned if stopped early).
    messages_published, readings_published : int
        Handed to the MQTT client.
    acked_messages, acked_readings : int
        Acknowledged by the broker (QoS 1 PUBACK) by the end of the run.
    start_ms : int
        Event time of the first step, ms since the Unix epoch, UTC.
    end_ms : int
        Event time of the last step published (``start_ms`` if none was).
    """

    steps: int
    messages_published: int
    readings_published: int
    acked_messages: int
    acked_readings: int
    start_ms: int
    end_ms: int

    @property
    def all_acked(self) -> bool:
        return (
            self.acked_messages == self.messages_published
            and self.acked_readings == self.readings_published
        )


def step_times_ms(start_ms: int, rate_hz: float, n_steps: int) -> list[int]:
    """Event times of the steps: ``start_ms + k / rate_hz``, rounded to whole ms.

    With ``rate_hz ≤ 1000`` consecutive steps are at least 1 ms apart, so the
    times are strictly increasing.
    """
    period_ms = 1000.0 / rate_hz
    return [start_ms + round(k * period_ms) for k in range(n_steps)]


def run_simulation(
    plant: PlantConfig,
    broker_url: str,
    *,
    rate_hz: float = 1.0,
    duration_s: float = 60.0,
    seed: int = 0,
    leaks: Sequence[LeakSpec] = (),
    start_ms: int | None = None,
    realtime: bool = True,
    max_readings_per_message: int = 100,
    on_progress: Callable[[int, int], None] | None = None,
    stop_event: threading.Event | None = None,
    ack_timeout_s: float = 30.0,
) -> SimulationReport:
    """Publish ``duration_s`` of simulated plant readings to a broker.

    Parameters
    ----------
    plant : PlantConfig
        The plant to simulate.
    broker_url : str
        ``mqtt://HOST:PORT``.
    rate_hz : float
        Steps per second of event time; every sensor is read once a step.
        At most 1000 (timestamps are whole milliseconds).
    duration_s : float
        Event time covered: ``floor(duration_s * rate_hz)`` steps (at least one).
    seed : int
        Seed of the simulator's random generator; same seed, same readings.
    leaks : sequence of LeakSpec
        Gas releases, timed from ``start_ms``.
    start_ms : int or None
        Event time of the first step, ms since the Unix epoch; now when None.
    realtime : bool
        Pace steps to the wall clock; otherwise publish as fast as the broker
        acknowledges, with the same event timestamps.
    max_readings_per_message : int
        Larger gateways split a step into several messages.
    on_progress : callable (steps_done, steps_total) or None
        Called after each step, from the calling thread.
    stop_event : threading.Event or None
        Set it (from any thread) to stop after the current step.
    ack_timeout_s : float
        How long to wait at the end for outstanding PUBACKs; the report
        shows any shortfall rather than raising.

    Raises
    ------
    ValueError
        For a rate, duration or message size out of range; BrokerUrlError
        (a ValueError) for a bad URL; LeakSpecError for a leak in an unknown area.
    PublishError
        If the broker cannot be reached or refuses a message.
    """
    if not (0 < rate_hz <= _MAX_RATE_HZ):
        raise ValueError(f"rate_hz={rate_hz} must be above 0 and at most {_MAX_RATE_HZ:g}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s={duration_s} must be a finite number above 0")
    if max_readings_per_message < 1:
        raise ValueError(
            f"max_readings_per_message={max_readings_per_message} must be at least 1"
        )
    parse_broker_url(broker_url)  # fail on a bad URL before building anything
    if start_ms is None:
        start_ms = time.time_ns() // 1_000_000
    n_steps = max(1, math.floor(duration_s * rate_hz + 1e-9))
    times_ms = step_times_ms(start_ms, rate_hz, n_steps)
    simulator = PlantSimulator(plant, np.random.default_rng(seed), start_ms, leaks)
    layout = GatewayLayout(plant)

    steps = 0
    with MqttPublisher(broker_url) as publisher:
        wall_start = time.monotonic()
        for k, ts_ms in enumerate(times_ms):
            if stop_event is not None and stop_event.is_set():
                break
            if realtime:
                delay_s = wall_start + (ts_ms - start_ms) / 1000.0 - time.monotonic()
                if delay_s > 0:
                    if stop_event is not None:
                        if stop_event.wait(delay_s):
                            break
                    else:
                        time.sleep(delay_s)
            values = simulator.values_at(ts_ms)
            for topic, payload, n_readings in layout.messages(
                ts_ms, values, max_readings_per_message
            ):
                publisher.publish(topic, payload, n_readings)
            steps = k + 1
            if on_progress is not None:
                on_progress(steps, n_steps)
        publisher.wait_all_acked(ack_timeout_s)
        return SimulationReport(
            steps=steps,
            messages_published=publisher.published_messages,
            readings_published=publisher.published_readings,
            acked_messages=publisher.acked_messages,
            acked_readings=publisher.acked_readings,
            start_ms=start_ms,
            end_ms=times_ms[steps - 1] if steps else start_ms,
        )
