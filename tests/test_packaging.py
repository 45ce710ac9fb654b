"""The wheel: it carries the sample plant (config/, as the package
plantwatch_sample), the demo finds it and raises the leak alarm from any
directory once installed, and amqtt is only in the extra ``demo``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from setuptools import find_namespace_packages

from devservers.localservers import free_port

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_package_on_disk_is_listed() -> None:
    """The packages are listed (for the config/ mapping), so a new one must be added."""
    listed = set(SETUPTOOLS["packages"])
    tops = {name for name in listed if "." not in name and name not in SETUPTOOLS["package-dir"]}
    found = {name for name in find_namespace_packages(str(REPO), include=sorted(tops) + [
        f"{top}.*" for top in sorted(tops)]) if "__pycache__" not in name}
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {found - listed}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build leaves build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    dirs = {p.split(".")[0] for p in SETUPTOOLS["packages"]} - set(SETUPTOOLS["package-dir"])
    dirs |= set(SETUPTOOLS["package-dir"].values())
    for name in dirs:
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", str(src), "-w", str(out)],
                   check=True, capture_output=True, timeout=120)
    (built,) = out.glob("plantwatch-*.whl")
    return built


def test_the_wheel_carries_the_sample_plant(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "config").rglob("*.yaml"):
        assert f"plantwatch_sample/{path.relative_to(REPO / 'config').as_posix()}" in names
    assert {"plantwatch_sample/plant.yaml", "plantwatch_sample/alarms.yaml",
            "plantwatch_sample/mspc.yaml", "api/static/index.html"} <= names
    assert not any(name.startswith("config/") for name in names)


def test_amqtt_is_only_in_the_demo_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        lines = zf.read(meta).decode().splitlines()
    requires = [line.removeprefix("Requires-Dist: ") for line in lines
                if line.startswith("Requires-Dist: ")]
    amqtt = [r for r in requires if r.startswith("amqtt")]
    assert amqtt and all('extra == "demo"' in r or 'extra == "test"' in r for r in amqtt)
    assert any('extra == "demo"' in r for r in amqtt)
    assert "Provides-Extra: demo" in lines
    assert any(r.startswith("paho-mqtt") and "extra" not in r for r in requires)


def test_the_installed_wheel_finds_its_sample_plant_from_anywhere(wheel: Path,
                                                                  tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", "import plantwatch.cli.common as c; "
                               "print(c.__file__); print(c.sample_config_dir())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=True)
    module, sample = done.stdout.splitlines()
    assert Path(module).is_relative_to(target)  # the wheel's code, not the checkout's
    assert Path(sample) == target / "plantwatch_sample"
    assert (Path(sample) / "plant.yaml").read_bytes() == (REPO / "config/plant.yaml").read_bytes()


@pytest.mark.servers
@pytest.mark.slow
def test_the_demo_raises_the_leak_alarm_from_a_directory_outside_the_repository(
        wheel: Path, tmp_path: Path) -> None:
    """The installed wheel's demo, started where there is no config/: its sample
    plant ships inside the package, and its leak raises the gas alarms."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    env["PYTHONPATH"] = str(target)
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantwatch", "demo", "--port", str(port),
             "--leak", "tf-group-a@2", "--rate", "2"],
            cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        raised: list[dict[str, object]] = []
        while time.monotonic() < deadline and not raised:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                alarms = httpx.get(f"http://127.0.0.1:{port}/api/v1/alarms", timeout=2).json()
                raised = [a for a in alarms if a["area"] == "tf-group-a"
                          and a["category"] == "alarm" and a["limit"] in ("h", "hh")]
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert raised, f"no leak alarm in 150 s:\n{log.read_text()[-3000:]}"
        assert (elsewhere / "var" / "demo" / "plantwatch.toml").is_file()  # state is local
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
