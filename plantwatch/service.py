"""The composition root: builds every part from settings and runs them together.

One process, one asyncio loop: the MQTT source (paho's thread bridged in),
the pipeline, the store writer and the API server run as named tasks in one
``asyncio.TaskGroup``; if any of them fails, the others are cancelled and the
error surfaces. ``stop()`` shuts down in order: stop taking messages, flush
what is pending, wait (bounded) for the writer, stop the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import orjson
import uvicorn
from prometheus_client import start_http_server

from alarms.config import AlarmConfig, load_alarm_config
from alarms.hazards import HazardJournal
from alarms.journal import AlarmJournal
from alarms.system import AlarmSystem, Outcome
from api.app import ApiServices, create_app
from api.auth import TokenStore
from decoders.json_gateway import DecodeLimits
from decoders.sparkplug_host import SparkplugHost
from detectors.suite import DetectorSuite
from engine.engine import Engine
from ingest.checkpoint import CheckpointFile
from ingest.metrics import IngestMetrics, SourceCollector
from ingest.mqtt_source import MqttSource, TlsConfigError, TlsOptions
from ingest.pipeline import Pipeline, PipelineConfig
from ingest.spool import Spool
from ingest.writer import StoreWriter
from model.plant import PlantConfig, load_plant
from model.sensor_table import SensorTable
from notify.alarm_metrics import AlarmCollector
from notify.base import Notifications, Notifier
from notify.channels import (
    FireControlChannel,
    MqttStateChannel,
    SseChannel,
    WebhookChannel,
    outbox_publish,
)
from notify.delivery import MqttSender, OutboxDispatcher, Sender
from notify.hub import EventHub
from notify.outbox import Delivery, Outbox
from notify.webhooks import WebhookNotifier, WebhookTarget
from plantwatch.allocator import RELEASE_INTERVAL_S, release_freed_memory
from plantwatch.settings import Settings, TlsSettings, WebhookSettings
from store.backoff import Backoff
from store.base import ReadingStore
from store.errors import StoreError
from store.influx import InfluxStore
from store.mspc_models import (
    MspcGroups,
    load_group_models,
    load_mspc_config,
    model_path,
)
from store.sqlite import SQLiteStore

__all__ = ["Service", "make_store"]

log = logging.getLogger(__name__)

COMPACT_EVERY_MS = 86_400_000
"""Compact the alarm journal at least daily (and every journal.compact_every_records)."""
HISTORY_KEPT_MS = 200 * 86_400_000
"""Alarm history kept in memory across compactions: a half-year report and some margin."""


def webhook_targets(settings: list[WebhookSettings]) -> list[WebhookTarget]:
    """Webhook targets from settings, each filtering the event types it asked for."""

    def accepts_for(ws: WebhookSettings) -> Callable[[dict[str, Any]], bool]:
        wanted = set(ws.events)

        def accepts(event: dict[str, Any]) -> bool:
            kind = event.get("type")
            if kind == "fire_control":
                return ws.fire_control
            return not wanted or kind in wanted

        return accepts

    return [
        WebhookTarget(name=ws.name, url=ws.url, secret=ws.secret.get_secret_value(),
                      timeout_s=ws.timeout_s, accepts=accepts_for(ws))
        for ws in settings
    ]


class _ApiServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_store(settings: Settings, table: SensorTable) -> ReadingStore:
    """The reading store the settings name (InfluxDB, or SQLite for the demo)."""
    if settings.store == "sqlite":
        return SQLiteStore(settings.sqlite.path, table, settings.sqlite.retention_days)
    ix = settings.influxdb
    return InfluxStore(
        ix.url,
        ix.database,
        table,
        retention=ix.retention,
        username=ix.username,
        password=None if ix.password is None else ix.password.get_secret_value(),
        token=None if ix.token is None else ix.token.get_secret_value(),
        create_database=ix.create_database,
        timeout_s=ix.timeout_s,
        max_connections=ix.max_connections,
        lines_per_write=ix.lines_per_write,
        ssl_context=tls_context(ix.tls, "influxdb.tls") if ix.url.startswith("https:") else None,
    )


def owner_only_dir(path: Path) -> None:
    """Create the state directory 0700, or tighten an existing one that others may
    read: it holds the alarm journals, tokens and readings (工控数据安全)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("state directory %s was readable by others (mode %o); made it 0700",
                    path, mode)
        path.chmod(0o700)


