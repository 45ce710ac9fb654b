"""The MQTT source: paho-mqtt 2.x in its own network thread, bridged to asyncio.

Why paho and not aiomqtt: a message may be acknowledged to the broker only
after its readings are durable, which needs manual PUBACKs
(``Client(manual_ack=True)`` + ``client.ack(mid, qos)``); aiomqtt 2.x does not
expose that (its issue #345), and a bare paho subscriber also receives about
twice the messages per second (``benchmarks/ingest_throughput.py``).

The bridge: paho's thread appends each message to a deque and wakes the
asyncio consumer only when it is asleep, so the cost per message is an append,
not a cross-thread call.

Flow control: with MQTT 5 (``protocol="5"``) the client announces a Receive
Maximum of ``max_pending``, so the broker never has more unacknowledged
messages out to us than the inbox holds; since a message is acknowledged only
after its readings are durable, the inbox can never overflow and paho's
network thread never waits (it keeps answering pings while the store is
slow). With MQTT 3.1.1 (the default: paho handles single-reading messages
about 1.75× faster, see ``plantwatch.settings``; amqtt speaks nothing newer)
there is no such limit, but the broker's own ``max_inflight_messages``
(at most 65,535) bounds the messages it sends before we acknowledge them, so
the inbox holds at most that many. paho's thread waits (TCP pushes back and
the broker queues) only past ``MAX_INBOX_MESSAGES`` messages or
``max_pending_bytes`` of payload, as a last resort: while it waits it can
neither send (dead letters, alarm states, acks) nor answer the broker's
keepalive. It used to wait at ``max_pending`` (5,000) messages, and under a
flood of hostile input that stalled every publish until paho's 65,535
message ids ran out, and once had the broker drop the connection.
Either way nothing is dropped here (the broker's ``max_queued_messages`` must
allow the backlog; see ``devservers.localservers``).

Session: a fixed client id and a persistent session (MQTT 5: clean start off
with a session expiry; 3.1.1: ``clean_session=False``), so the broker keeps
subscriptions and queues QoS 1 messages while we are away.
Reconnects use paho's exponential backoff (the one place that does).

The client id is the session: another client that connects with it takes the
session over, and the broker hands it the queue, so readings it acknowledges
never reach us. Only broker authentication prevents that (an ACL that lets
only the service's user use its client id); this source notices it and says
so (:attr:`MqttSource.session_problem`, on ``/healthz``, in the log and in
``plantwatch_mqtt_session_takeovers_total``). Mosquitto closes the old
connection without a reason a client can read (MQTT 3.1.1 and 5 alike), so a
takeover is recognised by its shape: the connection is closed and the broker
takes us straight back, again and again (two clients knocking each other off),
or a reconnect finds the persistent session gone.
Acknowledgements are tied to the connection that delivered the message; after
a reconnect the broker redelivers unacknowledged messages, so acks of the old
connection are dropped, never sent on the new one.

Security: ``mqtts://`` connects with TLS (:class:`TlsOptions`: the CA that
signed the broker's certificate, or the system's CAs; a client certificate if
the broker asks for one; TLS 1.2 at least). The certificate files are read
when the source is built, so a wrong path fails at start with the file and
its setting named, not on the first reconnect. Credentials come from the
``username``/``password`` arguments (the settings' ``mqtt.username`` and
``mqtt.password``) or the URL; the password never appears in a log line
(:attr:`MqttSource.url` is the URL without it). ``deploy/mosquitto/`` is the
broker side: TLS only, no anonymous clients, a client id bound to the user.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from store.errors import IngestError

__all__ = [
    "BrokerAddress",
    "InboundMessage",
    "MqttSource",
    "TlsConfigError",
    "TlsOptions",
    "parse_broker_url",
    "tls_context",
]

log = logging.getLogger(__name__)

FLAP_RECONNECT_S = 5.0
"""A connection lost and taken back within this long is a flap (the broker is up)."""
FLAPS_FOR_TAKEOVER = 3
"""This many flaps within ``FLAP_WINDOW_S`` mean another client uses our client id."""
FLAP_WINDOW_S = 60.0
MAX_INBOX_MESSAGES = 65_536
"""Messages waiting past which paho's thread stops reading (see the module notes)."""
MAX_DROPPABLE_BACKLOG = 20_000
"""Outstanding publishes past which dead letters are refused (see ``MqttSource.publish``)."""
SESSION_ALERT_S = 600.0
"""How long a takeover stays reported after its last sign."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def display_url(self) -> str:
        """The URL for logs and errors: the user name, never the password."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://…``; a clear error otherwise.

    User name and password are percent-decoded (a ``@`` or ``:`` in a password
    is written ``%40``, ``%3A``).
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ValueError(f"broker URL {_without_password(url)!r}: {exc}") from exc
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"broker URL {_without_password(url)!r} is not of the form mqtt://HOST:PORT "
            "(or mqtts:// for TLS)"
        )
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


