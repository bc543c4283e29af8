"""A small fleet built through the API: organisations, people with roles, tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from server.cli import add_global_admin

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
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else response

    @classmethod
    def build(cls, client: TestClient) -> World:
        app = client.app
        engine = app.state.resources.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            add_global_admin(session, "root@example.org", PASSWORD, now=1.0)
            session.commit()
        login = client.post("/api/v1/auth/login", json={"email": "root@example.org", "password": PASSWORD})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf"]
        client.headers["X-CSRF-Token"] = csrf
        root_org = client.post("/api/v1/orgs", json={"slug": "govtech", "name": "GovTech", "kind": "centre"}).json()
        world = cls(client=client, root={})
        root_token = client.post(
            "/api/v1/tokens", json={"name": "root", "org_id": root_org["id"], "role": "admin"}
        ).json()["token"]
        client.cookies.clear()
        del client.headers["X-CSRF-Token"]
        world.orgs["govtech"] = root_org["id"]
        # A global admin acting through an org token has only that org's admin role; so the
        # root session is used for creating organisations, then each org's people log in.
        world.root = bearer(root_token)
        for slug in ("a", "b"):
            login = client.post("/api/v1/auth/login", json={"email": "root@example.org", "password": PASSWORD})
            headers = {"X-CSRF-Token": login.json()["csrf"]}
            org = client.post("/api/v1/orgs", json={"slug": f"city-{slug}", "name": f"City {slug.upper()}"},
                              headers=headers).json()
            world.orgs[slug] = org["id"]
            for role in ("admin", "operator", "viewer"):
                email = f"{role}@{slug}.example.org"
                member = client.put(f"/api/v1/orgs/{org['id']}/members",
                                    json={"email": email, "role": role, "password": PASSWORD}, headers=headers)
                assert member.status_code == 200, member.text
            client.cookies.clear()
            for role in ("admin", "operator", "viewer"):
                email = f"{role}@{slug}.example.org"
                login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                token = client.post(
                    "/api/v1/tokens", json={"name": role, "org_id": org["id"], "role": role},
                    headers={"X-CSRF-Token": login.json()["csrf"]},
                ).json()["token"]
                client.cookies.clear()
                world.tokens[f"{slug}-{role}"] = bearer(token)
        return world
