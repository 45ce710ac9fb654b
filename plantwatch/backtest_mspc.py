"""MSPC groups fitted on a scenario's lead-in, for ``plantwatch backtest --fit-mspc``.

An MSPC model describes one plant's normal operation; a scenario is its own
simulated plant (its seed sets every baseline), so a model fitted on the
service's history does not fit it. Every scenario opens with minutes of normal
operation before its first incident: the groups are fitted on those, with the
same code as ``plantwatch mspc fit`` (the readings go through the decoder into
a throwaway SQLite store, and :func:`~plantwatch.mspc_models.fit_group`
averages them over each group's ``fit_every_s``), so the backtest shows what
multivariate monitoring adds on that plant.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable
from pathlib import Path

from detectors.batch import BatchBuilder, ReadingBatch
from detectors.groups import GroupModel
from detectors.sensor_table import SensorTable
from ingest.decode_json import DecodeLimits
from ingest.sqlite_store import SQLiteStore
from plantwatch.backtest import Decode, gateway_decoder
from plantwatch.mspc_models import MspcConfig, fit_group

__all__ = ["fit_groups_on_lead_in"]


def fit_groups_on_lead_in(
    table: SensorTable,
    config: MspcConfig,
    messages: Iterable[tuple[str, bytes, int]],
    start_ms: int,
    seconds: float,
    decode: Decode | None = None,
) -> list[GroupModel]:
    """Fit every configured group on the readings published in ``[start_ms, start_ms + seconds)``.

    The lead-in must be normal operation: whatever it holds is what "normal"
    will mean. Raises :class:`ValueError` (from ``fit_group``) naming the group
    when the lead-in is too short for it.
    """
    end_ms = start_ms + round(seconds * 1000)
    decode = decode or gateway_decoder(table, DecodeLimits())
    builder = BatchBuilder()
    for topic, payload, publish_ms in messages:
        if publish_ms >= end_ms:
            break
        decode(topic, payload, publish_ms, builder)
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
