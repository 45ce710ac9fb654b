"""``plantwatch kpi``: ask a running service for the alarm KPIs of a scope
and show them beside the EEMUA 191 / ISA-18.2 targets."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.console import Console

from plantwatch.cli.common import console
from plantwatch.cli.root import app

__all__ = ["kpi"]


@app.command()
def kpi(
    api: Annotated[str, typer.Option(help="the running service's API")] = (
        "http://127.0.0.1:8000"),
    scope: Annotated[
        str, typer.Option(help="post:<id>, team:<id>, workshop:<id> or enterprise")
    ] = "enterprise",
    start: Annotated[str, typer.Option(help="ISO-8601, epoch ms or -24h")] = "-24h",
    end: Annotated[str, typer.Option(help="ISO-8601, epoch ms or now")] = "now",
    as_json: Annotated[bool, typer.Option("--json", help="print the raw JSON")] = False,
) -> None:
    """Alarm KPIs of a scope beside the EEMUA 191 / ISA-18.2 targets."""
    import httpx

    from offline.kpi_report import kpi_tables

    try:
        response = httpx.get(f"{api.rstrip('/')}/api/v1/kpi",
                             params={"scope": scope, "start": start, "end": end}, timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {api}: {exc}[/red] (is `plantwatch run` up?)")
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode())
    else:
        Console().print(kpi_tables(response.json()))
