"""The exceptions of the simulators, in one small hierarchy::

    SimulatorError
     ├── LeakSpecError        a leak specification is malformed or names an unknown area
     │                        (also a ValueError: it is bad input)
     ├── BrokerUrlError       a broker URL is not ``mqtt://HOST:PORT`` (also a ValueError)
     └── PublishError         the broker could not be reached or refused a message

paho-mqtt's and the socket layer's errors are translated at the boundary with
``raise ... from exc``; each exception carries the offending input as data.
"""

from __future__ import annotations

__all__ = ["BrokerUrlError", "LeakSpecError", "PublishError", "SimulatorError"]


class SimulatorError(Exception):
    """Base class of every error the simulators raise on purpose."""


class LeakSpecError(SimulatorError, ValueError):
    """A leak specification is invalid; ``text`` is what was given."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"leak {text!r}: {problem}")


class BrokerUrlError(SimulatorError, ValueError):
    """A broker URL is not of the form ``mqtt://HOST:PORT``; ``url`` is what was given."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"broker URL {url!r}: {problem} (expected mqtt://HOST:PORT)")


class PublishError(SimulatorError):
    """Publishing failed: the broker is unreachable, refused us, or a message was rejected."""

    def __init__(self, message: str, broker: str = "", topic: str = "") -> None:
        self.broker = broker
        self.topic = topic
        super().__init__(message)
