"""MSPC groups in the live detector suite: fitted on normal history, decided into
``mspc`` warnings on the top-contributing sensor, config and model files checked,
and the ``plantwatch mspc`` commands."""

from __future__ import annotations

import asyncio
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from alarms.catalogue import AlarmCatalogue
from alarms.from_detections import events_from_transitions
from alarms.lifecycle import AlarmManager
from alarms.records import ConditionRecord
from detectors.decide import CONDITIONS, Transitions
from detectors.groups import GroupModel, GroupMonitors
from detectors.mspc import PcaMonitor
from detectors.suite import DetectorSuite
from model.batch import ReadingBatch
from model.plant import ConfigError, PlantConfig, parse_plant
from model.sensor_table import SensorTable
from plantwatch.cli import app
from store.mspc_models import (
    GroupConfig,
    MspcConfig,
    fit_group,
    load_group_models,
    load_mspc_config,
    model_path,
    save_group_model,
)
from store.sqlite import SQLiteStore
from tests.clock import T0

GROUP = ("TI-1", "TI-2", "PI-1")
MSPC = CONDITIONS.index("mspc")


def reactor_plant_data() -> dict[str, Any]:
    temp = {"kind": "temperature_c", "range": [0, 600], "limits": {"h": 400, "hh": 450}}
    return {
        "enterprise": {"id": "acme"},
        "sites": [{"id": "s1", "workshops": [{
            "id": "rx", "teams": [{"id": "t", "posts": [{"id": "post-rx"}]}],
            "areas": [{"id": "r101", "post": "post-rx", "sensors": [
                {"id": "TI-1", **temp}, {"id": "TI-2", **temp},
                {"id": "PI-1", "kind": "pressure_kpa", "range": [0, 1000],
                 "limits": {"h": 800, "hh": 900}},
                {"id": "LEL-1", "kind": "combustible_lel", "range": [0, 100]},
            ]}]}]}],
    }


def reactor_plant() -> PlantConfig:
    return parse_plant(reactor_plant_data(), "tests/test_mspc_groups.py")


PLANT = reactor_plant()
TABLE = SensorTable.from_config(PLANT)


def unit_rows(n: int, rng: np.random.Generator, start_s: int = 0) -> np.ndarray:
    """(n, 3) readings of a reactor whose temperatures and pressure follow one load."""
    t = np.arange(start_s, start_s + n)
    load = 300.0 + 5.0 * np.sin(2 * np.pi * t / 600)
    return np.column_stack([
        load + rng.normal(0, 0.3, n),
        0.9 * load + 30.0 + rng.normal(0, 0.3, n),
        2.0 * load - 100.0 + rng.normal(0, 0.6, n),
    ])


def fitted_model(on_delay_ms: int = 30_000, off_delay_ms: int = 60_000) -> GroupModel:
    rows = unit_rows(3000, np.random.default_rng(1))
    monitor = PcaMonitor(alpha=0.001).fit(rows)
    return GroupModel("reactor-r101", GROUP, monitor, on_delay_ms, off_delay_ms)


def stream(rows: np.ndarray, start_s: int = 0) -> ReadingBatch:
    """One reading of each group sensor per second, as a gateway would send them."""
    n = len(rows)
    sensor = np.tile([TABLE.index[s] for s in GROUP], n)
    ts = T0 + np.repeat(np.arange(start_s, start_s + n), 3) * 1000
    return ReadingBatch.from_columns(sensor, ts, rows.ravel())


def incident(rng: np.random.Generator) -> np.ndarray:
    """10 min normal, 5 min with TI-2 reading 3 °C high (10σ off the correlation, well
    inside its limits), then 10 min normal again."""
    rows = unit_rows(1500, rng)
    rows[600:900, 1] += 3.0
    return rows


def feed(monitors: GroupMonitors, batch: ReadingBatch, chunk: int) -> list[tuple[Any, ...]]:
    out = []
    for i in range(0, len(batch), chunk):
        part = ReadingBatch(batch.sensor[i:i + chunk], batch.ts[i:i + chunk],
                            batch.value[i:i + chunk], batch.quality[i:i + chunk])
        t = monitors.update(part)
        out += list(zip(t.sensor.tolist(), t.ts.tolist(), t.active.tolist(),
                        t.score.tolist(), t.value.tolist(), strict=True))
    return out


