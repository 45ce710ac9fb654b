"""``plantwatch token``: create, rotate, list and revoke the API tokens of
operators, engineers, admins and viewers (stored hashed, in the service's
state directory unless the settings name a tokens file).

A token expires (``--expires-in``, 90 days unless told; ``never`` only for a
viewer, e.g. a wall display) and may be limited to workshops and posts of the
plant (``--workshop``, ``--post``, checked against the plant config). A name
the plant has in more than one place (a workshop id two sites use, a post id
two workshops use) is refused: give it qualified, ``SITE/WORKSHOP`` or
``SITE/WORKSHOP/POST``. Its
secret is printed once, by ``create`` or ``rotate``, to stdout alone, so it can
be piped into a secret store; nothing else ever shows it.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from api.auth import DEFAULT_GRACE_MS, DEFAULT_LIFETIME_MS, Role, fmt_utc
from api.scopes import check_scope
from api.timeparse import TimeParamError, parse_duration_ms
from plantwatch.cli.common import console, load_plant_or_exit, token_store
from plantwatch.cli.options import SettingsOption, StateDirOption, settings_with_state_dir
from plantwatch.cli.root import app

__all__ = ["parse_expiry", "token_app", "token_summary"]

token_app = typer.Typer(
    help="API tokens (stored hashed) for operators, engineers, admins and viewers.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")

ExpiresOption = Annotated[
    str | None,
    typer.Option("--expires-in", help="lifetime: 12h, 30d, 90d ... or `never` (viewer only); "
                 "default 90d (rotate: the token's own lifetime)"),
]


def parse_expiry(text: str) -> int | None:
    """``--expires-in``: a duration in ms, or None for ``never``."""
    if text.strip().lower() == "never":
        return None
    try:
        return parse_duration_ms(text.strip(), param="--expires-in", min_ms=60_000)
    except TimeParamError as exc:
        raise ValueError(f"{exc}; e.g. --expires-in 90d, 12h, or never (viewer tokens)") from exc


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(2)


@token_app.command("create")
def token_create(
    name: Annotated[str | None, typer.Argument(
        help="who holds it (shown in the audit trail)", show_default=False)] = None,
    role: Annotated[Role, typer.Option(help="viewer < operator < engineer < admin")] = "operator",
    expires_in: ExpiresOption = None,
    workshop: Annotated[list[str] | None, typer.Option(
        "--workshop", help="limit to this workshop (repeatable); SITE/WORKSHOP when "
                           "two sites have one of that name")] = None,
    post: Annotated[list[str] | None, typer.Option(
        "--post", help="limit to this post (repeatable); SITE/WORKSHOP/POST when "
                       "two workshops have one of that name")] = None,
    name_option: Annotated[str | None, typer.Option("--name", hidden=True)] = None,
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash.

    Without --workshop or --post it covers the whole plant.
    """
    holder = name or name_option  # --name NAME: the spelling of the previous release
    if not holder:
        raise _fail(ValueError("give the token's NAME: plantwatch token create NAME --role R"))
    settings = settings_with_state_dir(settings_file, state_dir)
    try:
        lifetime = DEFAULT_LIFETIME_MS if expires_in is None else parse_expiry(expires_in)
        scope = None
        if workshop or post:
            scope = check_scope(load_plant_or_exit(settings.plant), workshop or [], post or [])
        token = token_store(settings).create(holder, role, _now_ms(), lifetime_ms=lifetime,
                                             scope=scope)
    except ValueError as exc:
        raise _fail(exc) from exc
    row = next(r for r in token_store(settings).list() if r["name"] == holder)
    console.print(f"token for [bold]{holder}[/bold] ({role}, {_scope_text(row)}, "
                  f"{_expiry_text(row)}); it is not shown again:")
    typer.echo(token.get_secret_value())


@token_app.command("rotate")
def token_rotate(
    name: str,
    grace: Annotated[str, typer.Option(
        help="how long the old secret keeps working (0: not at all; use 0 if it may "
             "have leaked)")] = f"{DEFAULT_GRACE_MS // 60_000}m",
    expires_in: ExpiresOption = None,
    settings_file: SettingsOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Give a token a new secret with the same role and scope; printed once."""
    settings = settings_with_state_dir(settings_file, state_dir)
    try:
        grace_ms = 0 if grace.strip() == "0" else parse_duration_ms(grace.strip(),
                                                                    param="--grace")
        token = token_store(settings).rotate(
            name, _now_ms(), grace_ms=grace_ms,
            lifetime_ms="same" if expires_in is None else parse_expiry(expires_in))
    except (ValueError, TimeParamError) as exc:
        raise _fail(exc) from exc
    row = next(r for r in token_store(settings).list() if r["name"] == name)
    old = ("the old secret no longer works" if row["grace_until_ts"] is None
           else f"the old secret works until {fmt_utc(row['grace_until_ts'])}")
    console.print(f"new secret for [bold]{name}[/bold] ({_expiry_text(row)}; {old}); "
                  "it is not shown again:")
    typer.echo(token.get_secret_value())


def _expiry_text(row: dict[str, object]) -> str:
    expires = row["expires_ts"]
    if not isinstance(expires, int):
        return "never expires"
    return f"{'expired' if row['expired'] else 'expires'} {fmt_utc(expires)}"


def _scope_text(row: dict[str, object]) -> str:
    parts = []
    for key in ("workshops", "posts"):
        names = row[key]
        if isinstance(names, list) and names:
            parts.append(f"{key} {','.join(names)}")
    return "; ".join(parts) or "whole plant"


def token_summary(row: dict[str, object]) -> str:
    """``li operator expires 2024-08-01T10:00:00Z (workshops tank-farm)``: one
    token of :meth:`~api.auth.TokenStore.list`, for people."""
    return f"{row['name']} {row['role']} {_expiry_text(row)} ({_scope_text(row)})"


@token_app.command("list")
def token_list(settings_file: SettingsOption = None, state_dir: StateDirOption = None) -> None:
    """Name, role, expiry and scope of each token (never the tokens); a token that
    never expires, or is in a rotation's grace period, is flagged."""
    rows = token_store(settings_with_state_dir(settings_file, state_dir)).list(_now_ms())
    for row in rows:
        fields = [str(row["name"]), str(row["role"]), f"created {fmt_utc(int(row['created_ts']))}",
                  _expiry_text(row), _scope_text(row)]
        if row["grace_until_ts"] is not None:
            fields.append(f"old secret valid until {fmt_utc(int(row['grace_until_ts']))}")
        if row["flag"]:
            fields.append(f"! {row['flag']}")
        typer.echo("\t".join(fields))


@token_app.command("revoke")
def token_revoke(
    name: str, settings_file: SettingsOption = None, state_dir: StateDirOption = None
) -> None:
    """Revoke a token by its holder's name (its secret in a grace period too)."""
    if not token_store(settings_with_state_dir(settings_file, state_dir)).revoke(name):
        console.print(f"[red]no token named {name!r}[/red] (plantwatch token list shows them)")
        raise typer.Exit(1)
    console.print(f"revoked {name}")
