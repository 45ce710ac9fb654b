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

Everything is checked at load, and a mistake is refused in one line that names
where it came from (the file, or the environment variable), the key path, the
value and the fix (:class:`SettingsError`): a misspelt key gets the nearest
valid one, a TOML syntax error its line and column, a TLS file that is not
there its path. Passwords, tokens and webhook secrets are
:class:`pydantic.SecretStr`: they never appear in a log line or a repr.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as _SourceError

__all__ = [
    "ApiSettings",
    "InfluxSettings",
    "IngestSettings",
    "JournalSettings",
    "MqttSettings",
    "OutboxSettings",
    "Settings",
    "SettingsError",
    "TlsSettings",
    "load_settings",
]

ENV_PREFIX = "PLANTWATCH_"


class SettingsError(ValueError):
    """The settings are refused; each problem is one line naming its source
    (the file or the environment variable), the key path, the value and the fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Section(BaseModel):
    """A settings table: a key it does not know is refused, never ignored."""

    model_config = ConfigDict(extra="forbid")


class TlsSettings(_Section):
    """TLS towards the broker (``mqtts://``) or InfluxDB (``https://``).

    Without files the system's CA store verifies the server; ``ca_file`` names
    the plant's own CA, ``cert_file``/``key_file`` a client certificate where
    the server asks for one. The files are checked to exist at load, so a typo
    fails at start-up, not at the first reconnect.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_version: Literal["1.2", "1.3"] = "1.2"  # the oldest version accepted
    # Skips checking that the server's certificate names the host connected to
    # (the chain is still verified): for a server reached by an address its
    # certificate does not list; never across a network others share.
    insecure: bool = False

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise ValueError(f"no such file{where}: give the path of the PEM file")
        return path


class MqttSettings(_Section):
    # mqtt://HOST[:PORT], or mqtts:// for TLS (then ``tls`` applies).
    url: str = "mqtt://127.0.0.1:1883"
    # Credentials here rather than in the URL keep the password out of it.
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings = TlsSettings()
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

    @field_validator("url")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        from ingest.mqtt_source import parse_broker_url

        try:
            parse_broker_url(url)
        except ValueError as exc:  # not repeated: it shows the URL, password and all
            raise ValueError("should be mqtt://HOST[:PORT], or mqtts://HOST[:PORT] "
                             "for TLS") from exc
        return url


class InfluxSettings(_Section):
    # http://HOST:PORT, or https:// (then ``tls`` applies).
    url: str = Field("http://127.0.0.1:8086", pattern=r"^https?://[^/:]+")
    database: str = "plantwatch"
    retention: str = Field("30d", pattern=r"^(\d+(h|d|w)|INF)$")
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    tls: TlsSettings = TlsSettings()
    create_database: bool = True
    # Bounded: InfluxDB 1.6 deadlocked for good under ~20k concurrent
    # connections. 8 reused connections measured best on 2 cores.
    max_connections: int = Field(8, ge=1, le=16)
    # Lines per /write request (split at series boundaries). Larger requests
    # cost InfluxDB less per point: see store.influx.series_chunks.
    lines_per_write: int = Field(50_000, ge=1_000, le=500_000)
    timeout_s: float = Field(10.0, gt=0)


class SQLiteSettings(_Section):
    path: Path = Path("var/plantwatch.sqlite3")
    retention_days: float = Field(30.0, gt=0)


class IngestSettings(_Section):
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
    # The spool (readings kept while the store is away) refuses to grow past
    # this; at 21 bytes a reading, 2 GiB hold about 100 million readings.
    spool_max_bytes: int = Field(2 * 1024**3, ge=1024**2)


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
    # Reads (every /api/v1 GET and the alarm event stream) need a token of role
    # viewer or higher. False keeps the demo open to anyone who can reach the
    # port; production should set it true. /livez, /readyz, /healthz and
    # /metrics stay open for probes and Prometheus either way.
    require_token_for_reads: bool = False


class WebhookSettings(_Section):
    """One webhook receiver of alarm notifications (JSON, HMAC-SHA256 signed)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    url: str = Field(pattern=r"^https?://")
    # HMAC-SHA256 key shared with the receiver; empty: unsigned.
    secret: SecretStr = SecretStr("")
    # Event types to send (alarm, risk, hazard, flood); empty: all of them.
    events: list[Literal["alarm", "risk", "hazard", "flood", "alarm_system"]] = []
    # Also receives the fire-control copy of second-level combustible gas alarms.
    fire_control: bool = False
    timeout_s: float = Field(5.0, gt=0)


class SparkplugSettings(_Section):
    """The Sparkplug B host application (spBv1.0/# beside the JSON and lp topics)."""

    enabled: bool = True
    host_id: str = Field("plantwatch", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    topic: str = "spBv1.0/#"
    reorder_timeout_ms: int = Field(2000, ge=0)
    rebirth_interval_ms: int = Field(5000, ge=0)
    # Rebirth requests overall (all nodes together), per second.
    max_rebirths_per_s: float = Field(10.0, gt=0)


class OutboxSettings(_Section):
    """The durable notification outbox: how long a notification is retried,
    and when a channel that keeps failing is reported degraded."""

    retry_for_s: float = Field(86_400.0, gt=0)
    degraded_after_s: float = Field(300.0, gt=0)


class NotifySettings(_Section):
    webhooks: list[WebhookSettings] = []
    outbox: OutboxSettings = OutboxSettings()


class JournalSettings(_Section):
    """The alarm journal: records between two compactions into a snapshot."""

    compact_every_records: int = Field(100_000, ge=1)


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
    journal: JournalSettings = JournalSettings()

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
    """Settings from ``overrides``, then the environment, then ``toml_file``.

    Raises :class:`SettingsError` (one line a problem, never a traceback's
    worth) on an unknown key, a TOML syntax error or a bad value.
    """
    env = _plantwatch_env()
    problems = _unknown_env_keys(env)
    data: dict[str, Any] = {}
    if toml_file is not None:
        data = _read_toml(toml_file)
        problems += [f"{toml_file}: {p}" for p in _unknown_keys(data, Settings, "")]
    if problems:
        raise SettingsError(problems)
    try:
        if toml_file is None:
            return Settings(**overrides)  # type: ignore[arg-type]

        class FileSettings(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": toml_file})

        return FileSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError([_problem(dict(err), toml_file, data, env, overrides)
                             for err in exc.errors()]) from exc
    except _SourceError as exc:  # an environment variable that should hold JSON does not
        raise SettingsError([f"environment: {exc}; a list or table in a variable is "
                             "written as JSON"]) from exc


# Keys whose values are never shown, not even in an error.
_SECRET_KEYS = frozenset({"password", "token", "secret"})


def _plantwatch_env() -> dict[str, str]:
    """The ``PLANTWATCH_*`` environment variables, under their names as set."""
    return {name: value for name, value in os.environ.items()
            if name.upper().startswith(ENV_PREFIX)}


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML, or a one-line SettingsError with its line and column."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise SettingsError([f"{path}: no such settings file{where}: give the path of "
                             "the TOML file"]) from exc
    except OSError as exc:
        raise SettingsError([f"{path}: cannot read the settings file ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise SettingsError([f"{path}: not UTF-8 text (byte {exc.start}): save the file "
                             "as UTF-8"]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc))
        if found is None:
            raise SettingsError([f"{path}: not valid TOML: {exc}"]) from exc
        raise SettingsError([f"{path}:{found[2]}:{found[3]}: not valid TOML: "
                             f"{found[1]}"]) from exc


def _section_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings table a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        inner, _ = _section_of(args[0])
        return inner, inner is not None
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            section, many = _section_of(arg)
            if section is not None:
                return section, many
    return None, False


def _nearest(key: str, valid: Iterable[str], cutoff: float = 0.6) -> str | None:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=cutoff)
    return near[0] if near else None


