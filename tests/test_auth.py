"""API tokens: the token file, roles, and the FastAPI dependency through httpx.ASGITransport."""

# No `from __future__ import annotations` here: the routes below name a local
# dependency in `Annotated[...]`, and FastAPI resolves string annotations in
# module globals only.

import hashlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from api.auth import (
    DEFAULT_GRACE_MS,
    DEFAULT_LIFETIME_MS,
    ROLE_RANK,
    ROLES,
    Expired,
    Principal,
    Role,
    TokenScope,
    TokenStore,
    optional_reader,
    require_role,
    role_at_least,
)
from api.scopes import check_scope
from model.plant import PlantConfig

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def create(store: TokenStore, name: str, role: str, now: int = NOW, **kwargs: Any) -> str:
    """A new token's plaintext (create hands it out as a SecretStr)."""
    return store.create(name, role, now, **kwargs).get_secret_value()


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
    assert store.verify("pw_anything", NOW) is None
    assert not path.exists()


def test_create_then_verify(store: TokenStore) -> None:
    token = create(store, "alice", "operator", NOW)
    other = create(store, "bob", "admin", NOW + 1)
    assert token.startswith("pw_")
    assert len(token) > 40
    assert token != other
    assert store.verify(token, NOW) == Principal("alice", "operator")
    assert store.verify(other, NOW) == Principal("bob", "admin")
    assert store.verify(token + "x", NOW) is None
    assert store.verify("", NOW) is None


def test_list_shows_no_hashes(store: TokenStore) -> None:
    create(store, "bob", "admin", NOW + 5)
    create(store, "alice", "viewer", NOW)
    rows = store.list(NOW)
    assert [(r["name"], r["role"], r["created_ts"]) for r in rows] == [
        ("alice", "viewer", NOW), ("bob", "admin", NOW + 5)]
    assert all("sha256" not in r and "previous_sha256" not in r for r in rows)
    assert "sha256" not in json.dumps(rows)


def test_revoke(store: TokenStore) -> None:
    token = create(store, "alice", "operator", NOW)
    kept = create(store, "bob", "viewer", NOW)
    assert store.revoke("alice") is True
    assert store.verify(token, NOW) is None
    assert store.verify(kept, NOW) == Principal("bob", "viewer")
    assert [t["name"] for t in store.list()] == ["bob"]
    assert store.revoke("alice") is False


def test_file_holds_hashes_not_tokens_with_mode_0600(store: TokenStore, path: Path) -> None:
    token = create(store, "alice", "engineer", NOW)
    text = path.read_text()
    assert token not in text
    assert token.removeprefix("pw_") not in text
    assert json.loads(text) == {
        "version": 2,
        "tokens": [
            {
                "name": "alice",
                "role": "engineer",
                "created_ts": NOW,
                "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "expires_ts": NOW + DEFAULT_LIFETIME_MS,
                "workshops": [],
                "posts": [],
                "previous_sha256": None,
                "previous_until_ts": None,
            }
        ],
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]  # no temp files left