class TlsConfigError(IngestError):
    """The TLS settings cannot work: a certificate or key file is missing,
    unreadable or not PEM, or TLS options were given for a plaintext URL."""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How the client does TLS (settings ``mqtt.tls.*``); used with ``mqtts://`` URLs.

    ``ca_file``: the CA that signed the broker's certificate (None: the
    system's CAs). ``cert_file``/``key_file``: this client's certificate and
    key, for a broker that requires client certificates (``key_file`` None:
    the key is in ``cert_file``). ``tls_version``: the oldest version
    accepted. ``insecure``: do not check that the broker's certificate names
    the host connected to (the chain is still verified); for a broker reached
    by an address its certificate does not list, never for a broker reached
    over a network others share.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_version: Literal["1.2", "1.3"] = "1.2"
    insecure: bool = False


_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _readable(path: Path, setting: str, what: str) -> str:
    """``path`` as a string if it is a readable file; else a one-line error naming both."""
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise TlsConfigError(f"{what} {path} (setting {setting}) {problem}; "
                             f"fix the path in {setting}")
    if not os.access(path, os.R_OK):
        raise TlsConfigError(f"{what} {path} (setting {setting}) is not readable by this "
                             f"user (uid {os.getuid()}); fix its owner or mode")
    return str(path)


def tls_context(options: TlsOptions | None) -> ssl.SSLContext:
    """The client's SSL context: broker certificate verified, TLS 1.2 or newer.

    Raises :class:`TlsConfigError` naming the file and its setting when a
    certificate or key is missing, unreadable or not PEM.
    """
    options = options or TlsOptions()
    if options.tls_version not in _TLS_VERSIONS:
        raise TlsConfigError(f"mqtt.tls.tls_version {options.tls_version!r} is not supported; "
                             "use '1.2' or '1.3'")
    if options.key_file is not None and options.cert_file is None:
        raise TlsConfigError(f"mqtt.tls.key_file {options.key_file} is set without "
                             "mqtt.tls.cert_file; set both, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = _TLS_VERSIONS[options.tls_version]
    if options.ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ca = _readable(options.ca_file, "mqtt.tls.ca_file", "CA file")
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"CA file {ca} (setting mqtt.tls.ca_file) holds no PEM "
                                 f"certificate ({exc.reason or exc}); give the CA's "
                                 "certificate in PEM") from exc
    if options.cert_file is not None:
        cert = _readable(options.cert_file, "mqtt.tls.cert_file", "client certificate file")
        key = (None if options.key_file is None
               else _readable(options.key_file, "mqtt.tls.key_file", "client key file"))
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"client certificate {cert} (setting mqtt.tls.cert_file) with key "
                f"{key or cert} (setting mqtt.tls.key_file) cannot be loaded "
                f"({exc.reason or exc}); both must be PEM, the key unencrypted and "
                "matching the certificate") from exc
    if options.insecure:
        context.check_hostname = False
    return context


