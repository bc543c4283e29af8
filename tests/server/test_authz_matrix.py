"""The authorisation matrix: every route of the app (API and pages, from ``app.routes``) called by
every kind of caller, each answer pinned.

The callers (:data:`WHO`): anonymous, a bad token, an expired token, a kiosk token (of one of org
A's deployments), a device token (of org A's device), a viewer, an operator and an admin of org
A, an admin of org B, a global admin, and an anonymous caller of a demo server (reads open). A
person calls the API with their API token and pages with their browser session (cookie, and the
CSRF header on changes); the global admin, whose tokens never carry global rights, uses a session
throughout. Every route's target is org A's: its kit, deployment, device, rule, token and so on.

A route missing from :data:`EXPECTED` fails the test (and so does an entry for a route that no
longer exists): a new route is not done until someone has written down who may call it.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.store import SqliteStore
from server.agent_releases import add_release
from server.api.access import iter_routes
from server.api.auth import CSRF_HEADER, SESSION_COOKIE
from server.app import create_app
from server.rollouts import start_rollout, stop_rollout
from server.security import hash_secret, new_token
from server.settings import ServerSettings
from server.tables import (
    AgentReleaseRow,
    AlertRuleRow,
    ApiTokenRow,
    DeviceRow,
    MembershipRow,
    RolloutRow,
    SessionRow,
    UserRow,
)
from tests.server.data import NOW, climate
from tests.server.world import PASSWORD, World, bearer

WHO = (
    "anonymous",
    "bad_token",
    "expired_token",
    "kiosk",
    "device",
    "viewer",
    "operator",
    "admin",
    "other_admin",
    "global_admin",
    "demo_anonymous",
)

Ids = dict[str, Any]

# (method, path) -> the status each of WHO gets, in that order:
#   anonymous  bad  expired  kiosk  device  viewer  operator  admin  B's-admin  global  demo-anonymous
# 401: no or bad credentials; 303: a page sends an anonymous visitor to the login; 403: the role,
# or the token's kind (server.api.access.KIND_ROUTES), does not allow it; 404: another
# organisation's thing (its existence is not revealed), or not public. A kiosk or device token on
# a public route sees what everyone sees.
EXPECTED: dict[tuple[str, str], str] = {
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): "401 401 401 403 403 403 204 204 404 204 401",
    ("DELETE", "/api/v1/devices/{device}"): "401 401 401 403 403 403 200 200 404 200 401",
    ("DELETE", "/api/v1/kit-profiles/{profile_id}"): "401 401 401 403 403 403 204 204 404 204 401",
    (
        "DELETE",
        "/api/v1/kits/{kit_id}/pis/{pi_index}/claim-code",
    ): "401 401 401 403 403 403 204 204 404 204 401",
    ("DELETE", "/api/v1/orgs/{org_id}/members/{user_id}"): "401 401 401 403 403 403 403 204 404 204 401",
    ("DELETE", "/api/v1/tokens/{token_id}"): "401 401 401 403 403 403 403 200 404 200 401",
    ("DELETE", "/api/v1/users/{user_id}"): "401 401 401 403 403 403 403 403 403 204 401",
    ("GET", "/"): "303 401 401 403 403 200 200 200 200 200 200",
    ("GET", "/api/v1/alert-rules"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/alert-rules/{rule_id}"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/alerts"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/audit"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/auth/me"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/calibrations/due"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/dead-letters"): "401 401 401 403 403 200 200 200 200 200 200",
    ("GET", "/api/v1/deployments"): "401 401 401 200 403 200 200 200 200 200 401",
    ("GET", "/api/v1/deployments/{deployment_id}"): "401 401 401 200 403 200 200 200 404 200 401",
    ("GET", "/api/v1/deployments/{deployment_id}/assessment"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/deployments/{deployment_id}/derived"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/deployments/{deployment_id}/chart"): "401 401 401 200 403 200 200 200 404 200 200",
    ("GET", "/api/v1/deployments/{deployment_id}/readings"): "401 401 401 200 403 200 200 200 404 200 200",
    ("GET", "/api/v1/deployments/{deployment_id}/report"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/devices"): "401 401 401 403 403 200 200 200 200 200 200",
    ("GET", "/api/v1/devices/{device}"): "401 401 401 403 200 200 200 200 404 200 200",
    ("GET", "/api/v1/devices/{device}/commands"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/devices/{device}/commands/{command_id}"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/devices/{device}/config/versions"): "401 401 401 403 403 200 200 200 404 200 401",
    (
        "GET",
        "/api/v1/devices/{device}/config/versions/{config_version}",
    ): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/devices/{device}/latest"): "401 401 401 403 200 200 200 200 404 200 200",
    ("GET", "/api/v1/devices/{device}/readings"): "401 401 401 403 200 200 200 200 404 200 200",
    ("GET", "/api/v1/export/deployments.geojson"): "200 200 200 200 200 200 200 200 200 200 200",
    (
        "GET",
        "/api/v1/export/deployments/{deployment_id}/readings",
    ): "404 401 401 200 404 200 200 200 404 200 404",
    ("GET", "/api/v1/export/use-cases/{use_case_id}/readings"): "404 401 401 404 404 200 200 200 404 200 404",
    ("GET", "/api/v1/health"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/kit-profiles"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/kit-profiles/{profile_id}"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/kits"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/kits/{kit_id}"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/kits/{kit_id}/calibrations"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/kits/{kit_id}/calibrations/deliveries"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/loans"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/me/export"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/openapi.json"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/orgs"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/orgs/{org_id}"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/orgs/{org_id}/members"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/api/v1/tokens"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/api/v1/use-cases"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/use-cases/{use_case_id}"): "404 401 401 404 404 200 200 200 404 200 404",
    ("GET", "/api/v1/users"): "401 401 401 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/users/{user_id}/export"): "401 401 401 403 403 403 403 403 403 200 401",
    ("GET", "/claim"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/deployments/{deployment_id}"): "303 401 401 403 403 200 200 200 404 200 303",
    ("GET", "/deployments/{deployment_id}/series"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/docs"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/fleet"): "303 401 401 403 403 200 200 200 200 200 303",
    ("GET", "/fleet/devices/{device}"): "303 401 401 403 403 200 200 200 404 200 303",
    ("GET", "/fleet/devices/{device}/live"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/fleet/live"): "401 401 401 403 403 200 200 200 200 200 401",
    ("GET", "/kiosk"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/kiosk/data"): "401 401 401 200 403 401 401 401 401 401 401",
    ("GET", "/kits"): "303 401 401 403 403 200 200 200 200 200 303",
    ("GET", "/kits/import"): "303 401 401 403 403 200 200 200 200 200 303",
    ("GET", "/kits/{kit_id}/unboxing"): "303 401 401 403 403 200 200 200 404 200 303",
    ("GET", "/kits/{kit_id}/unboxing/status"): "401 401 401 403 403 200 200 200 404 200 401",
    ("GET", "/login"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/public"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/public/deployments/{deployment_id}"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/public/deployments/{deployment_id}/series"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/public/use-cases/{use_case_id}"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/redoc"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/static"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/use-cases"): "200 401 401 200 200 200 200 200 200 200 200",
    ("GET", "/use-cases/{use_case_id}"): "404 401 401 404 404 200 200 200 404 200 404",
    ("GET", "/use-cases/{use_case_id}/deploy"): "303 401 401 403 403 200 200 200 404 200 303",
    ("PATCH", "/api/v1/alert-rules/{rule_id}"): "401 401 401 403 403 403 200 200 404 200 401",
    ("PATCH", "/api/v1/deployments/{deployment_id}"): "401 401 401 403 403 403 200 200 404 200 401",
    ("PATCH", "/api/v1/kits/{kit_id}"): "401 401 401 403 403 403 200 200 404 200 401",
    ("PATCH", "/api/v1/orgs/{org_id}"): "401 401 401 403 403 403 403 200 404 200 401",
    ("POST", "/api/v1/alert-rules"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/alerts/evaluate"): "401 401 401 403 403 403 200 200 200 200 401",
    ("POST", "/api/v1/auth/login"): "200 200 200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/claims/bind"): "401 401 401 403 403 403 201 201 404 201 401",
    ("GET", "/api/v1/agent-releases"): "401 401 401 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/agent-releases/{version}/{filename}"): "200 200 200 200 200 200 200 200 200 200 200",
    ("GET", "/api/v1/rollouts"): "401 401 401 403 403 403 403 403 403 200 401",
    ("GET", "/api/v1/rollouts/{rollout_id}"): "401 401 401 403 403 403 403 403 403 200 401",
    ("POST", "/api/v1/agent-releases"): "401 401 401 403 403 403 403 403 403 422 401",
    ("POST", "/api/v1/rollouts"): "401 401 401 403 403 403 403 403 403 201 401",
    ("POST", "/api/v1/rollouts/{rollout_id}/stop"): "401 401 401 403 403 403 403 403 403 200 401",
    ("PUT", "/api/v1/devices/{device}/updates"): "401 401 401 403 403 403 403 200 404 200 401",
    ("PUT", "/api/v1/orgs/{org_id}/updates"): "401 401 401 403 403 403 403 200 404 200 401",
    ("POST", "/api/v1/claims/poll"): "200 200 200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/claims/qr"): "401 401 401 403 403 403 200 200 404 200 401",
    ("POST", "/api/v1/deployments"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/devices/{device}/commands"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/devices/{device}/config/versions"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/deployments/{deployment_id}/end"): "401 401 401 403 403 403 200 200 404 200 401",
    ("POST", "/api/v1/enroll"): "200 200 200 200 200 200 200 200 200 200 200",
    ("POST", "/api/v1/enrollment-codes"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/kit-profiles"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/kits"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/kits/{kit_id}/calibrations"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/kits/import"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/kits/{kit_id}/loans"): "401 401 401 403 403 403 201 201 404 201 401",
    (
        "POST",
        "/api/v1/kits/{kit_id}/pis/{pi_index}/claim-code",
    ): "401 401 401 403 403 403 200 200 404 200 401",
    ("POST", "/api/v1/kits/{kit_id}/return"): "401 401 401 403 403 403 200 200 404 200 401",
    ("POST", "/api/v1/orgs"): "401 401 401 403 403 403 403 403 403 201 401",
    ("POST", "/api/v1/tokens"): "401 401 401 403 403 201 201 201 404 201 401",
    ("POST", "/api/v1/use-cases"): "401 401 401 403 403 403 201 201 404 201 401",
    ("POST", "/api/v1/users"): "401 401 401 403 403 403 403 403 403 201 401",
    ("PUT", "/api/v1/deployments/{deployment_id}/assessment"): "401 401 401 403 403 403 200 200 404 200 401",
    ("PUT", "/api/v1/deployments/{deployment_id}/derived"): "401 401 401 403 403 403 200 200 404 200 401",
    ("PUT", "/api/v1/orgs/{org_id}/members"): "401 401 401 403 403 403 403 200 404 200 401",
    ("PUT", "/api/v1/use-cases/{use_case_id}"): "401 401 401 403 403 403 200 200 404 200 401",
    ("DELETE", "/api/v1/me"): "401 401 401 403 403 204 204 204 204 204 401",
    ("POST", "/api/v1/auth/logout"): "204 204 204 204 204 204 204 204 204 204 204",
}

# Routes called last, in this order: they end sessions or delete their callers.
LAST = (("DELETE", "/api/v1/me"), ("POST", "/api/v1/auth/logout"))


@dataclass
class Fleet:
    """Org A's things, the callers' credentials, and the apps (closed, and a demo on the same data)."""

    client: TestClient
    demo: TestClient
    ids: Ids
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    serial: Iterator[int] = field(default_factory=itertools.count)

    @property
    def engine(self) -> Any:
        return self.client.app.state.resources.engine  # type: ignore[attr-defined]

    def root(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """Call the API as the global admin, to make what a route under test needs."""
        raw, csrf = self.sessions["global_admin"]
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, raw)
        response = self.client.request(method, f"/api/v1{path}", headers={CSRF_HEADER: csrf}, **kwargs)
        self.client.cookies.clear()
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else None

    def call(self, who: str, method: str, path: str, body: Any) -> int:
        client = self.demo if who == "demo_anonymous" else self.client
        client.cookies.clear()
        headers: dict[str, str] = {}
        page = not path.startswith("/api/")
        if who in self.sessions and (page or who == "global_admin"):
            raw, csrf = self.sessions[who]
            client.cookies.set(SESSION_COOKIE, raw)
            headers[CSRF_HEADER] = csrf
        elif who in self.tokens:
            headers.update(self.tokens[who])
        response = client.request(method, path, headers=headers, json=body, follow_redirects=False)
        client.cookies.clear()
        return response.status_code


def _session(engine: Any, user_id: int) -> tuple[str, str]:
    raw, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with Session(engine) as session:
        session.add(
            SessionRow(
                id_hash=hash_secret(raw), user_id=user_id, csrf=csrf, created_at=NOW, expires_at=NOW + 3600
            )
        )
        session.commit()
    return raw, csrf


def _user_id(engine: Any, email: str) -> int:
    from sqlmodel import select

    with Session(engine) as session:
        user_id = session.exec(select(UserRow.id).where(UserRow.email == email)).one()
    assert user_id is not None
    return user_id


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        open_reads=False,
        # Every caller's exports come from one address on a clock that never moves: the export
        # limit (tested on its own) would answer 429 where this test asks who may call.
        export_per_min=1000,
    )
    with (
        TestClient(create_app(settings, clock=lambda: NOW)) as client,
        TestClient(create_app(settings.model_copy(update={"open_reads": True}), clock=lambda: NOW)) as demo,
    ):
        world = World.build(client)
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]
        a = world.orgs["a"]
        kit = world.ok(
            "a-admin", "POST", "/kits", 201, json={"inventory_code": "A-1", "profile_id": "starter"}
        )
        dep = world.ok(
            "a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "a place"}
        )
        square = world.ok(
            "a-operator", "POST", "/deployments", 201, json={"name": "a square", "public": True}
        )
        code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})
        enrolled = client.post("/api/v1/enroll", json={"code": code["code"]}).json()
        kiosk = world.ok(
            "a-admin",
            "POST",
            "/tokens",
            201,
            json={"name": "lobby", "org_id": a, "kind": "kiosk", "deployment_ids": [dep["id"]]},
        )
        rule = world.ok("a-operator", "POST", "/alert-rules", 201, json={"name": "r", "kind": "loan_overdue"})
        token = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "t", "org_id": a})
        case = {
            "id": "a-own",
            "title": "A's own",
            "summary": "s",
            "kit_profile": "starter",
            "sensors": ["bme280"],
            "quantities": ["temperature"],
            "placement": ["p"],
            "dashboard": "indoor-climate",
            "seed_lines": ["2698-2701"],
        }
        world.ok("a-operator", "POST", "/use-cases", 201, json={"use_case": case})
        member = _user_id(engine, "viewer@a.example.org")
        device = enrolled["config"]["device"]
        command = world.ok("a-operator", "POST", f"/devices/{device}/commands", 201, json={"name": "ping"})
        catalogue = [c["id"] for c in client.get("/api/v1/use-cases").json()["data"]]
        with SqliteStore(settings.store) as store:  # the device has sent readings
            store.write(climate(enrolled["config"]["device"], NOW - 5, org="city-a"))
        with Session(engine) as session:  # a release (a wheel's METADATA is all it checks) and its rollout
            release = add_release(session, TINY_WHEEL, _tiny_wheel(), NOW)
            session.flush()
            rollout = start_rollout(session, release, NOW, base_url="https://suitcase.example.org")
            session.commit()
            rollout_id = rollout.id
        ids: Ids = {
            "version": "0.0.1",
            "filename": TINY_WHEEL,
            "rollout_id": rollout_id,
            "org_id": a,
            "org_b": world.orgs["b"],
            "kit_id": kit["id"],
            "claim_code": kit["claim_codes"][0]["code"],
            "pi_index": 1,
            "deployment_id": dep["id"],
            "public_deployment_id": square["id"],
            "device": device,
            "command_id": command["command_id"],
            "config_version": 1,
            "rule_id": rule["id"],
            "token_id": token["id"],
            "use_case_id": "a-own",
            "public_use_case_id": catalogue[0],
            "use_case": case,
            "profile_id": "a-kit",
            "user_id": member,
        }
        fleet = Fleet(client=client, demo=demo, ids=ids)
        fleet.tokens = {
            "bad_token": bearer("sct_" + "x" * 43),
            "kiosk": bearer(kiosk["token"]),
            "device": bearer(enrolled["token"]),
            "viewer": world.tokens["a-viewer"],
            "operator": world.tokens["a-operator"],
            "admin": world.tokens["a-admin"],
            "other_admin": world.tokens["b-admin"],
        }
        raw = new_token()
        with Session(engine) as session:
            session.add(
                ApiTokenRow(
                    name="old",
                    token_hash=hash_secret(raw),
                    prefix=raw[:10],
                    org_id=a,
                    role="admin",
                    user_id=_user_id(engine, "admin@a.example.org"),
                    created_at=1.0,
                    expires_at=NOW - 1,
                )
            )
            session.commit()
        fleet.tokens["expired_token"] = bearer(raw)
        for who, email in (
            ("viewer", "viewer@a.example.org"),
            ("operator", "operator@a.example.org"),
            ("admin", "admin@a.example.org"),
            ("other_admin", "admin@b.example.org"),
            ("global_admin", "root@example.org"),
        ):
            fleet.sessions[who] = _session(engine, _user_id(engine, email))
        fleet.root("POST", "/kit-profiles", 201, json={"org_id": a, "profile": _profile("a-kit")})
        yield fleet


def _profile(profile_id: str) -> dict[str, Any]:
    return {
        "id": profile_id,
        "name": profile_id,
        "description": "d",
        "pis": 1,
        "sensors": [{"part": "bme280", "address": 0x77, "quantities": ["temperature"]}],
    }


# What a call needs that one call may use up: a fresh target (path parameters) or a unique body.
def _fresh_kit(fleet: Fleet, who: str) -> Ids:
    kit = fleet.root(
        "POST",
        "/kits",
        201,
        json={
            "inventory_code": f"F-{next(fleet.serial)}",
            "profile_id": "starter",
            "org_id": fleet.ids["org_id"],
        },
    )
    return {"kit_id": kit["id"], "claim_code": kit["claim_codes"][0]["code"]}


def _fresh_loaned_kit(fleet: Fleet, who: str) -> Ids:
    fresh = _fresh_kit(fleet, who)
    loan = {"org_id": fleet.ids["org_b"], "borrower": "b", "due_at": NOW + 99}
    fleet.root("POST", f"/kits/{fresh['kit_id']}/loans", 201, json=loan)
    return fresh


def _fresh_kit_and_deployment(fleet: Fleet, who: str) -> Ids:
    return {**_fresh_kit(fleet, who), **_fresh_deployment(fleet, who)}


def _fresh_deployment(fleet: Fleet, who: str) -> Ids:
    dep = fleet.root("POST", "/deployments", 201, json={"name": "d", "org_id": fleet.ids["org_id"]})
    return {"deployment_id": dep["id"]}


def _fresh_rule(fleet: Fleet, who: str) -> Ids:
    with Session(fleet.engine) as session:
        rule = AlertRuleRow(org_id=fleet.ids["org_id"], name="r", kind="offline", created_at=NOW)
        session.add(rule)
        session.commit()
        return {"rule_id": rule.id}


def _fresh_token(fleet: Fleet, who: str) -> Ids:
    with Session(fleet.engine) as session:
        raw = new_token()
        row = ApiTokenRow(
            name="spare",
            token_hash=hash_secret(raw),
            prefix=raw[:10],
            org_id=fleet.ids["org_id"],
            role="viewer",
            created_at=NOW,
        )
        session.add(row)
        session.commit()
        return {"token_id": row.id}


def _fresh_device(fleet: Fleet, who: str) -> Ids:
    device = f"a-spare-{next(fleet.serial)}"
    with Session(fleet.engine) as session:
        session.add(DeviceRow(id=device, org_id=fleet.ids["org_id"], registered_at=NOW))
        session.commit()
    return {"device": device}


def _fresh_profile(fleet: Fleet, who: str) -> Ids:
    profile_id = f"spare-{next(fleet.serial)}"
    fleet.root(
        "POST", "/kit-profiles", 201, json={"org_id": fleet.ids["org_id"], "profile": _profile(profile_id)}
    )
    return {"profile_id": profile_id}


def _fresh_user(fleet: Fleet, who: str, member: bool = False) -> Ids:
    with Session(fleet.engine) as session:
        user = UserRow(email=f"spare-{next(fleet.serial)}@a.example.org", password_hash="x", created_at=NOW)
        session.add(user)
        session.flush()
        assert user.id is not None
        if member:
            session.add(MembershipRow(user_id=user.id, org_id=fleet.ids["org_id"], role="viewer"))
        session.commit()
        return {"user_id": user.id}


def _fresh_enrollment(fleet: Fleet, who: str) -> Ids:
    body = {"deployment_id": fleet.ids["deployment_id"]}
    return {"code": fleet.root("POST", "/enrollment-codes", 201, json=body)["code"]}


TINY_WHEEL = "iot_suitcase-0.0.1-py3-none-any.whl"


def _tiny_wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("iot_suitcase-0.0.1.dist-info/METADATA", "Name: iot-suitcase\nVersion: 0.0.1\n")
    return buffer.getvalue()


def _no_running_rollout(fleet: Fleet, who: str) -> Ids:
    with Session(fleet.engine) as session:
        running = session.exec(select(RolloutRow).where(RolloutRow.state == "running")).first()
        if running is not None:
            stop_rollout(session, running, "the next test", NOW)
            session.commit()
    return {}


def _fresh_rollout(fleet: Fleet, who: str) -> Ids:
    _no_running_rollout(fleet, who)
    with Session(fleet.engine) as session:
        release = session.exec(select(AgentReleaseRow)).first()
        assert release is not None
        rollout = start_rollout(session, release, NOW, base_url="https://suitcase.example.org")
        session.commit()
        return {"rollout_id": rollout.id}


FRESH: dict[tuple[str, str], Callable[[Fleet, str], Ids]] = {
    ("POST", "/api/v1/rollouts"): _no_running_rollout,
    ("POST", "/api/v1/rollouts/{rollout_id}/stop"): _fresh_rollout,
    ("POST", "/api/v1/kits/{kit_id}/loans"): _fresh_kit,
    ("POST", "/api/v1/kits/{kit_id}/return"): _fresh_loaned_kit,
    ("POST", "/api/v1/claims/bind"): _fresh_kit_and_deployment,
    ("POST", "/api/v1/claims/qr"): _fresh_kit,
    ("POST", "/api/v1/claims/poll"): _fresh_kit,
    ("POST", "/api/v1/kits/{kit_id}/pis/{pi_index}/claim-code"): _fresh_kit,
    ("DELETE", "/api/v1/kits/{kit_id}/pis/{pi_index}/claim-code"): _fresh_kit,
    ("POST", "/api/v1/deployments/{deployment_id}/end"): _fresh_deployment,
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): _fresh_rule,
    ("DELETE", "/api/v1/tokens/{token_id}"): _fresh_token,
    ("DELETE", "/api/v1/devices/{device}"): _fresh_device,
    ("DELETE", "/api/v1/kit-profiles/{profile_id}"): _fresh_profile,
    ("DELETE", "/api/v1/users/{user_id}"): _fresh_user,
    ("DELETE", "/api/v1/orgs/{org_id}/members/{user_id}"): lambda f, w: _fresh_user(f, w, member=True),
    ("POST", "/api/v1/enroll"): _fresh_enrollment,
}


def _bodies(ids: Ids, who: str) -> dict[tuple[str, str], Any]:
    n = f"{who.replace('_', '-')}-{time.monotonic_ns() % 10**9}"
    org = ids["org_id"]
    return {
        ("POST", "/api/v1/auth/login"): {"email": "viewer@b.example.org", "password": PASSWORD},
        ("POST", "/api/v1/orgs"): {"slug": f"o-{n}", "name": "o"},
        ("PATCH", "/api/v1/orgs/{org_id}"): {"name": "City A"},
        ("PUT", "/api/v1/orgs/{org_id}/members"): {"email": "viewer@a.example.org", "role": "viewer"},
        ("POST", "/api/v1/users"): {"email": f"u-{n}@example.org", "password": PASSWORD},
        ("POST", "/api/v1/tokens"): {"name": "t", "org_id": org},
        ("POST", "/api/v1/kits"): {"inventory_code": f"K-{n}", "profile_id": "starter", "org_id": org},
        ("POST", "/api/v1/kits/import"): {"csv": f"kit,profile,pi\nI-{n},starter,1\n", "org_id": org},
        ("PATCH", "/api/v1/kits/{kit_id}"): {"notes": "n"},
        ("POST", "/api/v1/kits/{kit_id}/loans"): {"org_id": ids["org_b"], "borrower": "b", "due_at": NOW + 9},
        ("POST", "/api/v1/kits/{kit_id}/return"): {"condition": "good"},
        ("POST", "/api/v1/kits/{kit_id}/calibrations"): {
            "pi_index": 1,
            "sensor": "bme280",
            "quantity": "humidity",
        },
        ("POST", "/api/v1/kit-profiles"): {"org_id": org, "profile": _profile(f"p-{n}")},
        ("POST", "/api/v1/deployments"): {"org_id": org, "name": "x"},
        ("PATCH", "/api/v1/deployments/{deployment_id}"): {"notes": "n"},
        ("POST", "/api/v1/devices/{device}/commands"): {"name": "ping"},
        ("POST", "/api/v1/rollouts"): {"version": "0.0.1"},
        ("PUT", "/api/v1/devices/{device}/updates"): {"opt_out": False},
        ("PUT", "/api/v1/orgs/{org_id}/updates"): {"opt_out": False},
        ("POST", "/api/v1/devices/{device}/config/versions"): {
            "sections": {"sampling": {"publish_interval_s": 2 + time.monotonic_ns() % 10**6 / 1000}}
        },
        ("PUT", "/api/v1/deployments/{deployment_id}/assessment"): {"expert_score_pct": 10},
        ("PUT", "/api/v1/deployments/{deployment_id}/derived"): {"derivations": [{"kind": "dew_point"}]},
        ("POST", "/api/v1/enrollment-codes"): {"deployment_id": ids["deployment_id"]},
        ("POST", "/api/v1/claims/bind"): {
            "claim_code": ids["claim_code"],
            "deployment_id": ids["deployment_id"],
        },
        ("POST", "/api/v1/claims/qr"): {"claim_code": ids["claim_code"]},
        ("POST", "/api/v1/claims/poll"): {"code": ids["claim_code"]},
        ("POST", "/api/v1/enroll"): {"code": ids.get("code", "")},
        ("POST", "/api/v1/alert-rules"): {"org_id": org, "name": "x", "kind": "offline"},
        ("PATCH", "/api/v1/alert-rules/{rule_id}"): {"enabled": True},
        ("POST", "/api/v1/use-cases"): {"org_id": org, "use_case": {**ids["use_case"], "id": f"uc-{n}"}},
        ("PUT", "/api/v1/use-cases/{use_case_id}"): {"use_case": ids["use_case"]},
    }


# Concrete paths of what has no path template of its own.
CONCRETE = {
    ("GET", "/static"): "/static/app.css",
    # The body (JSON here) is no wheel: the global admin passes the access checks and gets 422.
    ("POST", "/api/v1/agent-releases"): "/api/v1/agent-releases?filename=iot_suitcase-9.9.9-py3-none-any.whl",
}
# Routes whose {deployment_id} and {use_case_id} are public ones (the others: org A's own).
PUBLIC_TARGET = re.compile(r"^/public/")


def _path(method: str, template: str, ids: Ids) -> str:
    if (method, template) in CONCRETE:
        return CONCRETE[(method, template)]
    values = dict(ids)
    if PUBLIC_TARGET.match(template):
        values["deployment_id"] = ids["public_deployment_id"]
        values["use_case_id"] = ids["public_use_case_id"]
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), template)


def _routes(fleet: Fleet) -> list[tuple[str, str]]:
    routes = sorted({(m, p) for m, p, _ in iter_routes(fleet.client.app)})  # type: ignore[arg-type]
    return [r for r in routes if r not in LAST] + [r for r in LAST if r in routes]


def test_every_route_answers_every_caller_as_written_down(fleet: Fleet) -> None:
    """Test that each route gives each kind of caller exactly the status written in EXPECTED, and
    that EXPECTED lists every route of the app, and no other."""
    routes = _routes(fleet)
    record = os.environ.get("SUITCASE_RECORD_MATRIX") == "1"
    missing = [r for r in routes if r not in EXPECTED]
    stale = [r for r in EXPECTED if r not in routes]
    assert record or not missing, (
        f"routes with no entry in EXPECTED (write down who may call them): {missing}"
    )
    assert not stale, f"entries in EXPECTED for routes that no longer exist: {stale}"
    wrong: list[str] = []
    lines: list[str] = []
    for method, template in routes:
        got = []
        for who in WHO:
            ids = dict(fleet.ids)
            fresh = FRESH.get((method, template))
            if fresh is not None:
                ids.update(fresh(fleet, who))
            body = _bodies(ids, who).get((method, template))
            got.append(fleet.call(who, method, _path(method, template, ids), body))
        observed = " ".join(str(s) for s in got)
        lines.append(f'    ("{method}", "{template}"): "{observed}",')
        expected = EXPECTED.get((method, template))
        if expected != observed:
            wrong.append(f"{method} {template}\n  expected {expected}\n  got      {observed}")
    if record:
        print("\n".join(lines))
    assert not wrong, "statuses differ (" + " ".join(WHO) + "):\n" + "\n".join(wrong)


def _resolves_the_caller(endpoint: Callable[..., Any], path: str) -> bool:
    from fastapi.dependencies.utils import get_dependant

    from server.api.auth import get_principal

    pending = [get_dependant(path=path, call=endpoint)]
    while pending:
        dependant = pending.pop()
        if dependant.call is get_principal:
            return True
        pending.extend(dependant.dependencies)
    return False


def test_every_closed_route_resolves_its_caller(tmp_path: Path) -> None:
    """Test that every route not listed as public depends on ``get_principal``, where the access
    table is applied: a route that never asks who calls would be open to anyone whatever the table
    says."""
    from server.api.access import PUBLIC

    settings = ServerSettings(registry_url=f"sqlite:///{tmp_path / 'r.db'}", store=str(tmp_path / "s.db"))
    unguarded = [
        (method, path)
        for method, path, endpoint in iter_routes(create_app(settings))
        if endpoint is not None and (method, path) not in PUBLIC and not _resolves_the_caller(endpoint, path)
    ]
    assert not unguarded, f"routes that never resolve their caller: {unguarded}"
