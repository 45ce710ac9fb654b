"""The local Mosquitto and InfluxDB servers: start on free ports, answer, stop by pid."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devservers.localservers import (
    InfluxD,
    Mosquitto,
    ServerStartError,
    find_influxd,
    find_mosquitto,
    free_port,
)

pytestmark = pytest.mark.servers


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class _Received:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()

    def on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))

    def wait_for(self, n: int, timeout_s: float = 10.0) -> int:
        deadline = time.monotonic() + timeout_s
        while len(self.payloads) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # anything beyond n would show up now
        return len(self.payloads)


@contextmanager
def _client(
    broker: Mosquitto, client_id: str = "", clean: bool = True, manual_ack: bool = False,
    received: _Received | None = None,
) -> Iterator[mqtt.Client]:  # fmt: skip
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
        manual_ack=manual_ack,
    )  # fmt: skip
    if received is not None:
        client.on_message = received.on_message
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(5), "no CONNACK from the broker"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def _subscribe(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=1)
    assert done.wait(5), "no SUBACK from the broker"


def _publish(broker: Mosquitto, topic: str, n: int) -> None:
    with _client(broker) as publisher:
        infos = [publisher.publish(topic, f"{i}".encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)


def test_binaries_are_found() -> None:
    assert find_mosquitto() is not None
    assert find_influxd() is not None


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_session_mosquitto_relays_a_message(mosquitto: Mosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    received = _Received()
    with _client(mosquitto, received=received) as subscriber:
        _subscribe(subscriber, "test/relay")
        _publish(mosquitto, "test/relay", 3)
        assert received.wait_for(3) == 3


def test_session_influxd_answers_ping(influxdb: InfluxD) -> None:
    assert influxdb.url == f"http://127.0.0.1:{influxdb.port}"
    response = httpx.get(f"{influxdb.url}/ping")
    assert response.status_code == 204
    assert response.headers["X-Influxdb-Version"].startswith("1.")


def test_mosquitto_starts_fast_and_stops_by_pid(tmp_path: Path) -> None:
    started = time.monotonic()
    broker = Mosquitto.start(tmp_path)
    assert time.monotonic() - started < 10.0
    assert broker.running and not _gone(broker.pid)
    assert (tmp_path / "mosquitto.conf").is_file()
    config = broker.config_path.read_text()
    assert f"listener {broker.port} 127.0.0.1" in config
    assert "max_queued_messages 10000000" in config
    broker.stop()
    assert _gone(broker.pid) and not broker.running
    assert "mosquitto version 2." in broker.log_path.read_text()


def test_influxd_starts_fast_and_stops_by_pid(tmp_path: Path) -> None:
    started = time.monotonic()
    with InfluxD.start(tmp_path) as server:
        assert time.monotonic() - started < 10.0
        assert httpx.get(f"{server.url}/ping").status_code == 204
        pid = server.pid
        for name in ("meta", "data"):  # wal/ appears with the first write
            assert (tmp_path / name).is_dir()
    assert _gone(pid)


def test_kill_is_sigkill(tmp_path: Path) -> None:
    server = InfluxD.start(tmp_path)
    server.kill()
    assert _gone(server.pid)
    assert server._proc.returncode == -9


@pytest.mark.parametrize("server", [Mosquitto, InfluxD])
def test_a_port_in_use_fails_with_the_log_tail(
    tmp_path: Path, server: type[Mosquitto] | type[InfluxD]
) -> None:
    # Someone else accepts on the port: start-up must not mistake them for our server.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match=r"(?i)address already in use") as caught:
            server.start(tmp_path, port=port)
    assert caught.value.log_path is not None and caught.value.log_path.parent == tmp_path


def test_mosquitto_queues_more_than_its_default_for_an_offline_session(tmp_path: Path) -> None:
    # Stock mosquitto keeps 1000 messages for an offline client and drops the rest.
    n = 2500
    received = _Received()
    with Mosquitto.start(tmp_path) as broker:
        with _client(broker, "plantwatch-test", clean=False) as subscriber:
            _subscribe(subscriber, "plant/#")
        _publish(broker, "plant/s1/lel", n)
        with _client(broker, "plantwatch-test", clean=False, received=received):
            assert received.wait_for(n) == n
        assert "dropped" not in broker.log_path.read_text()


def test_mosquitto_keeps_many_messages_unacknowledged_in_flight(mosquitto: Mosquitto) -> None:
    # plantwatch acks only once readings are durable; the default of 20 in flight would stall it.
    received = _Received()
    with _client(mosquitto, "unacked", manual_ack=True, received=received) as subscriber:
        _subscribe(subscriber, "inflight/#")
        _publish(mosquitto, "inflight/x", 500)
        assert received.wait_for(500) == 500


def test_mosquitto_restores_a_persistent_session_after_a_restart(tmp_path: Path) -> None:
    broker = Mosquitto.start(tmp_path)
    port = broker.port
    try:
        with _client(broker, "durable", clean=False) as subscriber:
            _subscribe(subscriber, "plant/#")
        _publish(broker, "plant/s1/o2", 100)
    finally:
        broker.stop()  # SIGTERM: mosquitto saves its database
    received = _Received()
    with (
        Mosquitto.start(tmp_path, port=port) as broker,
        _client(broker, "durable", clean=False, received=received),
    ):
        assert received.wait_for(100) == 100
