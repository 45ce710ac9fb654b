"""Sparkplug B (3.0, ISO/IEC 20237) as plantwatch speaks it: topics and payloads.

Shared by the edge-node simulator (:mod:`simulators.sparkplug_edge`) and the
host application in ingest (:mod:`decoders.sparkplug_host`), so both sides read
and write the same bytes. No MQTT client here: only names and encodings.

Naming in plantwatch's Sparkplug namespace: group id = site id, edge node id =
gateway id, device id = area id, and **a metric's name is the plant's sensor
id** (``TF-A-LEL-01``), which ``config/plant.yaml`` keeps unique plant-wide.
The topic already says where the sensor is, so the name carries no folder.

Errors, all bad input (``ValueError``)::

    SparkplugError
     ├── TopicError      a topic is not spBv1.0/<group>/<TYPE>/<edge>[/<device>] or STATE
     └── PayloadError    bytes are not a Sparkplug B payload, or a value does not fit its type

The protobuf classes are generated from ``sparkplug_b.proto`` (see the header
of ``sparkplug_b_pb2.py`` to regenerate them).
"""

from sparkplug.codec import (
    BD_SEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    MetricValue,
    Payload,
    PayloadError,
    bd_seq_metric,
    bd_seq_of,
    decode_payload,
    decode_value,
    encode_payload,
    ndeath_payload,
    rebirth_command,
)
from sparkplug.topics import (
    NAMESPACE,
    MessageType,
    NodeTopic,
    SparkplugError,
    StateTopic,
    TopicError,
    check_id,
    parse_topic,
    state_topic,
)

__all__ = [
    "BD_SEQ_METRIC",
    "NAMESPACE",
    "REBIRTH_METRIC",
    "DataType",
    "MessageType",
    "Metric",
    "MetricValue",
    "NodeTopic",
    "Payload",
    "PayloadError",
    "SparkplugError",
    "StateTopic",
    "TopicError",
    "bd_seq_metric",
    "bd_seq_of",
    "check_id",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "ndeath_payload",
    "parse_topic",
    "rebirth_command",
    "state_topic",
]
