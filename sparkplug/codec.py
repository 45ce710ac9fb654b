"""Sparkplug B payloads: plain dataclasses in, protobuf bytes out, and back.

The generated classes (:mod:`sparkplug.sparkplug_b_pb2`) stay inside this
module: the edge node and the host work on :class:`Payload` and
:class:`Metric`, which are immutable, typed and compare by value, so tests can
assert on what was sent without protobuf in the way.

Values travel as the specification says (Sparkplug 3.0, payload datatypes): Int8/16/32
and UInt8/16/32 in ``int_value`` (signed ones as 32-bit two's complement),
Int64/UInt64/DateTime in ``long_value`` (Int64 as 64-bit two's complement),
Float, Double, Boolean, String/Text/UUID, and Bytes/File/arrays as raw bytes.
DataSet, Template and property-set values are not used by plantwatch: they
decode to ``value=None`` and cannot be encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from google.protobuf.message import DecodeError

from sparkplug import sparkplug_b_pb2 as pb
from sparkplug.topics import SparkplugError

__all__ = [
    "BD_SEQ_METRIC",
    "REBIRTH_METRIC",
    "DataType",
    "Metric",
    "MetricValue",
    "Payload",
    "PayloadError",
    "bd_seq_metric",
    "bd_seq_of",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "ndeath_payload",
    "rebirth_command",
]

BD_SEQ_METRIC = "bdSeq"
"""The NBIRTH/NDEATH metric linking a birth to its death certificate (Int64, 0–255)."""

REBIRTH_METRIC = "Node Control/Rebirth"
"""The Boolean metric of every NBIRTH (false) and of a rebirth request NCMD (true)."""

MetricValue = bool | int | float | str | bytes | None


class DataType(IntEnum):
    """Sparkplug B datatypes (the ``DataType`` enum of ``sparkplug_b.proto``)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


# Signed integers: the two's-complement width their value is read back at.
_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {
    DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64,
    DataType.DateTime: 64,
}
_FLOATS = {DataType.Float, DataType.Double}
_STRINGS = {DataType.String, DataType.Text, DataType.UUID}
_BYTES = {DataType.Bytes, DataType.File, *(DataType(v) for v in range(22, 35))}

# The datatype a value without one is sent as (a float travels as a Double).
_IMPLIED: dict[type, DataType] = {
    float: DataType.Double, bool: DataType.Boolean, str: DataType.String, bytes: DataType.Bytes,
}


