"""Sparkplug B topics: ``spBv1.0/<group>/<TYPE>/<edge>[/<device>]`` and ``spBv1.0/STATE/<host>``.

A topic is parsed once, where a message arrives, into a :class:`NodeTopic`
or a :class:`StateTopic`; everything after that works on the parsed form.
A malformed topic raises :class:`TopicError` naming the topic, so a dead
letter says which publisher to fix.

Ids (group, edge node, device, host) must be non-empty and may not contain
``/``, ``+`` or ``#``: the first would shift every later level, the other two
are MQTT wildcards that a publisher cannot use (Sparkplug 3.0, topic namespace).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "NAMESPACE",
    "MessageType",
    "NodeTopic",
    "SparkplugError",
    "StateTopic",
    "TopicError",
    "check_id",
    "parse_topic",
    "state_topic",
]

NAMESPACE = "spBv1.0"

_FORBIDDEN = ("/", "+", "#")


class SparkplugError(ValueError):
    """Base class of the errors of the :mod:`sparkplug` package (all are bad input)."""


class TopicError(SparkplugError):
    """A topic is not a Sparkplug B topic; ``topic`` is what was given."""

    def __init__(self, topic: str, problem: str) -> None:
        self.topic = topic
        self.problem = problem
        super().__init__(f"Sparkplug topic {topic!r}: {problem}")


class MessageType(StrEnum):
    """The Sparkplug verbs; a device-level verb needs a device id in its topic."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"

    @property
    def is_device(self) -> bool:
        """True for the verbs whose topic ends with a device id."""
        return self.value.startswith("D")


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it can be a Sparkplug id; ``what`` names it in the error.

    Raises
    ------
    SparkplugError
        If it is empty or contains ``/``, ``+`` or ``#``.
    """
    if not value:
        raise SparkplugError(f"{what} must not be empty")
    bad = [c for c in _FORBIDDEN if c in value]
    if bad:
        raise SparkplugError(f"{what} {value!r} contains {' and '.join(map(repr, bad))}, "
                             "which a Sparkplug id may not")
    return value


@dataclass(frozen=True, slots=True)
class NodeTopic:
    """``spBv1.0/<group>/<TYPE>/<edge_node>[/<device>]``, parsed."""

    group: str
    message_type: MessageType
    edge_node: str
    device: str | None = None

    def __post_init__(self) -> None:
        check_id(self.group, "group id")
        check_id(self.edge_node, "edge node id")
        if self.message_type.is_device:
            if self.device is None:
                raise SparkplugError(f"a {self.message_type} topic needs a device id")
            check_id(self.device, "device id")
        elif self.device is not None:
            raise SparkplugError(
                f"a {self.message_type} topic has no device id, got {self.device!r}"
            )

    @property
    def node(self) -> tuple[str, str]:
        """``(group, edge_node)``: what identifies the edge node (its seq, bdSeq, aliases)."""
        return (self.group, self.edge_node)

    def __str__(self) -> str:
        tail = "" if self.device is None else f"/{self.device}"
        return f"{NAMESPACE}/{self.group}/{self.message_type}/{self.edge_node}{tail}"


@dataclass(frozen=True, slots=True)
class StateTopic:
    """``spBv1.0/STATE/<host_id>``: a host application's online/offline state."""

    host_id: str

    def __post_init__(self) -> None:
        check_id(self.host_id, "host id")

    def __str__(self) -> str:
        return f"{NAMESPACE}/STATE/{self.host_id}"


def state_topic(host_id: str) -> str:
    """The STATE topic of host application ``host_id``."""
    return str(StateTopic(host_id))


def parse_topic(topic: str) -> NodeTopic | StateTopic:
    """Parse a Sparkplug B topic.

    Raises
    ------
    TopicError
        If the namespace is not ``spBv1.0``, the verb is unknown, an id is
        empty or has a forbidden character, or the number of levels does not
        fit the verb.
    """
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise TopicError(topic, f"the namespace is {parts[0]!r}, not {NAMESPACE!r}")
    try:
        if len(parts) >= 2 and parts[1] == "STATE":
            if len(parts) != 3:
                raise TopicError(topic, "a STATE topic is spBv1.0/STATE/<host_id>")
            return StateTopic(parts[2])
        if len(parts) not in (4, 5):
            raise TopicError(
                topic, f"has {len(parts)} levels; expected "
                "spBv1.0/<group>/<TYPE>/<edge_node>[/<device>]"
            )
        try:
            message_type = MessageType(parts[2])
        except ValueError:
            known = ", ".join(m.value for m in MessageType)
            raise TopicError(topic, f"{parts[2]!r} is not a Sparkplug verb ({known})") from None
        device = parts[4] if len(parts) == 5 else None
        return NodeTopic(parts[1], message_type, parts[3], device)
    except TopicError:
        raise
    except SparkplugError as exc:
        raise TopicError(topic, str(exc)) from exc
