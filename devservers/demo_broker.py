"""The demo's MQTT broker: a local Mosquitto if one is installed, else amqtt.

Mosquitto is preferred: it is what plants run, about five times faster than
amqtt, and it does not hand new clients retained messages of topics they never
subscribed to (the pipeline filters those anyway). amqtt needs nothing but
Python packages, so the demo runs on a machine with nothing else installed.
amqtt runs on its own event loop in its own thread, so the broker never
competes with the pipeline's loop. amqtt is the optional extra ``demo``
(``pip install 'plantwatch[demo]'``), imported only when it is the broker used.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Protocol

from devservers.localservers import Mosquitto, find_mosquitto, free_port

__all__ = ["DemoBroker", "DemoBrokerUnavailable", "EmbeddedBroker", "start_demo_broker"]

log = logging.getLogger(__name__)


class DemoBrokerUnavailable(RuntimeError):
    """Neither a local Mosquitto nor amqtt is installed; the message says how to get one."""


class DemoBroker(Protocol):
    url: str
    mqtt_protocol: str

    def stop(self, timeout_s: float = 5.0) -> None: ...


class EmbeddedBroker:
    """amqtt on 127.0.0.1:``port`` in a background thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"mqtt://127.0.0.1:{port}"
        self.mqtt_protocol = "3.1.1"  # amqtt speaks nothing newer
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"embedded MQTT broker did not start on port {self.port}")
        if self._error is not None:
            raise RuntimeError(f"embedded MQTT broker failed: {self._error}") from self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._stop = asyncio.Event()
        try:
            broker = Broker(config)
            await broker.start()
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await broker.shutdown()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)


def start_demo_broker(workdir: Path, prefer_mosquitto: bool = True) -> DemoBroker:
    """Start a broker for the demo on a free loopback port.

    Raises DemoBrokerUnavailable, naming what to install, when there is none."""
    mosquitto = find_mosquitto()
    amqtt = importlib.util.find_spec("amqtt") is not None
    if not amqtt and (mosquitto is None or not prefer_mosquitto):
        if prefer_mosquitto:
            raise DemoBrokerUnavailable(
                "the demo needs an MQTT broker: install mosquitto (sudo apt-get install "
                "mosquitto) or the embedded one: pip install 'plantwatch[demo]'")
        raise DemoBrokerUnavailable(
            "--embedded-broker needs amqtt: pip install 'plantwatch[demo]' (or leave the "
            f"option out to use the mosquitto at {mosquitto})")
    if prefer_mosquitto and mosquitto is not None:
        broker = Mosquitto.start(workdir / "mosquitto", persistence=True)
        log.info("demo broker: local mosquitto on %s", broker.url)
        return _WithProtocol(broker)
    embedded = EmbeddedBroker(free_port()).start()
    log.info("demo broker: embedded amqtt on %s (install mosquitto for a faster one)",
             embedded.url)
    return embedded


class _WithProtocol:
    """A local Mosquitto as a demo broker: it speaks MQTT 5."""

    mqtt_protocol = "5"

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.url = broker.url

    def stop(self, timeout_s: float = 5.0) -> None:
        self.broker.stop(timeout_s)