class PayloadError(SparkplugError):
    """A payload cannot be decoded or encoded; ``topic`` is where it came from or went."""

    def __init__(self, problem: str, topic: str = "") -> None:
        self.problem = problem
        self.topic = topic
        super().__init__(problem + (f" (topic {topic})" if topic else ""))


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload.

    ``name`` is sent in births (and in data only by nodes that use no
    aliases); ``alias`` stands for the name everywhere after the birth.
    ``timestamp`` is the acquisition time in ms since the epoch (UTC).
    ``is_null`` says "no value" explicitly, so ``value`` is then None.
    """

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: DataType | None = None
    value: MetricValue = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False


@dataclass(frozen=True, slots=True)
class Payload:
    """A Sparkplug B payload: send time, sequence number (0–255, absent in NDEATH), metrics."""

    timestamp: int | None = None
    seq: int | None = None
    metrics: tuple[Metric, ...] = field(default_factory=tuple)

    def metric(self, name: str) -> Metric | None:
        """The first metric called ``name``, or None."""
        for m in self.metrics:
            if m.name == name:
                return m
        return None


def _signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def decode_value(raw: MetricValue, datatype: DataType | None) -> MetricValue:
    """The value a metric's wire field stands for, given its datatype.

    Only signed integers change: they travel as unsigned two's complement.
    Both conventions seen in the field are read correctly: sign-extended to
    32 bits (Eclipse Tahu) and packed at the type's own width.
    """
    if datatype is not None and isinstance(raw, int) and not isinstance(raw, bool):
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            return _signed(raw, bits)
    return raw


def _check_range(metric: Metric, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise PayloadError(
            f"metric {metric.name or metric.alias!r}: {value} is outside the "
            f"{metric.datatype.name if metric.datatype else '?'} range {low}..{high}"
        )


def _set_value(out: pb.Payload.Metric, metric: Metric) -> None:
    """Put ``metric.value`` into the oneof field its datatype calls for."""
    dt, v = metric.datatype, metric.value
    where = f"metric {metric.name or metric.alias!r}"
    if dt is None:
        # Data messages should not repeat the birth's datatype (Sparkplug 3.0
        # payload rules); the wire field then follows from the Python type, except
        # for an int, whose width and sign only the datatype can tell.
        dt = _IMPLIED.get(type(v))
        if dt is None:
            raise PayloadError(f"{where}: value {v!r} needs a datatype to be encoded")
    if dt in _SIGNED_BITS or dt in _UNSIGNED_BITS:
        if not isinstance(v, int) or isinstance(v, bool):
            raise PayloadError(f"{where}: {dt.name} value must be an int, got {v!r}")
        bits = _SIGNED_BITS.get(dt)
        if bits is not None:
            _check_range(metric, v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        else:
            bits = _UNSIGNED_BITS[dt]
            _check_range(metric, v, 0, (1 << bits) - 1)
        if dt in (DataType.Int64, DataType.UInt64, DataType.DateTime):
            out.long_value = v & 0xFFFF_FFFF_FFFF_FFFF
        else:
            out.int_value = v & 0xFFFF_FFFF
    elif dt in _FLOATS:
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise PayloadError(f"{where}: {dt.name} value must be a number, got {v!r}")
        if dt is DataType.Float:
            out.float_value = float(v)
        else:
            out.double_value = float(v)
    elif dt is DataType.Boolean:
        if not isinstance(v, bool):
            raise PayloadError(f"{where}: Boolean value must be a bool, got {v!r}")
        out.boolean_value = v
    elif dt in _STRINGS:
        if not isinstance(v, str):
            raise PayloadError(f"{where}: {dt.name} value must be a str, got {v!r}")
        out.string_value = v
    elif dt in _BYTES:
        if not isinstance(v, bytes):
            raise PayloadError(f"{where}: {dt.name} value must be bytes, got {v!r}")
        out.bytes_value = v
    else:
        raise PayloadError(f"{where}: datatype {dt.name} cannot be encoded by plantwatch")


def _check_seq(seq: int | None, where: str) -> None:
    if seq is not None and not 0 <= seq <= 255:
        raise PayloadError(f"{where}: seq {seq} is outside 0..255")


def encode_payload(payload: Payload) -> bytes:
    """Serialize a payload.

    A metric without a datatype (as data messages send them) goes by its
    value's Python type: float → double, bool, str, bytes; an int needs one.

    Raises
    ------
    PayloadError
        If a value does not fit its datatype, an int has no datatype, or
        ``seq`` is outside 0–255; the message names the metric.
    """
    _check_seq(payload.seq, "payload")
    out = pb.Payload()
    if payload.timestamp is not None:
        out.timestamp = payload.timestamp
    if payload.seq is not None:
        out.seq = payload.seq
    for metric in payload.metrics:
        m = out.metrics.add()
        if metric.name is not None:
            m.name = metric.name
        if metric.alias is not None:
            m.alias = metric.alias
        if metric.timestamp is not None:
            m.timestamp = metric.timestamp
        if metric.datatype is not None:
            m.datatype = int(metric.datatype)
        if metric.is_historical:
            m.is_historical = True
        if metric.is_transient:
            m.is_transient = True
        if metric.is_null:
            if metric.value is not None:
                raise PayloadError(
                    f"metric {metric.name or metric.alias!r} is null but has value {metric.value!r}"
                )
            m.is_null = True
        else:
            _set_value(m, metric)
    return out.SerializeToString()


def _datatype(code: int, where: str) -> DataType:
    try:
        return DataType(code)
    except ValueError:
        raise PayloadError(f"{where}: datatype {code} is not a Sparkplug B datatype") from None


def decode_payload(data: bytes, topic: str = "") -> Payload:
    """Parse a payload; ``topic`` only goes into error messages.

    Raises
    ------
    PayloadError
        If the bytes are not a Sparkplug B protobuf payload, ``seq`` is
        outside 0–255, or a metric's datatype is unknown.
    """
    msg = pb.Payload()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadError(f"not a Sparkplug B protobuf payload: {exc}", topic) from exc
    seq = msg.seq if msg.HasField("seq") else None
    try:
        _check_seq(seq, "payload")
        metrics = tuple(_decode_metric(m, i) for i, m in enumerate(msg.metrics))
    except PayloadError as exc:
        raise PayloadError(exc.problem, topic) from None
    return Payload(msg.timestamp if msg.HasField("timestamp") else None, seq, metrics)


def _decode_metric(m: pb.Payload.Metric, index: int) -> Metric:
    name = m.name if m.HasField("name") else None
    if name is not None and not isinstance(name, str):
        # protobuf hands a proto2 string that is not UTF-8 back as bytes; such
        # a name can name no sensor, and downstream code may rely on str.
        raise PayloadError(f"metrics[{index}]: the name is not UTF-8 text")
    where = f"metrics[{index}] ({name or 'alias ' + str(m.alias)})"
    datatype = _datatype(m.datatype, where) if m.HasField("datatype") else None
    which = m.WhichOneof("value")
    raw: MetricValue = None
    if which in ("int_value", "long_value", "float_value", "double_value", "boolean_value",
                 "string_value", "bytes_value"):
        raw = getattr(m, which)
    return Metric(
        name=name,
        alias=m.alias if m.HasField("alias") else None,
        timestamp=m.timestamp if m.HasField("timestamp") else None,
        datatype=datatype,
        value=decode_value(raw, datatype),
        is_historical=m.is_historical,
        is_transient=m.is_transient,
        is_null=m.is_null,
    )


def bd_seq_metric(bd_seq: int, timestamp: int | None = None) -> Metric:
    """The ``bdSeq`` metric of an NBIRTH or NDEATH (Int64, 0–255)."""
    if not 0 <= bd_seq <= 255:
        raise PayloadError(f"bdSeq {bd_seq} is outside 0..255")
    return Metric(name=BD_SEQ_METRIC, timestamp=timestamp, datatype=DataType.Int64, value=bd_seq)


def bd_seq_of(payload: Payload) -> int | None:
    """The payload's ``bdSeq`` if it carries a valid one (an integer 0–255), else None."""
    m = payload.metric(BD_SEQ_METRIC)
    if m is None or isinstance(m.value, bool) or not isinstance(m.value, int):
        return None
    return m.value if 0 <= m.value <= 255 else None


def ndeath_payload(bd_seq: int, timestamp: int | None = None) -> bytes:
    """An NDEATH: the ``bdSeq`` metric only and no ``seq`` (Sparkplug 3.0).

    It is registered as the MQTT Will at CONNECT, long before it is sent, so
    its timestamp (if any) says nothing about when the node died.
    """
    return encode_payload(Payload(timestamp=timestamp, metrics=(bd_seq_metric(bd_seq),)))


def rebirth_command(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    return encode_payload(Payload(
        timestamp=now_ms,
        metrics=(Metric(name=REBIRTH_METRIC, timestamp=now_ms, datatype=DataType.Boolean,
                        value=True),),
    ))

