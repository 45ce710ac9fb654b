"""kill -9 while a webhook receiver refuses loses no notification.

The service runs as a real subprocess (``python -m plantwatch run``) on a real
Mosquitto, with a webhook receiver (a real HTTP server in this process) that
answers 503 at first. Leaks raise alarms (and, unacknowledged, escalations);
the service is SIGKILLed twice: once mid-stream and once just after a
restart. When the receiver starts accepting, every annunciated alarm change
the final journal holds must have reached it (deduplicated by
``X-Plantwatch-Delivery``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from alarms.config import load_alarm_config
from alarms.journal import AlarmJournal
from devservers.localservers import free_port
from model.plant import load_plant
from simulators import LeakSpec, PlantSimulator, run_simulation
from tests.service_process import ServiceProcess, stream_plant, wait_for

ROOT = Path(__file__).resolve().parents[1]
PLANT_FILE = ROOT / "config" / "plant.yaml"
PLANT = load_plant(PLANT_FILE)
_ids = itertools.count(1)

pytestmark = [pytest.mark.servers, pytest.mark.slow]


class Receiver:
    """A webhook receiver that refuses (503) until told to accept."""

    def __init__(self) -> None:
        self.accepting = False
        self.refused = 0
        self.received: dict[str, bytes] = {}  # delivery id -> body
        self.duplicates = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    if not receiver.accepting:
                        receiver.refused += 1
                        self.send_response(503)
                    else:
                        delivery = self.headers["X-Plantwatch-Delivery"]
                        if delivery in receiver.received:
                            receiver.duplicates += 1
                            assert receiver.received[delivery] == body
                        receiver.received[delivery] = body
                        self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def stream(broker_url: str, sim: PlantSimulator, start_ms: int, seconds: float) -> None:
    stream_plant(broker_url, PLANT, sim, start_ms, seconds, pause_s=0.01,
                 client_id=f"outbox-crash-pub-{next(_ids)}")


def write_settings(tmp_path: Path, state: Path, broker_url: str, client_id: str, port: int,
                   webhook_url: str, compact_every_records: int = 100_000) -> Path:
    """The service's settings: SQLite, the test's broker and API port, one webhook
    target that also takes fire-control notices."""
    settings = tmp_path / "plantwatch.toml"
    settings.write_text(f"""
plant = "{PLANT_FILE}"
store = "sqlite"
state_dir = "{state}"

[sqlite]
path = "{state / 'readings.sqlite3'}"

[mqtt]
url = "{broker_url}"
client_id = "{client_id}"

[api]
port = {port}

[journal]
compact_every_records = {compact_every_records}