def test_a_broken_correlation_is_raised_on_the_sensor_that_broke_it_and_cleared() -> None:
    monitors = GroupMonitors(TABLE, [fitted_model()])
    batch = stream(incident(np.random.default_rng(7)))
    t = monitors.update(batch)
    assert len(t) == 2, "one raise and one clear, nothing in the normal stretches"
    ti2 = TABLE.index["TI-2"]
    assert t.sensor.tolist() == [ti2, ti2]
    assert (t.condition == MSPC).all()
    assert t.active.tolist() == [True, False]
    raised_s, cleared_s = (t.ts - T0) / 1000
    # out of control from 600 s; raised once the on-delay (30 s) has held
    assert 630 <= raised_s <= 640
    # back at 900 s; cleared once the index stayed below 0.8 for the 60 s off-delay.
    # Normal readings reach 0.8 about 1 time in 300 (3 readings a second), which
    # restarts the off-delay now and then: allow a few restarts.
    assert 960 <= cleared_s <= 1200
    assert t.score[0] >= 1.0 and t.score[1] < 0.8
    assert t.setpoint.tolist() == [1.0, 0.8]
    # the value is TI-2's own reading at that moment (load ~300 → 0.9·300+30+3)
    assert 295 < t.value[0] < 310


def test_contributions_name_the_broken_sensor_and_reach_the_alarm() -> None:
    suite = DetectorSuite(TABLE, groups=[fitted_model()])
    rows = incident(np.random.default_rng(7))
    suite.update(stream(rows[:700]))
    t = suite.transitions
    mspc = t.condition == MSPC
    assert mspc.sum() == 1
    shares = suite.groups.last_contributions[TABLE.index["TI-2"]]
    assert set(shares) == set(GROUP)
    assert shares["TI-2"] == max(shares.values()) and shares["TI-2"] > 0.5
    assert abs(sum(shares.values()) - 1.0) < 1e-3
    events = [e for e in events_from_transitions(TABLE, t, suite.groups.last_contributions)
              if e.limit == "mspc"]
    assert events[0].alarm_id == "TI-2:mspc" and events[0].category == "warning"
    assert events[0].contributions == shares
    manager = AlarmManager(AlarmCatalogue(PLANT))
    manager.apply(ConditionRecord(events[0], events[0].ts))
    point = manager.get("TI-2:mspc").to_dict()  # type: ignore[union-attr]
    assert point["state"] == "unack" and point["contributions"] == shares
    assert point["priority"] == "low"


def test_group_decisions_do_not_depend_on_how_the_stream_is_cut() -> None:
    batch = stream(incident(np.random.default_rng(3)))
    whole = feed(GroupMonitors(TABLE, [fitted_model()]), batch, len(batch))
    assert len(whole) == 2
    for chunk in (1, 7, 100):
        assert feed(GroupMonitors(TABLE, [fitted_model()]), batch, chunk) == whole


def test_state_round_trip_mid_incident_changes_nothing() -> None:
    batch = stream(incident(np.random.default_rng(5)))
    whole = feed(GroupMonitors(TABLE, [fitted_model()]), batch, 300)
    first = GroupMonitors(TABLE, [fitted_model()])
    cut = 3 * 620  # inside the on-delay: the pending raise must survive
    head = ReadingBatch(batch.sensor[:cut], batch.ts[:cut], batch.value[:cut],
                        batch.quality[:cut])
    before = feed(first, head, 300)
    assert first.since[0] != np.iinfo(np.int64).min, "a raise is pending at the cut"
    resumed = GroupMonitors(TABLE, [fitted_model()])
    resumed.set_state(pickle.loads(pickle.dumps(first.get_state())))
    rest = ReadingBatch(batch.sensor[cut:], batch.ts[cut:], batch.value[cut:],
                        batch.quality[cut:])
    after = feed(resumed, rest, 300)
    assert before + after == whole


def test_steady_operation_raises_nothing_for_hours() -> None:
    monitors = GroupMonitors(TABLE, [fitted_model()])
    rows = unit_rows(4 * 3600, np.random.default_rng(11), start_s=3000)
    assert len(monitors.update(stream(rows))) == 0


