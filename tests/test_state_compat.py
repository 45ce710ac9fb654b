"""State written by the previous release (0.1.0) loads in this one.

``tests/data/state-0.1`` was written by 0.1.0 itself (its README says how);
``state-0.1-expected.json`` is what 0.1.0 read back from it. This release
starts a whole service on a copy and must read the same: every alarm point's
state, the hazards, the spooled readings under their sensor ids, the token.
New fields may appear; none of 0.1's may change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from alarms.audit import NOT_CHAINED
from plantwatch.cli.audit import verify_journal
from plantwatch.service import Service
from plantwatch.settings import load_settings
from tests.plants import PLANT_YAML

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "state-0.1-expected.json").read_text())
TOKEN = "pw_o0kO0zjN7P_uqyU4iEk3oBIdRao6LrF6_UcQ9yApb7Q"  # a viewer token of the fixture


def contains(new: Any, old: Any, where: str = "") -> list[str]:
    """Where ``new`` differs from ``old`` in what ``old`` has (new keys are allowed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k, v in old.items()
                for d in (contains(new[k], v, f"{where}.{k}") if k in new
                          else [f"{where}.{k}: missing"])]
    return [] if new == old else [f"{where}: {old!r} -> {new!r}"]


@pytest.fixture
def service(tmp_path: Path) -> Service:
    state = tmp_path / "state"
    shutil.copytree(DATA / "state-0.1", state)  # opening rewrites the old spool
    (state / "README.md").unlink()
    settings = load_settings(None, plant=PLANT_YAML, store="sqlite", state_dir=state,
                             sqlite={"path": state / "readings.sqlite3"})
    return Service(settings)


def test_alarm_points_and_hazards_of_0_1_load_unchanged(service: Service) -> None:
    points = service.alarms.manager.snapshot()["points"]
    assert set(points) == set(EXPECTED["points"])
    diffs = [d for k, v in EXPECTED["points"].items() for d in contains(points[k], v, k)]
    assert not diffs, diffs[:10]
    # the operator's acknowledgement and shelve of 0.1 are still there
    assert points["TF-A-LEL-02:trend"]["state"] == "ack"
    assert points["TF-A-LEL-03:trend"]["shelved"]["reason"] == "sensor being recalibrated"

    hazards = [h.to_dict(EXPECTED["now_ms"]) for h in service.alarms.hazards.list()]
    assert len(hazards) == len(EXPECTED["hazards"]) == 1
    assert not contains(hazards[0], EXPECTED["hazards"][0])
    assert hazards[0]["status"] == "assigned"


def test_the_spool_of_0_1_is_read_under_its_sensor_ids(service: Service) -> None:
    chunk = service.spool.peek()
    ids = service.table.ids
    got = [[ids[int(r)], int(t), float(v)] for r, t, v in
           zip(chunk.readings.sensor, chunk.readings.ts, chunk.readings.value, strict=True)]
    assert got == EXPECTED["spool"]
    assert chunk.refused == []


def test_the_token_of_0_1_still_verifies(service: Service) -> None:
    principal = service.tokens.verify(TOKEN)
    assert principal is not None
    assert (principal.name, principal.role) == (EXPECTED["token_name"], EXPECTED["token_role"])


def test_the_journal_of_0_1_verifies_as_written_before_the_chain(service: Service) -> None:
    report = verify_journal(service.settings.state_dir / "alarms.jsonl", "alarms")
    assert report is not None and report.ok
    assert report.not_chained > 0
    assert any(NOT_CHAINED in note for note in report.notes)


def test_every_metric_is_prefixed_and_the_alarm_gauges_read_the_state(service: Service) -> None:
    registry = service.metrics.registry
    names = {m.name for m in registry.collect()}
    assert all(n.startswith("plantwatch_") for n in names), sorted(
        n for n in names if not n.startswith("plantwatch_"))
    assert {"plantwatch_alarms_standing", "plantwatch_alarms_annunciated",
            "plantwatch_alarms_escalated", "plantwatch_posts_in_flood", "plantwatch_outbox_depth",
            "plantwatch_spool_bytes", "plantwatch_broker_connected", "plantwatch_store_up",
            "plantwatch_process_resident_memory_bytes"} <= names
    standing = service.alarms.manager.standing()
    total = sum(registry.get_sample_value("plantwatch_alarms_standing",
                                          {"priority": p, "state": s}) or 0
                for p in ("low", "medium", "high", "highest")
                for s in ("unack", "ack", "rtn_unack", "latched"))
    assert total == len(standing) == len(EXPECTED["points"])
    assert registry.get_sample_value("plantwatch_alarms_standing",
                                     {"priority": "low", "state": "ack"}) == 1  # 0.1's ack
