"""Hostile load: 100,000+ hostile messages mixed with valid ones, against the real service.

Why: a gateway, a misconfigured integration or an attacker on the plant network
can publish anything on ``plant/#`` and ``spBv1.0/#``. The service must keep
storing every valid reading, stay up, give memory back once the storm has
passed, and dead-letter (then acknowledge) what it cannot read: a message
that crashed it would be redelivered by the broker's persistent session on
every restart, a crash loop.

What it does, on servers it starts on loopback ports and stops by pid, even on
error:

1. Mosquitto with the project's configuration (``devservers.localservers``),
   and ``.venv/bin/plantwatch run`` as a subprocess: SQLite store in the work
   directory (``--store influx``: a local InfluxDB), API and metrics on free ports;
2. a listener, subscribed before anything is published, counting dead
   letters (``plantwatch/deadletter``, QoS 1, persistent session) and the
   rebirth commands the service sends (``spBv1.0/+/NCMD/#``);
3. a warm-up of valid messages, then the service's RSS (VmRSS);
4. ``--hostile`` messages of the kinds in ``benchmarks/hostile_payloads.py``
   (one catalogue) shuffled among ``--valid`` gateway messages of 10 readings
   (distinct sensor and timestamp each, so each is countable in the store),
   published by several paho clients at QoS 1;
5. a wait, bounded by ``--timeout``, until the service has received every
   message and its queues are empty; then the store is counted per event-time
   window: valid readings, readings sent on the wrong site's topic
   (``plant/evilsite/gw-x``, must be 0) and any other hostile reading;
6. ``--idle`` seconds of quiet (35: the service returns freed heap every 30 s),
   then RSS again, the peak (VmHWM), whether the process lives and
   ``/healthz`` answers 200;
7. the service stopped and started once more on the same broker session, and
   watched for ``--restart-watch`` seconds: a message that crashed it would be
   redelivered and crash it again.

It exits 1 when a valid reading is missing from the store, a wrong-site reading
was stored, the service is not up (after the load or after the restart), RSS
after the idle is more than 50 MB over RSS after warm-up, or a crash-loop
payload was not dead-lettered. MB here are MiB (2^20 bytes).

Usage: ``python benchmarks/hostile_load.py [--quick] [--hostile N] [--valid N] [--big N]
[--publishers N] [--store sqlite|influx] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hostile_payloads import (  # noqa: E402
    CATALOGUE,
    READINGS_PER_WRONG_SITE_MESSAGE,
    Context,
    counts,
)
from benchmarks.ingest_throughput import PLANT, PLANT_FILE, proc_hwm_mib  # noqa: E402
from devservers.localservers import LOOPBACK, InfluxD, Mosquitto, free_port  # noqa: E402
from model.sensor_table import SensorTable  # noqa: E402
from plantwatch.allocator import RELEASE_INTERVAL_S  # noqa: E402
from simulators import MqttPublisher, PlantSimulator, PublishError  # noqa: E402
from store.influx import InfluxStore  # noqa: E402

DEADLETTER_TOPIC = "plantwatch/deadletter"
REBIRTH_FILTER = "spBv1.0/+/NCMD/#"
SERVICE_CLIENT_ID = "pw-hostile-bench"
RSS_BUDGET_MB = 50.0
IDLE_S = RELEASE_INTERVAL_S + 5
"""The service hands freed heap back to the kernel every RELEASE_INTERVAL_S (30 s), so
RSS after the load is read once a release has surely happened: a shorter quiet
measured +123 MB or +45 MB on the same quick run, depending on where the timer stood."""
HOUR_MS = 3_600_000
BUSY_GAUGES = ("plantwatch_source_queue_depth", "plantwatch_pending_readings",
               "plantwatch_writer_queue_depth")
Metrics = dict[str, float]
Window = tuple[int, int]


# -- valid messages ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ValidStream:
    """Gateway messages of real sensors, each (sensor, ts) once, so each reading is countable.

    Messages go round-robin over the site's gateways, each carrying its own
    gateway's sensors (a hardened service may check that), values from the
    simulated plant's normal operation so nothing alarms.
    """

    site: str
    gateways: tuple[tuple[str, tuple[str, ...]], ...]
    values: dict[str, float]
    per_message: int

    @classmethod
    def for_plant(cls, per_message: int) -> ValidStream:
        site = PLANT.sites[0].id
        normal = PlantSimulator(PLANT, np.random.default_rng(0), 0).normal_values_at(0)
        by_gateway: dict[str, list[str]] = {}
        values: dict[str, float] = {}
        for place, value in zip(PLANT.places(), normal.tolist(), strict=True):
            if place.site == site:
                by_gateway.setdefault(place.gateway, []).append(place.sensor.id)
                values[place.sensor.id] = float(value)
        return cls(site, tuple((g, tuple(s)) for g, s in by_gateway.items()), values,
                   per_message)

    def message(self, k: int, base_ms: int) -> tuple[str, bytes]:
        """Message ``k``: its gateway's sensors in turn, one second of event time per round."""
        gateway, sensors = self.gateways[k % len(self.gateways)]
        j, n = k // len(self.gateways), len(sensors)
        readings = [{"sensor": sensors[i % n],
                     "value": self.values[sensors[i % n]] * (1 + 0.001 * (i % 5 - 2)),
                     "ts": base_ms + (i // n) * 1000}
                    for i in range(j * self.per_message, (j + 1) * self.per_message)]
        return f"plant/{self.site}/{gateway}", orjson.dumps(
            {"gateway": gateway, "ts": base_ms, "readings": readings})

    def span_ms(self, messages: int) -> int:
        """How far past its base the event time of ``messages`` messages reaches."""
        per_gateway = math.ceil(messages / len(self.gateways)) * self.per_message
        fewest = min(len(s) for _, s in self.gateways)
        return (per_gateway // fewest + 1) * 1000


class PlanError(ValueError):
    """The run asked for cannot be laid out (its event time would leave the retention)."""


@dataclass(frozen=True, slots=True)
class Windows:
    """Event-time windows, oldest last, an hour apart, all inside the 30-day retention."""

    valid: Window
    wrong_site: Window
    hostile: Window
    warm_up: Window

    @classmethod
    def plan(cls, now_ms: int, valid_span: int, wrong_span: int, hostile_span: int,
             warm_span: int) -> Windows:
        out: list[Window] = []
        hi = now_ms - HOUR_MS
        for span in (valid_span, wrong_span, hostile_span, warm_span):
            out.append((hi - span, hi))
            hi -= span + HOUR_MS
        if hi < now_ms - 29 * 24 * HOUR_MS:
            raise PlanError("the run's event time would reach past the 30-day retention; "
                             "use fewer --valid or --hostile messages")
        return cls(*out)


# -- the service and what we measure of it ----------------------------------

def _plantwatch_exe() -> str:
    """The console script of the virtualenv running us (else the project's .venv)."""
    beside = Path(sys.executable).with_name("plantwatch")
    return str(beside if beside.exists() else ROOT / ".venv" / "bin" / "plantwatch")


def _vm_rss_mb(pid: int) -> float | None:
    """Resident set size now (VmRSS), MiB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def parse_metrics(text: str) -> Metrics:
    """Prometheus text as ``{'name{label="v"}': value}`` (labels sorted; none: bare name)."""
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def by_label(metrics: Metrics, name: str) -> dict[str, int]:
    """A labelled counter's values by its one label's value (``reason``)."""
    prefix = name + "{"
    return {key[len(prefix):-1].split('"')[1]: int(v)
            for key, v in sorted(metrics.items()) if key.startswith(prefix)}


class ServiceProcess:
    """``plantwatch run`` as a subprocess we own: started, polled, stopped by its pid."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.api = f"http://{LOOPBACK}:{env['PLANTWATCH_API__PORT']}"
        self.metrics_url = f"http://{LOOPBACK}:{env['PLANTWATCH_API__METRICS_PORT']}/metrics"
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(timeout=5)
        self.last_metrics: Metrics = {}
        self.rss_peak_sampled = 0.0

    def start(self) -> None:
        """Start it in a session of its own, logging to ``log_path`` (kept with --workdir)."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [_plantwatch_exe(), "run"], env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop it by pid
            )

    @property
    def pid(self) -> int:
        assert self._proc is not None, "start() first"
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def healthz(self) -> int | None:
        """``/healthz``'s status code, or None when nothing answers."""
        try:
            return self._http.get(f"{self.api}/healthz").status_code
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout_s: float) -> bool:
        """Until /healthz says 200 (broker and store up); False if it died or timed out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive:
            if self.healthz() == 200:
                return True
            time.sleep(0.1)
        return False

    def scrape(self) -> Metrics:
        """The metrics now (from the metrics thread's port); the last ones if it is gone."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            self.last_metrics = parse_metrics(self._http.get(self.metrics_url).text)
        return self.last_metrics

    def sample_rss(self) -> float | None:
        """VmRSS now, also kept as the peak seen: VmHWM is gone with a process that died."""
        rss = _vm_rss_mb(self.pid)
        if rss is not None:
            self.rss_peak_sampled = max(self.rss_peak_sampled, rss)
        return rss

    def peak_mb(self) -> float:
        """VmHWM while it lives; else the highest VmRSS we sampled."""
        try:
            return proc_hwm_mib(self.pid)
        except OSError:
            return self.rss_peak_sampled

    def error_line(self) -> str:
        """The last exception line of its log (why it died), or its last line."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-200:]
        except OSError:
            return ""
        errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
        # rich draws tracebacks in boxes: "│ RecursionError: … │"
        return (errors or lines or [""])[-1].strip(" │|\t")[:300]

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM by pid (it flushes and acks), SIGKILL after ``timeout_s``; reap it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._http.close()


def service_env(mosq: Mosquitto, work: Path, influx: InfluxD | None,
                default_malloc: bool) -> dict[str, str]:
    """Settings for the service; the caller's own PLANTWATCH_* are left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    env.update({
        "PLANTWATCH_PLANT": str(PLANT_FILE),
        "PLANTWATCH_STATE_DIR": str(work / "state"),
        "PLANTWATCH_MQTT__URL": mosq.url,
        "PLANTWATCH_MQTT__CLIENT_ID": SERVICE_CLIENT_ID,
        "PLANTWATCH_MQTT__DEADLETTER_TOPIC": DEADLETTER_TOPIC,
        "PLANTWATCH_API__HOST": LOOPBACK,
        "PLANTWATCH_API__PORT": str(free_port()),
        "PLANTWATCH_API__METRICS_PORT": str(free_port()),
    })
    if influx is None:
        env.update({"PLANTWATCH_STORE": "sqlite",
                    "PLANTWATCH_SQLITE__PATH": str(work / "plantwatch.sqlite3")})
    else:
        env.update({"PLANTWATCH_STORE": "influxdb", "PLANTWATCH_INFLUXDB__URL": influx.url,
                    "PLANTWATCH_INFLUXDB__DATABASE": "hostile"})
    if default_malloc:
        # glibc's own default: plantwatch.allocator then leaves malloc alone.
        env["MALLOC_TRIM_THRESHOLD_"] = str(128 * 1024)
    return env


def stored_in(env: dict[str, str], window: Window) -> int:
    """Readings the service's store holds in ``[lo, hi)`` of event time.

    SQLite is opened read-only beside the running service (WAL allows it);
    InfluxDB is asked through the store's own count.
    """
    lo, hi = window
    if env["PLANTWATCH_STORE"] == "sqlite":
        uri = f"file:{env['PLANTWATCH_SQLITE__PATH']}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                row = db.execute("SELECT count(*) FROM readings WHERE ts >= ? AND ts < ?",
                                 (lo, hi)).fetchone()
        except sqlite3.OperationalError:  # no store file yet: nothing was written
            return 0
        return int(row[0])

    async def influx_window() -> int:
        store = InfluxStore(env["PLANTWATCH_INFLUXDB__URL"],
                            env["PLANTWATCH_INFLUXDB__DATABASE"], SensorTable.from_config(PLANT))
        try:
            return await store.count_readings(lo, hi)
        finally:
            await store.close()

    return asyncio.run(influx_window())


