"""The files of ``deploy/``: Grafana provisioning and dashboard, the systemd
unit, the example settings and the InfluxDB config.

The dashboard's queries are checked against what plantwatch writes (the
measurements, tags and fields come out of ``store.line_protocol`` itself, by
encoding a reading of every sensor of the shipped plant and an alarm event),
and then run on a real InfluxDB holding those points. The Mosquitto config is
tested under attack in ``tests/test_broker_security.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
import tomllib
import typing
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import plantwatch.allocator as allocator
from devservers.localservers import InfluxD, find_influxd, free_port
from model.alarm_events import AlarmEvent
from model.batch import ReadingBatch
from model.plant import PlantConfig, SensorKind
from model.sensor_table import SensorTable
from plantwatch.settings import InfluxSettings, load_settings
from store.line_protocol import (
    ALARM_EVENTS_MEASUREMENT,
    encode_alarm_events,
    encode_readings,
    series_prefixes,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "plantwatch.json"
UNIT = DEPLOY / "systemd" / "plantwatch.service"
TS = 1_700_000_000_000


# -- what plantwatch writes, from its own encoder ------------------------------------

def _parse_line(line: str) -> tuple[str, set[str], set[str]]:
    """(measurement, tag keys, field keys) of one line of line protocol without escapes."""
    series, fields, _ts = line.rsplit(" ", 2)
    measurement, *tags = series.split(",")
    return (measurement, {t.split("=", 1)[0] for t in tags},
            {f.split("=", 1)[0] for f in re.split(r",(?=\w+=)", fields)})


def readings_lines(plant: PlantConfig) -> list[str]:
    table = SensorTable.from_config(plant)
    n = len(table)
    batch = ReadingBatch.from_columns(np.arange(n), np.full(n, TS), np.linspace(1, 2, n),
                                      np.arange(n) % 2)
    return encode_readings(batch, series_prefixes(table)).decode().splitlines()


def alarm_line(plant: PlantConfig) -> str:
    place = plant.places()[0]
    event = AlarmEvent(
        alarm_id=f"{place.sensor.id}:hh", sensor=place.sensor.id, limit="hh", action="raise",
        ts=TS, value=60.0, setpoint=50.0, priority="high", site=place.site,
        workshop=place.workshop, area=place.area, team=place.team, post=place.post,
        kind=place.sensor.kind, unit="%LEL")
    return encode_alarm_events([event]).decode().strip()


def written_schema(plant: PlantConfig) -> dict[str, set[str]]:
    """Measurement → the tag and field keys plantwatch writes into it."""
    schema: dict[str, set[str]] = {}
    for line in [*readings_lines(plant), alarm_line(plant)]:
        measurement, tags, fields = _parse_line(line)
        schema.setdefault(measurement, set()).update(tags | fields)
    return schema


# -- the dashboard ----------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["query"]) for panel in dashboard()["panels"]
            for target in panel["targets"]]


def _measurements_of(query: str, known: set[str]) -> set[str]:
    """The measurements a query reads: FROM "name" or FROM /^(a|b)$/ (matched against ``known``)."""
    match = re.search(r'FROM\s+(?:"([^"]+)"|/([^/]+)/)', query)
    assert match, f"no FROM in {query!r}"
    if match.group(1):
        return {match.group(1)}
    return {m for m in known if re.search(match.group(2), m)}


def test_dashboard_has_the_fields_grafana_needs() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [p["id"] for p in board["panels"]]
    assert ids and len(ids) == len(set(ids))
    datasource_uid = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/plantwatch.yaml").read_text()
    )["datasources"][0]["uid"]
    for panel in board["panels"]:
        assert {"type", "title", "gridPos", "targets", "datasource"} <= panel.keys(), panel
        assert panel["datasource"]["uid"] == datasource_uid
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and target["rawQuery"] is True and target["query"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == datasource_uid


def test_every_query_names_measurements_tags_and_fields_plantwatch_writes(
        plant: PlantConfig) -> None:
    schema = written_schema(plant)
    kinds = set(typing.get_args(SensorKind))
    # A sensor kind no plant uses yet is still a measurement plantwatch may write.
    known = set(schema) | kinds
    keys_of = {m: schema.get(m, schema[next(iter(set(schema) & kinds))]) for m in known}
    charted: set[str] = set()
    for title, query in panel_queries():
        measurements = _measurements_of(query, known)
        assert measurements and measurements <= known, (title, measurements)
        charted |= measurements
        names = set(re.findall(r'"([^"]+)"', query)) - measurements
        for m in measurements:
            assert names <= keys_of[m], f"{title}: {sorted(names - keys_of[m])} are not " \
                f"tags or fields of {m} ({sorted(keys_of[m])})"
    assert kinds <= charted, f"no panel for {sorted(kinds - charted)}"
    assert ALARM_EVENTS_MEASUREMENT in charted
    for variable in dashboard()["templating"]["list"]:
        key = re.search(r'WITH KEY = "([^"]+)"', variable["query"])
        assert key and all(key.group(1) in keys_of[k] for k in kinds), variable["query"]


def test_the_schema_check_catches_a_wrong_tag(plant: PlantConfig) -> None:
    """The check above fails for a query naming a tag plantwatch does not write."""
    schema = written_schema(plant)
    names = set(re.findall(r'"([^"]+)"', 'SELECT mean("value") FROM "oxygen_pct" '
                                        'GROUP BY "gateway"')) - {"oxygen_pct"}
    assert not names <= schema["oxygen_pct"]


def _grafana_query(query: str) -> str:
    """A panel's query with Grafana's macros and variables filled in as Grafana would."""
    return (query.replace("$timeFilter", "time > now() - 100000d")
            .replace("$__interval", "1h")
            .replace("$site", ".*").replace("$workshop", ".*").replace("$area", ".*")
            .replace("$sensor", ".*"))


def _influx(url: str, query: str, db: str = "plantwatch",
            auth: tuple[str, str] | None = None, method: str = "GET") -> Any:
    params = {"db": db, "q": query}
    if auth is not None:
        params.update(u=auth[0], p=auth[1])
    request = urllib.request.Request(f"{url}/query?{urllib.parse.urlencode(params)}",
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.servers
def test_every_panel_query_runs_on_influxdb_and_finds_the_plants_data(
        influxdb: InfluxD, plant: PlantConfig) -> None:
    db = f"deploy_{os.getpid()}"
    _influx(influxdb.url, f'CREATE DATABASE "{db}"', db=db, method="POST")
    body = "\n".join([*readings_lines(plant), alarm_line(plant)]).encode()
    request = urllib.request.Request(f"{influxdb.url}/write?db={db}&precision=ms", data=body,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    written = set(written_schema(plant))
    known = written | set(typing.get_args(SensorKind))
    for title, query in panel_queries():
        result = _influx(influxdb.url, _grafana_query(query), db=db)["results"][0]
        assert "error" not in result, (title, result["error"])
        if _measurements_of(query, known) & written:  # a kind the plant has no sensor of: empty
            assert result.get("series"), f"{title}: no data for {_grafana_query(query)}"
    for variable in dashboard()["templating"]["list"]:
        result = _influx(influxdb.url, _grafana_query(variable["query"]), db=db)["results"][0]
        assert result.get("series"), variable["name"]


def test_grafana_provisioning_files() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/plantwatch.yaml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "influxdb" and source["url"].startswith("https://")
    assert source["database"] == InfluxSettings().database
    assert "password" not in source and "$" in source["secureJsonData"]["password"]
    boards = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/plantwatch.yaml").read_text())
    assert boards["apiVersion"] == 1
    (provider,) = boards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# -- systemd -----------------------------------------------------------------------

def unit_entries(section: str) -> list[tuple[str, str]]:
    """``(key, value)`` of every line of a section of the unit, in order (keys repeat)."""
    entries: list[tuple[str, str]] = []
    current = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, value = line.split("=", 1)
            entries.append((key.strip(), value.strip()))
    return entries


def test_the_unit_is_hardened() -> None:
    service = dict(unit_entries("Service"))  # the last of a repeated key, as systemd
    expected = {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/plantwatch",
        "StateDirectory": "plantwatch",
        "StateDirectoryMode": "0700",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "User": "plantwatch",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert re.fullmatch(r"\d+[KMGT]", service["MemoryMax"])
    assert service["ExecStart"] == ("/opt/plantwatch/bin/plantwatch run --settings "
                                    "/etc/plantwatch/plantwatch.toml")


def test_the_units_malloc_settings_are_what_the_allocator_would_set() -> None:
    """With these variables set, plantwatch.allocator changes nothing, so they
    must be its own values (one arena, its two thresholds)."""
    env = dict(v.split("=", 1) for k, v in unit_entries("Service") if k == "Environment")
    assert env["MALLOC_ARENA_MAX"] == "1"
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) == allocator._MMAP_THRESHOLD
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) == allocator._TRIM_THRESHOLD
    assert set(env) & set(allocator._OPERATOR_SETTINGS)  # so keep_freed_memory stands aside


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # like every tool the tests need: a failure under CI=true
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # verify refuses an ExecStart that does not exist here; the rest is as shipped.
    text = UNIT.read_text().replace("/opt/plantwatch/bin/plantwatch", "/bin/true")
    (tmp_path / "plantwatch.service").write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / "plantwatch.service")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_example_settings_load(tmp_path: Path) -> None:
    """deploy/systemd/plantwatch.toml is accepted by the settings (unknown keys are
    refused), with its certificate paths pointed at files that exist here. It logs
    in to the shipped broker by client certificate (CN plantwatch), no password."""
    text = (DEPLOY / "systemd" / "plantwatch.toml").read_text()
    data = tomllib.loads(text)
    assert data["mqtt"]["url"].startswith("mqtts://")
    assert data["influxdb"]["url"].startswith("https://")
    assert data["state_dir"] == "/var/lib/plantwatch"
    files = {}
    for name in ("ca.crt", "plantwatch.crt", "plantwatch.key"):
        files[name] = tmp_path / name
        files[name].write_text("PEM\n")
        assert f"/etc/plantwatch/tls/{name}" in text, name
        text = text.replace(f"/etc/plantwatch/tls/{name}", str(files[name]))
    (tmp_path / "plantwatch.toml").write_text(text)
    settings = load_settings(tmp_path / "plantwatch.toml")
    tls = settings.mqtt.tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        files["ca.crt"], files["plantwatch.crt"], files["plantwatch.key"])
    assert settings.influxdb.tls.ca_file == files["ca.crt"]
    assert settings.mqtt.password is None
    assert settings.mqtt.client_id == "plantwatch"


# -- InfluxDB ------------------------------------------------------------------------

@pytest.mark.servers
def test_the_influxdb_config_serves_https_and_requires_a_user(tmp_path: Path) -> None:
    exe = find_influxd()
    if exe is None:
        pytest.fail("influxd is needed (apt-get install influxdb)", pytrace=False)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed", pytrace=False)
    make = ["sh", str(DEPLOY / "mosquitto" / "make-certs.sh")]
    subprocess.run([*make, "ca", str(tmp_path)], check=True, capture_output=True)
    subprocess.run([*make, "server", str(tmp_path), "influxdb", "IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    port = free_port()
    text = (DEPLOY / "influxdb" / "influxdb.conf").read_text()
    for old, new in {"/var/lib/influxdb": str(tmp_path / "lib"),
                     "/etc/influxdb/tls": str(tmp_path),
                     '"127.0.0.1:8088"': f'"127.0.0.1:{free_port()}"',
                     'bind-address = ":8086"': f'bind-address = "127.0.0.1:{port}"'}.items():
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / "influxdb.conf").write_text(text)
    log = (tmp_path / "influxd.log").open("wb")
    proc = subprocess.Popen([exe, "-config", str(tmp_path / "influxdb.conf")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", context=context, timeout=1) as r:
                    assert r.status == 204
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "influxd.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "influxd did not answer HTTPS /ping"
                time.sleep(0.1)
        # Plain HTTP is never served: the connection is closed (or answered 400).
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
        except ConnectionError:
            pass
        else:
            pytest.fail("influxd answered plain HTTP")

        def show_databases(**auth: str) -> int:
            q = urllib.parse.urlencode({"q": "SHOW DATABASES", **auth})
            try:
                with urllib.request.urlopen(f"{url}/query?{q}", context=context,
                                            timeout=5) as r:
                    return int(r.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert show_databases() == 403  # no users yet: only creating the admin is allowed
        create = urllib.parse.urlencode({"q": "CREATE USER admin WITH PASSWORD 'a-long-pw' "
                                               "WITH ALL PRIVILEGES"})
        urllib.request.urlopen(urllib.request.Request(f"{url}/query?{create}", method="POST"),
                               context=context, timeout=5).read()
        assert show_databases() == 401
        assert show_databases(u="admin", p="wrong") == 401
        assert show_databases(u="admin", p="a-long-pw") == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