@dataclass(slots=True)
class InboundMessage:
    """A message as delivered; ``mid``/``generation`` identify it for the ack."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    received_ms: int


class MqttSource:
    """Subscribe to ``topics`` with QoS 1 and a persistent session; ack on demand.

    Use as ``async with MqttSource(...) as source:``; then
    ``await source.receive()`` returns the messages waiting (at least one), and
    ``source.ack(messages)`` acknowledges them once their readings are durable.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        topics: list[str],
        *,
        qos: int = 1,
        clean_session: bool = False,
        max_pending: int = 5_000,
        max_pending_bytes: int = 256 * 1024 * 1024,
        keepalive_s: int = 30,
        connect_timeout_s: float = 15.0,
        protocol: str = "3.1.1",
        session_expiry_s: int = 30 * 86_400,
        will: tuple[str, bytes, int, bool] | None = None,
        on_connected: Callable[[], None] | None = None,
        tls: TlsOptions | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol {protocol!r} is not supported; use '5' or '3.1.1'")
        self.protocol = protocol
        self.session_expiry_s = session_expiry_s
        address = parse_broker_url(url)
        if username is not None or password is not None:
            # The settings' mqtt.username / mqtt.password win over the URL's.
            address = BrokerAddress(
                address.host, address.port, address.tls,
                username if username is not None else address.username,
                password if password is not None else address.password,
            )
        if password is not None and not address.username:
            raise ValueError("an MQTT password is set (mqtt.password) without a user name; "
                             "set mqtt.username too")
        self.address = address
        self.url = address.display_url
        """The broker URL for logs and errors: without the password."""
        if not address.tls and tls is not None and tls != TlsOptions():
            raise TlsConfigError(
                f"TLS options (mqtt.tls) are set but the broker URL {self.url} is plaintext; "
                "use mqtts:// (port 8883) or remove mqtt.tls")
        # Built now: a wrong certificate path fails at start, naming its setting.
        self._tls_context = tls_context(tls) if address.tls else None
        self.client_id = client_id
        self.topics = topics
        self.qos = qos
        self.max_pending = max_pending
        # Messages are also bounded in bytes: 5,000 hostile 10 MB payloads
        # must not be 50 GB in the inbox.
        self.max_pending_bytes = max_pending_bytes
        # Each written by one thread only (paho's, the loop's), so no lock.
        self._bytes_in = 0
        self._bytes_out = 0
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.clean_session = clean_session
        # (topic, payload, qos, retain) the broker publishes if we vanish (the
        # Sparkplug host's STATE death), and what to do after each (re)connect
        # and subscribe (publish its STATE birth).
        self.will = will
        self.on_connected = on_connected
        self.disconnects = 0
        self.connected = False
        self.generation = 0
        self.messages_received = 0
        self.reconnects = 0
        self.network_waits = 0
        self.takeovers = 0
        """Connections lost to another client using our client id (suspected; see notes)."""
        # Messages handed to paho, and those it has finished (acknowledged, or
        # written for QoS 0); the difference is paho's backlog. Completions
        # come on paho's thread only; publishes on any, hence the lock.
        self._published = 0
        self._completed = 0
        self._published_lock = threading.Lock()
        self._lost_at: float | None = None
        self._flaps: collections.deque[float] = collections.deque(maxlen=FLAPS_FOR_TAKEOVER)
        self._session_alert: tuple[str, float] | None = None
        self._inbox: collections.deque[InboundMessage] = collections.deque()
        self._room = threading.Condition()
        self._consumer_waiting = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected_once: asyncio.Event | None = None
        self._closing = False
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        if self.protocol == "5":
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id,
                protocol=mqtt.MQTTv5, manual_ack=True,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id,
                clean_session=self.clean_session, protocol=mqtt.MQTTv311, manual_ack=True,
            )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self._tls_context is not None:
            client.tls_set_context(self._tls_context)
        if self.will is not None:
            topic, payload, qos, retain = self.will
            client.will_set(topic, payload, qos=qos, retain=retain)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    # -- paho thread ---------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT connect to %s refused: %s", self.url, reason)
            return
        self.generation += 1
        self.connected = True
        if self.generation > 1:
            self.reconnects += 1
            self._judge_reconnect(bool(getattr(flags, "session_present", True)))
        client.subscribe([(t, self.qos) for t in self.topics])
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:  # never let a callback kill paho's network thread
                log.exception("on_connected callback failed")
        log.info("connected to %s as %s (session present: %s)", self.url, self.client_id,
                 getattr(flags, "session_present", None))
        if self._loop is not None and self._connected_once is not None:
            self._loop.call_soon_threadsafe(self._connected_once.set)

    def _judge_reconnect(self, session_present: bool) -> None:
        """Recognise a session taken over (see the module notes); paho's thread."""
        now = time.monotonic()
        problem = None
        if not self.clean_session and not session_present:
            problem = (f"the broker had no session for client id {self.client_id!r} on "
                       "reconnect: another client took it over with a clean session (or the "
                       "broker lost it); readings queued meanwhile may be lost")
        if self._lost_at is not None and now - self._lost_at <= FLAP_RECONNECT_S:
            self._flaps.append(now)
            if (len(self._flaps) == FLAPS_FOR_TAKEOVER
                    and now - self._flaps[0] <= FLAP_WINDOW_S):
                problem = problem or (
                    f"another client is connecting with this service's client id "
                    f"{self.client_id!r}: the broker keeps closing our connection and taking "
                    f"us straight back ({FLAPS_FOR_TAKEOVER} times within "
                    f"{now - self._flaps[0]:.0f} s); readings it acknowledges are lost to "
                    "us. Protect the client id with broker authentication")
        if problem is None:
            return
        self.takeovers += 1
        fresh = self._session_alert is None or now - self._session_alert[1] > SESSION_ALERT_S
        self._session_alert = (problem, now)
        if fresh:
            log.error("MQTT session taken over: %s", problem)

    @property
    def session_problem(self) -> str | None:
        """Why our broker session is not ours alone, while its last sign is recent; else None."""
        alert = self._session_alert
        if alert is None or time.monotonic() - alert[1] > SESSION_ALERT_S:
            return None
        return alert[0]

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.connected = False
        self._lost_at = time.monotonic()
        self.disconnects += 1  # read by the pipeline (the Sparkplug host must hear of it)
        if not self._closing:
            log.warning("disconnected from %s (%s); paho reconnects with backoff", self.url,
                        reason)

    def _full(self) -> bool:
        return (len(self._inbox) >= MAX_INBOX_MESSAGES
                or self._bytes_in - self._bytes_out >= self.max_pending_bytes)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._full():
            self.network_waits += 1
            with self._room:
                while self._full() and not self._closing:
                    self._room.wait(0.5)
        payload = bytes(msg.payload)
        self._bytes_in += len(payload)
        self._inbox.append(
            InboundMessage(
                msg.topic, payload, msg.qos, msg.mid, self.generation,
                int(time.time() * 1000),
            )
        )
        self.messages_received += 1
        if self._consumer_waiting:
            self._consumer_waiting = False
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                loop.call_soon_threadsafe(wake.set)

    # -- asyncio side --------------------------------------------------------
    async def __aenter__(self) -> MqttSource:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._connected_once = asyncio.Event()
        try:
            if self.protocol == "5":
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0 if self.clean_session else self.session_expiry_s
                props.ReceiveMaximum = min(self.max_pending, 65_535)
                self._client.connect_async(
                    self.address.host, self.address.port, self.keepalive_s,
                    clean_start=self.clean_session, properties=props,
                )
            else:
                self._client.connect_async(self.address.host, self.address.port,
                                           self.keepalive_s)
        except (OSError, ValueError) as exc:
            raise IngestError(f"cannot connect to MQTT broker {self.url}: {exc}") from exc
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._connected_once.wait(), self.connect_timeout_s)
        except TimeoutError as exc:
            self._closing = True
            self._client.loop_stop()
            raise IngestError(
                f"no connection to MQTT broker {self.url} within {self.connect_timeout_s:.0f} s; "
                "is it running, and is the URL right (setting mqtt.url / PLANTWATCH_MQTT__URL)?"
            ) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        with self._room:
            self._room.notify_all()
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    @property
    def pending(self) -> int:
        return len(self._inbox)

    async def receive(self, max_messages: int = 10_000, timeout_s: float | None = None) -> list[
        InboundMessage
    ]:
        """Messages waiting (at least one, or none after ``timeout_s``)."""
        assert self._wake is not None, "use MqttSource as an async context manager"
        if not self._inbox:
            self._consumer_waiting = True
            # Re-check after raising the flag: paho may have appended in between.
            if not self._inbox:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout_s)
            self._consumer_waiting = False
        out: list[InboundMessage] = []
        popleft = self._inbox.popleft
        taken = 0
        while self._inbox and len(out) < max_messages:
            m = popleft()
            taken += len(m.payload)
            out.append(m)
        self._bytes_out += taken
        if not self._full():
            with self._room:
                self._room.notify_all()
        return out

    def ack(self, messages: list[InboundMessage]) -> int:
        """PUBACK messages of the current connection; returns how many were sent."""
        if not self.connected:
            return 0
        generation = self.generation
        sent = 0
        ack = self._client.ack
        for m in messages:
            if m.qos > 0 and m.generation == generation:
                ack(m.mid, m.qos)
                sent += 1
        return sent

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, *,
                droppable: bool = False) -> str | None:
        """Publish (dead letters, alarm notifications); paho queues while disconnected.

        Returns None when paho took the message, else why it was not sent
        (the caller counts it): paho keys the QoS 1 messages it has not yet
        had acknowledged by a 16-bit message id and refuses a new one whose id
        is still taken, so past 65,535 outstanding it refuses at random.
        ``droppable`` messages (dead letters) are refused once
        ``MAX_DROPPABLE_BACKLOG`` are outstanding, so a flood of hostile input
        never takes the ids that alarm notifications need.
        """
        if droppable and self._published - self._completed >= MAX_DROPPABLE_BACKLOG:
            return "backlog"
        _, refused = self._hand_to_paho(topic, payload, qos, retain)
        if refused == "client_queue_full" and not droppable:
            log.error("an alarm notification to %.200r was not published: paho has 65,535 "
                      "messages the broker has not acknowledged", topic)
        return refused

    def _hand_to_paho(self, topic: str, payload: bytes, qos: int, retain: bool
                      ) -> tuple[mqtt.MQTTMessageInfo | None, str | None]:
        """paho's publish: its message info, or None and why it was not taken."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # an invalid topic, or a payload over 256 MB
            log.warning("not published to %.200r: %s", topic, exc)
            return None, "invalid"
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return None, "client_queue_full"
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not connected: paho drops a QoS 0 message and never confirms it, so
            # counting it would leave the backlog count too high for good.
            return None, "not_connected"
        with self._published_lock:
            self._published += 1
        return info, None

    async def publish_and_wait(self, topic: str, payload: bytes, qos: int = 1,
                               retain: bool = False, timeout_s: float = 10.0) -> str | None:
        """Publish and wait until the broker has the message (PUBACK for QoS 1).

        For the notification outbox (``notify.delivery.MqttSender``): returns
        None once the broker acknowledged, else why not (``not_connected``,
        ``no_puback``, ``client_queue_full``, ``invalid``) and the outbox tries
        again later. Nothing is handed to paho while disconnected, so a retry
        never leaves a second copy queued inside paho.
        """
        if not self.connected:
            return "not_connected"
        info, refused = self._hand_to_paho(topic, payload, qos, retain)
        if info is None:
            return refused

        def wait() -> bool:
            deadline = time.monotonic() + timeout_s
            while not info.is_published():
                if time.monotonic() > deadline:
                    return False
                try:
                    info.wait_for_publish(min(0.5, timeout_s))
                except (RuntimeError, ValueError):  # not connected now: paho resends it
                    time.sleep(0.05)
            return True

        return None if await asyncio.to_thread(wait) else "no_puback"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._completed += 1