def _unknown_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str) -> list[str]:
    """Every key of ``data`` (a TOML table) that ``model`` does not know, with
    the nearest valid key; nested tables and lists of tables are walked."""
    out: list[str] = []
    fields = model.model_fields
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        field = fields.get(key)
        if field is None:
            if model.model_config.get("extra") == "allow":
                continue
            near = _nearest(key, fields)
            hint = (f"did you mean {prefix + '.' if prefix else ''}{near}?" if near
                    else f"valid keys here: {', '.join(fields)}")
            out.append(f"unknown key {path}: {hint}")
            continue
        section, many = _section_of(field.annotation)
        if section is None:
            continue
        if many and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out += _unknown_keys(item, section, f"{path}[{i}]")
        elif isinstance(value, Mapping):
            out += _unknown_keys(value, section, path)
    return out


def _unknown_env_keys(env: Mapping[str, str]) -> list[str]:
    """``PLANTWATCH_A__B`` variables naming no setting. A top-level name far
    from every setting is left alone (other tools share the prefix, e.g. the
    tests' ``PLANTWATCH_FUZZ_SCALE``); one close to a setting is a typo."""
    out: list[str] = []
    for name in sorted(env):
        parts = name[len(ENV_PREFIX):].lower().split("__")
        model: type[BaseModel] | None = Settings
        for depth, part in enumerate(parts):
            if model is None:  # a value, not a table, has no keys
                known = ENV_PREFIX + "__".join(parts[:depth]).upper()
                out.append(f"environment variable {name}: {known} is a single value, "
                           "not a table: unset the variable")
                break
            field = model.model_fields.get(part)
            if field is None:
                near = _nearest(part, model.model_fields, 0.8 if depth == 0 else 0.6)
                if depth == 0 and near is None and len(parts) == 1:
                    break
                key = ".".join([*parts[:depth], part])
                hint = (f"did you mean {ENV_PREFIX}{'__'.join([*parts[:depth], near]).upper()}?"
                        if near else f"valid keys here: {', '.join(model.model_fields)}")
                out.append(f"environment variable {name}: unknown key {key}: {hint}")
                break
            section, many = _section_of(field.annotation)
            model = None if many else section
            if many:  # a list of tables is one JSON value
                if depth + 1 < len(parts):
                    out.append(f"environment variable {name}: "
                               f"{ENV_PREFIX}{'__'.join(parts[:depth + 1]).upper()} holds a "
                               "JSON list; set that variable instead")
                break
    return out


