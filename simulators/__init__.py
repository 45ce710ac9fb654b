"""Simulated plant data: a plant's sensors in normal operation, in gas leaks and in
the incidents and faults of scenario files (with ground truth), encoded as JSON
or line-protocol gateway messages and published to an MQTT broker.

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
from simulators.scenario import (
    IncidentTruth,
    Scenario,
    ScenarioError,
    ScenarioMessage,
    ScenarioPlant,
    load_scenario,
    parse_scenario,
    scenario_messages,
)

__all__ = [
    "BrokerUrlError",
    "GatewayLayout",
    "IncidentTruth",
    "LeakSpec",
    "LeakSpecError",
    "MqttPublisher",
    "PlantSimulator",
    "PublishError",
    "Scenario",
    "ScenarioError",
    "ScenarioMessage",
    "ScenarioPlant",
    "SimulationReport",
    "SimulatorError",
    "encode_gateway_message",
    "gateway_messages",
    "gateway_topic",
    "leak_response",
    "load_scenario",
    "parse_broker_url",
    "parse_leak",
    "parse_scenario",
    "run_simulation",
    "scenario_messages",
]
