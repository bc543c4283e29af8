"""A small fleet built through the API: organisations, people with roles, tokens."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from server.cli import add_global_admin
from server.security import hash_password, hash_secret, new_token
from server.tables import ApiTokenRow, MembershipRow, UserRow

__all__ = ["PASSWORD", "World"]

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    client: TestClient
    root: dict[str, str]
    orgs: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        """Headers of ``who``: 'root', or '{org}-{role}' e.g. 'a-operator'."""
        return self.root if who == "root" else self.tokens[who]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, f"/api/v1{path}", headers=self.as_(who), **kwargs)

    def ok(self, who: str, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(who, method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        return (
            response.json()
            if response.content and "json" in response.headers.get("content-type", "")
            else response
        )

    @classmethod
    def build(cls, client: TestClient) -> World:
        """Make the organisations through the API as a global admin (session login, CSRF), and
        their people and tokens directly in the registry (argon2 is slow on purpose)."""
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            add_global_admin(session, "root@example.org", PASSWORD, now=1.0)
            session.commit()
        login = client.post("/api/v1/auth/login", json={"email": "root@example.org", "password": PASSWORD})
        assert login.status_code == 200, login.text
        csrf = {"X-CSRF-Token": login.json()["csrf"]}
        world = cls(client=client, root={})
        for slug, name, kind in (
            ("govtech", "GovTech", "centre"),
            ("city-a", "City A", "municipality"),
            ("city-b", "City B", "municipality"),
        ):
            org = client.post("/api/v1/orgs", json={"slug": slug, "name": name, "kind": kind}, headers=csrf)
            assert org.status_code == 201, org.text
            world.orgs[slug.removeprefix("city-")] = org.json()["id"]
        root_token = client.post(
            "/api/v1/tokens",
            json={"name": "root", "org_id": world.orgs["govtech"], "role": "admin"},
            headers=csrf,
        ).json()["token"]
        client.cookies.clear()
        world.root = bearer(root_token)
        with Session(engine) as session:
            for slug in ("a", "b"):
                for role in ("admin", "operator", "viewer"):
                    user = UserRow(email=f"{role}@{slug}.example.org", password_hash=_hash(), created_at=1.0)
                    session.add(user)
                    session.flush()
                    assert user.id is not None
                    session.add(MembershipRow(user_id=user.id, org_id=world.orgs[slug], role=role))
                    raw = new_token()
                    session.add(
                        ApiTokenRow(
                            name=role,
                            token_hash=hash_secret(raw),
                            prefix=raw[:10],
                            org_id=world.orgs[slug],
                            role=role,
                            user_id=user.id,
                            created_at=1.0,
                        )
                    )
                    world.tokens[f"{slug}-{role}"] = bearer(raw)
            session.commit()
        return world


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)