def test_a_sensor_in_two_groups_is_refused() -> None:
    a = fitted_model()
    b = GroupModel("other", ("TI-1", "LEL-1"), PcaMonitor().fit(
        np.random.default_rng(0).normal(size=(100, 2))))
    with pytest.raises(ValueError, match="one group only"):
        GroupMonitors(TABLE, [a, b])


# -- config and model files ---------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


_TWO_GROUPS = """
groups:
  - id: reactor
    sensors: [TI-1, TI-9]
  - id: other
    sensors: [TI-1, PI-1]
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("    alpha: 2\n", ["groups[1].alpha"]),
    ("", ["groups[0].sensors[1]: sensor 'TI-9' is not in the plant config",
          "groups[1].sensors[0]: sensor 'TI-1' is already in group 'reactor'"]),
])
def test_config_errors_name_the_file_the_key_path_and_the_problem(
    tmp_path: Path, extra: str, expected: list[str]
) -> None:
    path = write(tmp_path / "mspc.yaml", _TWO_GROUPS + extra)
    with pytest.raises(ConfigError) as err:
        load_mspc_config(path, PLANT)
    text = str(err.value)
    assert str(path) in text
    for problem in expected:
        assert problem in text


def test_a_saved_model_scores_exactly_as_the_fitted_one(tmp_path: Path) -> None:
    group = GroupConfig(id="reactor-r101", sensors=list(GROUP))
    model = fitted_model()
    save_group_model(model_path(tmp_path, group.id), group, model.monitor, {"rows": 3000})
    (loaded,), missing = load_group_models(MspcConfig(groups=[group]), tmp_path)
    assert missing == []
    rows = incident(np.random.default_rng(2))
    assert np.array_equal(loaded.monitor.score(rows)[0], model.monitor.score(rows)[0])
    assert np.array_equal(loaded.monitor.score(rows)[1], model.monitor.score(rows)[1])
    assert loaded.on_delay_ms == 30_000 and loaded.sensors == GROUP

    moved = GroupConfig(id="reactor-r101", sensors=["TI-1", "PI-1"])
    with pytest.raises(ValueError, match="refit it"):
        load_group_models(MspcConfig(groups=[moved]), tmp_path)
    assert load_group_models(MspcConfig(groups=[GroupConfig(id="new", sensors=["TI-1", "PI-1"])]),
                             tmp_path) == ([], ["new"])


async def _history(path: Path, rows: np.ndarray, start_ms: int) -> SQLiteStore:
    store = SQLiteStore(path, TABLE, retention_days=3650)
    await store.start()
    n = len(rows)
    sensor = np.tile([TABLE.index[s] for s in GROUP], n)
    ts = start_ms + np.repeat(np.arange(n), 3) * 1000
    await store.write(ReadingBatch.from_columns(sensor, ts, rows.ravel()))
    return store


async def test_fit_from_the_store_learns_the_history_it_is_given(tmp_path: Path) -> None:
    start = T0 - 2 * 3600 * 1000
    rows = unit_rows(3600, np.random.default_rng(4))
    store = await _history(tmp_path / "h.sqlite3", rows, start)
    group = GroupConfig(id="reactor-r101", sensors=list(GROUP))
    try:
        monitor, info = await fit_group(store, TABLE, group, start, start + 3600 * 1000)
        assert info["rows"] == 3600
        assert np.allclose(monitor.mean_, rows.mean(axis=0))
        with pytest.raises(ValueError, match="choose a longer period"):
            await fit_group(store, TABLE, group, start, start + 20_000)
    finally:
        await store.close()


def test_cli_fits_and_lists_a_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant_dir = tmp_path / "config"
    plant_dir.mkdir()
    (plant_dir / "plant.yaml").write_text(yaml.safe_dump(reactor_plant_data()))
    write(plant_dir / "mspc.yaml",
          "groups:\n  - id: reactor-r101\n    sensors: [TI-1, TI-2, PI-1]\n")
    db = tmp_path / "h.sqlite3"
    start = T0 - 2 * 3600 * 1000

    async def write_history() -> None:
        store = await _history(db, unit_rows(1200, np.random.default_rng(4)), start)
        await store.close()

    asyncio.run(write_history())
    monkeypatch.setenv("PLANTWATCH_PLANT", str(plant_dir / "plant.yaml"))
    monkeypatch.setenv("PLANTWATCH_STORE", "sqlite")
    monkeypatch.setenv("PLANTWATCH_SQLITE__PATH", str(db))
    monkeypatch.setenv("PLANTWATCH_SQLITE__RETENTION_DAYS", "3650")
    state = tmp_path / "state"
    runner = CliRunner()
    listed = runner.invoke(app, ["mspc", "list", "--state-dir", str(state)])
    assert listed.exit_code == 0, listed.output
    assert "not fitted" in listed.output
    fit = runner.invoke(app, ["mspc", "fit", "reactor-r101", "--start", str(start),
                              "--end", str(start + 1200 * 1000), "--state-dir", str(state)])
    assert fit.exit_code == 0, fit.output
    assert "fitted on 1200 rows of 3 sensors" in fit.output
    assert model_path(state, "reactor-r101").is_file()
    listed = runner.invoke(app, ["mspc", "list", "--state-dir", str(state)])
    assert "fitted (1200 rows" in listed.output
    unknown = runner.invoke(app, ["mspc", "fit", "nope", "--start", "-1h",
                                  "--state-dir", str(state)])
    assert unknown.exit_code == 2


def test_transitions_concat_keeps_mspc_after_univariate_parts() -> None:
    # the suite's transitions list univariate changes first, then the groups'
    suite = DetectorSuite(TABLE, groups=[fitted_model(on_delay_ms=0)])
    rows = incident(np.random.default_rng(7))
    suite.update(stream(rows[:601]))
    t: Transitions = suite.transitions
    assert t.condition[-1] == MSPC and t.active[-1]


async def test_the_live_pipeline_raises_and_journals_an_mspc_warning(tmp_path: Path) -> None:
    from tests.test_pipeline import Rig, until

    rig = Rig(tmp_path, plant=PLANT, groups=[fitted_model(on_delay_ms=5_000)])
    rows = incident(np.random.default_rng(7))[:660]
    now_s = int(time.time()) - len(rows)  # recent: inside the accepted age and skew
    async with rig.running():
        for k in range(0, len(rows), 60):  # a gateway message a minute, 3 sensors a second
            doc = {"readings": [
                {"sensor": s, "value": float(rows[i, j]), "ts": (now_s + i) * 1000}
                for i in range(k, min(k + 60, len(rows))) for j, s in enumerate(GROUP)]}
            rig.source.feed("plant/s1/gw", doc)
        await until(lambda: "TI-2:mspc:raise" in rig.announced, timeout_s=10)
    assert [a for a in rig.announced if a.endswith(":raise")] == ["TI-2:mspc:raise"]
    (event,) = rig.journal.load()
    assert event.limit == "mspc" and event.sensor == "TI-2"
    assert event.contributions is not None and max(
        event.contributions, key=lambda s: event.contributions[s]) == "TI-2"  # type: ignore[index]
    point = rig.alarms.manager.get("TI-2:mspc")
    assert point is not None and point.state == "unack" and point.category == "warning"


def test_the_sample_groups_fit_the_sample_plant() -> None:
    root = Path(__file__).resolve().parents[1]
    from model.plant import load_plant

    plant = load_plant(root / "config" / "plant.yaml")
    config = load_mspc_config(root / "config" / "mspc.yaml", plant)
    assert [g.id for g in config.groups] == ["rx-r101", "rx-cooling", "cp-k201"]
    # no models in a fresh state dir: every group is reported, none monitored
    assert load_group_models(config, root / "var" / "no-such-dir") == (
        [], ["rx-r101", "rx-cooling", "cp-k201"])


def test_a_standing_mspc_warning_restored_without_a_checkpoint_still_clears() -> None:
    # No checkpoint (first start after deleting it): the alarm journal says
    # TI-2:mspc is active, so the group starts active on TI-2 and clears normally.
    suite = DetectorSuite(TABLE, groups=[fitted_model()])
    suite.restore_active([("TI-2", "mspc"), ("LEL-1", "mspc")])  # LEL-1 is in no group
    assert suite.groups.active.tolist() == [True]
    suite.update(stream(unit_rows(120, np.random.default_rng(8), start_s=3000)))
    t = suite.transitions
    cleared = t.condition == MSPC
    assert cleared.sum() == 1 and not t.active[cleared][0]
    assert t.sensor[cleared][0] == TABLE.index["TI-2"]
