"""API tokens and roles: who may call the API, what they may do, and where.

Roles are ranked ``viewer < operator < engineer < admin``; a route asks for a
minimum role with :func:`require_role`, and clients send
``Authorization: Bearer <token>``.

A token also has an **expiry** and a **scope**:

* It expires ``--expires-in`` after it is made (90 days unless told); an
  expired token gets a 401 saying so and how to get a new one. Only a viewer
  token may be made with no expiry (``--expires-in never``, for a wall display
  that nobody signs in to): a token that can change alarm state must run out.
  Tokens from the release before expiry existed have none; they still work and
  ``plantwatch token list`` flags them until they are rotated.
* Its scope is a set of workshops and posts (:class:`TokenScope`); empty means
  the whole plant. :mod:`api.scopes` turns a scope into the areas, posts and
  sensors it covers.

``plantwatch token rotate NAME`` gives a token a new secret with the same role
and scope (and a fresh expiry of the same length); the old secret keeps working
for a grace period (1 h unless told, ``--grace 0`` for none: use that when a
token may have leaked) so a display can be updated without a gap.

Tokens live in a JSON file (:class:`TokenStore`) that holds only their SHA-256:
a copied file or backup does not hand out working tokens. The CLI and the
running service share that file; the service notices the CLI's writes by the
file's identity (mtime, inode, size), so a new, rotated or revoked token counts
at the next request, without a restart. A token's plaintext is a
:class:`pydantic.SecretStr` in this process: it shows as ``**********`` in
logs and reprs, and is handed out once, by ``create`` and ``rotate``.
"""

from __future__ import annotations

# The future import is safe for FastAPI here: it evaluates the dependency's
# string annotations in this module's globals, so everything they name
# (HTTPAuthorizationCredentials, Depends, _BEARER) must stay module-level.
import builtins
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from alarms.jsonl import sync_dir

__all__ = [
    "DEFAULT_GRACE_MS",
    "DEFAULT_LIFETIME_MS",
    "ROLES",
    "ROLE_RANK",
    "TOKEN_PREFIX",
    "Expired",
    "Principal",
    "Role",
    "TokenScope",
    "TokenStore",
    "fmt_utc",
    "optional_reader",
    "require_role",
    "role_at_least",
    "stream_guard",
]

Role = Literal["viewer", "operator", "engineer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_RANK: dict[Role, int] = {role: rank for rank, role in enumerate(ROLES)}
# A recognisable prefix lets secret scanners and people spot a leaked token.
TOKEN_PREFIX = "pw_"
DEFAULT_LIFETIME_MS = 90 * 86_400_000
DEFAULT_GRACE_MS = 3_600_000
# Only a viewer token may never expire: it can read, never act.
NEVER_EXPIRING_ROLES: frozenset[Role] = frozenset({"viewer"})
_FILE_VERSION = 2


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt_utc(ms: int) -> str:
    """``2024-05-01T10:00:00Z``: how token times are shown to people."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def role_at_least(role: Role, minimum: Role) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


def _check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def _secret(token: SecretStr | str) -> str:
    return token.get_secret_value() if isinstance(token, SecretStr) else token


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenScope:
    """Where a token may read and act: these workshops and these posts (either
    one admits an area). Both empty: the whole plant."""

    workshops: frozenset[str] = frozenset()
    posts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, workshops: Iterable[str] = (), posts: Iterable[str] = ()) -> TokenScope:
        return cls(frozenset(workshops), frozenset(posts))

    @property
    def plant_wide(self) -> bool:
        return not self.workshops and not self.posts

    def describe(self) -> str:
        """``workshops tank-farm; posts rx-board``, or ``the whole plant``."""
        if self.plant_wide:
            return "the whole plant"
        parts = []
        if self.workshops:
            parts.append("workshops " + ", ".join(sorted(self.workshops)))
        if self.posts:
            parts.append("posts " + ", ".join(sorted(self.posts)))
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a token stands for; what a protected route receives."""

    name: str
    role: Role
    scope: TokenScope = field(default_factory=TokenScope)


@dataclass(frozen=True, slots=True)
class Expired:
    """A token that was valid and has run out: the 401 says which and since when."""

    name: str
    expired_ts: int


class _TokenRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    role: Role
    created_ts: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Absent in files of the release before expiry and scopes (version 1):
    # such a token never expires and covers the whole plant.
    expires_ts: int | None = None
    workshops: list[str] = []
    posts: list[str] = []
    # The secret a rotation replaced, valid until previous_until_ts.
    previous_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    previous_until_ts: int | None = None

    @property
    def scope(self) -> TokenScope:
        return TokenScope.of(self.workshops, self.posts)

    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.scope)


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1, 2]
    tokens: list[_TokenRecord]


