"""The shipped broker configuration under attack, on a real Mosquitto.

The broker runs ``deploy/mosquitto/mosquitto.conf`` and ``acl.example`` as
shipped, with only paths, the port and the user swapped for temporary ones
(:func:`render_broker_config`), and certificates made by
``deploy/mosquitto/make-certs.sh``. The shipped config requires a client
certificate of the plant's CA from every client and takes its CN as the user
name, so every legitimate client here presents one: plantwatch's own
:class:`ingest.mqtt_source.MqttSource` and the paho peers (gateways, a
display). Attackers are plain paho clients: without a certificate, with a
certificate of another CA, or with a real gateway's certificate and
plantwatch's client id or password. Every attack test also shows the
legitimate message getting through, so "nothing arrived" cannot pass for a
broker that delivers nothing.

The config's password-only variant (its commented-out lines, applied as its
comment says: :func:`broker_config`) is run too: for the wrong-password
tests, ``plantwatch gateway add --auth password``, and to document the
Mosquitto 2.0.11 bug that makes client certificates the default.

Also here: the TLS options of ``MqttSource`` (files checked when it is built,
errors that name the file and its setting) and ``plantwatch gateway add``
(certificates, password hashing, refusals).
"""

from __future__ import annotations

import contextlib
import enum
import os
import pwd
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

import plantwatch.cli.gateway  # noqa: F401  (registers ``plantwatch gateway``)
from devservers.localservers import find_mosquitto, free_port
from ingest.mqtt_source import (
    InboundMessage,
    MqttSource,
    TlsConfigError,
    TlsOptions,
    parse_broker_url,
    tls_context,
)
from plantwatch.cli.gateway import check_name, mosquitto_password_line
from plantwatch.cli.root import app
from store.errors import IngestError
from tests.plants import PLANT_YAML

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "mosquitto"
MAKE_CERTS = DEPLOY / "make-certs.sh"
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87
SITE = "nanhai"
WAIT_S = 10.0
USERS = ("plantwatch", "display", "gw-tank-a", "gw-tank-b")
"""The users of acl.example; each gets a client certificate and a password."""
STRANGER = "gw-unlisted"
"""A CN with a certificate of the plant's CA but no block in the ACL."""


def _need(binary: str | None, what: str) -> str:
    """The binary's path; without it: a failure under CI=true, else a skip."""
    if binary is not None:
        return binary
    message = f"{what} is needed by this test and was not found (apt-get install {what})"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- the shipped config and its variants, rendered for a test ------------------------

class Variant(enum.Enum):
    """The broker configurations run here."""

    SHIPPED = "shipped"
    """mosquitto.conf as it is: client certificates, the CN is the user name."""
    PASSWORDS = "passwords"
    """The config's commented-out password-only variant, applied as its comment says."""
    CERTS_AND_PASSWORDS = "certs-and-passwords"
    """require_certificate true with a password file (not use_identity_as_username):
    what the config's comment explains is not enough on Mosquitto 2.0.11."""


PASSWORD_FILE_LINE = "password_file /etc/mosquitto/passwd"


def broker_config(variant: Variant) -> str:
    """The text of mosquitto.conf for ``variant``, made from the shipped file.

    The password-only variant is the edit the config's comment describes:
    its two lines replace ``require_certificate true`` and
    ``use_identity_as_username true``. The comment must show exactly those
    lines, so the test and the instructions cannot drift apart.
    """
    text = (DEPLOY / "mosquitto.conf").read_text()
    lines = text.splitlines()
    for line in ("require_certificate true", "use_identity_as_username true",
                 "use_username_as_clientid true"):
        assert lines.count(line) == 1, f"{line!r} is not once a line of mosquitto.conf"
    for line in ("require_certificate false", PASSWORD_FILE_LINE):
        assert lines.count(f"#   {line}") == 1, f"the password-only variant's {line!r} is " \
            "not in mosquitto.conf's comment"
    swaps: dict[str, str] = {}
    if variant is Variant.PASSWORDS:
        swaps = {"require_certificate true": "require_certificate false",
                 "use_identity_as_username true": PASSWORD_FILE_LINE}
    elif variant is Variant.CERTS_AND_PASSWORDS:
        swaps = {"use_identity_as_username true": PASSWORD_FILE_LINE}
    return "\n".join(swaps.get(line, line) for line in lines) + "\n"


def render_broker_config(text: str, workdir: Path, port: int, certs: Path) -> str:
    """A mosquitto.conf with temporary paths, a loopback port and our user.

    Every other line is kept as given. Each directive swapped must appear
    exactly once (``password_file`` at most once: the shipped config has
    none), so a change to the shipped file that this does not follow fails
    here rather than testing something else.
    """
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    swaps = {
        "pid_file": f"pid_file {workdir}/mosquitto.pid",
        "user": f"user {user}",
        "password_file": f"password_file {workdir}/passwd",
        "acl_file": f"acl_file {workdir}/acl",
        "listener": f"listener {port} 127.0.0.1",
        "cafile": f"cafile {certs}/ca.crt",
        "certfile": f"certfile {certs}/broker.crt",
        "keyfile": f"keyfile {certs}/broker.key",
        "persistence_location": f"persistence_location {workdir}/",
        "log_dest": "log_dest stderr",
    }
    seen: dict[str, int] = dict.fromkeys(swaps, 0)
    out = []
    for line in text.splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
        if key in swaps:
            seen[key] += 1
            line = swaps[key]
        out.append(line)
    wrong = {k: n for k, n in seen.items()
             if n != 1 and not (k == "password_file" and n == 0)}
    assert not wrong, f"directives expected once in mosquitto.conf, found: {wrong}"
    return "\n".join(out) + "\n"


