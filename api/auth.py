"""API tokens and roles: who may call the API, and what they may do.

Roles are ranked ``viewer < operator < engineer < admin``; a route asks for a
minimum role with :func:`require_role`, and clients send
``Authorization: Bearer <token>``.

Tokens live in a JSON file (:class:`TokenStore`) that holds only their SHA-256:
a copied file or backup does not hand out working tokens. The CLI
(``plantwatch token create|revoke|list``) and the running service share that
file; the service notices the CLI's writes by the file's identity (mtime, inode,
size), so a new or revoked token counts at the next request, without a restart.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ROLES",
    "ROLE_RANK",
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "TokenStore",
    "require_role",
    "role_at_least",
]

Role = Literal["viewer", "operator", "engineer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_RANK: dict[Role, int] = {role: rank for rank, role in enumerate(ROLES)}
# A recognisable prefix lets secret scanners and people spot a leaked token.
TOKEN_PREFIX = "pw_"
_FILE_VERSION = 1


def role_at_least(role: Role, minimum: Role) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


def _check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a token stands for; what a protected route receives."""

    name: str
    role: Role


class _TokenRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    role: Role
    created_ts: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    tokens: list[_TokenRecord]


_FileId = tuple[int, int, int]  # (st_mtime_ns, st_ino, st_size)


class TokenStore:
    """API tokens in a JSON file, by SHA-256, shared with the CLI.

    A missing file is an empty store; the first :meth:`create` writes it, with
    mode 0600. Writes replace the file atomically, so a reader never sees half
    of one. There is no lock between writers: two token commands run at the
    same instant may lose one of their changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, _TokenRecord] = {}  # by name
        self._by_hash: dict[str, Principal] = {}
        self._file_id: _FileId | None = None
        self._refresh()  # a corrupt file fails at start-up, not at the first request

    def create(self, name: str, role: str, now_ms: int) -> str:
        """Add a token; return its plaintext, which is never stored and so shown only now."""
        checked = _check_role(role)
        if not name or name != name.strip():
            raise ValueError(f"token name {name!r} must be non-empty without surrounding spaces")
        self._refresh()
        if name in self._records:
            raise ValueError(
                f"a token named {name!r} already exists in {self.path}; choose another name, "
                f"or replace it: `plantwatch token revoke {name}`, then create it again"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = _TokenRecord(name=name, role=checked, created_ts=now_ms, sha256=_sha256(token))
        self._write({**self._records, name: record})
        return token

    def verify(self, token: str) -> Principal | None:
        """The principal of ``token``, or None if it is unknown or revoked."""
        self._refresh()
        # Looking up the hash, not the token, keeps lookup timing from revealing
        # how much of a guessed token is right.
        return self._by_hash.get(_sha256(token))

    def revoke(self, name: str) -> bool:
        """Remove the token called ``name``; False if there was none."""
        self._refresh()
        if name not in self._records:
            return False
        self._write({n: r for n, r in self._records.items() if n != name})
        return True

    def list(self) -> builtins.list[dict[str, str | int]]:
        """The tokens' name, role and created_ts (ms), oldest first; never their hashes."""
        self._refresh()
        records = sorted(self._records.values(), key=lambda r: (r.created_ts, r.name))
        return [{"name": r.name, "role": r.role, "created_ts": r.created_ts} for r in records]

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
            "`plantwatch token create --role ROLE --name NAME`"
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
            if record.sha256 in hashes:
                raise ValueError(f"{self.path}: tokens.{i}: sha256 repeats; {fix}")
            records[record.name] = record
            hashes.add(record.sha256)
        return records

    def _set(self, records: dict[str, _TokenRecord]) -> None:
        self._records = records
        self._by_hash = {r.sha256: Principal(r.name, r.role) for r in records.values()}

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
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._set(records)
        self._file_id = self._current_file_id()


_BEARER = HTTPBearer(
    auto_error=False,  # so a missing token gets our 401 with its how-to, not FastAPI's 403
    description="An API token from `plantwatch token create --role ROLE --name NAME`.",
)


def require_role(
    store: TokenStore, minimum: Role
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A FastAPI dependency that admits tokens of role ``minimum`` or higher.

    Use it as ``principal: Annotated[Principal, Depends(require_role(store, "operator"))]``.
    """
    _check_role(minimum)
    how_to = (
        f"get a token with `plantwatch token create --role {minimum} --name NAME` "
        "and send it as `Authorization: Bearer <token>`"
    )

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                status_code=401,
                detail=f"missing bearer token; {how_to}",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = store.verify(credentials.credentials)
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail=f"unknown or revoked token; {how_to}",
                headers={"WWW-Authenticate": "Bearer"},
            )
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