_FileId = tuple[int, int, int]  # (st_mtime_ns, st_ino, st_size)


def _lifetime(role: Role, lifetime_ms: int | None) -> int | None:
    if lifetime_ms is None:
        if role not in NEVER_EXPIRING_ROLES:
            raise ValueError(
                f"a {role} token must expire (only viewer tokens may be made with "
                "`--expires-in never`); give --expires-in, e.g. 90d"
            )
        return None
    if lifetime_ms <= 0:
        raise ValueError(f"expiry {lifetime_ms} ms must be positive; give e.g. --expires-in 90d")
    return lifetime_ms


class TokenStore:
    """API tokens in a JSON file, by SHA-256, shared with the CLI.

    A missing file is an empty store; the first :meth:`create` writes it, with
    mode 0600. Writes replace the file atomically, so a reader never sees half
    of one. There is no lock between writers: two token commands run at the
    same instant may lose one of their changes. A file of the previous release
    (version 1) loads as it is; the next write saves it as version 2.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, _TokenRecord] = {}  # by name
        self._by_hash: dict[str, _TokenRecord] = {}
        self._by_previous_hash: dict[str, _TokenRecord] = {}
        self._file_id: _FileId | None = None
        self._refresh()  # a corrupt file fails at start-up, not at the first request

    def create(
        self,
        name: str,
        role: str,
        now_ms: int,
        *,
        lifetime_ms: int | None = DEFAULT_LIFETIME_MS,
        scope: TokenScope | None = None,
    ) -> SecretStr:
        """Add a token; return its plaintext, which is never stored and so shown only now.

        ``lifetime_ms`` None means it never expires (viewer tokens only).
        ``scope`` should already be checked against the plant
        (:func:`api.scopes.check_scope`); None is the whole plant.
        """
        checked = _check_role(role)
        if not name or name != name.strip():
            raise ValueError(f"token name {name!r} must be non-empty without surrounding spaces")
        lifetime = _lifetime(checked, lifetime_ms)
        self._refresh()
        if name in self._records:
            raise ValueError(
                f"a token named {name!r} already exists in {self.path}; choose another name, "
                f"give it a new secret with `plantwatch token rotate {name}`, or replace it: "
                f"`plantwatch token revoke {name}`, then create it again"
            )
        scope = scope or TokenScope()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = _TokenRecord(
            name=name, role=checked, created_ts=now_ms, sha256=_sha256(token),
            expires_ts=None if lifetime is None else now_ms + lifetime,
            workshops=sorted(scope.workshops), posts=sorted(scope.posts),
        )
        self._write({**self._records, name: record})
        return SecretStr(token)

    def rotate(
        self,
        name: str,
        now_ms: int,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        lifetime_ms: int | Literal["same"] | None = "same",
    ) -> SecretStr:
        """Give ``name`` a new secret with the same role and scope; return it (shown once).

        The old secret stays valid for ``grace_ms`` (0: not at all), so a
        display can be switched over without a gap, but never past its own
        expiry (an expired token's old secret gets no grace). The new expiry is
        ``lifetime_ms`` from now; ``"same"`` keeps the token's lifetime (a
        token from before expiry existed gets the default, 90 days, unless it
        is a viewer's).
        """
        if grace_ms < 0:
            raise ValueError(f"grace {grace_ms} ms must not be negative; give e.g. --grace 1h")
        self._refresh()
        old = self._records.get(name)
        if old is None:
            known = ", ".join(sorted(self._records)) or "none"
            raise ValueError(f"no token named {name!r} in {self.path} (tokens: {known}); "
                             "`plantwatch token create` makes one")
        if lifetime_ms == "same":
            if old.expires_ts is not None:
                lifetime: int | None = max(1, old.expires_ts - old.created_ts)
            else:
                lifetime = None if old.role in NEVER_EXPIRING_ROLES else DEFAULT_LIFETIME_MS
        else:
            lifetime = _lifetime(old.role, lifetime_ms)
        # The old secret's grace never outlasts its own expiry: rotating an
        # expired token must not make its old secret work again.
        grace_until: int | None = now_ms + grace_ms
        if old.expires_ts is not None:
            grace_until = min(now_ms + grace_ms, old.expires_ts)
        if grace_until is not None and grace_until <= now_ms:
            grace_until = None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = old.model_copy(update={
            "sha256": _sha256(token),
            "created_ts": now_ms,
            "expires_ts": None if lifetime is None else now_ms + lifetime,
            "previous_sha256": old.sha256 if grace_until is not None else None,
            "previous_until_ts": grace_until,
        })
        self._write({**self._records, name: record})
        return SecretStr(token)

    def check(self, token: SecretStr | str, now_ms: int | None = None
              ) -> Principal | Expired | None:
        """The principal of ``token``; :class:`Expired` if it ran out; None if unknown or
        revoked (a rotated-away secret after its grace period is unknown)."""
        now = _wall_clock_ms() if now_ms is None else now_ms
        self._refresh()
        # Looking up the hash, not the token, keeps lookup timing from revealing
        # how much of a guessed token is right.
        digest = _sha256(_secret(token))
        record = self._by_hash.get(digest)
        if record is None:
            previous = self._by_previous_hash.get(digest)
            if previous is None or previous.previous_until_ts is None:
                return None
            if now >= previous.previous_until_ts:
                return None
            record = previous
        if record.expires_ts is not None and now >= record.expires_ts:
            return Expired(record.name, record.expires_ts)
        return record.principal()

    def verify(self, token: SecretStr | str, now_ms: int | None = None) -> Principal | None:
        """The principal of ``token``, or None if it is unknown, revoked or expired."""
        found = self.check(token, now_ms)
        return found if isinstance(found, Principal) else None

    def revoke(self, name: str) -> bool:
        """Remove the token called ``name`` (and any secret of it in grace); False if none."""
        self._refresh()
        if name not in self._records:
            return False
        self._write({n: r for n, r in self._records.items() if n != name})
        return True

    def list(self, now_ms: int | None = None) -> builtins.list[dict[str, Any]]:
        """The tokens oldest first: name, role, created_ts, expires_ts (None: never),
        expired, workshops, posts, grace_until_ts (a rotated-away secret still
        valid until then, or None) and ``flag`` (a warning, or ""); never hashes."""
        now = _wall_clock_ms() if now_ms is None else now_ms
        self._refresh()
        records = sorted(self._records.values(), key=lambda r: (r.created_ts, r.name))
        out = []
        for r in records:
            flag = ""
            if r.expires_ts is None:
                flag = ("never expires" if r.role in NEVER_EXPIRING_ROLES else
                        f"never expires (made before tokens expired): "
                        f"`plantwatch token rotate {r.name}` gives it an expiry")
            grace = r.previous_until_ts if (
                r.previous_until_ts is not None and now < r.previous_until_ts) else None
            out.append({
                "name": r.name, "role": r.role, "created_ts": r.created_ts,
                "expires_ts": r.expires_ts,
                "expired": r.expires_ts is not None and now >= r.expires_ts,
                "workshops": list(r.workshops), "posts": list(r.posts),
                "grace_until_ts": grace, "flag": flag,
            })
        return out

    def _current_file_id(self) -> _FileId | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        # The inode changes with every os.replace, which catches two writes
        # within one tick of a coarse filesystem clock.
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _refresh(self) -> None:
        """Reload the file if anyone (this process or the CLI) changed it since the last read."""
        file_id = self._current_file_id()
        if file_id == self._file_id:
            return
        records: dict[str, _TokenRecord] = {}
        if file_id is not None:
            records = self._parse(self.path.read_bytes())
        self._set(records)
        self._file_id = file_id

    def _parse(self, raw: bytes) -> dict[str, _TokenRecord]:
        fix = (
            "fix it by hand, or move it away and create the tokens again with "
            "`plantwatch token create NAME --role ROLE`"
        )
        try:
            parsed = _TokenFile.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"{self.path}: not a valid token file ({problems}); {fix}") from exc
        records: dict[str, _TokenRecord] = {}
        hashes: set[str] = set()
        for i, record in enumerate(parsed.tokens):
            if record.name in records:
                raise ValueError(f"{self.path}: tokens.{i}: name {record.name!r} repeats; {fix}")
            mine = {record.sha256} | ({record.previous_sha256} if record.previous_sha256 else set())
            if mine & hashes or (len(mine) == 1 and record.previous_sha256):
                raise ValueError(f"{self.path}: tokens.{i}: sha256 repeats; {fix}")
            records[record.name] = record
            hashes |= mine
        return records

    def _set(self, records: dict[str, _TokenRecord]) -> None:
        self._records = records
        self._by_hash = {r.sha256: r for r in records.values()}
        self._by_previous_hash = {r.previous_sha256: r for r in records.values()
                                  if r.previous_sha256 is not None}

    def _write(self, records: dict[str, _TokenRecord]) -> None:
        body = _TokenFile(version=_FILE_VERSION, tokens=list(records.values()))
        data = body.model_dump_json(indent=2).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 whatever the umask, so the
        # hashes are never readable by others, not even for a moment.
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        sync_dir(self.path.parent)
        self._set(records)
        self._file_id = self._current_file_id()


_BEARER = HTTPBearer(
    auto_error=False,  # so a missing token gets our 401 with its how-to, not FastAPI's 403
    description="An API token from `plantwatch token create NAME --role ROLE`.",
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _authenticate(store: TokenStore, credentials: HTTPAuthorizationCredentials,
                  now_ms: int, how_to: str) -> Principal:
    # The secret goes straight into a SecretStr: nothing below can log it.
    found = store.check(SecretStr(credentials.credentials), now_ms)
    if isinstance(found, Expired):
        raise _unauthorized(
            f"token {found.name!r} expired at {fmt_utc(found.expired_ts)}; ask an admin for "
            f"a new one (`plantwatch token rotate {found.name}`) and send that instead"
        )
    if found is None:
        raise _unauthorized(f"unknown or revoked token; {how_to}")
    return found


def require_role(
    store: TokenStore, minimum: Role, clock_ms: Callable[[], int] = _wall_clock_ms
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A FastAPI dependency that admits unexpired tokens of role ``minimum`` or higher.

    Use it as ``principal: Annotated[Principal, Depends(require_role(store, "operator"))]``.
    ``clock_ms`` is the time expiry is judged by (the app's clock).
    """
    _check_role(minimum)
    how_to = (
        f"get a token with `plantwatch token create NAME --role {minimum}` "
        "and send it as `Authorization: Bearer <token>`"
    )

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized(f"missing bearer token; {how_to}")
        principal = _authenticate(store, credentials, clock_ms(), how_to)
        if not role_at_least(principal.role, minimum):
            raise HTTPException(
                status_code=403,
                detail=(
                    f"this needs role {minimum!r} or higher; token {principal.name!r} "
                    f"has role {principal.role!r}"
                ),
            )
        return principal

    return dependency


def stream_guard(
    store: TokenStore, clock_ms: Callable[[], int] = _wall_clock_ms
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Callable[[], bool] | None]]:
    """A FastAPI dependency for long-lived responses (the event stream): a
    ``still_valid()`` check of the token the request came with, or None when it
    came without one.

    ``still_valid()`` is :meth:`TokenStore.check` again, now: false once the
    token is revoked, has expired, or was rotated away (after its grace), or
    if it stands for another principal than it did. A stream asks it at each
    event and keep-alive, so it ends with its token.
    """

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Callable[[], bool] | None:
        if credentials is None:
            return None
        secret = SecretStr(credentials.credentials)
        first = store.check(secret, clock_ms())

        def still_valid() -> bool:
            try:
                return isinstance(first, Principal) and store.check(secret, clock_ms()) == first
            except ValueError:
                return False  # the token file was corrupted meanwhile: fail closed

        return still_valid

    return dependency


def optional_reader(
    store: TokenStore, required: bool, clock_ms: Callable[[], int] = _wall_clock_ms
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Principal | None]]:
    """A FastAPI dependency for read routes: the caller's principal, or None.

    With ``required`` (``api.require_token_for_reads``) a read needs a valid
    token of any role (viewer or higher). Without it a read may come without a
    token (None: an open read of the whole plant), but a token that is sent
    must be valid, and then its scope filters what the read returns.
    """
    how_to = (
        "this server needs a token for reads: get one with "
        "`plantwatch token create NAME --role viewer` and send it as "
        "`Authorization: Bearer <token>`"
    )

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal | None:
        if credentials is None:
            if required:
                raise _unauthorized(f"missing bearer token; {how_to}")
            return None
        return _authenticate(store, credentials, clock_ms(), how_to)

    return dependency