def tls_context(tls: TlsSettings, setting: str) -> ssl.SSLContext:
    """A client TLS context from settings: the plant's CA, a client certificate, the
    oldest version accepted. ``insecure`` skips the host name check only (the
    chain is still verified), as for the broker (``ingest.mqtt_source.TlsOptions``)."""
    try:
        context = ssl.create_default_context(
            cafile=None if tls.ca_file is None else str(tls.ca_file))
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file),
                                    None if tls.key_file is None else str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"{setting}: cannot use the certificate files ({exc}); give PEM "
                             "files: ca_file the CA, cert_file/key_file this client's") from exc
    context.minimum_version = (ssl.TLSVersion.TLSv1_3 if tls.tls_version == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
    if tls.insecure:
        context.check_hostname = False
    return context


def mqtt_tls(settings: Settings) -> TlsOptions | None:
    """The broker's TLS options: for an mqtts:// URL, or whenever a file is set (so
    that MqttSource refuses certificate files given with a plaintext mqtt:// URL
    instead of ignoring them)."""
    t = settings.mqtt.tls
    if not settings.mqtt.url.startswith("mqtts:") and not (t.ca_file or t.cert_file
                                                             or t.key_file):
        return None
    return TlsOptions(ca_file=t.ca_file, cert_file=t.cert_file, key_file=t.key_file,
                      tls_version=t.tls_version, insecure=t.insecure)


class Service:
    """plantwatch as one running service."""

    def __init__(self, settings: Settings, plant: PlantConfig | None = None,
                 alarm_config: AlarmConfig | None = None, mspc: MspcGroups | None = None
                 ) -> None:  # fmt: skip
        self.settings = settings
        self.plant = plant or load_plant(settings.plant)
        self.alarm_config = alarm_config or load_alarm_config(settings.alarms_file(), self.plant)
        self.table = SensorTable.from_config(self.plant)
        self.metrics = IngestMetrics()
        self.hub = EventHub(registry=self.metrics.registry)
        state_dir = settings.state_dir
        owner_only_dir(state_dir)
        self.store = make_store(settings, self.table)
        self.checkpoint = CheckpointFile(state_dir / "detectors.npz")
        saved = self.checkpoint.load()
        # A spool of 0.1 (sensor rows, not ids) is readable only with the table it
        # was written with: the checkpoint's (ingest.spool, "Spools of 0.1").
        self.spool = Spool(state_dir / "spool.bin", list(self.table.ids),
                           max_bytes=settings.ingest.spool_max_bytes,
                           legacy_sensor_ids=None if saved is None else saved.sensor_ids)
        groups, unfitted = mspc if mspc is not None else load_group_models(
            load_mspc_config(settings.mspc_file(), self.plant), state_dir)
        for group_id in unfitted:
            log.warning("MSPC group %s has no fitted model in %s and is not monitored; fit it "
                        "on a period of normal operation: plantwatch mspc fit %s --start ... "
                        "--end ...", group_id, model_path(state_dir, group_id).parent, group_id)
        self.detector = DetectorSuite(self.table, groups=groups)
        self.alarms = self._make_alarm_system(state_dir)
        self.tokens = TokenStore(settings.api.tokens_file or state_dir / "tokens.json")
        ing = settings.ingest
        decode_limits = DecodeLimits(
            max_payload_bytes=ing.max_payload_bytes,
            max_readings=ing.max_readings_per_message,
            max_future_skew_ms=int(ing.max_future_skew_s * 1000),
            max_age_ms=int(ing.max_age_days * 86_400_000),
            max_depth=ing.max_json_depth,
            max_id_chars=ing.max_id_chars,
            max_topic_chars=ing.max_topic_chars,
            max_topic_levels=ing.max_topic_levels,
            max_metrics=ing.max_sparkplug_metrics,
        )
        sp = settings.sparkplug
        self.sparkplug: SparkplugHost | None = None
        topics = list(settings.mqtt.topics)
        will = None
        if sp.enabled:
            self.sparkplug = SparkplugHost(
                sp.host_id, self.table.index, reorder_timeout_ms=sp.reorder_timeout_ms,
                rebirth_interval_ms=sp.rebirth_interval_ms, limits=decode_limits,
                nodes=self.table.nodes(), site_index=self.table.by_site(),
                max_rebirths_per_s=sp.max_rebirths_per_s)
            topics.append(sp.topic)
            # One Will for the client's life: each STATE birth repeats its
            # timestamp, so no birth ever looks older than its death.
            self._state_ts = int(time.time() * 1000)
            death = self.sparkplug.state_death(self._state_ts)
            will = (death.topic, death.payload, death.qos, death.retain)
        self.engine = Engine.for_plant(self.table, self.detector, self.alarms,
                                       sparkplug=self.sparkplug, limits=decode_limits)
        now_ms = int(time.time() * 1000)
        cut = self.engine.restore(saved, now_ms)
        log.info("alarm state restored from %s", self.alarms.restored_from)
        if cut:
            log.info("alarm journal ran %d bytes ahead of the detector checkpoint; the "
                     "readings behind those events are redelivered by the broker", cut)
        if saved is None:
            # A checkpoint from the first moment: a crash in the very first step must
            # cut the journal back like any other, so that the redelivered readings
            # raise (and announce) those alarms again.
            self.checkpoint.save(self.engine.snapshot())
        self._compact_not_before_ms = 0
        self.source = MqttSource(
            settings.mqtt.url,
            settings.mqtt.client_id,
            topics,
            will=will,
            on_connected=self._broker_connected,
            max_pending=settings.mqtt.max_pending_messages,
            connect_timeout_s=settings.mqtt.connect_timeout_s,
            protocol=settings.mqtt.protocol,
            tls=mqtt_tls(settings),
            username=settings.mqtt.username,
            password=None if settings.mqtt.password is None
            else settings.mqtt.password.get_secret_value(),
        )
        self.writer = StoreWriter(
            self.store, self.spool, self.metrics, concurrency=settings.ingest.write_concurrency,
            coalesce_readings=settings.ingest.write_coalesce_readings,
            on_spool_full=self._spool_full,
        )
        # Every notification that leaves the process is recorded here first
        # (notify.outbox); the pipeline syncs it in the step that caused it.
        self.outbox = Outbox(state_dir / "outbox.jsonl")
        self.dispatcher = OutboxDispatcher(
            self.outbox, {}, retry_for_s=settings.notify.outbox.retry_for_s,
            registry=self.metrics.registry)
        self.webhooks: WebhookNotifier | None = None
        if settings.notify.webhooks:
            self.webhooks = WebhookNotifier(webhook_targets(settings.notify.webhooks),
                                            registry=self.metrics.registry, outbox=self.outbox)
        area_site = {area.id: site for site, area in self.plant.areas()}
        fire_control = self.alarm_config.fire_control
        states = MqttStateChannel(outbox_publish(self.outbox), area_site)
        channels: list[Notifier] = [
            SseChannel(self.hub, area_site),
            states,
            FireControlChannel(outbox_publish(self.outbox, lane="mqtt:fire"), fire_control),
        ]
        # Risk colours that changed with time alone are not journaled: a crash before
        # their notice was recorded would leave a stale retained colour for good.
        # Every start sends each area's colour now (retained states: idempotent).
        states.notify(Outcome(risk=list(self.alarms.grades(now_ms).values()), ts=now_ms))
        self.outbox.sync()
        if self.webhooks is not None:
            channels.append(WebhookChannel(self.webhooks, fire_control, area_site))
        self.notifier = Notifications(channels)
        self.pipeline = Pipeline(
            engine=self.engine,
            source=self.source,
            writer=self.writer,
            checkpoint=self.checkpoint,
            metrics=self.metrics,
            config=PipelineConfig(
                flush_max_readings=ing.flush_max_readings,
                flush_interval_s=ing.flush_interval_s,
                deadletter_topic=settings.mqtt.deadletter_topic,
                decode_limits=decode_limits,
            ),
            on_alarm_outcome=self._announce,
            on_connection_lost=self.engine.connection_lost,
            after_checkpoint=self._maybe_compact,
        )
        self.writer.on_refused = self.pipeline.dead_letter_refused
        self.metrics.registry.register(SourceCollector(self.source))
        self.metrics.registry.register(AlarmCollector(self.alarms.manager))
        self.started_at = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._api_socket: socket.socket | None = None
        self.api_port: int | None = None
        self.ready = asyncio.Event()

    def _make_alarm_system(self, state_dir: Path) -> AlarmSystem:
        return self.alarm_config.system(self.plant, AlarmJournal(state_dir / "alarms.jsonl"),
                                        HazardJournal(state_dir / "hazards.jsonl"))

    def _maybe_compact(self, now_ms: int) -> None:
        """Snapshot the alarm state and start new journal segments now and then, so
        start-up replays only what follows (alarms.compaction). The in-memory
        history keeps ``HISTORY_KEPT_MS`` (a half-year report's worth); the closed
        segments keep everything."""
        journal = self.alarms.journal
        if now_ms < self._compact_not_before_ms:
            return
        if isinstance(journal, AlarmJournal) and journal.should_compact(
                now_ms, every_records=self.settings.journal.compact_every_records,
                every_ms=COMPACT_EVERY_MS):
            started = time.monotonic()
            try:
                self.alarms.compact(keep_ms=HISTORY_KEPT_MS)
            except OSError as exc:
                # Maintenance, not alarm handling: the journal goes on growing and
                # start-up replays more; try again in ten minutes.
                self._compact_not_before_ms = now_ms + 600_000
                log.error("alarm journal compaction failed (%s); the service goes on and "
                          "tries again in 10 minutes", exc)
                return
            log.info("alarm journal compacted in %.2f s", time.monotonic() - started)

    def _spool_full(self, full: bool) -> None:
        """Tell operators when alarm evaluation waits on a full spool, and when not.

        A full spool (the store away longer than ``ingest.spool_max_bytes`` lasts)
        holds the readings back in the broker, so nothing is lost, but the
        detectors see no new reading until the store is back: people must know.
        An ``alarm_system`` event on the SSE stream, to webhooks, and retained
        on ``plantwatch/system/spool``, recorded in the outbox."""
        now_ms = int(time.time() * 1000)
        detail = (f"the spool is full ({self.spool.bytes} bytes, ingest.spool_max_bytes = "
                  f"{self.settings.ingest.spool_max_bytes}): new readings wait in the broker "
                  "and are not evaluated for alarms until the store is back"
                  if full else "the store is back and the spool drained: readings are "
                  "evaluated again")
        (log.error if full else log.warning)("%s", detail)
        data = {"type": "alarm_system", "change": "spool_full" if full else "spool_drained",
                "ts": now_ms, "detail": detail}
        self.hub.publish("system", data)
        if self.webhooks is not None:
            self.webhooks.notify(data)
        self.outbox.add(Delivery.make("mqtt", "system", orjson.dumps(data), now_ms,
                                      topic="plantwatch/system/spool", retain=True))
        self.outbox.sync()

    def _announce(self, outcome: Outcome) -> None:
        """Tell every channel, then record the notifications (one fsync). An outbox
        that cannot be written stops the step, like a journal that cannot: what is
        not recorded must not be acknowledged."""
        self.notifier(outcome)
        self.outbox.sync()

    def _broker_connected(self) -> None:
        """On every (re)connect (paho's thread): the Sparkplug STATE birth, and the
        broker lanes of the outbox retry at once."""
        if self.sparkplug is not None:
            self._sparkplug_online()
        loop = self._loop
        if loop is not None:
            for lane in ("mqtt:fire", "mqtt"):
                loop.call_soon_threadsafe(self.dispatcher.nudge, lane)

    def _sparkplug_online(self) -> None:
        """On every (re)connect: the host's STATE birth (paho's thread; publish is safe)."""
        assert self.sparkplug is not None
        birth = self.sparkplug.state_birth(self._state_ts)
        self.source.publish(birth.topic, birth.payload, qos=birth.qos, retain=birth.retain)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.source.publish(topic, payload, qos=qos, retain=retain)

    def health(self) -> dict[str, Any]:
        connected = self.source.connected
        store_up = self.writer.store_up
        session_problem = self.source.session_problem
        outbox = self._outbox_health()
        healthy = connected and store_up and not outbox["late"] and not self.spool.full
        status = "ok" if healthy else "degraded"
        return {
            "status": "error" if session_problem else status,
            "mqtt_connected": connected,
            "mqtt_session": session_problem or "ours",
            "store": self.settings.store,
            "store_up": store_up,
            "spool_readings": self.spool.readings,
            "spool_bytes": self.spool.bytes,
            "spool_full": self.spool.full,
            "spool_held_readings": self.writer.held,
            "writer_queue": self.writer.queued,
            "source_pending": self.source.pending,
            "outbox": outbox,
            "standing_alarms": len(self.alarms.manager.standing()),
            "posts_in_flood": [f.post for f in self.alarms.manager.floods.open_floods()],
            "uptime_s": round(time.time() - self.started_at, 1),
            "sparkplug": None if self.sparkplug is None else {
                "online_nodes": ["/".join(k) for k in self.sparkplug.online_nodes()],
                "stale_sensors": sorted(self.sparkplug.stale_sensors()),
            },
        }

    def _outbox_health(self) -> dict[str, Any]:
        oldest = self.outbox.oldest_ms()
        age_s = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        return {
            "pending": self.outbox.depth(),
            "oldest_age_s": round(age_s, 1),
            "by_lane": {lane: self.outbox.depth(lane) for lane in self.outbox.lanes()
                        if self.outbox.depth(lane)},
            "late": age_s > self.settings.notify.outbox.degraded_after_s,
        }

    def api_services(self) -> ApiServices:
        return ApiServices(
            plant=self.plant,
            table=self.table,
            store=self.store,
            alarms=self.alarms,
            hub=self.hub,
            registry=self.metrics.registry,
            health=self.health,
            tokens=self.tokens,
            commit=self.pipeline.commit,
            require_token_for_reads=self.settings.api.require_token_for_reads,
            readiness=self.readiness,
        )

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: may this instance be relied on for alarms right now?

        Not ready while the broker is not connected, the spool is full (readings
        wait in the broker), notifications are late, or the broker session is not
        ours. A store that is down is *not* a reason: the spool takes the readings
        and the alarms work (``/healthz`` says ``degraded``). Liveness
        (``/livez``) is apart: a liveness probe must never restart a service that
        is working on its spool."""
        reasons: list[str] = []
        if not self.source.connected:
            reasons.append("the MQTT broker is not connected")
        if self.spool.full:
            reasons.append("the spool is full: readings wait in the broker until the store "
                           "is back")
        outbox = self._outbox_health()
        if outbox["late"]:
            reasons.append(f"{outbox['pending']} notification(s) undelivered, the oldest "
                           f"{outbox['oldest_age_s']:.0f} s old (notify.outbox."
                           f"degraded_after_s = {self.settings.notify.outbox.degraded_after_s:g})")
        if self.source.session_problem:
            reasons.append(f"MQTT session: {self.source.session_problem}")
        return {"ready": not reasons, "reasons": reasons}

    def bind_api(self) -> int:
        """Bind the API socket now, so the port is known before ``run`` (port 0 = free)."""
        if self._api_socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.settings.api.host, self.settings.api.port))
            except OSError as exc:
                sock.close()
                raise OSError(
                    f"cannot listen on {self.settings.api.host}:{self.settings.api.port} "
                    f"({exc.strerror}); choose another port with --port or PLANTWATCH_API__PORT"
                ) from exc
            sock.listen(128)
            sock.setblocking(False)
            self._api_socket = sock
            self.api_port = sock.getsockname()[1]
        assert self.api_port is not None
        return self.api_port

    def stop(self) -> None:
        self._stop.set()

    def _start_metrics_thread(self) -> WSGIServer | None:
        """Serve /metrics on ``api.metrics_port`` from a thread, if it is set."""
        port = self.settings.api.metrics_port
        if port is None:
            return None
        try:
            server, _ = start_http_server(port, addr=self.settings.api.host,
                                          registry=self.metrics.registry)
        except OSError as exc:
            raise OSError(
                f"cannot serve metrics on {self.settings.api.host}:{port} ({exc.strerror}); "
                "choose another port with PLANTWATCH_API__METRICS_PORT, or unset it"
            ) from exc
        log.info("metrics also on http://%s:%d/metrics", self.settings.api.host, port)
        return server

    async def _try_start_store(self) -> bool:
        try:
            await asyncio.wait_for(self.store.start(), 15)
            self.writer.store_up = True
            self.metrics.store_up.set(1)
            return True
        except (StoreError, TimeoutError) as exc:
            log.warning("store not reachable at start-up (%s); spooling meanwhile", exc)
            self.writer.store_up = False
            self.metrics.store_up.set(0)
            return False

    async def _start_store(self) -> None:
        """Keep trying to start the store; meanwhile readings go to the spool."""
        backoff = Backoff(0.5, 30.0)
        while not await self._try_start_store():  # noqa: ASYNC110 - a retry, not a wait
            await asyncio.sleep(backoff.next())

    @staticmethod
    async def _release_memory() -> None:
        """Give a burst's freed memory back every so often (see plantwatch.allocator)."""
        while True:
            await asyncio.sleep(RELEASE_INTERVAL_S)
            release_freed_memory()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.bind_api()
        assert self._api_socket is not None
        config = uvicorn.Config(
            create_app(self.api_services()), log_level="warning", lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = _ApiServer(config)
        metrics_server = None
        try:
            metrics_server = self._start_metrics_thread()
            async with contextlib.AsyncExitStack() as exits, self.source, \
                    asyncio.TaskGroup() as tg:
                store_start = None
                if not await self._try_start_store():
                    store_start = tg.create_task(self._start_store(), name="store-start")
                writer = tg.create_task(self.writer.run(), name="store-writer")
                broker = MqttSender(self.source.publish_and_wait)
                senders: dict[str, Sender] = {"mqtt": broker, "mqtt:fire": broker}
                if self.webhooks is not None:
                    await exits.enter_async_context(self.webhooks)
                    senders.update(self.webhooks.senders())
                self.dispatcher.use(senders)
                notifications = tg.create_task(self.dispatcher.run(), name="notifications")
                pipeline = tg.create_task(self.pipeline.run(), name="pipeline")
                memory = tg.create_task(self._release_memory(), name="release-memory")
                api = tg.create_task(server.serve(sockets=[self._api_socket]), name="api")
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                    await asyncio.sleep(0.01)
                self.ready.set()
                log.info("plantwatch running: API on http://%s:%d", self.settings.api.host,
                         self.api_port)
                await self._stop.wait()
                memory.cancel()
                pipeline.cancel()
                if self.pipeline.pending_messages or self.pipeline.pending_readings:
                    await self.pipeline.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.writer.join(), 10)
                self.hub.close()
                server.should_exit = True
                await api
                writer.cancel()
                with contextlib.suppress(TimeoutError):
                    await self.dispatcher.join(5)  # the rest is sent after the restart
                notifications.cancel()
                if store_start is not None:
                    store_start.cancel()
                if self.sparkplug is not None:
                    # An intentional goodbye gets no Will: say offline ourselves.
                    death = self.sparkplug.state_death(self._state_ts)
                    self.source.publish(death.topic, death.payload, qos=death.qos,
                                        retain=death.retain)
                    await asyncio.sleep(0.2)
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            await self.store.close()
            self.spool.close()
            self.outbox.close()
            if self._api_socket is not None:
                self._api_socket.close()
