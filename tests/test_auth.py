"""API tokens: the token file, roles, and the FastAPI dependency through httpx.ASGITransport."""

# No `from __future__ import annotations` here: the routes below name a local
# dependency in `Annotated[...]`, and FastAPI resolves string annotations in
# module globals only.

import hashlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from api.auth import (
    ROLE_RANK,
    ROLES,
    Principal,
    Role,
    TokenStore,
    require_role,
    role_at_least,
)

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "tokens.json"


@pytest.fixture
def store(path: Path) -> TokenStore:
    return TokenStore(path)


def test_roles_are_ranked_viewer_operator_engineer_admin() -> None:
    assert ROLES == ("viewer", "operator", "engineer", "admin")
    assert sorted(ROLE_RANK, key=ROLE_RANK.__getitem__) == list(ROLES)


@pytest.mark.parametrize(
    ("role", "minimum", "expected"),
    [
        ("viewer", "viewer", True),
        ("viewer", "operator", False),
        ("operator", "operator", True),
        ("engineer", "operator", True),
        ("engineer", "admin", False),
        ("admin", "viewer", True),
    ],
)
def test_role_at_least(role: Role, minimum: Role, expected: bool) -> None:
    assert role_at_least(role, minimum) is expected


def test_missing_file_is_an_empty_store(store: TokenStore, path: Path) -> None:
    assert store.list() == []
    assert store.verify("pw_anything") is None
    assert not path.exists()


def test_create_then_verify(store: TokenStore) -> None:
    token = store.create("alice", "operator", NOW)
    other = store.create("bob", "admin", NOW + 1)
    assert token.startswith("pw_")
    assert len(token) > 40
    assert token != other
    assert store.verify(token) == Principal("alice", "operator")
    assert store.verify(other) == Principal("bob", "admin")
    assert store.verify(token + "x") is None
    assert store.verify("") is None


def test_list_shows_no_hashes(store: TokenStore) -> None:
    store.create("bob", "admin", NOW + 5)
    store.create("alice", "viewer", NOW)
    assert store.list() == [
        {"name": "alice", "role": "viewer", "created_ts": NOW},
        {"name": "bob", "role": "admin", "created_ts": NOW + 5},
    ]


def test_revoke(store: TokenStore) -> None:
    token = store.create("alice", "operator", NOW)
    kept = store.create("bob", "viewer", NOW)
    assert store.revoke("alice") is True
    assert store.verify(token) is None
    assert store.verify(kept) == Principal("bob", "viewer")
    assert [t["name"] for t in store.list()] == ["bob"]
    assert store.revoke("alice") is False


