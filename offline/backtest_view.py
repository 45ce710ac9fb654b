"""A backtest report as a table: per incident, when plantwatch warned and alarmed."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from offline.backtest import BacktestReport

__all__ = ["backtest_table"]


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def backtest_table(report: BacktestReport) -> Group:
    table = Table(title=f"Backtest: {report.scenario}")
    for col in ("incident", "kind", "detected", "limit crossed s", "first warning s",
                "first alarm s", "lead time s"):
        table.add_column(col)
    for i in report.incidents:
        lead = Text(_s(i.lead_time_s),
                    style="green" if (i.lead_time_s or 0) >= 60 else "yellow")
        table.add_row(i.id, i.kind, Text("yes" if i.detected else "MISSED",
                                         style="green" if i.detected else "bold red"),
                      _s(i.limit_crossing_s), _s(i.first_warning_s), _s(i.first_alarm_s), lead)
    per_day = report.false_alarms / report.sensor_days if report.sensor_days else 0.0
    summary = Text(
        f"{report.readings:,} readings ({report.rejected} rejected) · false alarms "
        f"{report.false_alarms} · false warnings {report.false_warnings} · "
        f"{report.sensor_days:.2f} sensor-days ({per_day:.4f} false alarms per sensor-day) · "
        f"sensor faults raised {report.faults}")
    return Group(table, summary)