def test_the_shipped_config_requires_certificates_and_names_users_by_them() -> None:
    """What the attacks below rely on, stated once: no password file, and the
    variant differs from the shipped file in exactly its two lines."""
    shipped = broker_config(Variant.SHIPPED).splitlines()
    active = [line for line in shipped if line.strip() and not line.startswith("#")]
    assert {"require_certificate true", "use_identity_as_username true",
            "use_username_as_clientid true", "allow_anonymous false"} <= set(active)
    assert not [line for line in active if line.startswith(("password_file", "include_dir"))]
    variant = broker_config(Variant.PASSWORDS).splitlines()
    changed = [(a, b) for a, b in zip(shipped, variant, strict=True) if a != b]
    assert changed == [("require_certificate true", "require_certificate false"),
                       ("use_identity_as_username true", PASSWORD_FILE_LINE)]


def make_certs(*args: str) -> None:
    done = subprocess.run(["sh", str(MAKE_CERTS), *args], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, f"make-certs.sh {' '.join(args)}: {done.stderr}"


@dataclass
class Broker:
    host: str
    port: int
    pid: int
    workdir: Path
    certs: Path
    passwords: dict[str, str]
    log_path: Path
    variant: Variant

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def tls(self, cert: str | None = None) -> TlsOptions:
        """TLS options trusting the test CA; ``cert``: also this client certificate."""
        if cert is None:
            return TlsOptions(ca_file=self.certs / "ca.crt")
        return TlsOptions(ca_file=self.certs / "ca.crt", cert_file=self.certs / f"{cert}.crt",
                          key_file=self.certs / f"{cert}.key")

    def login(self, user: str) -> dict[str, Any]:
        """How ``user`` logs in on this broker: :func:`peer`'s keyword arguments.

        Its certificate where the broker asks for one, its password where it
        checks one.
        """
        how: dict[str, Any] = {}
        if self.variant is not Variant.PASSWORDS:
            how["cert"] = user
        if self.variant is not Variant.SHIPPED:
            how.update(username=user, password=self.passwords[user])
        return how

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _start(exe: str, config: str, workdir: Path, port: int, log_path: Path
           ) -> subprocess.Popen[bytes] | None:
    """Start mosquitto; the process once it listens, None if it exited at start-up."""
    (workdir / "mosquitto.conf").write_text(config)
    with log_path.open("ab") as log:
        offset = log.tell()
        proc = subprocess.Popen([exe, "-c", str(workdir / "mosquitto.conf")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        with log_path.open("rb") as f:
            f.seek(offset)
            if b" running" in f.read() and _port_open(port):
                return proc
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    pytest.fail(f"mosquitto did not start in 10 s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plant's CA, the broker's certificate for 127.0.0.1/localhost, and a client
    certificate for each user of the ACL and for one CN the ACL does not know."""
    _need(shutil.which("openssl"), "openssl")
    out = tmp_path_factory.mktemp("certs")
    make_certs("ca", str(out))
    make_certs("server", str(out), "broker", "IP:127.0.0.1,DNS:localhost")
    for user in (*USERS, STRANGER):
        make_certs("client", str(out), user)
    return out


@contextlib.contextmanager
def running_broker(workdir: Path, certs: Path, variant: Variant = Variant.SHIPPED
                   ) -> Iterator[Broker]:
    """Mosquitto with the shipped config (or a variant of it) and the shipped ACL.

    The password file (of USERS) is written for every variant; the shipped
    config does not name it.
    """
    exe = _need(find_mosquitto(), "mosquitto")
    passwords = {user: f"pw-{user}-{uuid.uuid4().hex}" for user in USERS}
    (workdir / "passwd").write_text(
        "".join(mosquitto_password_line(u, p) + "\n" for u, p in passwords.items()))
    shutil.copy(DEPLOY / "acl.example", workdir / "acl")
    log_path = workdir / "mosquitto.log"
    for _ in range(3):  # a free port can be taken before mosquitto binds it
        port = free_port()
        proc = _start(exe, render_broker_config(broker_config(variant), workdir, port, certs),
                      workdir, port, log_path)
        if proc is not None:
            break
    else:
        pytest.fail(f"mosquitto exited at start-up:\n{log_path.read_text()[-3000:]}")
    try:
        yield Broker("127.0.0.1", port, proc.pid, workdir, certs, passwords, log_path, variant)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Broker]:
    """The shipped broker, shared by the tests of this module."""
    with running_broker(tmp_path_factory.mktemp("secure-broker"), certs) as running:
        yield running


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory: pytest.TempPathFactory, certs: Path
                    ) -> Iterator[Broker]:
    """The password-only variant, shared by the tests of this module."""
    with running_broker(tmp_path_factory.mktemp("password-broker"), certs,
                        Variant.PASSWORDS) as running:
        yield running


# -- paho clients ------------------------------------------------------------------

@dataclass
class Peer:
    """A paho client on its own network thread, for attackers and readers."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish QoS 1 and wait for the PUBACK: 0 if the broker took the message,
        else its MQTT 5 reason code (MQTT 3.1.1 has none: always 0)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish to {topic}: rc {info.rc}"
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.acks, WAIT_S), \
                f"no PUBACK for {topic}"
            reason = self.acks[info.mid]
        # 16, "no matching subscribers", is a success too.
        return reason.value if reason.is_failure else 0

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        granted: list[Any] = []

        def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, codes: Any,
                         properties: Any) -> None:
            granted.extend(codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=1)
        assert done.wait(WAIT_S), f"no SUBACK for {topic}"
        assert not granted[0].is_failure, f"subscription to {topic} refused: {granted[0]}"

    def settled(self, timeout_s: float = WAIT_S) -> bool:
        """Wait until the connection is up or closed; False if neither in time."""
        deadline = time.monotonic() + timeout_s
        while not (self.connected.is_set() or self.closed.is_set()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def take(self, timeout_s: float = WAIT_S) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def peer(broker: Broker, username: str | None = None, password: str | None = None, *,
         cert: str | None = None, tls: TlsOptions | None = None, plaintext: bool = False,
         client_id: str = "", v5: bool = True, clean: bool = True, wait: bool = True
         ) -> Peer:
    """Connect a paho client; ``peer.connack`` is the broker's answer (None: no answer).

    ``cert`` names a client certificate of the test CA; ``tls`` gives other
    TLS options (another CA's certificate); ``plaintext`` leaves TLS off.
    ``peer.closed`` is set once the connection is closed or fails.
    """
    if v5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean, protocol=mqtt.MQTTv311)
    p = Peer(client)
    if username is not None:
        client.username_pw_set(username, password)
    if not plaintext:
        client.tls_set_context(tls_context(tls if tls is not None else broker.tls(cert)))

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        p.connack = reason
        if not reason.is_failure:
            p.connected.set()
        p.answered.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        p.closed.set()

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with p.acked:
            p.acks[mid] = reason
            p.acked.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = lambda c, u: p.closed.set()
    client.on_publish = on_publish
    client.on_message = lambda c, u, msg: p.messages.put(msg)
    client.reconnect_delay_set(60, 60)  # one attempt in a test's time
    if v5:
        client.connect_async(broker.host, broker.port, 30, clean_start=clean)
    else:
        client.connect_async(broker.host, broker.port, 30)
    client.loop_start()
    if wait:
        p.answered.wait(WAIT_S)
    return p


def assert_never_connected(p: Peer, why: str) -> None:
    """The broker closed ``p``'s connection without ever answering its CONNECT."""
    assert p.closed.wait(WAIT_S), f"the broker kept the connection of {why} open"
    assert not p.answered.is_set(), f"{why} got a CONNACK: {p.connack}"
    assert not p.connected.is_set()


@contextlib.contextmanager
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    try:
        yield made
    finally:
        # In parallel: paho's network thread of a refused client takes up to 1 s to stop.
        closing = [threading.Thread(target=p.close) for p in made]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()


def plantwatch_source(broker: Broker, topics: list[str], clean: bool = True,
                      client_id: str = "plantwatch-ingest") -> MqttSource:
    """The service's own MQTT source, logged in as plantwatch as the broker asks."""
    how = broker.login("plantwatch")
    return MqttSource(broker.url, client_id, topics, clean_session=clean,
                      tls=broker.tls(how.get("cert")), username=how.get("username"),
                      password=how.get("password"), connect_timeout_s=WAIT_S)


async def receive_until(source: MqttSource, payload: bytes, timeout_s: float = WAIT_S
                        ) -> list[InboundMessage]:
    """Everything the source receives up to and including ``payload``."""
    got: list[InboundMessage] = []
    deadline = time.monotonic() + timeout_s
    while not any(m.payload == payload for m in got):
        left = deadline - time.monotonic()
        assert left > 0, f"{payload!r} never arrived; got {[m.topic for m in got]}"
        batch = await source.receive(timeout_s=left)
        source.ack(batch)
        got += batch
    return got


# -- the attacks -------------------------------------------------------------------

@pytest.mark.servers
async def test_a_gateway_cannot_publish_another_gateways_or_sites_readings(
        broker: Broker) -> None:
    """gw-tank-a, logged in by its certificate, forges readings as another site, as
    gw-tank-b, and as their Sparkplug edge nodes: the broker refuses each (MQTT 5:
    "not authorized") and plantwatch, subscribed to plant/# and spBv1.0/#,
    receives only gw-tank-a's own reading."""
    nonce = uuid.uuid4().hex.encode()
    forged = [
        "plant/othersite/gw-tank-a",
        f"plant/{SITE}/gw-tank-b",
        f"plant/{SITE}/lp",
        "spBv1.0/othersite/NDATA/gw-tank-a",
        f"spBv1.0/{SITE}/NDATA/gw-tank-b",
        f"spBv1.0/{SITE}/DDATA/gw-tank-b/dev1",
    ]
    own = f"plant/{SITE}/gw-tank-a"
    async with plantwatch_source(broker, ["plant/#", "spBv1.0/#"]) as source:
        with peers() as made:
            gw = peer(broker, cert="gw-tank-a")
            made.append(gw)
            assert gw.connected.is_set(), gw.connack
            refused = {topic: gw.publish(topic, b"forged " + nonce) for topic in forged}
            assert refused == dict.fromkeys(forged, NOT_AUTHORIZED)
            assert gw.publish(own, b"own " + nonce) == 0
            assert gw.publish(f"spBv1.0/{SITE}/NDATA/gw-tank-a", b"sp " + nonce) == 0
            got = await receive_until(source, b"sp " + nonce)
        mine = [(m.topic, m.payload) for m in got if nonce in m.payload]
        assert mine == [(own, b"own " + nonce),
                        (f"spBv1.0/{SITE}/NDATA/gw-tank-a", b"sp " + nonce)]


@pytest.mark.servers
def test_a_gateway_cannot_forge_or_clear_retained_alarm_states(broker: Broker) -> None:
    """Only plantwatch publishes plantwatch/#: a gateway's forged retained alarm
    state, and its empty retained message that would clear a real one, are
    refused; a display that subscribes later gets plantwatch's state alone."""
    nonce = uuid.uuid4().hex
    real = f"plantwatch/alarms/{SITE}/tf-group-a/TF-A-LEL-01/{nonce}"
    fake = f"plantwatch/alarms/{SITE}/tf-group-a/TF-A-LEL-02/{nonce}"
    with peers() as made:
        pw = peer(broker, cert="plantwatch", client_id="pw-pub")
        gw = peer(broker, cert="gw-tank-b")
        made += [pw, gw]
        assert pw.connected.is_set() and gw.connected.is_set()
        assert pw.publish(real, b'{"state":"UNACK","priority":"high"}', retain=True) == 0
        assert gw.publish(fake, b'{"state":"UNACK","priority":"highest"}',
                          retain=True) == NOT_AUTHORIZED
        assert gw.publish(real, b"", retain=True) == NOT_AUTHORIZED  # would clear it
        assert gw.publish("plantwatch/deadletter", b"forged") == NOT_AUTHORIZED

        display = peer(broker, cert="display")
        made.append(display)
        assert display.connected.is_set()
        display.subscribe(f"plantwatch/alarms/{SITE}/+/+/{nonce}")
        display.subscribe(f"plantwatch/alarms/end/{nonce}")
        # Retained messages come on subscribing, before anything published after.
        assert pw.publish(f"plantwatch/alarms/end/{nonce}", b"end") == 0
        seen: list[tuple[str, bytes, bool]] = []
        while not seen or seen[-1][0] != f"plantwatch/alarms/end/{nonce}":
            msg = display.take()
            seen.append((msg.topic, bytes(msg.payload), msg.retain))
    assert seen == [(real, b'{"state":"UNACK","priority":"high"}', True),
                    (f"plantwatch/alarms/end/{nonce}", b"end", False)]


@pytest.mark.servers
def test_plaintext_mqtt_to_the_tls_listener_gets_no_connection(broker: Broker) -> None:
    """An MQTT client without TLS, even with plantwatch's user name and password,
    never gets a CONNACK: the listener speaks TLS only."""
    with peers() as made:
        plain = peer(broker, "plantwatch", broker.passwords["plantwatch"], plaintext=True,
                     wait=False)
        made.append(plain)
        assert_never_connected(plain, "a plaintext client")
        # plantwatch with TLS and its certificate does connect: the refusal was about TLS.
        ok = peer(broker, cert="plantwatch", client_id="pw-tls")
        made.append(ok)
        assert ok.connected.is_set(), ok.connack


@pytest.mark.servers
@pytest.mark.parametrize(("username", "client_id", "v5"), [
    (None, "", True),
    (None, "plantwatch", False),  # plantwatch's session id, what broke 2.0.11
    ("plantwatch", "plantwatch", False),  # with plantwatch's real password
    ("gw-tank-a", "", True),
])
def test_a_client_without_a_certificate_gets_no_connection(
        broker: Broker, username: str | None, client_id: str, v5: bool) -> None:
    """Without a client certificate no CONNECT is ever answered, whatever the user,
    password or client id (a real password included): the TLS handshake fails."""
    password = None if username is None else broker.passwords[username]
    with peers() as made:
        attacker = peer(broker, username, password, client_id=client_id, v5=v5, clean=False,
                        wait=False)
        made.append(attacker)
        assert_never_connected(attacker, "a client without a certificate")
        ok = peer(broker, cert="gw-tank-a")
        made.append(ok)
        assert ok.connected.is_set(), ok.connack


@pytest.mark.servers
# paho leaves the socket of a failed TLS handshake to the garbage collector
# (Client._ssl_wrap_socket), which warns; the refusal is what is tested here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_certificate_of_another_ca_is_refused(broker: Broker, tmp_path: Path) -> None:
    """Certificates with the right CNs (a gateway's, plantwatch's) signed by another
    CA: the broker answers no CONNECT, and plantwatch's own source with such a
    certificate does not connect. The same CN from the plant's CA does."""
    make_certs("ca", str(tmp_path))
    make_certs("client", str(tmp_path), "gw-tank-a")
    make_certs("client", str(tmp_path), "plantwatch")

    def foreign(cn: str) -> TlsOptions:
        return TlsOptions(ca_file=broker.certs / "ca.crt", cert_file=tmp_path / f"{cn}.crt",
                          key_file=tmp_path / f"{cn}.key")

    with peers() as made:
        for client_id in ("gw-tank-a", "plantwatch"):
            forged = peer(broker, tls=foreign("gw-tank-a"), client_id=client_id, v5=False,
                          clean=False, wait=False)
            made.append(forged)
            assert_never_connected(forged, "a client with another CA's certificate")
        ok = peer(broker, cert="gw-tank-a")
        made.append(ok)
        assert ok.connected.is_set(), ok.connack
    source = MqttSource(broker.url, "plantwatch-ingest", ["plant/#"], tls=foreign("plantwatch"),
                        connect_timeout_s=2)
    with pytest.raises(IngestError, match="no connection to MQTT broker"):
        async with source:
            pass


@pytest.mark.servers
async def test_a_plant_certificate_without_an_acl_block_may_do_nothing(
        broker: Broker) -> None:
    """A certificate of the plant's CA whose CN has no block in the ACL (a gateway
    whose block was removed, say) connects but may publish nothing and reads
    nothing: removing a gateway's ACL block and reloading disarms its certificate."""
    nonce = uuid.uuid4().hex.encode()
    async with plantwatch_source(broker, ["plant/#"]) as source:
        with peers() as made:
            stranger = peer(broker, cert=STRANGER)
            made.append(stranger)
            assert stranger.connected.is_set(), stranger.connack
            for topic in (f"plant/{SITE}/{STRANGER}", f"plant/{SITE}/gw-tank-a",
                          "plantwatch/alarms/x"):
                assert stranger.publish(topic, b"stray " + nonce) == NOT_AUTHORIZED, topic
            stranger.client.subscribe("plant/#", qos=1)
            gw = peer(broker, cert="gw-tank-a")
            made.append(gw)
            assert gw.publish(f"plant/{SITE}/gw-tank-a", b"real " + nonce) == 0
            got = await receive_until(source, b"real " + nonce)
            with pytest.raises(queue.Empty):
                stranger.take(timeout_s=0.5)
    assert [m.payload for m in got if nonce in m.payload] == [b"real " + nonce]


@pytest.mark.servers
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_plantwatch_refuses_a_broker_its_ca_did_not_sign(broker: Broker,
                                                               tmp_path: Path) -> None:
    """A man in the middle with a certificate of another CA: plantwatch's source
    does not connect (and so never presents its certificate or a password)."""
    make_certs("ca", str(tmp_path))
    source = MqttSource(broker.url, "plantwatch-ingest", ["plant/#"],
                        tls=TlsOptions(ca_file=tmp_path / "ca.crt",
                                       cert_file=broker.certs / "plantwatch.crt",
                                       key_file=broker.certs / "plantwatch.key"),
                        username="plantwatch", password=broker.passwords["plantwatch"],
                        connect_timeout_s=2)
    with pytest.raises(IngestError, match="no connection to MQTT broker"):
        async with source:
            pass
    assert broker.passwords["plantwatch"] not in str(source.url)


@pytest.mark.servers
async def test_nobody_else_can_take_over_plantwatchs_session(tmp_path: Path,
                                                              certs: Path) -> None:
    """Clients that connect with plantwatch's client id neither knock plantwatch off
    nor get its session: without a certificate (no connection at all); with a
    gateway's certificate and no user name (persistent session, what broke
    Mosquitto 2.0.11 with passwords); with a gateway's certificate and
    plantwatch's real user name and password (it is still the gateway: the
    CN decides, the password is never checked). plantwatch stays on its first
    connection and keeps receiving. (A broker of its own: the session must be
    plantwatch's alone.)"""
    nonce = uuid.uuid4().hex.encode()
    with running_broker(tmp_path, certs) as broker:
        async with plantwatch_source(broker, ["plant/#"], clean=False) as source:
            assert source.connected and source.generation == 1
            with peers() as made:
                for username in (None, "plantwatch"):
                    password = None if username is None else broker.passwords[username]
                    no_cert = peer(broker, username, password, client_id="plantwatch",
                                   v5=False, clean=True, wait=False)
                    made.append(no_cert)
                    assert_never_connected(no_cert, "a client without a certificate")
                as_gw = peer(broker, cert="gw-tank-a", client_id="plantwatch", v5=False,
                             clean=False)
                made.append(as_gw)
                assert as_gw.connected.is_set(), as_gw.connack
                assert as_gw.publish(f"plant/{SITE}/gw-tank-a", b"after " + nonce) == 0
                as_gw.close()
                # plantwatch's real password with a gateway's certificate: still the gateway.
                with_pw = peer(broker, "plantwatch", broker.passwords["plantwatch"],
                               cert="gw-tank-a", client_id="plantwatch", clean=True)
                made.append(with_pw)
                assert with_pw.connected.is_set(), with_pw.connack
                assert with_pw.publish("plantwatch/alarms/x", b"forged") == NOT_AUTHORIZED
                assert with_pw.publish(f"plant/{SITE}/gw-tank-a", b"after " + nonce) == 0
                got = await receive_until(source, b"after " + nonce)
                if len([m for m in got if nonce in m.payload]) < 2:
                    got += await receive_until(source, b"after " + nonce)
            assert [m.payload for m in got if nonce in m.payload] == [b"after " + nonce] * 2
            assert source.connected
            assert source.generation == 1 and source.disconnects == 0
            assert source.takeovers == 0 and source.session_problem is None


def _mosquitto_version() -> str:
    exe = find_mosquitto()
    if exe is None:
        return ""
    out = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out.startswith("mosquitto version ") else ""


KNOWN_BROKEN = ("2.0.11",)
"""Mosquitto releases seen to lose a session to a refused client without a user name."""
_BROKEN = _mosquitto_version() in KNOWN_BROKEN


@pytest.mark.servers
@pytest.mark.parametrize("variant", [
    pytest.param(Variant.PASSWORDS, id="passwords", marks=pytest.mark.xfail(
        _BROKEN, strict=True,
        reason="Mosquitto 2.0.11 with use_username_as_clientid: a refused client without a "
               "user name still unhashes the session whose id it sent (deploy/README.md)")),
    pytest.param(Variant.CERTS_AND_PASSWORDS, id="certificates-and-passwords",
                 marks=pytest.mark.xfail(
                     _BROKEN, strict=True,
                     reason="the same, by a client with any certificate of the plant's CA "
                            "(a field gateway's): why the CN is the user name")),
    pytest.param(Variant.SHIPPED, id="shipped"),
])
async def test_an_anonymous_client_cannot_break_plantwatchs_session_for_later(
        tmp_path: Path, certs: Path, variant: Variant) -> None:
    """The client id of plantwatch's session is its user name, "plantwatch". A
    client that sends that client id and no user name is refused, but on
    Mosquitto 2.0.11 it leaves the session broken: once plantwatch reconnects
    it receives nothing more. With passwords only, anyone who reaches the port
    can do it; with certificates and passwords, anyone holding a certificate
    of the plant (a gateway's). With the shipped config a client without a
    certificate never gets its CONNECT answered, and one with a gateway's
    certificate is that gateway (its CN is its user name): plantwatch keeps
    receiving."""
    attackers_of: dict[Variant, list[dict[str, Any]]] = {
        Variant.PASSWORDS: [{}],
        Variant.CERTS_AND_PASSWORDS: [{"cert": "gw-tank-a"}],
        Variant.SHIPPED: [{}, {"cert": "gw-tank-a"}],
    }
    attackers = attackers_of[variant]
    with running_broker(tmp_path, certs, variant) as broker:
        async with plantwatch_source(broker, ["plant/#"], clean=False) as source:
            with peers() as made:
                for how in attackers:
                    attacker = peer(broker, client_id="plantwatch", v5=False, clean=False,
                                    wait=False, **how)
                    made.append(attacker)
                    assert attacker.settled(), "the broker neither refused nor took it"
                    attacker.close()
                gw = peer(broker, **broker.login("gw-tank-b"))
                made.append(gw)
                assert gw.publish(f"plant/{SITE}/gw-tank-b", b"before") == 0
                await receive_until(source, b"before")
        # plantwatch restarts (or its network blips), with its persistent session.
        async with plantwatch_source(broker, ["plant/#"], clean=False) as source:
            with peers() as made:
                gw = peer(broker, **broker.login("gw-tank-b"))
                made.append(gw)
                assert gw.publish(f"plant/{SITE}/gw-tank-b", b"after") == 0
                # Delivery takes milliseconds; a short wait keeps the xfail cases quick.
                await receive_until(source, b"after", timeout_s=4)


@pytest.mark.servers
def test_certificates_and_passwords_are_not_tied_so_the_cn_is_the_user(
        tmp_path: Path, certs: Path) -> None:
    """Why the shipped config takes the CN as the user name instead of keeping
    passwords beside certificates: with require_certificate true and a password
    file, gw-tank-a's certificate with plantwatch's password logs in as
    plantwatch (it may publish forged alarm states). The shipped config makes
    the same client gw-tank-a (see test_nobody_else_can_take_over_plantwatchs_session)."""
    with running_broker(tmp_path, certs, Variant.CERTS_AND_PASSWORDS) as broker, \
            peers() as made:
        mixed = peer(broker, "plantwatch", broker.passwords["plantwatch"], cert="gw-tank-a",
                     client_id="x")
        made.append(mixed)
        assert mixed.connected.is_set(), mixed.connack
        assert mixed.publish("plantwatch/alarms/forged", b"forged") == 0
        assert mixed.publish(f"plant/{SITE}/gw-tank-a", b"forged") == NOT_AUTHORIZED


@pytest.mark.servers
@pytest.mark.parametrize(("user", "password"), [
    ("gw-tank-a", "wrong"),
    ("gw-tank-a", ""),
    ("gw-nobody", "anything"),
    (None, None),
])
def test_wrong_or_missing_credentials_are_refused_by_the_password_variant(
        password_broker: Broker, user: str | None, password: str | None) -> None:
    with peers() as made:
        p = peer(password_broker, user, password)
        made.append(p)
        assert p.answered.is_set(), "no CONNACK"
        assert p.connack is not None and p.connack.is_failure
        assert p.connack.value in (134, 135), p.connack  # bad user name/password; not authorized
        # The right password for the same user does connect.
        ok = peer(password_broker, "gw-tank-a", password_broker.passwords["gw-tank-a"])
        made.append(ok)
        assert ok.connected.is_set()


# -- plantwatch gateway add ------------------------------------------------------------

def _parse_gateway_add(stdout: str) -> tuple[dict[str, str], list[str]]:
    """(the key=value lines, the ACL lines) of ``plantwatch gateway add``'s output."""
    lines = stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines
                  if "=" in line and not line.startswith(("#", "user ", "topic ")))
    acl = [line for line in lines if line.startswith(("user ", "topic "))]
    return values, acl


def _reload(broker: Broker, acl: list[str]) -> None:
    with (broker.workdir / "acl").open("a") as f:
        f.write("\n" + "\n".join(acl) + "\n")
    os.kill(broker.pid, signal.SIGHUP)  # what `systemctl reload mosquitto` sends


def _publishes_after_reload(broker: Broker, topic: str, **login: Any) -> Peer:
    """A peer that has published to ``topic`` (once the reloaded ACL allows it)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        p = peer(broker, **login)
        if p.connected.is_set() and p.publish(topic, b"hello") == 0:
            return p
        p.close()
        assert time.monotonic() < deadline, f"no publish to {topic} after the reload: " \
            f"{p.connack}"
        time.sleep(0.1)


def _issued(values: dict[str, str], out: Path, user: str) -> TlsOptions:
    """The TLS options of the files ``gateway add`` says it issued, checked: exactly
    <user>.crt and <user>.key in ``out``, the key readable by its owner only."""
    cert, key = Path(values["cert_file"]), Path(values["key_file"])
    assert (cert, key) == (out / f"{user}.crt", out / f"{user}.key")
    assert key.stat().st_mode & 0o077 == 0, oct(key.stat().st_mode)
    assert sorted(p.name for p in out.iterdir()) == [cert.name, key.name]
    return TlsOptions(ca_file=Path(values["ca_file"]), cert_file=cert, key_file=key)


@pytest.mark.servers
async def test_gateway_add_issues_a_certificate_that_works_on_the_broker(
        broker: Broker, tmp_path: Path) -> None:
    """The certificate `plantwatch gateway add` issues with the plant's CA, and the
    ACL lines it prints, get the gateway connected to the shipped broker (no
    password), publishing on its own topic and on no other's."""
    gateway = "gw-compressor"
    result = CliRunner().invoke(app, [
        "gateway", "add", gateway, "--site", SITE, "--ca-cert", str(broker.certs / "ca.crt"),
        "--ca-key", str(broker.certs / "ca.key"), "--cert-dir", str(tmp_path / "out"),
        "--plant", str(PLANT_YAML)])
    assert result.exit_code == 0, result.output
    values, acl = _parse_gateway_add(result.stdout)
    assert "password" not in values
    assert values["username"] == gateway and acl[0] == f"user {gateway}"
    tls = _issued(values, tmp_path / "out", gateway)
    _reload(broker, acl)
    nonce = uuid.uuid4().hex.encode()
    async with plantwatch_source(broker, ["plant/#"]) as source:
        with peers() as made:
            gw = _publishes_after_reload(broker, f"plant/{SITE}/{gateway}", tls=tls)
            made.append(gw)
            assert gw.publish(f"plant/{SITE}/gw-tank-a", b"forged " + nonce) == NOT_AUTHORIZED
            assert gw.publish(f"spBv1.0/{SITE}/NDATA/gw-tank-a", b"forged " + nonce) \
                == NOT_AUTHORIZED
            assert gw.publish(f"plant/{SITE}/{gateway}", b"own " + nonce) == 0
            got = await receive_until(source, b"own " + nonce)
        assert [(m.topic, m.payload) for m in got if nonce in m.payload] == [
            (f"plant/{SITE}/{gateway}", b"own " + nonce)]


def test_gateway_add_keeps_an_issued_certificate_unless_replace(tmp_path: Path,
                                                                certs: Path) -> None:
    args = ["gateway", "add", "gw-tank-a", "--site", SITE, "--ca-cert", str(certs / "ca.crt"),
            "--ca-key", str(certs / "ca.key"), "--cert-dir", str(tmp_path),
            "--plant", str(PLANT_YAML)]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    first = (tmp_path / "gw-tank-a.crt").read_bytes(), (tmp_path / "gw-tank-a.key").read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "exists; pass --replace" in " ".join(again.stderr.split())
    assert "cert_file=" not in again.stdout
    assert ((tmp_path / "gw-tank-a.crt").read_bytes(),
            (tmp_path / "gw-tank-a.key").read_bytes()) == first
    replaced = runner.invoke(app, [*args, "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert "stays valid until it expires" in " ".join(replaced.stderr.split())
    assert (tmp_path / "gw-tank-a.key").read_bytes() != first[1]
    assert (tmp_path / "gw-tank-a.crt").read_bytes() != first[0]


def test_gateway_add_names_a_missing_ca_and_how_to_make_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gateway", "add", "gw-tank-a", "--site", SITE,
                                      "--ca-cert", str(tmp_path / "pki" / "ca.crt"),
                                      "--plant", str(PLANT_YAML)])
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert f"no CA file {tmp_path / 'pki' / 'ca.crt'} (--ca-cert)" in text
    assert f"make-certs.sh ca {tmp_path / 'pki'}" in text
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_gateway_add_refuses_a_password_file_for_a_certificate(tmp_path: Path) -> None:
    """The shipped broker never checks a password: one added for it would do nothing."""
    result = CliRunner().invoke(app, ["gateway", "add", "gw-tank-a", "--site", SITE,
                                      "--password-file", str(tmp_path / "passwd"),
                                      "--plant", str(PLANT_YAML)])
    assert result.exit_code == 2
    assert "--auth password" in result.stderr
    assert not (tmp_path / "passwd").exists()


@pytest.mark.servers
@pytest.mark.parametrize("hasher", ["mosquitto_passwd", "built-in"])
async def test_gateway_add_password_works_on_the_password_variant(
        password_broker: Broker, hasher: str) -> None:
    """The credentials and ACL lines `plantwatch gateway add --auth password` prints
    get the gateway connected to the password-only variant, publishing on its
    own topic and on no other's, whether mosquitto_passwd or plantwatch's own
    $7$ hashing wrote the password file."""
    broker = password_broker
    gateway = {"mosquitto_passwd": "gw-loading", "built-in": "gw-reactor"}[hasher]
    env = {} if hasher == "mosquitto_passwd" else {"PATH": ""}
    if hasher == "mosquitto_passwd":
        _need(shutil.which("mosquitto_passwd"), "mosquitto")
    result = CliRunner().invoke(app, ["gateway", "add", gateway, "--site", SITE,
                                      "--auth", "password",
                                      "--password-file", str(broker.workdir / "passwd"),
                                      "--plant", str(PLANT_YAML)], env=env)
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    expected_note = "with mosquitto_passwd" if hasher == "mosquitto_passwd" else "hashed here"
    assert expected_note in stderr and "password-only variant" in stderr
    values, acl = _parse_gateway_add(result.stdout)
    username, password = values["username"], values["password"]
    assert username == gateway and len(password) >= 32
    _reload(broker, acl)
    nonce = uuid.uuid4().hex.encode()
    async with plantwatch_source(broker, ["plant/#"]) as source:
        with peers() as made:
            gw = _publishes_after_reload(broker, f"plant/{SITE}/{gateway}", username=username,
                                         password=password)
            made.append(gw)
            assert gw.publish(f"plant/{SITE}/gw-tank-a", b"forged " + nonce) == NOT_AUTHORIZED
            assert gw.publish(f"plant/{SITE}/{gateway}", b"own " + nonce) == 0
            got = await receive_until(source, b"own " + nonce)
        assert [(m.topic, m.payload) for m in got if nonce in m.payload] == [
            (f"plant/{SITE}/{gateway}", b"own " + nonce)]


def test_gateway_add_refuses_names_that_would_widen_its_topics(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["gw+", "--site", SITE], ["gw", "--site", "#"], ["a/b", "--site", SITE],
                 ["gw", "--site", SITE, "--username", "x:y"], ["gw x", "--site", SITE]):
        for auth in ("certificate", "password"):
            result = runner.invoke(app, ["gateway", "add", *args, "--auth", auth,
                                         "--ca-cert", str(tmp_path / "ca.crt"),
                                         "--plant", str(PLANT_YAML)])
            assert result.exit_code == 2, (args, result.output)
            assert "password=" not in result.stdout and "cert_file=" not in result.stdout
    with pytest.raises(ValueError, match=r"site 'a\+' contains '\+'"):
        check_name("a+", "site")


def test_gateway_add_says_when_the_site_is_not_in_the_plant(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gateway", "add", "gw-x", "--site", "elsewhere",
                                      "--auth", "password", "--plant", str(PLANT_YAML)])
    assert result.exit_code == 0, result.output
    assert "site 'elsewhere' is not in" in " ".join(result.stderr.split())
    assert "password=" in result.stdout


