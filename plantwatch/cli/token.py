"""``plantwatch token``: create, list and revoke the API tokens of operators,
engineers and admins (stored hashed, in the service's state directory unless
the settings name a tokens file)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from api.auth import Role
from plantwatch.cli.common import console, token_store
from plantwatch.cli.options import SettingsOption, StateDirOption, settings_with_state_dir
from plantwatch.cli.root import app

__all__ = ["token_app"]

token_app = typer.Typer(
    help="API tokens (stored hashed) for operators, engineers and admins.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who holds it (shown in the audit trail)")],
    role: Annotated[
        Role, typer.Option(help="viewer < operator < engineer < admin")
    ] = "operator",
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    store = token_store(settings_with_state_dir(settings_file, state_dir))
    try:
        token = store.create(name, role, int(time.time() * 1000))
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"token for [bold]{name}[/bold] ({role}); it is not shown again:")
    typer.echo(token)


@token_app.command("list")
def token_list(settings_file: SettingsOption = None, state_dir: StateDirOption = None) -> None:
    """Names and roles of the tokens (never the tokens)."""
    for row in token_store(settings_with_state_dir(settings_file, state_dir)).list():
        typer.echo(f"{row['name']}\t{row['role']}\tcreated {row['created_ts']}")


@token_app.command("revoke")
def token_revoke(
    name: str, settings_file: SettingsOption = None, state_dir: StateDirOption = None
) -> None:
    """Revoke a token by its holder's name."""
    if not token_store(settings_with_state_dir(settings_file, state_dir)).revoke(name):
        console.print(f"[red]no token named {name!r}[/red] (plantwatch token list shows them)")
        raise typer.Exit(1)
    console.print(f"revoked {name}")