def test_file_holds_hashes_not_tokens_with_mode_0600(store: TokenStore, path: Path) -> None:
    token = store.create("alice", "engineer", NOW)
    text = path.read_text()
    assert token not in text
    assert token.removeprefix("pw_") not in text
    assert json.loads(text) == {
        "version": 1,
        "tokens": [
            {
                "name": "alice",
                "role": "engineer",
                "created_ts": NOW,
                "sha256": hashlib.sha256(token.encode()).hexdigest(),
            }
        ],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temp files left


def test_a_rewrite_narrows_a_loose_file_mode_to_0600(store: TokenStore, path: Path) -> None:
    store.create("alice", "viewer", NOW)
    path.chmod(0o644)
    store.create("bob", "viewer", NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_another_instance_sees_new_and_revoked_tokens(store: TokenStore, path: Path) -> None:
    service = store
    assert service.list() == []  # the service has read the (missing) file
    cli = TokenStore(path)
    token = cli.create("alice", "operator", NOW)
    assert service.verify(token) == Principal("alice", "operator")
    cli.create("bob", "viewer", NOW)
    assert [t["name"] for t in service.list()] == ["alice", "bob"]
    assert cli.revoke("alice") is True
    assert service.verify(token) is None


def test_create_rereads_the_file_so_it_keeps_others_tokens(store: TokenStore, path: Path) -> None:
    first = store.create("alice", "viewer", NOW)
    TokenStore(path).create("bob", "viewer", NOW)
    store.create("carol", "viewer", NOW)
    assert TokenStore(path).verify(first) == Principal("alice", "viewer")
    assert [t["name"] for t in TokenStore(path).list()] == ["alice", "bob", "carol"]


def test_duplicate_name_is_refused(store: TokenStore) -> None:
    token = store.create("alice", "viewer", NOW)
    with pytest.raises(ValueError, match="'alice' already exists") as info:
        store.create("alice", "admin", NOW)
    assert "plantwatch token revoke alice" in str(info.value)
    assert store.verify(token) == Principal("alice", "viewer")
    assert len(store.list()) == 1


def test_duplicate_name_from_another_instance_is_refused(store: TokenStore, path: Path) -> None:
    TokenStore(path).create("alice", "viewer", NOW)
    with pytest.raises(ValueError, match="already exists"):
        store.create("alice", "viewer", NOW)


def test_unknown_role_is_refused(store: TokenStore, path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role 'root'") as info:
        store.create("alice", "root", NOW)
    assert "viewer, operator, engineer, admin" in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize("name", ["", " alice", "alice\n"])
def test_blank_or_padded_name_is_refused(store: TokenStore, name: str) -> None:
    with pytest.raises(ValueError, match="token name"):
        store.create(name, "viewer", NOW)


def test_corrupt_file_names_the_file_and_the_fix(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid token file") as info:
        TokenStore(path)
    assert str(path) in str(info.value)
    assert "plantwatch token create" in str(info.value)


def test_invalid_entry_names_its_place(store: TokenStore, path: Path) -> None:
    store.create("alice", "viewer", NOW)
    data = json.loads(path.read_text())
    data["tokens"][0]["role"] = "root"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokens\.0\.role") as info:
        TokenStore(path)
    assert str(path) in str(info.value)


def test_repeated_name_in_file_is_refused(store: TokenStore, path: Path) -> None:
    store.create("alice", "viewer", NOW)
    data = json.loads(path.read_text())
    data["tokens"].append({**data["tokens"][0], "sha256": "0" * 64})
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokens\.1: name 'alice' repeats"):
        TokenStore(path)


def test_file_corrupted_while_running_fails_closed(store: TokenStore, path: Path) -> None:
    token = store.create("alice", "viewer", NOW)
    path.write_text("[]")
    with pytest.raises(ValueError, match=str(path)):
        store.verify(token)


def test_require_role_refuses_an_unknown_minimum(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="unknown role 'superuser'"):
        require_role(store, "superuser")  # type: ignore[arg-type]


# --- the FastAPI dependency ---------------------------------------------------


def auth_app(store: TokenStore) -> FastAPI:
    app = FastAPI()
    operator_only = require_role(store, "operator")

    @app.post("/ack")
    async def ack(principal: Annotated[Principal, Depends(operator_only)]) -> dict[str, str]:
        return {"name": principal.name, "role": principal.role}

    return app


@pytest.fixture
async def client(store: TokenStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=auth_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://plantwatch") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_header_is_401_with_how_to(client: httpx.AsyncClient) -> None:
    r = await client.post("/ack")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "plantwatch token create --role operator --name NAME" in r.json()["detail"]


async def test_other_scheme_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    token = store.create("alice", "admin", NOW)
    r = await client.post("/ack", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_token_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    store.create("alice", "admin", NOW)
    r = await client.post("/ack", headers=bearer("pw_not-a-real-token"))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "unknown or revoked token" in r.json()["detail"]


async def test_revoked_token_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    token = store.create("alice", "admin", NOW)
    assert (await client.post("/ack", headers=bearer(token))).status_code == 200
    store.revoke("alice")
    assert (await client.post("/ack", headers=bearer(token))).status_code == 401


async def test_viewer_is_403_naming_both_roles(
    client: httpx.AsyncClient, store: TokenStore
) -> None:
    token = store.create("vera", "viewer", NOW)
    r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 403
    detail = r.json()["detail"]
    assert "'operator'" in detail
    assert "'viewer'" in detail
    assert "'vera'" in detail


@pytest.mark.parametrize("role", ["operator", "engineer", "admin"])
async def test_operator_and_above_pass_and_the_route_sees_the_principal(
    client: httpx.AsyncClient, store: TokenStore, role: Role
) -> None:
    token = store.create(f"{role}-1", role, NOW)
    r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {"name": f"{role}-1", "role": role}


async def test_token_created_by_another_instance_works_without_restart(
    client: httpx.AsyncClient, path: Path
) -> None:
    assert (await client.post("/ack", headers=bearer("pw_x"))).status_code == 401
    token = TokenStore(path).create("late", "operator", NOW)
    r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 200
    assert r.json()["name"] == "late"


def test_openapi_shows_the_bearer_scheme(store: TokenStore) -> None:
    schema = auth_app(store).openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operation = schema["paths"]["/ack"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "parameters" not in operation  # the credentials are not mistaken for a query param
