"""MSPC groups fitted on a scenario's lead-in, for ``plantwatch backtest --fit-mspc``.

An MSPC model describes one plant's normal operation; a scenario is its own
simulated plant (its seed sets every baseline), so a model fitted on the
service's history does not fit it. Every scenario opens with minutes of normal
operation before its first incident: the groups are fitted on those, with the
same code as ``plantwatch mspc fit`` (the readings go through the decoder into
a throwaway SQLite store, and :func:`~store.mspc_models.fit_group`
averages them over each group's ``fit_every_s``), so the backtest shows what
multivariate monitoring adds on that plant.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable
from pathlib import Path

from decoders.json_gateway import DecodeLimits
from decoders.registry import plant_decoders
from detectors.groups import GroupModel
from model.batch import BatchBuilder, ReadingBatch
from model.sensor_table import SensorTable
from offline.backtest import backtest_host
from store.mspc_models import MspcConfig, fit_group
from store.sqlite import SQLiteStore

__all__ = ["fit_groups_on_lead_in"]


def fit_groups_on_lead_in(
    table: SensorTable,
    config: MspcConfig,
    messages: Iterable[tuple[str, bytes, int]],
    start_ms: int,
    seconds: float,
    sparkplug: bool = False,
) -> list[GroupModel]:
    """Fit every configured group on the readings published in ``[start_ms, start_ms + seconds)``.

    The lead-in must be normal operation: whatever it holds is what "normal"
    will mean. Raises :class:`ValueError` (from ``fit_group``) naming the group
    when the lead-in is too short for it.
    """
    end_ms = start_ms + round(seconds * 1000)
    limits = DecodeLimits()
    decoders = plant_decoders(table.by_site(), table.index, limits,
                              backtest_host(table, limits) if sparkplug else None)
    builder, backfill = BatchBuilder(), BatchBuilder()
    for topic, payload, publish_ms in messages:
        if publish_ms >= end_ms:
            break
        decoders.decode(topic, payload, publish_ms, builder, backfill)
    return asyncio.run(_fit(table, config, builder.build(), start_ms, end_ms))


async def _fit(table: SensorTable, config: MspcConfig, batch: ReadingBatch,
               start_ms: int, end_ms: int) -> list[GroupModel]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="plantwatch-lead-in-") as tmp:
        store = SQLiteStore(Path(tmp) / "lead-in.sqlite", table)
        await store.start()
        try:
            await store.write(batch)
            models = []
            for group in config.groups:
                monitor, fitted = await fit_group(store, table, group, start_ms, end_ms)
                models.append(group.decided(monitor, fitted))
            return models
        finally:
            await store.close()
