"""An alarm KPI report as a table, for the terminal (``plantwatch kpi``) and the safety report.

Takes the JSON of ``GET /api/v1/kpi`` (:meth:`alarms.kpi.KpiReport.to_dict`)
and lays each metric beside its EEMUA 191 / ISA-18.2 target, so a safety
manager reads it the way the standards present it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

__all__ = ["kpi_tables"]

_STATUS_STYLE = {"ok": "green", "manageable": "yellow", "over": "bold red"}


def _ts(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _metric_row(table: Table, name: str, metric: dict[str, Any], fmt: str = "{:.2f}",
                note: str = "") -> None:
    status = str(metric.get("status", ""))
    target = fmt.format(metric["acceptable"])
    if metric.get("maximum") not in (None, metric["acceptable"]):
        target += f" (max {fmt.format(metric['maximum'])})"
    table.add_row(name, fmt.format(metric["value"]), target,
                  Text(status, style=_STATUS_STYLE.get(status, "")), note)


def kpi_tables(report: dict[str, Any]) -> Group:
    """Rich renderables for one KPI report."""
    counts = report["counts"]
    head = Text(
        f"scope {report.get('scope', '?')} · posts {', '.join(report['posts'])}\n"
        f"{_ts(report['start_ts'])} → {_ts(report['end_ts'])} · alarms {counts['alarms']} "
        f"(flood-held {counts['flood_held']}) · warnings {counts['warnings']} · "
        f"not annunciated {counts['not_annunciated']}")
    main = Table(title="Alarm KPIs per post (EEMUA 191 / ISA-18.2)")
    for col in ("metric", "value", "target", "status", "note"):
        main.add_column(col)
    rates = report["rates"]["per_post"]
    _metric_row(main, "alarms per 10 min", rates["per_10min"])
    _metric_row(main, "alarms per hour", rates["per_hour"])
    _metric_row(main, "alarms per day", rates["per_day"], "{:.1f}")
    peak = report["peak_10min"]
    _metric_row(main, "peak 10-min count", peak, "{:.0f}",
                f"post {peak.get('post') or '–'} at {_ts(peak.get('window_start_ts'))}")
    flood = dict(report["flood_time"])
    flood = {**flood, "value": 100 * flood["value"], "acceptable": 100 * flood["acceptable"],
             "maximum": 100 * flood["maximum"] if flood.get("maximum") is not None else None}
    _metric_row(main, "% of time in flood", flood, "{:.2f}")
    top = dict(report["top10"]["share"])
    top = {**top, "value": 100 * top["value"], "acceptable": 100 * top["acceptable"],
           "maximum": 100 * top["maximum"] if top.get("maximum") is not None else None}
    _metric_row(main, "top-10 share of alarms %", top, "{:.1f}")
    _metric_row(main, "stale alarms", report["stale"]["count"], "{:.0f}")

    mix = Table(title="Priority mix")
    for col in ("priority", "count", "share %", "target %"):
        mix.add_column(col)
    for priority, row in report["priority_mix"].items():
        target = row.get("target")
        mix.add_row(priority, str(row["count"]), f"{100 * row['value']:.1f}",
                    "–" if target is None else f"{100 * target:.0f}")

    top10 = Table(title="Top alarms")
    for col in ("alarm", "count", "share %"):
        top10.add_column(col)
    for a in report["top10"]["alarms"]:
        top10.add_row(a["alarm_id"], str(a["count"]), f"{100 * a['share']:.1f}")

    nuisance = Table(title="Nuisance alarms")
    for col in ("kind", "alarm", "detail"):
        nuisance.add_column(col)
    for c in report["chattering"]:
        nuisance.add_row("chattering", c["alarm_id"], f"{c['max_count']} raises in 60 s")
    for f in report["fleeting"]:
        nuisance.add_row("fleeting", f["alarm_id"], f"{f['count']} times")
    for s in report["stale"]["alarms"]:
        nuisance.add_row("stale", s["alarm_id"], f"active {s['active_ms'] / 3_600_000:.1f} h")
    parts: list[Any] = [head, main, mix, top10]
    if nuisance.row_count:
        parts.append(nuisance)
    return Group(*parts)
