"""Publishing gateway messages to an MQTT broker, counting what the broker took.

A QoS 1 PUBACK is the broker saying "I have it". Counting PUBACKs (not
``publish()`` calls) is what lets a test or a load run say exactly how many
readings reached the broker, so a loss downstream can be told apart from a
loss on the way in.
"""

from __future__ import annotations

import threading
import time
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.errors import BrokerUrlError, PublishError

__all__ = ["MqttPublisher", "parse_broker_url"]

# Many QoS 1 messages in flight at once: a step of a large plant is published
# in one burst, and paho's default of 20 would serialise it on round trips.
_MAX_INFLIGHT = 1000


def parse_broker_url(url: str) -> tuple[str, int]:
    """Split ``mqtt://HOST:PORT`` into host and port.

    Raises
    ------
    BrokerUrlError
        For any other scheme, a missing host or port, credentials, a path or a query.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BrokerUrlError(url, str(exc)) from exc
    if parts.scheme != "mqtt":
        raise BrokerUrlError(url, f"scheme {parts.scheme or '(none)'!r} is not supported")
    if parts.username is not None or parts.password is not None:
        raise BrokerUrlError(url, "credentials in the URL are not supported")
    if not parts.hostname:
        raise BrokerUrlError(url, "the host is missing")
    if port is None:
        raise BrokerUrlError(url, "the port is missing")
    if port == 0:
        raise BrokerUrlError(url, "port 0 is not a broker port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(url, "a path, query or fragment is not supported")
    return parts.hostname, port


class MqttPublisher:
    """A QoS 1 MQTT 3.1.1 publisher that counts broker acknowledgements.

    Use as a context manager: entering connects (and waits for the CONNACK),
    leaving disconnects. paho's network loop runs in its own thread;
    ``publish`` may be called from one thread at a time.

    Parameters
    ----------
    broker_url : str
        ``mqtt://HOST:PORT``.
    client_id : str or None
        MQTT client id; a unique one is made up when None.
    connect_timeout_s : float
        How long entering waits for the broker's CONNACK.

    Attributes
    ----------
    published_messages, published_readings : int
        What ``publish`` handed to paho.
    acked_messages, acked_readings : int
        What the broker acknowledged with a PUBACK.
    """

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str | None = None,
        connect_timeout_s: float = 10.0,
        max_outstanding: int = 20_000,
    ) -> None:
        if not 1 <= max_outstanding < 65_535:
            raise ValueError(
                f"max_outstanding={max_outstanding} must be 1..65534: MQTT message ids "
                "are 16-bit, so more unacknowledged messages would reuse ids"
            )
        self.max_outstanding = max_outstanding
        self.broker_url = broker_url
        self.host, self.port = parse_broker_url(broker_url)
        self.client_id = client_id or f"plantwatch-sim-{uuid.uuid4().hex[:12]}"
        self.connect_timeout_s = connect_timeout_s
        self.published_messages = 0
        self.published_readings = 0
        self.acked_messages = 0
        self.acked_readings = 0
        self._cond = threading.Condition()
        self._pending: dict[int, int] = {}  # mid -> n_readings, awaiting PUBACK
        self._early_acks: set[int] = set()  # PUBACKs that beat publish() returning
        self._connected = threading.Event()
        self._connect_failure: str | None = None
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.max_inflight_messages_set(_MAX_INFLIGHT)
        self._client.max_queued_messages_set(0)  # 0 = unlimited: never drop a reading
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish

    # -- paho callbacks (network thread) ------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._connect_failure = str(reason_code)
        self._connected.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._cond:
            n = self._pending.pop(mid, None)
            if n is None:
                self._early_acks.add(mid)
                return
            self._count_ack(n)

    def _count_ack(self, n_readings: int) -> None:
        self.acked_messages += 1
        self.acked_readings += n_readings
        self._cond.notify_all()

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> MqttPublisher:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise PublishError(
                f"cannot connect to the broker at {self.broker_url}: {exc}",
                broker=self.broker_url,
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout_s) or self._connect_failure:
            self._client.loop_stop()
            problem = self._connect_failure or f"no CONNACK within {self.connect_timeout_s} s"
            raise PublishError(
                f"the broker at {self.broker_url} did not accept us: {problem}",
                broker=self.broker_url,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- publishing ----------------------------------------------------------

    def publish(self, topic: str, payload: bytes, n_readings: int) -> None:
        """Publish one message at QoS 1; ``n_readings`` is counted when it is acked.

        Raises
        ------
        PublishError
            If paho refuses the message (an invalid topic, or its queue is full).
        """
        # Flow control: wait while max_outstanding messages await their PUBACK,
        # so a fast publisher neither exhausts paho's queue nor reuses a mid.
        with self._cond:
            while self.published_messages - self.acked_messages >= self.max_outstanding:
                self._cond.wait(1.0)
        try:
            info = self._client.publish(topic, payload, qos=1)
        except ValueError as exc:
            raise PublishError(
                f"cannot publish on {topic!r}: {exc}", broker=self.broker_url, topic=topic
            ) from exc
        # NO_CONN: paho keeps a QoS 1 message and sends it after reconnecting.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(
                f"cannot publish on {topic!r}: {mqtt.error_string(info.rc)}",
                broker=self.broker_url,
                topic=topic,
            )
        with self._cond:
            self.published_messages += 1
            self.published_readings += n_readings
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                self._count_ack(n_readings)
            else:
                self._pending[info.mid] = n_readings

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Wait until every published message is acked; False if ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acked_messages < self.published_messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True
