"""Settings that fail in one line: where (file or variable), key path, value, fix;
secrets that never show; the TLS, spool, outbox and journal settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plantwatch.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_plantwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PLANTWATCH_"):
            monkeypatch.delenv(name)


def refused(tmp_path: Path, toml: str) -> list[str]:
    path = tmp_path / "plantwatch.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_a_misspelt_key_names_the_file_the_path_and_the_nearest_key(tmp_path: Path) -> None:
    problems = refused(tmp_path, '[mqtt]\nurll = "mqtt://b:1883"\n'
                                 '[[notify.webhooks]]\nname = "pager"\nurl = "https://p"\n'
                                 'secrte = "k"\n[api]\nprot = 8001\nstat_dir = "x"\n')
    path = tmp_path / "plantwatch.toml"
    assert problems == [
        f"{path}: unknown key mqtt.urll: did you mean mqtt.url?",
        f"{path}: unknown key notify.webhooks[0].secrte: did you mean notify.webhooks[0].secret?",
        f"{path}: unknown key api.prot: did you mean api.port?",
        f"{path}: unknown key api.stat_dir: valid keys here: "
        + ", ".join(__import__("plantwatch.settings").settings.ApiSettings.model_fields),
    ]


def test_a_toml_syntax_error_gives_the_line_and_column(tmp_path: Path) -> None:
    problems = refused(tmp_path, 'store = "sqlite"\n[mqtt]\nurl = \n')
    assert problems == [f"{tmp_path / 'plantwatch.toml'}:3:7: not valid TOML: Invalid value"]


def test_bad_values_name_the_key_the_value_and_the_fix(tmp_path: Path) -> None:
    problems = refused(tmp_path, '[mqtt]\nurl = "tcp://ops:hunter2@broker"\n'
                                 '[api]\nport = 70000\n[ingest]\nspool_max_bytes = 1000\n')
    path = tmp_path / "plantwatch.toml"
    assert problems == [
        f'{path}: mqtt.url = "tcp://ops:***@broker": should be mqtt://HOST[:PORT], '
        "or mqtts://HOST[:PORT] for TLS",
        f"{path}: ingest.spool_max_bytes = 1000: should be greater than or equal to 1048576",
        f"{path}: api.port = 70000: should be less than or equal to 65535",
    ]
    assert "hunter2" not in "\n".join(problems)


def test_a_missing_settings_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path / "nope.toml")
    assert caught.value.problems == [f"{tmp_path / 'nope.toml'}: no such settings file: "
                                     "give the path of the TOML file"]


def test_environment_variables_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:  # fmt: skip
    monkeypatch.setenv("PLANTWATCH_API__PORT", "99999")
    monkeypatch.setenv("PLANTWATCH_FUZZ_SCALE", "3")  # another tool's: not a setting, left alone
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == ["environment variable PLANTWATCH_API__PORT: api.port = "
                                     '"99999": should be less than or equal to 65535']
    monkeypatch.setenv("PLANTWATCH_API__PORT", "8001")
    monkeypatch.setenv("PLANTWATCH_MQTT__URLL", "mqtt://x")
    monkeypatch.setenv("PLANTWATCH_STATEDIR", "/tmp")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == [
        "environment variable PLANTWATCH_MQTT__URLL: unknown key mqtt.urll: did you mean "
        "PLANTWATCH_MQTT__URL?",
        "environment variable PLANTWATCH_STATEDIR: unknown key statedir: did you mean "
        "PLANTWATCH_STATE_DIR?",
    ]
    monkeypatch.delenv("PLANTWATCH_MQTT__URLL")
    monkeypatch.delenv("PLANTWATCH_STATEDIR")
    assert load_settings().api.port == 8001


def test_the_environment_wins_and_is_blamed_over_the_file(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:  # fmt: skip
    monkeypatch.setenv("PLANTWATCH_MQTT__URL", "http://broker")
    problems = refused(tmp_path, '[mqtt]\nurl = "mqtt://fine:1883"\n')
    assert problems[0].startswith("environment variable PLANTWATCH_MQTT__URL: mqtt.url = "
                                  '"http://broker": ')


def test_secrets_never_show(tmp_path: Path) -> None:
    path = tmp_path / "plantwatch.toml"
    path.write_text('[mqtt]\nusername = "ops"\npassword = "mqtt-pw"\n'
                    '[influxdb]\npassword = "influx-pw"\ntoken = "influx-token"\n'
                    '[[notify.webhooks]]\nname = "pager"\nurl = "https://p"\nsecret = "hmac-key"\n',
                    encoding="utf-8")
    settings = load_settings(path)
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json()])
    for secret in ("mqtt-pw", "influx-pw", "influx-token", "hmac-key"):
        assert secret not in shown
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "mqtt-pw"
    assert settings.notify.webhooks[0].secret.get_secret_value() == "hmac-key"
    assert settings.mqtt.username == "ops"
    problems = refused(tmp_path, '[influxdb]\ntoken = 12345\n')
    assert problems == [f"{path}: influxdb.token = (secret, not shown): should be a valid string"]


def test_tls_files_are_checked_at_load(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    problems = refused(tmp_path, f'[mqtt]\nurl = "mqtts://broker"\n[mqtt.tls]\nca_file = "{ca}"\n'
                                 f'cert_file = "{tmp_path / "client.pem"}"\n'
                                 '[influxdb.tls]\ntls_version = "1.1"\n')
    path = tmp_path / "plantwatch.toml"
    assert problems == [
        f'{path}: mqtt.tls.cert_file = "{tmp_path / "client.pem"}": no such file: give the '
        "path of the PEM file",
        f"{path}: influxdb.tls.tls_version = \"1.1\": should be '1.2' or '1.3'",
    ]
    path.write_text(f'[mqtt.tls]\nca_file = "{ca}"\ntls_version = "1.3"\n'
                    '[influxdb.tls]\ninsecure = true\n', encoding="utf-8")
    settings = load_settings(path)
    assert settings.mqtt.tls.ca_file == ca and settings.mqtt.tls.tls_version == "1.3"
    assert settings.influxdb.tls.insecure and settings.influxdb.tls.ca_file is None


def test_the_new_fields_and_their_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.ingest.spool_max_bytes == 2 * 1024**3
    assert settings.notify.outbox.retry_for_s == 86_400
    assert settings.notify.outbox.degraded_after_s == 300
    assert settings.journal.compact_every_records == 100_000
    path = tmp_path / "plantwatch.toml"
    path.write_text("[notify.outbox]\nretry_for_s = 60\n[journal]\ncompact_every_records = 10\n",
                    encoding="utf-8")
    settings = load_settings(path)
    assert settings.notify.outbox.retry_for_s == 60
    assert settings.journal.compact_every_records == 10


def _plantwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLANTWATCH_")}
    return subprocess.run([sys.executable, "-m", "plantwatch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_prints_the_line_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[mqtt]\nurl = "tcp://x"\n', encoding="utf-8")
    done = _plantwatch("run", "--settings", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ('bad.toml: mqtt.url = "tcp://x": should be mqtt://HOST[:PORT], '
                           "or mqtts://HOST[:PORT] for TLS\n")
    # a command whose settings are loaded outside plantwatch.cli.common: the app itself
    done = _plantwatch("token", "list", "--settings", "nope.toml", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "nope.toml: no such settings file (relative "
                                                 f"to {tmp_path}): give the path of the TOML "
                                                 "file\n")
    assert "Traceback" not in done.stderr


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = _plantwatch("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"plantwatch {version('plantwatch')}\n")


def test_a_certificate_file_that_is_not_pem_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n", encoding="utf-8")
    (tmp_path / "tls.toml").write_text(
        f'plant = "{Path(__file__).resolve().parents[1] / "config" / "plant.yaml"}"\n'
        f'store = "sqlite"\nstate_dir = "{tmp_path / "state"}"\n'
        '[mqtt]\nurl = "mqtts://127.0.0.1:8883"\n[mqtt.tls]\nca_file = "ca.crt"\n',
        encoding="utf-8")
    done = _plantwatch("run", "--settings", "tls.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "mqtt.tls.ca_file" in done.stdout + done.stderr