def test_gateway_add_will_not_silently_replace_a_users_password(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    line = mosquitto_password_line("gw-tank-a", "old")
    passwd.write_text(line + "\n")
    result = CliRunner().invoke(app, ["gateway", "add", "gw-tank-a", "--site", SITE,
                                      "--auth", "password", "--password-file", str(passwd),
                                      "--plant", str(PLANT_YAML)], env={"PATH": ""})
    assert result.exit_code == 1
    assert "already in" in result.stderr
    assert passwd.read_text() == line + "\n"


# -- TLS options of the MQTT source (no server needed) ---------------------------------

def test_a_missing_ca_file_names_the_file_and_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.crt"
    with pytest.raises(TlsConfigError) as err:
        MqttSource("mqtts://broker:8883", "pw", ["plant/#"], tls=TlsOptions(ca_file=missing))
    text = str(err.value)
    assert "\n" not in text
    assert str(missing) in text and "mqtt.tls.ca_file" in text and "does not exist" in text


def test_a_ca_file_that_is_not_pem_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=r"ca\.crt \(setting mqtt\.tls\.ca_file\)"):
        tls_context(TlsOptions(ca_file=bad))


def test_client_certificate_problems_name_their_setting(tmp_path: Path, certs: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"mqtt\.tls\.cert_file"):
        tls_context(TlsOptions(ca_file=certs / "ca.crt", cert_file=tmp_path / "none.crt"))
    with pytest.raises(TlsConfigError, match=r"mqtt\.tls\.key_file"):
        tls_context(TlsOptions(cert_file=certs / "plantwatch.crt", key_file=tmp_path / "k"))
    # A key that is not the certificate's.
    with pytest.raises(TlsConfigError, match=r"plantwatch\.crt.*broker\.key"):
        tls_context(TlsOptions(cert_file=certs / "plantwatch.crt", key_file=certs / "broker.key"))
    context = tls_context(TlsOptions(ca_file=certs / "ca.crt", cert_file=certs / "plantwatch.crt",
                                     key_file=certs / "plantwatch.key", tls_version="1.3"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_tls_defaults_verify_the_broker_with_the_system_cas() -> None:
    context = tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not tls_context(TlsOptions(insecure=True)).check_hostname


def test_tls_options_with_a_plaintext_url_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="mqtts://"):
        MqttSource("mqtt://broker:1883", "pw", ["plant/#"],
                   tls=TlsOptions(ca_file=tmp_path / "ca.crt"))
    MqttSource("mqtt://broker:1883", "pw", ["plant/#"], tls=TlsOptions())  # defaults: fine


def test_credentials_arguments_win_over_the_url_and_never_show_in_its_text() -> None:
    source = MqttSource("mqtts://url-user:url%40pass@broker:8883", "pw", ["plant/#"],
                        username="plantwatch", password="s3cret:@")
    assert (source.address.username, source.address.password) == ("plantwatch", "s3cret:@")
    assert "s3cret" not in source.url and "url%40pass" not in source.url
    assert source.url == "mqtts://plantwatch@broker:8883"
    only_url = parse_broker_url("mqtts://gw:p%40ss@broker")
    assert (only_url.username, only_url.password, only_url.port) == ("gw", "p@ss", 8883)
    with pytest.raises(ValueError, match="not of the form") as err:
        parse_broker_url("http://u:hunter2@broker")
    assert "hunter2" not in str(err.value)