def test_a_rewrite_narrows_a_loose_file_mode_to_0600(store: TokenStore, path: Path) -> None:
    create(store, "alice", "viewer", NOW)
    path.chmod(0o644)
    create(store, "bob", "viewer", NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_another_instance_sees_new_and_revoked_tokens(store: TokenStore, path: Path) -> None:
    service = store
    assert service.list() == []  # the service has read the (missing) file
    cli = TokenStore(path)
    token = create(cli, "alice", "operator", NOW)
    assert service.verify(token, NOW) == Principal("alice", "operator")
    create(cli, "bob", "viewer", NOW)
    assert [t["name"] for t in service.list()] == ["alice", "bob"]
    assert cli.revoke("alice") is True
    assert service.verify(token, NOW) is None


def test_create_rereads_the_file_so_it_keeps_others_tokens(store: TokenStore, path: Path) -> None:
    first = create(store, "alice", "viewer", NOW)
    create(TokenStore(path), "bob", "viewer", NOW)
    create(store, "carol", "viewer", NOW)
    assert TokenStore(path).verify(first, NOW) == Principal("alice", "viewer")
    assert [t["name"] for t in TokenStore(path).list()] == ["alice", "bob", "carol"]


def test_duplicate_name_is_refused(store: TokenStore) -> None:
    token = create(store, "alice", "viewer", NOW)
    with pytest.raises(ValueError, match="'alice' already exists") as info:
        create(store, "alice", "admin", NOW)
    assert "plantwatch token revoke alice" in str(info.value)
    assert store.verify(token, NOW) == Principal("alice", "viewer")
    assert len(store.list()) == 1


def test_duplicate_name_from_another_instance_is_refused(store: TokenStore, path: Path) -> None:
    create(TokenStore(path), "alice", "viewer", NOW)
    with pytest.raises(ValueError, match="already exists"):
        create(store, "alice", "viewer", NOW)


def test_unknown_role_is_refused(store: TokenStore, path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role 'root'") as info:
        create(store, "alice", "root", NOW)
    assert "viewer, operator, engineer, admin" in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize("name", ["", " alice", "alice\n"])
def test_blank_or_padded_name_is_refused(store: TokenStore, name: str) -> None:
    with pytest.raises(ValueError, match="token name"):
        create(store, name, "viewer", NOW)


def test_corrupt_file_names_the_file_and_the_fix(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid token file") as info:
        TokenStore(path)
    assert str(path) in str(info.value)
    assert "plantwatch token create" in str(info.value)


def test_invalid_entry_names_its_place(store: TokenStore, path: Path) -> None:
    create(store, "alice", "viewer", NOW)
    data = json.loads(path.read_text())
    data["tokens"][0]["role"] = "root"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokens\.0\.role") as info:
        TokenStore(path)
    assert str(path) in str(info.value)


def test_repeated_name_in_file_is_refused(store: TokenStore, path: Path) -> None:
    create(store, "alice", "viewer", NOW)
    data = json.loads(path.read_text())
    data["tokens"].append({**data["tokens"][0], "sha256": "0" * 64})
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"tokens\.1: name 'alice' repeats"):
        TokenStore(path)


def test_file_corrupted_while_running_fails_closed(store: TokenStore, path: Path) -> None:
    token = create(store, "alice", "viewer", NOW)
    path.write_text("[]")
    with pytest.raises(ValueError, match=str(path)):
        store.verify(token, NOW)


def test_require_role_refuses_an_unknown_minimum(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="unknown role 'superuser'"):
        require_role(store, "superuser")  # type: ignore[arg-type]


# --- the FastAPI dependency ---------------------------------------------------


def auth_app(store: TokenStore) -> FastAPI:
    app = FastAPI()
    operator_only = require_role(store, "operator", lambda: NOW)

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
    assert "plantwatch token create NAME --role operator" in r.json()["detail"]


async def test_other_scheme_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    token = create(store, "alice", "admin", NOW)
    r = await client.post("/ack", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_token_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    create(store, "alice", "admin", NOW)
    r = await client.post("/ack", headers=bearer("pw_not-a-real-token"))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "unknown or revoked token" in r.json()["detail"]


async def test_revoked_token_is_401(client: httpx.AsyncClient, store: TokenStore) -> None:
    token = create(store, "alice", "admin", NOW)
    assert (await client.post("/ack", headers=bearer(token))).status_code == 200
    store.revoke("alice")
    assert (await client.post("/ack", headers=bearer(token))).status_code == 401


async def test_viewer_is_403_naming_both_roles(
    client: httpx.AsyncClient, store: TokenStore
) -> None:
    token = create(store, "vera", "viewer", NOW)
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
    token = create(store, f"{role}-1", role, NOW)
    r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {"name": f"{role}-1", "role": role}


async def test_token_created_by_another_instance_works_without_restart(
    client: httpx.AsyncClient, path: Path
) -> None:
    assert (await client.post("/ack", headers=bearer("pw_x"))).status_code == 401
    token = create(TokenStore(path), "late", "operator", NOW)
    r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 200
    assert r.json()["name"] == "late"


def test_openapi_shows_the_bearer_scheme(store: TokenStore) -> None:
    schema = auth_app(store).openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operation = schema["paths"]["/ack"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "parameters" not in operation  # the credentials are not mistaken for a query param


# --- expiry, rotation, scopes, secrets ------------------------------------------------

DAY = 86_400_000


def test_a_token_expires_after_its_lifetime(store: TokenStore) -> None:
    token = create(store, "alice", "operator", NOW, lifetime_ms=30 * DAY)
    assert store.verify(token, NOW + 30 * DAY - 1) == Principal("alice", "operator")
    assert store.verify(token, NOW + 30 * DAY) is None
    assert store.check(token, NOW + 30 * DAY) == Expired("alice", NOW + 30 * DAY)
    default = create(store, "bob", "operator", NOW)
    assert store.check(default, NOW + 90 * DAY) == Expired("bob", NOW + 90 * DAY)


@pytest.mark.parametrize("role", ["operator", "engineer", "admin"])
def test_only_a_viewer_token_may_never_expire(store: TokenStore, role: Role) -> None:
    with pytest.raises(ValueError, match=f"a {role} token must expire") as info:
        store.create("x", role, NOW, lifetime_ms=None)
    assert "--expires-in" in str(info.value)
    wall = create(store, "wall-display", "viewer", NOW, lifetime_ms=None)
    assert store.verify(wall, NOW + 10_000 * DAY) == Principal("wall-display", "viewer")
    (row,) = store.list(NOW)
    assert row["expires_ts"] is None and row["flag"] == "never expires"


def test_rotation_keeps_role_scope_and_lifetime_and_honours_the_grace(
        store: TokenStore) -> None:
    scope = TokenScope.of(["tank-farm"], ["rx-board"])
    old = create(store, "display", "operator", NOW, lifetime_ms=10 * DAY, scope=scope)
    later = NOW + 5 * DAY
    new = store.rotate("display", later).get_secret_value()
    assert new != old
    assert store.verify(new, later) == Principal("display", "operator", scope)
    assert store.verify(old, later + DEFAULT_GRACE_MS - 1) == Principal("display", "operator",
                                                                        scope)
    assert store.verify(old, later + DEFAULT_GRACE_MS) is None
    assert store.check(new, later + 10 * DAY) == Expired("display", later + 10 * DAY)
    (row,) = store.list(later)
    assert row["grace_until_ts"] == later + DEFAULT_GRACE_MS
    assert row["workshops"] == ["tank-farm"] and row["posts"] == ["rx-board"]
    # No grace: the old secret stops at once (a token that may have leaked).
    newest = store.rotate("display", later, grace_ms=0).get_secret_value()
    assert store.verify(new, later) is None and store.verify(old, later) is None
    assert store.verify(newest, later) is not None
    with pytest.raises(ValueError, match="no token named 'nobody'"):
        store.rotate("nobody", later)


def test_revoking_a_rotated_token_ends_its_grace_secret_too(store: TokenStore) -> None:
    old = create(store, "alice", "viewer", NOW)
    store.rotate("alice", NOW)
    store.revoke("alice")
    assert store.verify(old, NOW) is None


def test_the_previous_release_file_still_loads_and_is_flagged(path: Path) -> None:
    token = "pw_from-the-last-release"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "tokens": [
        {"name": "old-op", "role": "operator", "created_ts": NOW,
         "sha256": hashlib.sha256(token.encode()).hexdigest()}]}))
    store = TokenStore(path)
    far_future = NOW + 3650 * DAY
    assert store.verify(token, far_future) == Principal("old-op", "operator")
    (row,) = store.list(far_future)
    assert row["expires_ts"] is None and row["workshops"] == [] and row["posts"] == []
    assert "plantwatch token rotate old-op" in row["flag"]
    # Rotating gives it the default expiry; the file is written as version 2.
    store.rotate("old-op", far_future, grace_ms=0)
    assert json.loads(path.read_text())["version"] == 2
    (row,) = store.list(far_future)
    assert row["expires_ts"] == far_future + DEFAULT_LIFETIME_MS and row["flag"] == ""


def test_create_hands_out_a_secret_that_does_not_print(store: TokenStore) -> None:
    secret = store.create("alice", "viewer", NOW)
    plain = secret.get_secret_value()
    assert plain not in repr(secret) and plain not in str(secret)
    assert plain not in f"{secret}"
    assert store.verify(secret, NOW) == Principal("alice", "viewer")


def test_check_scope_names_the_nearest_valid_name(plant: PlantConfig) -> None:
    scope = check_scope(plant, ["tank-farm"], ["rx-board"])
    assert scope == TokenScope.of(["tank-farm"], ["rx-board"])
    with pytest.raises(ValueError) as info:
        check_scope(plant, ["tank-frm"], ["rx-bord"])
    text = str(info.value)
    assert "no workshop 'tank-frm' in enterprise 'lingnan-chem'; did you mean 'tank-farm'?" in text
    assert "no post 'rx-bord'" in text and "did you mean 'rx-board'?" in text
    assert "reactor-unit" in text  # the known names are listed


async def test_an_expired_token_is_401_saying_so_and_how_to_renew(path: Path) -> None:
    store = TokenStore(path)
    token = create(store, "alice", "operator", NOW, lifetime_ms=DAY)
    now = [NOW]
    app = FastAPI()
    operator_only = require_role(store, "operator", lambda: now[0])

    @app.post("/ack")
    async def ack(principal: Annotated[Principal, Depends(operator_only)]) -> dict[str, str]:
        return {"name": principal.name}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plantwatch") as client:
        assert (await client.post("/ack", headers=bearer(token))).status_code == 200
        now[0] = NOW + DAY
        r = await client.post("/ack", headers=bearer(token))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    detail = r.json()["detail"]
    assert "token 'alice' expired at 2024-05-02T10:00:00Z" in detail
    assert "plantwatch token rotate alice" in detail
    assert token not in detail


@pytest.mark.parametrize("required", [False, True])
async def test_optional_reader(path: Path, required: bool) -> None:
    store = TokenStore(path)
    token = create(store, "vera", "viewer", NOW, scope=TokenScope.of(["tank-farm"]))
    app = FastAPI()
    reader = optional_reader(store, required, lambda: NOW)

    @app.get("/read")
    async def read(who: Annotated[Principal | None, Depends(reader)]) -> dict[str, Any]:
        return {"who": None if who is None else [who.name, sorted(who.scope.workshops)]}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://plantwatch") as client:
        anonymous = await client.get("/read")
        assert anonymous.status_code == (401 if required else 200)
        if required:
            assert "plantwatch token create NAME --role viewer" in anonymous.json()["detail"]
        else:
            assert anonymous.json() == {"who": None}
        r = await client.get("/read", headers=bearer(token))
        assert r.status_code == 200 and r.json() == {"who": ["vera", ["tank-farm"]]}
        # A token that is sent must be good, even where reads are open.
        assert (await client.get("/read", headers=bearer("pw_bad"))).status_code == 401


def test_rotating_an_expired_token_gives_its_old_secret_no_grace(store: TokenStore) -> None:
    old = create(store, "display", "operator", NOW, lifetime_ms=DAY)
    later = NOW + 2 * DAY  # expired a day ago
    assert isinstance(store.check(old, later), Expired)
    new = store.rotate("display", later).get_secret_value()
    assert store.check(old, later) is None  # not revived for the grace period
    assert store.check(old, later + 1) is None
    assert store.verify(new, later) == Principal("display", "operator")
    (row,) = store.list(later)
    assert row["grace_until_ts"] is None


def test_rotation_grace_ends_when_the_old_secret_would_have_expired(
        store: TokenStore) -> None:
    old = create(store, "display", "operator", NOW, lifetime_ms=DAY)
    later = NOW + DAY - 600_000  # ten minutes before it expires; the grace is an hour
    store.rotate("display", later)
    assert store.verify(old, NOW + DAY - 1) is not None
    assert store.verify(old, NOW + DAY) is None
    (row,) = store.list(later)
    assert row["grace_until_ts"] == NOW + DAY