def _key_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out or "(top level)"


def _source_of(loc: tuple[int | str, ...], toml_file: Path | None, data: Mapping[str, Any],
               env: Mapping[str, str], overrides: Mapping[str, object]) -> str:
    """Where the value at ``loc`` came from, in the order the sources win."""
    if loc and loc[0] in overrides:
        return "command line"
    names = list(loc[: next((i for i, p in enumerate(loc) if isinstance(p, int)), len(loc))])
    by_upper = {name.upper(): name for name in env}
    for depth in range(len(names), 0, -1):
        wanted = ENV_PREFIX + "__".join(str(p) for p in names[:depth]).upper()
        if wanted in by_upper:
            return f"environment variable {by_upper[wanted]}"
    return str(toml_file) if toml_file is not None else "settings"


def _shown(loc: tuple[int | str, ...], value: Any) -> str:
    """The refused value as the file would spell it; secrets and URL passwords hidden."""
    if any(part in _SECRET_KEYS for part in loc):
        return "(secret, not shown)"
    text = '"' + value.replace('"', '\\"') + '"' if isinstance(value, str) else repr(value)
    text = re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", text)
    return text if len(text) <= 80 else text[:77] + "..."


def _problem(err: dict[str, Any], toml_file: Path | None, data: Mapping[str, Any],
             env: Mapping[str, str], overrides: Mapping[str, object]) -> str:
    """One pydantic error as one line: source, key path, value, fix."""
    loc = tuple(err["loc"])
    source = _source_of(loc, toml_file, data, env, overrides)
    key = _key_path(loc)
    if err["type"] == "missing":
        return f"{source}: {key} is missing: add it"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {key}: remove it"
    msg = str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    return f"{source}: {key} = {_shown(loc, err.get('input'))}: {msg}"
