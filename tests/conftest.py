"""Shared fixtures: the shipped plant, and the real Mosquitto and InfluxDB servers
of the integration tests.

``plant`` is config/plant.yaml, loaded once per session and shared by every
test that asks for it: read it, never change it. Each server is started once
per test session on a free loopback port, in a temporary directory, and stopped
by pid at the end. A missing binary is a failure, never a skip: the integration
tests always run (docs/style.md). A fixture belongs here once two or more test
modules use it; one that a single module uses stays in that module.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from devservers.localservers import InfluxD, Mosquitto, find_influxd, find_mosquitto
from model.plant import PlantConfig, load_plant
from model.sensor_table import SensorTable
from store.influx import InfluxStore
from tests.plants import PLANT_YAML

INSTALL_ADVICE = (
    "{what} is needed by the integration tests and was not found on PATH or in /usr/sbin; "
    "install it with `apt-get install mosquitto influxdb` (Debian/Ubuntu)"
)


@pytest.fixture(scope="session")
def plant() -> PlantConfig:
    """The shipped plant, config/plant.yaml."""
    return load_plant(PLANT_YAML)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto broker for the whole session (``.host``, ``.port``, ``.url``)."""
    if find_mosquitto() is None:
        pytest.fail(INSTALL_ADVICE.format(what="the mosquitto broker"), pytrace=False)
    with Mosquitto.start(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD]:
    """An InfluxDB 1.x server for the whole session (``.url``)."""
    if find_influxd() is None:
        pytest.fail(INSTALL_ADVICE.format(what="InfluxDB (influxd)"), pytrace=False)
    with InfluxD.start(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


_database_numbers = itertools.count(1)

InfluxStoreFactory = Callable[..., Awaitable[InfluxStore]]


@pytest.fixture
async def influx_store(
    influxdb: InfluxD, request: pytest.FixtureRequest
) -> AsyncIterator[InfluxStoreFactory]:
    """Make started :class:`InfluxStore` s on a database of this test's own.

    ``store = await influx_store(table, **kwargs)``; ``db=`` overrides the
    database name, other keyword arguments go to ``InfluxStore``. Every store
    made is closed after the test.
    """
    # Only letters, digits and _ from the test's name: influxd 1.x globs its shard
    # directories, and the [ ] of a parametrized test's name make writes fail with
    # "error getting compaction temp files: syntax error in pattern" (HTTP 500).
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)
    database = f"t{next(_database_numbers)}_{name}"[:60]
    made: list[InfluxStore] = []

    async def make(table: SensorTable, db: str | None = None, **kwargs: Any) -> InfluxStore:
        store = InfluxStore(influxdb.url, db or database, table, **kwargs)
        made.append(store)
        await store.start()
        return store

    yield make
    for store in made:
        await store.close()
