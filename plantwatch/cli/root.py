"""The root ``plantwatch`` Typer app, on which every command module registers
its command, and the callback that runs before any command."""

from __future__ import annotations

import typer

from plantwatch.allocator import keep_freed_memory

__all__ = ["app"]

app = typer.Typer(
    help="plantwatch: watches a plant's safety sensors and warns before an incident.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _every_command() -> None:
    """Before any command: the detectors' batch temporaries reuse freed memory
    instead of faulting it in again (plantwatch.allocator: 15–40 % of the
    suite's time at 10,000 sensors)."""
    keep_freed_memory()
