"""MSPC groups: which sensors are monitored together (``config/mspc.yaml``),
fitting their models from the store's history, and the fitted models on disk.

An engineer picks a period of normal operation and fits each group once::

    plantwatch mspc fit reactor-r101 --start 2026-11-20T00:00:00Z --end 2026-11-21T00:00:00Z

The model goes to ``<state_dir>/mspc/<group>.npz``; ``plantwatch run`` loads
every group that has one and monitors it live (:mod:`detectors.groups`). A
group without a model is not monitored, and the service says so at start.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.groups import GroupModel
from detectors.mspc import PcaMonitor
from model.plant import ConfigError, PlantConfig, key_path, read_yaml
from model.sensor_table import SensorTable
from store.base import ReadingStore

__all__ = [
    "GroupConfig",
    "MspcConfig",
    "MspcGroups",
    "fit_group",
    "load_group_models",
    "load_mspc_config",
    "model_path",
    "model_size",
    "save_group_model",
]

log = logging.getLogger(__name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GroupConfig(BaseModel):
    """One group: its sensors and how its MSPC index is decided."""

    model_config = ConfigDict(extra="forbid")

    id: str
    sensors: list[str] = Field(min_length=2)
    # False-alarm probability per reading of each control limit (T², SPE);
    # 0.001 with a 30 s on-delay keeps a steady unit quiet.
    alpha: float = Field(0.001, gt=0, lt=0.5)
    explained_variance: float = Field(0.90, gt=0, le=1)
    # < 1: MEWMA smoothing, for small persistent shifts (detectors/mspc.py).
    ewma_lambda: float = Field(1.0, gt=0, le=1)
    on_delay_s: float = Field(30.0, ge=0)
    off_delay_s: float = Field(60.0, ge=0)
    clear_below: float = Field(0.8, gt=0, le=1)
    # Resolution the history is aligned at for fitting: the gateways'
    # reporting period, so the model sees the noise the live readings have.
    fit_every_s: float = Field(1.0, gt=0)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"group id {value!r} must be letters, digits, '_', '.' or '-'")
        return value

    def decided(self, monitor: PcaMonitor, fitted: dict[str, object]) -> GroupModel:
        return GroupModel(
            id=self.id, sensors=tuple(self.sensors), monitor=monitor,
            on_delay_ms=round(self.on_delay_s * 1000), off_delay_ms=round(self.off_delay_s * 1000),
            clear_below=self.clear_below, fitted=fitted,
        )


class MspcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[GroupConfig] = []

    def group(self, group_id: str) -> GroupConfig:
        for g in self.groups:
            if g.id == group_id:
                return g
        known = ", ".join(g.id for g in self.groups) or "none"
        raise KeyError(f"no MSPC group {group_id!r} (configured: {known})")


def load_mspc_config(path: str | Path | None, plant: PlantConfig) -> MspcConfig:
    """Read and check ``config/mspc.yaml`` against the plant; ``None``: no groups."""
    if path is None:
        return MspcConfig()
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        return MspcConfig()
    try:
        config = MspcConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [f"{key_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                                 for e in exc.errors()]) from exc
    known = {place.sensor.id for place in plant.places()}
    problems: list[str] = []
    owner: dict[str, str] = {}
    seen: set[str] = set()
    for i, group in enumerate(config.groups):
        if group.id in seen:
            problems.append(f"groups[{i}].id: group {group.id!r} is defined twice")
        seen.add(group.id)
        for j, sensor in enumerate(group.sensors):
            where = f"groups[{i}].sensors[{j}]"
            if sensor not in known:
                problems.append(f"{where}: sensor {sensor!r} is not in the plant config")
            elif sensor in owner:
                problems.append(f"{where}: sensor {sensor!r} is already in group "
                                f"{owner[sensor]!r}; a sensor may belong to one group only")
            else:
                owner[sensor] = group.id
    if problems:
        raise ConfigError(path, problems)
    return config


def model_path(state_dir: Path, group_id: str) -> Path:
    return state_dir / "mspc" / f"{group_id}.npz"


def save_group_model(path: Path, group: GroupConfig, monitor: PcaMonitor,
                     fitted: dict[str, Any]) -> None:  # fmt: skip
    """Write the fitted model with the sensors it was fitted on (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    arrays: dict[str, Any] = {
        "__sensors__": np.array(group.sensors, dtype=np.str_),
        "__fitted__": np.array(repr(sorted(fitted.items()))),
        **monitor.to_arrays(),
    }
    np.savez(tmp, **arrays)
    tmp.replace(path)


MspcGroups = tuple[list[GroupModel], list[str]]
"""The fitted groups, and the ids of the configured groups that have no model."""


def model_size(path: Path) -> tuple[int, int] | None:
    """``(rows, components)`` the saved model at ``path`` was fitted with; None: no model."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return int(data["n_samples_"]), int(data["n_components_"])


def load_group_models(config: MspcConfig, state_dir: Path) -> MspcGroups:
    """The configured groups that have a model, and the ids of those that have none.

    A model fitted on other sensors than the group now lists raises
    :class:`ValueError` naming both lists and the fix.
    """
    models: list[GroupModel] = []
    missing: list[str] = []
    for group in config.groups:
        path = model_path(state_dir, group.id)
        if not path.is_file():
            missing.append(group.id)
            continue
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        sensors = [str(s) for s in arrays.pop("__sensors__").tolist()]
        fitted_text = str(arrays.pop("__fitted__", ""))
        if sensors != group.sensors:
            raise ValueError(
                f"MSPC model {path} was fitted on sensors {sensors}, but group {group.id!r} "
                f"now lists {group.sensors}: refit it (plantwatch mspc fit {group.id} "
                "--start ... --end ...)"
            )
        models.append(group.decided(PcaMonitor.from_arrays(arrays), {"from": fitted_text}))
    return models, missing


async def fit_group(store: ReadingStore, table: SensorTable, group: GroupConfig,
                    start_ms: int, end_ms: int) -> tuple[PcaMonitor, dict[str, Any]]:  # fmt: skip
    """Fit the group's monitor on its history in ``[start_ms, end_ms)``.

    Each sensor's readings are averaged over ``fit_every_s`` intervals; only
    intervals where every sensor of the group has a value are used. The period
    must be normal operation: whatever it holds is what "normal" will mean.
    """
    if end_ms <= start_ms:
        raise ValueError(f"end ({end_ms}) is not after start ({start_ms})")
    every_ms = max(1, round(group.fit_every_s * 1000))
    expected = (end_ms - start_ms) // every_ms + 1
    columns: list[dict[int, float]] = []
    for sensor in group.sensors:
        points = await store.query_readings(table.index[sensor], start_ms, end_ms, every_ms,
                                            limit=expected + 1)
        columns.append({p.ts: float(p.value) for p in points
                        if p.value is not None and np.isfinite(p.value)})
    common = sorted(set.intersection(*(set(c) for c in columns)))
    rows = np.array([[c[t] for c in columns] for t in common], np.float64).reshape(
        len(common), len(columns))
    p = len(group.sensors)
    if len(rows) < 10 * p:
        counts = ", ".join(f"{s}: {len(c)}" for s, c in zip(group.sensors, columns, strict=True))
        raise ValueError(
            f"group {group.id!r}: only {len(rows)} intervals of {group.fit_every_s:g} s have "
            f"readings of all {p} sensors between {start_ms} and {end_ms} ({counts}); at "
            f"least {10 * p} are needed: choose a longer period of normal operation"
        )
    monitor = PcaMonitor(explained_variance=group.explained_variance, alpha=group.alpha,
                         ewma_lambda=group.ewma_lambda).fit(rows)
    info = {"start_ms": start_ms, "end_ms": end_ms, "rows": len(rows),
            "every_s": group.fit_every_s, "components": monitor.n_components_}
    return monitor, info
