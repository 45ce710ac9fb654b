"""The JSON gateway payload, as a field gateway publishes it.

Topic ``plant/<site>/<gateway>``, QoS 1, payload::

    {"gateway": "gw-tank-a", "ts": 1764337200000,
     "readings": [{"sensor": "TF-A-LEL-01", "value": 3.1}, ...]}

``ts`` is the message's event time in integer ms since the epoch (UTC); a
reading may carry its own ``ts`` and ``quality`` (0 good, 1 uncertain, 2 bad,
3 stale), which the simulator never needs: all its readings of a step share
the step's time and are good. Each area's sensors are published by the area's
gateway (:attr:`model.plant.SensorPlace.gateway`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from model.plant import PlantConfig

__all__ = [
    "GatewayGroup",
    "GatewayLayout",
    "encode_gateway_message",
    "gateway_messages",
    "gateway_topic",
]


def gateway_topic(site: str, gateway: str) -> str:
    """MQTT topic a gateway publishes on."""
    return f"plant/{site}/{gateway}"


def encode_gateway_message(
    gateway: str, ts_ms: int, readings: Sequence[tuple[str, float]]
) -> bytes:
    """Encode one gateway message.

    Parameters
    ----------
    gateway : str
        Gateway id, repeated in the payload so a message stands on its own.
    ts_ms : int
        Event time of every reading, ms since the Unix epoch, UTC.
    readings : sequence of (sensor id, value)
        Values in the sensor's unit; must be finite (JSON has no NaN, and a
        gateway reports a failed sensor by quality, not by a made-up number).

    Raises
    ------
    ValueError
        If a value is not finite; the message names the sensor.
    """
    out = []
    for sensor, value in readings:
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"gateway {gateway}: sensor {sensor} value {v} is not finite")
        out.append({"sensor": sensor, "value": v})
    return orjson.dumps({"gateway": gateway, "ts": int(ts_ms), "readings": out})


@dataclass(frozen=True, slots=True)
class GatewayGroup:
    """The sensors one gateway publishes, and where their values sit in a step's array."""

    site: str
    gateway: str
    topic: str
    rows: npt.NDArray[np.intp]
    sensor_ids: tuple[str, ...]


class GatewayLayout:
    """Which gateway publishes which sensor, computed once per plant.

    Gateways appear in the order of their first sensor in ``plant.places()``;
    a gateway serving several areas publishes all their sensors together.
    """

    def __init__(self, plant: PlantConfig) -> None:
        places = plant.places()
        self.n_sensors = len(places)
        order: dict[tuple[str, str], list[int]] = {}
        for place in places:
            order.setdefault((place.site, place.gateway), []).append(place.index)
        self.groups: tuple[GatewayGroup, ...] = tuple(
            GatewayGroup(
                site=site,
                gateway=gateway,
                topic=gateway_topic(site, gateway),
                rows=np.array(rows, dtype=np.intp),
                sensor_ids=tuple(places[i].sensor.id for i in rows),
            )
            for (site, gateway), rows in order.items()
        )

    def messages(
        self,
        ts_ms: int,
        values: npt.ArrayLike,
        max_readings_per_message: int = 100,
    ) -> list[tuple[str, bytes, int]]:
        """Encode one step of readings as gateway messages.

        Parameters
        ----------
        ts_ms : int
            Event time of the step, ms since the Unix epoch, UTC.
        values : float array, shape (n_sensors,)
            Readings in ``plant.places()`` order.
        max_readings_per_message : int
            A gateway with more sensors sends several messages, as real
            gateways do to stay under a broker's or their own packet limit.

        Returns
        -------
        list of (topic, payload, n_readings)
        """
        if max_readings_per_message < 1:
            raise ValueError(
                f"max_readings_per_message must be at least 1, not {max_readings_per_message}"
            )
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (self.n_sensors,):
            raise ValueError(
                f"values has shape {v.shape}; expected ({self.n_sensors},), one per sensor"
            )
        out: list[tuple[str, bytes, int]] = []
        for group in self.groups:
            group_values: list[float] = v[group.rows].tolist()
            for start in range(0, len(group.rows), max_readings_per_message):
                stop = start + max_readings_per_message
                readings = list(
                    zip(group.sensor_ids[start:stop], group_values[start:stop], strict=True)
                )
                payload = encode_gateway_message(group.gateway, ts_ms, readings)
                out.append((group.topic, payload, len(readings)))
        return out


def gateway_messages(
    plant: PlantConfig,
    ts_ms: int,
    values: npt.ArrayLike,
    max_readings_per_message: int = 100,
) -> list[tuple[str, bytes, int]]:
    """Encode one step of readings as ``(topic, payload, n_readings)`` per message.

    A convenience over :class:`GatewayLayout`; a loop publishing many steps
    should build the layout once instead.
    """
    return GatewayLayout(plant).messages(ts_ms, values, max_readings_per_message)
