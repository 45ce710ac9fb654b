"""Which decoder reads a topic: the one place a payload format is registered.

A decoder claims topics (:meth:`Decoder.claims`) and turns one message into
readings appended to the pending batch, plus what it refused and any
messages it wants sent (the Sparkplug host's rebirth requests). The engine
asks the decoders in order and the first that claims a topic reads it; a
topic nobody claims is ``bad_topic``. Adding a payload format is one class
here and one entry in :func:`plant_decoders`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from decoders.json_gateway import DecodeLimits, Rejection, decode_gateway_json_into
from decoders.lp_gateway import decode_line_protocol_into
from decoders.sparkplug_host import HostMessage, HostOutput, HostRejection, SparkplugHost
from model.batch import BatchBuilder

__all__ = [
    "NOTHING",
    "NO_FORMAT",
    "Decoded",
    "Decoder",
    "GatewayJsonDecoder",
    "LineProtocolDecoder",
    "SparkplugDecoder",

    "plant_decoders",
    "refused",
]

SPARKPLUG_PREFIX = "spBv1.0/"
NO_FORMAT = Rejection("bad_topic", "no payload format reads this topic "
                      "(plant/<site>/<gateway>, plant/<site>/lp or spBv1.0/...)")


Decoded = tuple[Sequence[Rejection], Sequence[HostRejection], Sequence[HostMessage]]
"""What one message decoded to, besides the readings appended to the batches:
``(rejections, released, publish)``:

* this message's own refusals (the message whole, or single readings);
* refusals of earlier messages a decoder held and judged only now (Sparkplug);
* messages the decoder wants sent back to the gateways (rebirth requests).

A plain tuple because one is made per message and most have nothing to say
beyond their readings (a NamedTuple cost 0.45 µs more per message)."""

NOTHING: Decoded = ((), (), ())


def refused(*rejections: Rejection) -> Decoded:
    """A message refused whole (or with these refusals only)."""
    return rejections, (), ()


class Decoder(Protocol):
    """One payload format."""

    name: str

    def claims(self, topic: str) -> bool:
        """Whether this decoder reads messages on ``topic``."""

    def decode(self, topic: str, payload: bytes, now_ms: int, live: BatchBuilder,
               historical: BatchBuilder) -> Decoded:
        """Append the message's readings (backfill to ``historical``: stored, never detected)."""


_NO_SITE = Rejection("bad_topic", "expected plant/<site>/<gateway> (or plant/<site>/lp): "
                     "the topic names the site its readings belong to")
_NO_SENSORS: dict[str, int] = {}


class _SiteDecoder:
    """A format whose topic names the site (``plant/<site>/...``); a reading of another
    site's sensor is ``wrong_site`` (see :func:`decoders.json_gateway.wrong_site_or_unknown`)."""

    name = ""

    def __init__(self, sites: Mapping[str, dict[str, int]], plant_index: Mapping[str, int],
                 limits: DecodeLimits) -> None:
        self.sites = sites
        self.plant_index = plant_index
        self.limits = limits

    def decode(self, topic: str, payload: bytes, now_ms: int, live: BatchBuilder,
               historical: BatchBuilder) -> Decoded:
        levels = topic.split("/")
        if len(levels) < 3 or not levels[1]:
            return refused(_NO_SITE)
        index = self.sites.get(levels[1], _NO_SENSORS)
        return self.decode_into(payload, index, now_ms, self.limits, live,
                                plant_index=self.plant_index), (), ()

    @staticmethod
    def decode_into(payload: bytes, sensor_index: dict[str, int], now_ms: int,
                    limits: DecodeLimits, out: BatchBuilder, *,
                    plant_index: Mapping[str, int] | None = None) -> list[Rejection]:
        raise NotImplementedError


