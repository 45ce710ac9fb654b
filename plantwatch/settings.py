"""Service settings: environment ``PLANTWATCH_*`` (nested with ``__``) or a TOML file.

Examples::

    PLANTWATCH_MQTT__URL=mqtt://broker.plant.local:1883
    PLANTWATCH_STORE=influxdb
    PLANTWATCH_INFLUXDB__URL=http://influx.plant.local:8086
    PLANTWATCH_INFLUXDB__TOKEN=...          # InfluxDB 2.x/3.x (v1-compatible API)

or ``plantwatch run --settings plantwatch.toml`` with sections ``[mqtt]``,
``[influxdb]``, ``[sqlite]``, ``[ingest]``, ``[api]``, ``[[notify.webhooks]]``
and top-level keys ``plant``, ``alarms``, ``store``, ``state_dir``.
Environment variables win over the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "ApiSettings",
    "InfluxSettings",
    "IngestSettings",
    "MqttSettings",
    "Settings",
    "load_settings",
]


class MqttSettings(BaseModel):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "plantwatch-ingest"
    topics: list[str] = ["plant/#"]
    deadletter_topic: str = "plantwatch/deadletter"
    max_pending_messages: int = Field(5_000, ge=100, le=65_535)
    # 3.1.1 by default: paho's MQTT 5 path measured markedly slower
    # (docs/benchmarks.md, "Design measurements").
    # MQTT 5 lets the broker pace us
    # (Receive Maximum) so paho's network thread never waits; choose it where
    # that matters more than throughput.
    protocol: Literal["5", "3.1.1"] = "3.1.1"
    connect_timeout_s: float = Field(15.0, gt=0)


class InfluxSettings(BaseModel):
    url: str = "http://127.0.0.1:8086"
    database: str = "plantwatch"
    retention: str = Field("30d", pattern=r"^(\d+(h|d|w)|INF)$")
    username: str | None = None
    password: str | None = None
    token: str | None = None
    create_database: bool = True
    # Bounded: InfluxDB 1.6 deadlocked for good under ~20k concurrent
    # connections. 8 reused connections measured best on 2 cores.
    max_connections: int = Field(8, ge=1, le=16)
    # Lines per /write request (split at series boundaries). Larger requests
    # cost InfluxDB less per point: see store.influx.series_chunks.
    lines_per_write: int = Field(50_000, ge=1_000, le=500_000)
    timeout_s: float = Field(10.0, gt=0)


class SQLiteSettings(BaseModel):
    path: Path = Path("var/plantwatch.sqlite3")
    retention_days: float = Field(30.0, gt=0)


class IngestSettings(BaseModel):
    flush_max_readings: int = Field(100_000, ge=1)
    flush_interval_s: float = Field(0.1, gt=0)
    write_concurrency: int = Field(4, ge=1, le=16)
    # A writer that is behind merges queued flushes into one write of up to
    # this many readings (ingest.writer.StoreWriter._take_jobs); 0 turns it off.
    write_coalesce_readings: int = Field(400_000, ge=0)
    max_payload_bytes: int = Field(1_048_576, ge=1024)
    max_readings_per_message: int = Field(100_000, ge=1)
    max_future_skew_s: float = Field(300.0, ge=0)
    max_age_days: float = Field(30.0, gt=0)
    # Every dimension of input is bounded (docs/ingest.md, "Input limits").
    max_json_depth: int = Field(16, ge=3, le=512)
    max_id_chars: int = Field(128, ge=8, le=4096)
    max_topic_chars: int = Field(256, ge=16, le=65_535)
    max_topic_levels: int = Field(8, ge=3, le=128)
    max_sparkplug_metrics: int = Field(10_000, ge=1)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Also serve /metrics on this port from a thread of its own. While a
    # backlog drains, the flushes hold the event loop and with it the API's
    # /metrics (the 10,000-sensor ingest benchmark had taken 400,000-600,000
    # readings before it first answered); this one answers meanwhile.
    # None: the API port only.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    # Hashed API tokens (``plantwatch token create``); default <state_dir>/tokens.json.
    tokens_file: Path | None = None


class WebhookSettings(BaseModel):
    """One webhook receiver of alarm notifications (JSON, HMAC-SHA256 signed)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    url: str = Field(pattern=r"^https?://")
    secret: str = ""
    # Event types to send (alarm, risk, hazard, flood); empty: all of them.
    events: list[Literal["alarm", "risk", "hazard", "flood", "alarm_system"]] = []
    # Also receives the fire-control copy of second-level combustible gas alarms.
    fire_control: bool = False
    timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(6, ge=1)


class SparkplugSettings(BaseModel):
    """The Sparkplug B host application (spBv1.0/# beside the JSON and lp topics)."""

    enabled: bool = True
    host_id: str = Field("plantwatch", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    topic: str = "spBv1.0/#"
    reorder_timeout_ms: int = Field(2000, ge=0)
    rebirth_interval_ms: int = Field(5000, ge=0)
    # Rebirth requests overall (all nodes together), per second.
    max_rebirths_per_s: float = Field(10.0, gt=0)


class NotifySettings(BaseModel):
    webhooks: list[WebhookSettings] = []


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PLANTWATCH_", env_nested_delimiter="__", extra="forbid"
    )

    plant: Path = Path("config/plant.yaml")
    # The alarm philosophy; default: alarms.yaml beside the plant file, if there is one.
    alarms: Path | None = None
    # MSPC groups (store.mspc_models); default: mspc.yaml beside the plant file.
    mspc: Path | None = None
    store: Literal["influxdb", "sqlite"] = "influxdb"
    state_dir: Path = Path("var")
    mqtt: MqttSettings = MqttSettings()
    influxdb: InfluxSettings = InfluxSettings()
    sqlite: SQLiteSettings = SQLiteSettings()
    ingest: IngestSettings = IngestSettings()
    api: ApiSettings = ApiSettings()
    notify: NotifySettings = NotifySettings()
    sparkplug: SparkplugSettings = SparkplugSettings()

    def alarms_file(self) -> Path | None:
        if self.alarms is not None:
            return self.alarms
        beside = self.plant.parent / "alarms.yaml"
        return beside if beside.is_file() else None

    def mspc_file(self) -> Path | None:
        if self.mspc is not None:
            return self.mspc
        beside = self.plant.parent / "mspc.yaml"
        return beside if beside.is_file() else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # toml_file comes from model_config (None: no file), set by load_settings.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(toml_file: Path | None = None, **overrides: object) -> Settings:
    """Settings from ``overrides``, then the environment, then ``toml_file``."""
    if toml_file is None:
        return Settings(**overrides)  # type: ignore[arg-type]
    if not toml_file.is_file():
        raise FileNotFoundError(f"settings file {toml_file} does not exist")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": toml_file})

    return FileSettings(**overrides)  # type: ignore[arg-type]