# -- the listener -----------------------------------------------------------

@dataclass(slots=True)
class Heard:
    """What the listener has counted so far."""

    dead_letters: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    crash_topic: int = 0
    rebirths: int = 0


class Listener:
    """Dead letters and rebirth commands, counted from before the first publish.

    A persistent session (QoS 1) so a slow moment here loses no dead letter:
    the broker queues them for us.
    """

    def __init__(self, mosq: Mosquitto, crash_topic: str) -> None:
        self.crash_topic = crash_topic
        self._heard = Heard()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pw-hostile-listener",
                                   clean_session=False)
        self._client.on_connect = lambda c, *a: c.subscribe(
            [(DEADLETTER_TOPIC, 1), (REBIRTH_FILTER, 1)])
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._mosq = mosq

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != DEADLETTER_TOPIC:
            with self._lock:
                self._heard.rebirths += 1
            return
        try:
            letter = orjson.loads(msg.payload)
            reason = str(letter.get("reason")) if isinstance(letter, dict) else "not_an_object"
            topic = letter.get("topic") if isinstance(letter, dict) else None
        except orjson.JSONDecodeError:
            reason, topic = "unreadable_dead_letter", None
        with self._lock:
            self._heard.dead_letters += 1
            self._heard.by_reason[reason] += 1
            self._heard.crash_topic += topic == self.crash_topic

    def heard(self) -> Heard:
        """A copy of the counts, taken under the lock paho's thread counts under."""
        with self._lock:
            h = self._heard
            return Heard(h.dead_letters, Counter(h.by_reason), h.crash_topic, h.rebirths)

    def __enter__(self) -> Listener:
        self._client.connect(self._mosq.host, self._mosq.port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.__exit__(None, None, None)
            raise RuntimeError("the listener's subscription was not acknowledged in 10 s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- publishing ---------------------------------------------------------------

Build = Callable[[str, int], tuple[str, bytes, int]]


@dataclass(slots=True)
class Published:
    """What the broker acknowledged, over every publisher."""

    messages: int = 0
    valid_readings: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def publish_all(url: str, plan: list[tuple[str, int]], build: Build, publishers: int,
                timeout_s: float) -> Published:
    """Publish ``plan`` (kind, number) from ``publishers`` paho clients at once, QoS 1.

    Messages are built as they are sent (``build`` → topic, payload, valid
    readings in it), so the 10 MB payloads never pile up in memory.
    """
    total = Published()
    lock = threading.Lock()

    def work(i: int) -> None:
        refused = 0
        try:
            with MqttPublisher(url, client_id=f"pw-hostile-pub-{i}-{time.time_ns()}") as pub:
                for kind, k in plan[i::publishers]:
                    topic, payload, readings = build(kind, k)
                    try:
                        pub.publish(topic, payload, readings)
                    except PublishError:
                        refused += 1
                acked = pub.wait_all_acked(timeout_s)
                with lock:
                    total.messages += pub.acked_messages
                    total.valid_readings += pub.acked_readings
                    total.refused += refused
                    if not acked:
                        total.errors.append(f"publisher {i}: not every message acked")
        except Exception as exc:  # reported with the figures; the other publishers go on
            with lock:
                total.errors.append(f"publisher {i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(publishers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        total.errors.append("publishers still running at the timeout")
    return total


# -- the run -----------------------------------------------------------------

def wait_taken(svc: ServiceProcess, expected_messages: int, timeout_s: float,
               settle_s: float = 3.0) -> bool:
    """Until the service has received ``expected_messages`` and its queues stay empty.

    The service also receives its own Sparkplug messages (STATE, rebirth
    commands), so ``expected_messages`` is a floor. False on a timeout or if
    the service died.
    """
    deadline = time.monotonic() + timeout_s
    last: tuple[float, ...] = ()
    since = time.monotonic()
    while time.monotonic() < deadline and svc.alive:
        m = svc.scrape()
        svc.sample_rss()
        state = (m.get("plantwatch_messages_received_total", 0.0),
                 m.get("plantwatch_readings_stored_total", 0.0),
                 m.get("plantwatch_dead_letters_total", 0.0))
        idle = all(m.get(g, 1.0) == 0 for g in BUSY_GAUGES)
        if state != last or not idle or state[0] < expected_messages:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return True
        time.sleep(0.25)
    return False


def wait_until(check: Callable[[], bool], timeout_s: float, step_s: float = 0.25) -> bool:
    """Poll ``check`` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
    return True


@dataclass(slots=True)
class Args:
    hostile: int
    valid: int
    per_message: int
    big: int
    publishers: int
    idle: float
    restart_watch: float
    timeout: float
    seed: int
    store: str
    default_malloc: bool
    workdir: Path | None
    only: frozenset[str]


@contextlib.contextmanager
def work_directory(given: Path | None) -> Iterator[Path]:
    """``--workdir`` (kept, with the service logs), or a temporary one removed after."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="pw-hostile-") as tmp:
        yield Path(tmp)


def run(a: Args) -> dict[str, Any]:
    """One hostile-load run; the figures as one flat dict."""
    t_start = time.monotonic()
    stream = ValidStream.for_plant(a.per_message)
    plan_counts = counts(a.hostile, {"big_10mb": a.big})
    if a.only:
        plan_counts = {k: (n if k in a.only else 0) for k, n in plan_counts.items()}
    gateways = tuple(g for g, _ in stream.gateways)
    sensors = tuple(s for _, ss in stream.gateways for s in ss)
    warm_messages = 20 * len(gateways)
    now = int(time.time() * 1000)
    probe = Context(stream.site, sensors, gateways, gateways[-1], 0, 0, 0)
    win = Windows.plan(now, stream.span_ms(a.valid),
                       probe.wrong_site_span_ms(plan_counts["wrong_site"]),
                       a.hostile + 1000, stream.span_ms(warm_messages))
    ctx = Context(stream.site, sensors, gateways, gateways[-1], win.valid[0],
                  win.wrong_site[0], win.hostile[0])
    builders = {kind.name: kind.build for kind in CATALOGUE}

    def build(kind: str, k: int) -> tuple[str, bytes, int]:
        if kind == "valid":
            return (*stream.message(k, win.valid[0]), a.per_message)
        return (*builders[kind](k, ctx), 0)

    plan = [("valid", k) for k in range(a.valid)]
    plan += [(name, k) for name, n in plan_counts.items() for k in range(n)]
    random.Random(a.seed).shuffle(plan)

    out: dict[str, Any] = {"hostile_by_kind": plan_counts}
    with work_directory(a.workdir) as work, contextlib.ExitStack() as stack:
        mosq = stack.enter_context(Mosquitto.start(work / "mosquitto"))
        influx = (stack.enter_context(InfluxD.start(work / "influxdb"))
                  if a.store == "influx" else None)
        listener = stack.enter_context(Listener(mosq, ctx.crash_topic))
        env = service_env(mosq, work, influx, a.default_malloc)
        svc = ServiceProcess(env, work / "service.log")
        stack.callback(svc.stop)
        svc.start()
        if not svc.wait_ready(60):
            raise RuntimeError(f"the service did not come up: {svc.error_line()}")

        # Warm-up: the first flushes, store writes and detector rounds allocate
        # what the service keeps for good; RSS counts from after them.
        warm = publish_all(mosq.url, [("valid", k) for k in range(warm_messages)],
                           lambda _kind, k: (*stream.message(k, win.warm_up[0]),
                                             a.per_message), 1, a.timeout)
        wait_until(lambda: stored_in(env, win.warm_up) >= warm.valid_readings or not svc.alive,
                   60, 0.5)
        time.sleep(2)
        out["rss_start_mb"] = svc.sample_rss()

        t_pub = time.monotonic()
        pub = publish_all(mosq.url, plan, build, a.publishers, a.timeout)
        out["publish_s"] = round(time.monotonic() - t_pub, 1)
        out["valid_published"] = pub.valid_readings
        out["messages_acked_by_broker"] = pub.messages
        out["publish_refused"] = pub.refused
        out["publish_errors"] = pub.errors
        out["taken"] = wait_taken(svc, warm.messages + pub.messages,
                                  max(0.0, a.timeout - (time.monotonic() - t_pub)))
        out["drain_s"] = round(time.monotonic() - t_pub, 1)
        now = svc.scrape()
        counted = now.get("plantwatch_dead_letters_total", 0.0) - sum(
            by_label(now, "plantwatch_dead_letters_dropped_total").values())
        # Dead letters still on their way through the broker to us.
        wait_until(lambda: listener.heard().dead_letters >= counted, 30)

        out["valid_stored"] = stored_in(env, win.valid)
        out["wrong_site_published"] = (plan_counts["wrong_site"]
                                       * READINGS_PER_WRONG_SITE_MESSAGE)
        out["wrong_site_stored"] = stored_in(env, win.wrong_site)
        out["hostile_window_stored"] = stored_in(env, win.hostile)

        idle_until = time.monotonic() + a.idle
        while time.monotonic() < idle_until and svc.alive:
            svc.sample_rss()
            time.sleep(0.5)
        out["rss_after_mb"] = svc.sample_rss() if svc.alive else None
        out["rss_peak_mb"] = svc.peak_mb()
        health = svc.healthz()
        out["healthz"] = health
        out["service_up"] = svc.alive and health == 200
        out["service_exit_code"] = svc.exit_code
        out["service_error"] = "" if svc.alive else svc.error_line()
        final = svc.scrape()
        heard = listener.heard()
        out["dead_letters_counted"] = int(final.get("plantwatch_dead_letters_total", 0))
        out["dead_letters_received"] = heard.dead_letters
        out["dead_letters_dropped"] = by_label(final, "plantwatch_dead_letters_dropped_total")
        out["dead_letters_by_reason"] = dict(heard.by_reason.most_common())
        out["messages_rejected"] = by_label(final, "plantwatch_messages_rejected_total")
        out["readings_rejected"] = by_label(final, "plantwatch_readings_rejected_total")
        # More received than published means the broker redelivered: it does so
        # to a session that reconnects with messages unacknowledged.
        out["messages_received_by_service"] = int(
            final.get("plantwatch_messages_received_total", 0))
        out["service_broker_disconnects"] = int(final.get("plantwatch_mqtt_disconnects_total", 0))
        out["rebirths_sent"] = int(final.get("plantwatch_sparkplug_host_messages_total", 0))
        out["rebirths_received"] = heard.rebirths
        out["crash_loop_published"] = plan_counts["crash_loop"]
        out["crash_loop_dead_lettered"] = heard.crash_topic

        # The crash-loop check: the same broker session, so anything that was
        # never acknowledged comes back now.
        svc.stop()
        again = ServiceProcess(env, work / "service-restart.log")
        stack.callback(again.stop)
        again.start()
        came_up = again.wait_ready(60)
        watch_until = time.monotonic() + a.restart_watch
        while came_up and time.monotonic() < watch_until and again.alive:
            again.scrape()
            time.sleep(0.5)
        health = again.healthz()
        out["restart_up"] = came_up and again.alive and health == 200
        out["restart_messages_received"] = int(
            again.last_metrics.get("plantwatch_messages_received_total", 0))
        out["restart_error"] = "" if again.alive else again.error_line()
        out["crash_loop_dead_letters_after_restart"] = (listener.heard().crash_topic
                                                        - heard.crash_topic)
        again.stop()
    out["elapsed_s"] = round(time.monotonic() - t_start, 1)
    out["failures"] = failures(out)
    return out


def failures(r: dict[str, Any]) -> list[str]:
    """What the issue's "done" asks of the run, each unmet one in words."""
    out = []
    if r["valid_stored"] < r["valid_published"]:
        out.append(f"{r['valid_published'] - r['valid_stored']:,} valid readings not stored")
    if r["wrong_site_stored"] > 0:
        out.append(f"{r['wrong_site_stored']:,} readings of the wrong site stored")
    if not r["service_up"]:
        out.append("service not up after the load"
                   + (f" ({r['service_error']})" if r["service_error"] else ""))
    if r["rss_after_mb"] is not None and r["rss_start_mb"] is not None:
        growth = r["rss_after_mb"] - r["rss_start_mb"]
        if growth > RSS_BUDGET_MB:
            out.append(f"RSS after the load {growth:.0f} MB over its start "
                       f"(budget {RSS_BUDGET_MB:.0f})")
    if r["crash_loop_dead_lettered"] < r["crash_loop_published"]:
        out.append(f"crash-loop payloads dead-lettered: {r['crash_loop_dead_lettered']} of "
                   f"{r['crash_loop_published']}")
    if not r["restart_up"]:
        out.append("service not up after a restart on the same session"
                   + (f" ({r['restart_error']})" if r["restart_error"] else ""))
    return out


def _mb(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def print_table(r: dict[str, Any]) -> None:
    """The figures as a table for people."""
    growth = (None if r["rss_after_mb"] is None or r["rss_start_mb"] is None
              else r["rss_after_mb"] - r["rss_start_mb"])
    rows = [
        ("hostile messages", f"{sum(r['hostile_by_kind'].values()):,}  "
         + ", ".join(f"{k} {v:,}" for k, v in r["hostile_by_kind"].items())),
        ("messages acked by the broker", f"{r['messages_acked_by_broker']:,}"
         + (f"  (refused by paho: {r['publish_refused']:,})" if r["publish_refused"] else "")),
        ("messages received by the service / its broker disconnects",
         f"{r['messages_received_by_service']:,} / {r['service_broker_disconnects']:,}"),
        ("valid readings published / stored", f"{r['valid_published']:,} / {r['valid_stored']:,}"),
        ("wrong-site readings published / stored (must be 0)",
         f"{r['wrong_site_published']:,} / {r['wrong_site_stored']:,}"),
        ("other hostile readings stored", f"{r['hostile_window_stored']:,}"),
        ("dead letters counted / received / dropped (counted, by why)",
         f"{r['dead_letters_counted']:,} / {r['dead_letters_received']:,} / "
         + (", ".join(f"{k} {v:,}" for k, v in r["dead_letters_dropped"].items()) or "0")),
        ("messages rejected by reason",
         ", ".join(f"{k} {v:,}" for k, v in r["messages_rejected"].items()) or "—"),
        ("readings rejected by reason",
         ", ".join(f"{k} {v:,}" for k, v in r["readings_rejected"].items()) or "—"),
        ("rebirths sent (metric) / received (NCMD)",
         f"{r['rebirths_sent']:,} / {r['rebirths_received']:,}"),
        ("RSS start / peak / after (MB)",
         f"{_mb(r['rss_start_mb'])} / {_mb(r['rss_peak_mb'])} / {_mb(r['rss_after_mb'])}"
         + ("" if growth is None else f"  (after − start {growth:+,.0f})")),
        ("service up after the load", ("yes" if r["service_up"] else "NO")
         + (f"  exit {r['service_exit_code']}: {r['service_error']}"
            if r["service_exit_code"] is not None else "")),
        ("crash-loop payloads dead-lettered",
         f"{r['crash_loop_dead_lettered']} of {r['crash_loop_published']} "
         f"({r['crash_loop_dead_letters_after_restart']} again after the restart)"),
        ("up after a restart on the same session", ("yes" if r["restart_up"] else "NO")
         + (f"  {r['restart_error']}" if r["restart_error"] else "")
         + f"  (it received {r['restart_messages_received']:,} messages, its own STATE too)"),
        ("elapsed (publish / drain / total s)",
         f"{r['publish_s']} / {r['drain_s']} / {r['elapsed_s']}"
         + ("" if r["taken"] else "  (the service never caught up)")),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for e in r["publish_errors"]:
        print(f"publish: {e}")
    print("PASS" if not r["failures"] else "FAIL: " + "; ".join(r["failures"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hostile", type=int, help="hostile messages (100,000; quick: 5,000)")
    ap.add_argument("--valid", type=int, help="valid gateway messages (20,000; quick: 1,000)")
    ap.add_argument("--per-message", type=int, default=10, help="readings per valid message")
    ap.add_argument("--big", type=int, help="10 MB payloads among the hostile ones (5; quick: 1)")
    ap.add_argument("--publishers", type=int, default=4, help="paho publisher clients")
    ap.add_argument("--idle", type=float, default=IDLE_S,
                    help=f"seconds of quiet before RSS after ({IDLE_S:g})")
    ap.add_argument("--restart-watch", type=float, default=10.0,
                    help="seconds the restarted service must stay up")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds for publishing and draining together")
    ap.add_argument("--seed", type=int, default=0, help="order of the messages")
    ap.add_argument("--store", choices=("sqlite", "influx"), default="sqlite")
    ap.add_argument("--default-malloc", action="store_true",
                    help="run the service with glibc's default trimming (plantwatch.allocator "
                         "off), to tell retained heap from a leak")
    ap.add_argument("--only", default="",
                    help="comma-separated hostile kinds to send (each at its usual count), "
                         "to find which one costs memory; default: all")
    ap.add_argument("--workdir", type=Path, help="keep servers' files and service logs here")
    ap.add_argument("--quick", action="store_true",
                    help="a small run: 5,000 hostile, 1,000 valid, one 10 MB payload "
                         "(unless given)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ns = ap.parse_args()
    # --quick changes the defaults only: --quick --big 0 is a quick run without big payloads.
    defaults = (5_000, 1_000, 1) if ns.quick else (100_000, 20_000, 5)
    for name, default in zip(("hostile", "valid", "big"), defaults, strict=True):
        if getattr(ns, name) is None:
            setattr(ns, name, default)
    if min(ns.hostile, ns.valid, ns.big) < 0 or ns.per_message < 1 or ns.publishers < 1:
        ap.error("counts must not be negative; --per-message and --publishers at least 1")
    only = frozenset(filter(None, ns.only.split(",")))
    if only - {kind.name for kind in CATALOGUE}:
        ap.error(f"--only: no such kind {sorted(only - {k.name for k in CATALOGUE})}; "
                 f"kinds: {', '.join(k.name for k in CATALOGUE)}")
    if ns.valid == 0:
        ap.error("--valid must be at least 1: the run measures what happens to valid readings")
    args = Args(ns.hostile, ns.valid, ns.per_message, ns.big, ns.publishers, ns.idle,
                ns.restart_watch, ns.timeout, ns.seed, ns.store, ns.default_malloc, ns.workdir,
                only)
    try:
        result = run(args)
    except PlanError as exc:
        ap.error(str(exc))
    if ns.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        print_table(result)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
