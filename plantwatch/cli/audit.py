"""``plantwatch audit verify``: check the hash chain of the alarm and hazard journals.

Walks every segment of ``alarms.jsonl`` and ``hazards.jsonl`` in the state
directory, oldest first, and checks each record's link (:mod:`alarms.audit`)
and the hash the compaction snapshot recorded. Exit code 0 when intact, 1 at
the first broken link (named: segment file, line, record number, what was
expected), 2 when there is no journal to check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alarms.audit import VerifyReport, verify
from alarms.compaction import read_snapshot, snapshot_path
from alarms.segments import segment_files
from plantwatch.cli.common import console
from plantwatch.cli.options import SettingsOption, settings_with_state_dir
from plantwatch.cli.root import app

__all__ = ["audit_app", "verify_journal"]

audit_app = typer.Typer(
    help="The tamper-evident audit trail: hash-chained alarm and hazard journals.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")

JOURNALS = (("alarms.jsonl", "alarm journal", "journal"),
            ("hazards.jsonl", "hazard journal", "hazard_journal"))


def verify_journal(path: Path, snapshot_key: str) -> VerifyReport | None:
    """The chain check of the journal whose open segment is ``path``; None if it has
    no segment at all. The snapshot's recorded hash is checked too."""
    segments = segment_files(path)
    if not segments:
        return None
    marks: dict[int, str] = {}
    try:
        saved = read_snapshot(snapshot_path(path.with_name("alarms.jsonl")))
    except ValueError:
        saved = None
    position = saved.get(snapshot_key) if saved else None
    if isinstance(position, dict) and int(position.get("seq", 0)) > 0:
        marks[int(position["seq"])] = str(position["hash"])
    return verify(segments, marks)


@audit_app.command("verify")
def audit_verify(
    state_dir: Annotated[
        Path | None,
        typer.Option(help="the service's state directory (default from settings: var)"),
    ] = None,
    settings_file: SettingsOption = None,
) -> None:
    """Check every journal segment's hash chain; exit 1 at the first broken link."""
    if state_dir is None:
        state_dir = settings_with_state_dir(settings_file, None).state_dir
    broken = False
    found = False
    for name, what, key in JOURNALS:
        report = verify_journal(state_dir / name, key)
        if report is None:
            continue
        found = True
        line = (f"{what}: {report.checked} records checked in {report.segments} "
                f"segment{'s' if report.segments != 1 else ''}")
        if report.broken is None:
            console.print(f"[green]intact[/green] {line}")
        else:
            broken = True
            console.print(f"[red]BROKEN[/red] {line}; first broken link: "
                          f"{report.broken.describe()}", soft_wrap=True)
        for note in report.notes:
            console.print(f"  note: {note}", soft_wrap=True)
    if not found:
        console.print(f"[red]no alarm or hazard journal in {state_dir}[/red] "
                      "(give the service's --state-dir)")
        raise typer.Exit(2)
    if broken:
        raise typer.Exit(1)
