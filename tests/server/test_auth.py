"""Who is asking (``server/api/auth.py``): the caller is read in one statement per request, with
nothing kept between requests, so every change to a token, a session, a user or a membership holds
from the very next request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, select

from server.api.auth import CSRF_HEADER, SESSION_COOKIE
from server.security import hash_secret
from server.tables import ApiTokenRow, SessionRow, UserRow
from tests.server.data import NOW
from tests.server.world import PASSWORD, World, bearer


def _engine(world: World) -> Any:
    return world.client.app.state.resources.engine  # type: ignore[attr-defined]


@contextmanager
def _statements(world: World) -> Iterator[list[str]]:
    """The SQL statements the registry runs inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    engine = _engine(world)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _login(client: TestClient, email: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {CSRF_HEADER: response.json()["csrf"]}


def _user_id(world: World, email: str) -> int:
    with Session(_engine(world)) as session:
        user = session.exec(select(UserRow).where(UserRow.email == email)).one()
        assert user.id is not None
        return user.id


def test_a_token_is_read_in_one_statement(world: World) -> None:
    """Test that resolving a person's token reads the registry once (token, user, membership and
    organisation together), where it read each of them apart."""
    token = world.tokens["a-operator"]
    assert world.client.get("/api/v1/kits", headers=token).status_code == 200  # last use written
    with _statements(world) as seen:
        assert world.client.get("/api/v1/kits", headers=token).status_code == 200
    reading_auth = [s for s in seen if "FROM api_tokens" in s or "FROM sessions" in s]
    assert len(reading_auth) == 1, seen
    assert all(table in reading_auth[0] for table in ("users", "memberships", "organisations"))
    assert not [s for s in seen if s.startswith("SELECT") and "FROM memberships" in s], seen


def test_a_browser_session_follows_its_person_at_once(world: World) -> None:
    """Test that a logged-in person's next request sees a change of role, a removal from the
    organisation, a deactivation and the session's expiry, each on the very next request."""
    a = world.orgs["a"]
    email = "operator@a.example.org"
    user_id = _user_id(world, email)
    csrf = _login(world.client, email)
    me = world.client.get("/api/v1/auth/me").json()
    assert [(m["org"], m["role"]) for m in me["user"]["memberships"]] == [("city-a", "operator")]
    body = {"inventory_code": "S-9", "profile_id": "starter"}
    assert world.client.post("/api/v1/kits", json={**body, "org_id": a}, headers=csrf).status_code == 201

    world.ok("a-admin", "PUT", f"/orgs/{a}/members", json={"email": email, "role": "viewer"})
    refused = world.client.post(
        "/api/v1/kits", json={**body, "inventory_code": "S-10", "org_id": a}, headers=csrf
    )
    assert refused.status_code == 403, refused.text

    world.ok("a-admin", "DELETE", f"/orgs/{a}/members/{user_id}", 204)
    assert world.client.get(f"/api/v1/orgs/{a}").status_code == 404
    assert world.client.get("/api/v1/auth/me").json()["user"]["memberships"] == []

    world.ok("a-admin", "PUT", f"/orgs/{a}/members", json={"email": email, "role": "viewer"})
    assert world.client.get(f"/api/v1/orgs/{a}").status_code == 200
    with Session(_engine(world)) as session:
        user = session.get(UserRow, user_id)
        assert user is not None
        user.active = False
        session.add(user)
        session.commit()
    assert world.client.get("/api/v1/auth/me").status_code == 401
    with Session(_engine(world)) as session:
        user = session.get(UserRow, user_id)
        assert user is not None
        user.active = True
        session.add(user)
        session.commit()
    assert world.client.get("/api/v1/auth/me").status_code == 200

    raw = world.client.cookies[SESSION_COOKIE]
    with Session(_engine(world)) as session:
        row = session.get(SessionRow, hash_secret(raw))
        assert row is not None
        row.expires_at = NOW
        session.add(row)
        session.commit()
    assert world.client.get("/api/v1/auth/me").status_code == 401


def test_a_token_follows_expiry_and_its_person_at_once(world: World) -> None:
    """Test that a token is refused on the next request once it expires or its person is
    deactivated, and that a global admin's token acts as an admin of its organisation."""
    made = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "ci", "org_id": world.orgs["a"]})
    token = bearer(made["token"])
    assert world.client.get("/api/v1/kits", headers=token).status_code == 200
    with Session(_engine(world)) as session:
        row = session.get(ApiTokenRow, made["id"])
        assert row is not None
        row.expires_at = NOW
        session.add(row)
        session.commit()
    expired = world.client.get("/api/v1/kits", headers=token)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]

    operator = world.tokens["a-operator"]
    user_id = _user_id(world, "operator@a.example.org")
    with Session(_engine(world)) as session:
        user = session.get(UserRow, user_id)
        assert user is not None
        user.active = False
        session.add(user)
        session.commit()
    refused = world.client.get("/api/v1/kits", headers=operator)
    assert refused.status_code == 401 and "deactivated" in refused.json()["detail"]

    assert (
        world.client.get(f"/api/v1/orgs/{world.orgs['govtech']}/members", headers=world.root).status_code
        == 200
    )


@pytest.mark.parametrize(
    "cookie", ["", "x", "sct_" + "a" * 5000, "%C3%BC%00", "' OR 1=1 --"], ids=lambda c: repr(c[:12])
)
def test_a_bad_session_cookie_is_no_one(world: World, cookie: str) -> None:
    """Test that a cookie no session has (empty, short, long, escaped bytes, SQL) makes the caller
    anonymous: a 401 from the API and the login page for a page, never a 500."""
    world.client.cookies.set(SESSION_COOKIE, cookie)
    try:
        assert world.client.get("/api/v1/auth/me").status_code == 401
        page = world.client.get("/fleet", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    finally:
        world.client.cookies.clear()