[[notify.webhooks]]
name = "pager"
url = "{webhook_url}"
fire_control = true
""")
    return settings


def annunciated_changes(state: Path) -> set[tuple[str, str, int]]:
    """Every annunciated point change the journal implies, replayed by the alarm rules."""
    config = load_alarm_config(PLANT_FILE.parent / "alarms.yaml", PLANT)
    manager = config.manager(PLANT)
    out: set[tuple[str, str, int]] = set()
    for record in AlarmJournal(state / "alarms.jsonl").load_records():
        for change in manager.apply(record):
            if change.point is not None and change.annunciate:
                out.add((str(change.alarm_id), str(change.change), int(change.ts)))
    return out


def test_kill9_while_the_receiver_refuses_loses_no_notification(
        mosquitto: Any, tmp_path: Path) -> None:
    n = next(_ids)
    state = tmp_path / "state"
    port = free_port()
    receiver = Receiver()
    # compacts every 10 records: kill -9 meets compaction too
    settings = write_settings(tmp_path, state, mosquitto.url, f"pw-outbox-crash-{n}", port,
                              receiver.url, compact_every_records=10)
    service = ServiceProcess(
        port, tmp_path / "service.log", ["--settings", str(settings)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")})
    service.start()
    try:
        # Phase 1: a leak raises alarms an hour ago in event time (so they are
        # unacknowledged past max_response_s and escalate too); the receiver refuses.
        start_ms = int(time.time() * 1000) - 3_600_000
        first = run_simulation(PLANT, mosquitto.url, rate_hz=1.0, duration_s=120, seed=7,
                               leaks=[LeakSpec("tf-group-a", at_s=10, duration_s=3600)],
                               start_ms=start_ms, realtime=False)
        assert first.acked_readings == first.readings_published
        wait_for(lambda: (service.health() or {}).get("outbox", {}).get("pending", 0) > 0
                 and receiver.refused > 0, 60, "notifications waiting for the refusing receiver")

        # Phase 2: a second leak streams on; kill -9 mid-stream, restart, kill -9 again.
        sim = PlantSimulator(PLANT, np.random.default_rng(7), start_ms,
                             leaks=[LeakSpec("tf-group-a", at_s=10, duration_s=3600),
                                    LeakSpec("tf-group-b", at_s=125, duration_s=3600)])
        publisher = threading.Thread(target=stream,
                                     args=(mosquitto.url, sim, start_ms + 120_000, 6.0))
        publisher.start()
        time.sleep(2.0)
        service.kill9()
        time.sleep(1.0)
        service.start()
        time.sleep(1.0)
        service.kill9()
        service.start()
        publisher.join(120)
        assert not publisher.is_alive()

        # The receiver comes back: everything recorded is delivered.
        with receiver.lock:
            receiver.accepting = True
        wait_for(lambda: (service.health() or {}).get("outbox", {}).get("pending", 1) == 0,
                 90, "the outbox to drain")
        time.sleep(1.5)  # the last flushes' notifications
        wait_for(lambda: (service.health() or {}).get("outbox", {}).get("pending", 1) == 0,
                 30, "the outbox to drain")
    finally:
        service.stop()
        receiver.close()

    expected = annunciated_changes(state)
    events = [json.loads(body) for body in receiver.received.values()]
    got = {(e["alarm_id"], e["change"], int(e["ts"])) for e in events
           if e.get("type") == "alarm"}
    missing = sorted(expected - got)
    assert not missing, f"{len(missing)} of {len(expected)} notifications never arrived: " \
                        f"{missing[:10]}"
    changes = {c for _, c, _ in expected}
    assert {"raised", "escalated"} <= changes, changes  # the leaks raised and escalated
    assert any(a.startswith("TF-B-") for a, _, _ in expected)  # raised around the kills
    assert any(e.get("type") == "fire_control" for e in events)
    assert receiver.refused > 0
    assert len(AlarmJournal(state / "alarms.jsonl").segments()) > 1  # it did compact
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]


CRASH_BEFORE_OUTBOX_SYNC = """
import os, sys
import notify.outbox
real_sync = notify.outbox.Outbox.sync
def sync(self):
    if any(d.lane.startswith("webhook:") for d in self._staged):
        os._exit(9)  # the journal has the records; their notices are not recorded yet
    return real_sync(self)
notify.outbox.Outbox.sync = sync
from plantwatch.cli import app
app(["run", "--settings", sys.argv[1]])
"""


def test_a_crash_between_the_journal_and_the_outbox_loses_no_notification(
        mosquitto: Any, tmp_path: Path) -> None:
    """The narrowest window, hit on purpose: the process dies right after the alarm
    journal's fsync and before the outbox's. The journal is cut back to the
    checkpoint at the restart, the broker redelivers the readings, and the
    notifications are made again and delivered."""
    n = next(_ids)
    state = tmp_path / "state"
    port = free_port()
    receiver = Receiver()
    receiver.accepting = True
    settings = write_settings(tmp_path, state, mosquitto.url, f"pw-outbox-window-{n}", port,
                              receiver.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    log = tmp_path / "service.log"
    with open(log, "ab") as out:
        doomed = subprocess.Popen([sys.executable, "-c", CRASH_BEFORE_OUTBOX_SYNC,
                                   str(settings)], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    service = ServiceProcess(port, log, ["--settings", str(settings)], env=env)
    try:
        wait_for(lambda: _answers(port), 30, "the doomed service to start")
        start_ms = int(time.time() * 1000) - 600_000
        run_simulation(PLANT, mosquitto.url, rate_hz=1.0, duration_s=60, seed=11,
                       leaks=[LeakSpec("tf-group-a", at_s=5, duration_s=3600)],
                       start_ms=start_ms, realtime=False)
        assert doomed.wait(60) == 9, log.read_text()[-3000:]  # it died in the window
        assert receiver.received == {}
        service.start()
        wait_for(lambda: bool(annunciated_changes(state)) and (service.health() or {}).get(
            "outbox", {}).get("pending", 1) == 0 and len(receiver.received) > 0, 60,
            "the alarms raised again and their notices delivered")
        time.sleep(1.0)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        service.stop()
        receiver.close()
    expected = annunciated_changes(state)
    got = {(e["alarm_id"], e["change"], int(e["ts"]))
           for e in map(json.loads, receiver.received.values()) if e.get("type") == "alarm"}
    assert expected and not expected - got, sorted(expected - got)[:10]
    assert any(change == "raised" for _, change, _ in expected)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