class LineProtocolDecoder(_SiteDecoder):
    """InfluxDB line protocol on ``plant/<site>/lp``."""

    name = "line_protocol"

    def claims(self, topic: str) -> bool:
        return not topic.startswith(SPARKPLUG_PREFIX) and topic.endswith("/lp")

    decode_into = staticmethod(decode_line_protocol_into)


class GatewayJsonDecoder(_SiteDecoder):
    """The gateway JSON envelope on ``plant/<site>/<gateway>`` (every other plant topic)."""

    name = "gateway_json"

    def claims(self, topic: str) -> bool:
        return not topic.startswith(SPARKPLUG_PREFIX)

    decode_into = staticmethod(decode_gateway_json_into)


_SPARKPLUG_OFF = Rejection("sparkplug_disabled", "Sparkplug B ingest is switched off "
                           "(settings sparkplug.enabled)")


class SparkplugDecoder:
    """Sparkplug B through the host state machine (births, sequence order, rebirths)."""

    name = "sparkplug_b"

    def __init__(self, host: SparkplugHost | None) -> None:
        self.host = host

    def claims(self, topic: str) -> bool:
        return topic.startswith(SPARKPLUG_PREFIX)

    def decode(self, topic: str, payload: bytes, now_ms: int, live: BatchBuilder,
               historical: BatchBuilder) -> Decoded:
        if self.host is None:
            return refused(_SPARKPLUG_OFF)
        return split_host_output(self.host.handle(topic, payload, now_ms), topic, payload,
                                 live, historical)

    def tick(self, now_ms: int, live: BatchBuilder, historical: BatchBuilder) -> Decoded:
        """Release messages held past their reorder timeout (a sequence gap)."""
        if self.host is None:
            return NOTHING
        out = self.host.tick(now_ms)
        out.append_to(live, historical)
        return (), out.rejections, out.publish


def split_host_output(result: HostOutput, topic: str, payload: bytes, live: BatchBuilder,
                      historical: BatchBuilder) -> Decoded:
    """The host's output for one message: its own refusals apart from released ones."""
    result.append_to(live, historical)
    own = [r.rejection for r in result.rejections if r.topic == topic and r.payload is payload]
    released = [r for r in result.rejections
                if not (r.topic == topic and r.payload is payload)]
    return own, released, result.publish


class Decoders:
    """The decoders in the order they are asked, and which one reads each topic.

    The first decoder that claims a topic reads it; the answer is remembered
    per topic, so a message costs one dictionary lookup, not a walk of the
    decoders. The memory starts again when full (``max_topics``), so junk on
    ever-new topics costs a little time, never memory.
    """

    def __init__(self, decoders: Sequence[Decoder], max_topics: int = 4_096) -> None:
        self.decoders = tuple(decoders)
        self.max_topics = max_topics
        self._by_topic: dict[str, Decoder] = {}

    def __iter__(self) -> Iterator[Decoder]:
        return iter(self.decoders)

    def decode(self, topic: str, payload: bytes, now_ms: int, live: BatchBuilder,
               historical: BatchBuilder) -> Decoded:
        """Decode one message with the decoder of its topic (``bad_topic`` if none)."""
        decoder = self._by_topic.get(topic)
        if decoder is None:
            decoder = next((d for d in self.decoders if d.claims(topic)), None)
            if decoder is None:
                return refused(NO_FORMAT)
            if len(self._by_topic) >= self.max_topics:
                self._by_topic.clear()
            self._by_topic[topic] = decoder
        return decoder.decode(topic, payload, now_ms, live, historical)


def plant_decoders(sites: Mapping[str, dict[str, int]], plant_index: Mapping[str, int],
                   limits: DecodeLimits, sparkplug: SparkplugHost | None) -> Decoders:
    """The formats plantwatch reads, in the order they are asked."""
    return Decoders((
        SparkplugDecoder(sparkplug),
        LineProtocolDecoder(sites, plant_index, limits),
        GatewayJsonDecoder(sites, plant_index, limits),
    ))
