"""Simulated plant data: a plant's sensors in normal operation and in gas leaks,
encoded as JSON gateway messages and published to an MQTT broker.

Seeds are parameters (``rng`` / ``seed``); nothing here uses global random state.
"""

from simulators.errors import BrokerUrlError, LeakSpecError, PublishError, SimulatorError
from simulators.gateway_json import (
    GatewayLayout,
    encode_gateway_message,
    gateway_messages,
    gateway_topic,
)
from simulators.leak import LeakSpec, leak_response, parse_leak
from simulators.plant import PlantSimulator
from simulators.publisher import MqttPublisher, parse_broker_url
from simulators.run import SimulationReport, run_simulation

__all__ = [
    "BrokerUrlError",
    "GatewayLayout",
    "LeakSpec",
    "LeakSpecError",
    "MqttPublisher",
    "PlantSimulator",
    "PublishError",
    "SimulationReport",
    "SimulatorError",
    "encode_gateway_message",
    "gateway_messages",
    "gateway_topic",
    "leak_response",
    "parse_broker_url",
    "parse_leak",
    "run_simulation",
]
