"""The service as a real subprocess (``python -m plantwatch run``), for the tests
that kill it with SIGKILL and start it again, and a plant streaming to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from model.plant import PlantConfig
from simulators import MqttPublisher, PlantSimulator
from simulators.gateway_json import encode_gateway_message, gateway_topic

ROOT = Path(__file__).resolve().parents[1]


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


class ServiceProcess:
    """``plantwatch run ARGS`` with ``env``, its output appended to ``log``; the API on
    ``port``. ``start`` returns once ``/healthz`` answers."""

    def __init__(self, port: int, log: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.log = log
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plantwatch", "run", *self.args], env=self.env,
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: self.health() is not None, 30, "the service to answer /healthz")

    def health(self) -> dict[str, Any] | None:
        """``/healthz``, or None while it does not answer (the process must be alive)."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"service exited:\n{self.log.read_text()[-3000:]}"
        try:
            r = httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code in (200, 503) else None  # type: ignore[no-any-return]

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def stream_plant(broker_url: str, plant: PlantConfig, sim: PlantSimulator, start_ms: int,
                 seconds: float, *, client_id: str, stop: threading.Event | None = None,
                 pause_s: float = 0.002) -> tuple[int, int]:
    """The simulated plant carried on from ``start_ms``: 1 s steps of event time,
    published as fast as the broker takes them for ``seconds`` of wall time (or
    until ``stop``). Returns (readings published, readings the broker acked)."""
    by_gateway: dict[tuple[str, str], list[int]] = {}
    for p in plant.places():
        by_gateway.setdefault((p.site, p.gateway), []).append(p.index)
    ids = [p.sensor.id for p in plant.places()]
    ts = start_ms
    deadline = time.monotonic() + seconds
    with MqttPublisher(broker_url, client_id=client_id) as pub:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            values = sim.values_at(ts)
            for (site, gw), rows in by_gateway.items():
                readings = [(ids[i], float(values[i])) for i in rows]
                pub.publish(gateway_topic(site, gw), encode_gateway_message(gw, ts, readings),
                            len(readings))
            ts += 1000
            time.sleep(pause_s)
        assert pub.wait_all_acked(60), "broker did not acknowledge every message"
        return pub.published_readings, pub.acked_readings
