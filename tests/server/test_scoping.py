"""Every endpoint is scoped by organisation: org B's admin never sees or changes org A's things."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.server.data import NOW
from tests.server.world import World

# Open on purpose: the catalogue, health, login, the agent's enrollment calls, open-data of public
# deployments, and the caller's own account.
PUBLIC = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/kit-profiles"),
    ("GET", "/api/v1/kit-profiles/{profile_id}"),
    ("GET", "/api/v1/use-cases"),
    ("GET", "/api/v1/use-cases/{use_case_id}"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/claims/poll"),
    ("POST", "/api/v1/enroll"),
    ("GET", "/api/v1/export/deployments.geojson"),
    ("GET", "/api/v1/me/export"),
    ("DELETE", "/api/v1/me"),
}


@dataclass
class _Route:
    path: str


def _setup(world: World) -> dict[str, Any]:
    a = world.orgs["a"]
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "A-1", "profile_id": "starter"})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "a place"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    device = world.client.post("/api/v1/enroll", json={"code": code}).json()["config"]["device"]
    world.ok(
        "a-operator",
        "POST",
        f"/kits/{kit['id']}/calibrations",
        201,
        json={
            "pi_index": 1,
            "sensor": "bme280",
            "quantity": "temperature",
            "offset": -0.5,
            "due_at": NOW - 1,
        },
    )
    rule = world.ok("a-operator", "POST", "/alert-rules", 201, json={"name": "r", "kind": "loan_overdue"})
    token = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "t", "org_id": a})
    world.ok(
        "a-admin",
        "POST",
        f"/kits/{kit['id']}/loans",
        201,
        json={"org_id": a, "borrower": "me", "due_at": NOW - 10, "starts_at": NOW - 100},
    )
    world.ok(
        "a-operator",
        "POST",
        "/use-cases",
        201,
        json={
            "use_case": {
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
        },
    )
    world.ok(
        "a-operator",
        "POST",
        "/kit-profiles",
        201,
        json={
            "profile": {
                "id": "a-kit",
                "name": "A kit",
                "description": "d",
                "pis": 1,
                "sensors": [{"part": "bme280", "address": 0x77, "quantities": ["temperature"]}],
            }
        },
    )
    member = world.ok("a-admin", "GET", f"/orgs/{a}/members")["data"][0]["user_id"]
    command = world.ok("a-operator", "POST", f"/devices/{device}/commands", 201, json={"name": "ping"})
    return {
        "command_id": command["command_id"],
        "config_version": 1,
        "org_id": a,
        "kit_id": kit["id"],
        "deployment_id": dep["id"],
        "device": device,
        "rule_id": rule["id"],
        "token_id": token["id"],
        "pi_index": 1,
        "use_case_id": "a-own",
        "profile_id": "a-kit",
        "user_id": member,
    }


# Lists only a global admin (or, for users and audit, an org admin of one's own) may read.
GLOBAL_ADMIN_LISTS = ("/api/v1/users", "/api/v1/audit", "/api/v1/agent-releases", "/api/v1/rollouts")


def _param(ids: dict[str, Any], name: str) -> str:
    """Org A's thing for a path parameter; an id org A has none of (say, a rollout) is a number."""
    return str(ids.get(name, 999_999 if name.endswith(("_id", "_version")) else ids["device"]))


# Routes whose required query parameters must be valid for the check of the caller to be reached.
QUERIES = {("POST", "/api/v1/agent-releases"): "?filename=iot_suitcase-9.9.9-py3-none-any.whl"}


def _bodies(ids: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        ("PATCH", "/api/v1/orgs/{org_id}"): {"name": "taken over"},
        ("PUT", "/api/v1/orgs/{org_id}/members"): {
            "email": "x@b.example.org",
            "role": "admin",
            "password": "p" * 12,
        },
        ("POST", "/api/v1/tokens"): {"name": "t", "org_id": ids["org_id"], "role": "viewer"},
        ("POST", "/api/v1/kits"): {"inventory_code": "B-1", "profile_id": "starter", "org_id": ids["org_id"]},
        ("PATCH", "/api/v1/kits/{kit_id}"): {"condition": "damaged"},
        ("PUT", "/api/v1/deployments/{deployment_id}/derived"): {"derivations": [{"kind": "dew_point"}]},
        ("POST", "/api/v1/devices/{device}/commands"): {"name": "ping"},
        ("POST", "/api/v1/devices/{device}/config/versions"): {"sections": {"calibration": []}},
        ("POST", "/api/v1/rollouts"): {"version": "9.9.9"},
        ("PUT", "/api/v1/devices/{device}/updates"): {"opt_out": True},
        ("PUT", "/api/v1/orgs/{org_id}/updates"): {"opt_out": True},
        ("POST", "/api/v1/kits/import"): {"csv": "kit,profile,pi\nB-9,starter,1\n", "org_id": ids["org_id"]},
        ("POST", "/api/v1/kits/{kit_id}/loans"): {
            "org_id": ids["org_id"],
            "borrower": "b",
            "due_at": NOW + 9,
        },
        ("POST", "/api/v1/kits/{kit_id}/return"): {"condition": "good"},
        ("POST", "/api/v1/kits/{kit_id}/calibrations"): {
            "pi_index": 1,
            "sensor": "bme280",
            "quantity": "humidity",
        },
        ("POST", "/api/v1/kit-profiles"): {
            "org_id": ids["org_id"],
            "profile": {
                "id": "b-kit",
                "name": "B",
                "description": "d",
                "pis": 1,
                "sensors": [{"part": "bme280", "address": 0x77, "quantities": ["temperature"]}],
            },
        },
        ("POST", "/api/v1/deployments"): {"org_id": ids["org_id"], "name": "x"},
        ("PATCH", "/api/v1/deployments/{deployment_id}"): {"name": "x"},
        ("PUT", "/api/v1/deployments/{deployment_id}/assessment"): {"expert_score_pct": 10},
        ("POST", "/api/v1/enrollment-codes"): {"deployment_id": ids["deployment_id"]},
        ("POST", "/api/v1/claims/bind"): {
            "claim_code": "SC-00000-00000-00000-00000-00000",
            "deployment_id": ids["deployment_id"],
        },
        ("POST", "/api/v1/claims/qr"): {"claim_code": "SC-00000-00000-00000-00000-00000"},
        ("POST", "/api/v1/alert-rules"): {"org_id": ids["org_id"], "name": "x", "kind": "offline"},
        ("PATCH", "/api/v1/alert-rules/{rule_id}"): {"enabled": False},
        ("POST", "/api/v1/use-cases"): {
            "org_id": ids["org_id"],
            "use_case": {
                "id": "b-own",
                "title": "t",
                "summary": "s",
                "kit_profile": "starter",
                "sensors": ["bme280"],
                "quantities": ["temperature"],
                "placement": ["p"],
                "dashboard": "indoor-climate",
                "seed_lines": ["2698-2701"],
            },
        },
        ("PUT", "/api/v1/use-cases/{use_case_id}"): {
            "use_case": {
                "id": "a-own",
                "title": "t",
                "summary": "s",
                "kit_profile": "starter",
                "sensors": ["bme280"],
                "quantities": ["temperature"],
                "placement": ["p"],
                "dashboard": "indoor-climate",
                "seed_lines": ["2698-2701"],
            }
        },
        ("POST", "/api/v1/users"): {"email": "y@b.example.org", "password": "p" * 12},
        ("POST", "/api/v1/orgs"): {"slug": "evil", "name": "evil"},
    }


def test_foreign_org_admin_gets_nothing_of_another_org(world: World) -> None:
    """Test that org B's admin token gets 403/404 on every endpoint that touches org A's things,
    and that lists show none of them."""
    ids = _setup(world)
    bodies = _bodies(ids)
    secrets_of_a = {ids["device"], "A-1", "a place"}
    walked = 0
    spec = world.client.get("/api/v1/openapi.json").json()
    for route_path, operations in spec["paths"].items():
        route = _Route(route_path)
        for method in sorted(m.upper() for m in operations):
            if (method, route.path) in PUBLIC:
                continue
            path = re.sub(r"\{(\w+)\}", lambda m: _param(ids, m.group(1)), route.path)
            path += QUERIES.get((method, route.path), "")
            body = bodies.get((method, route.path))
            response = world.client.request(method, path, headers=world.as_("b-admin"), json=body)
            walked += 1
            has_params = "{" in route.path or (body is not None and "org_id" in str(body))
            if has_params or method != "GET" or route.path in GLOBAL_ADMIN_LISTS:
                ok_statuses = {403, 404} if method != "GET" or has_params else {200, 403}
                if route.path in ("/api/v1/alerts/evaluate", "/api/v1/dead-letters"):
                    ok_statuses = {200}
                assert response.status_code in ok_statuses, (
                    method,
                    route.path,
                    response.status_code,
                    response.text,
                )
            else:
                assert response.status_code == 200, (method, route.path, response.text)
            # A 404 may repeat the id the caller sent, nothing more.
            leaks = {s for s in secrets_of_a if s not in path}
            assert not any(s in response.text for s in leaks), (method, route.path, response.text)
    assert walked >= 45
    # Org A's things are unchanged.
    assert world.ok("a-viewer", "GET", f"/kits/{ids['kit_id']}")["condition"] == "good"
    assert world.ok("a-viewer", "GET", f"/orgs/{ids['org_id']}")["name"] == "City A"


def test_roles_and_missing_credentials(world: World) -> None:
    """Test that a viewer cannot change things (403), and no or a bad token gets 401."""
    assert (
        world.call(
            "a-viewer", "POST", "/kits", json={"inventory_code": "V", "profile_id": "starter"}
        ).status_code
        == 403
    )
    assert (
        world.call(
            "a-operator",
            "PUT",
            f"/orgs/{world.orgs['a']}/members",
            json={"email": "x@y.z", "role": "admin", "password": "p" * 12},
        ).status_code
        == 403
    )
    for path in ("/kits", "/devices", "/deployments", "/alerts", "/tokens", "/loans", "/audit"):
        missing = world.client.get(f"/api/v1{path}")
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized", path
        bad = world.client.get(f"/api/v1{path}", headers={"Authorization": "Bearer sct_nope"})
        assert bad.status_code == 401, path
    invalid = world.call("a-operator", "POST", "/deployments", json={"name": "x", "lat": 91})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "lat"]


def test_a_revoked_token_stops_working_and_records_last_use(world: World) -> None:
    """Test that a token records its last use and is refused once revoked."""
    created = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "ci", "org_id": world.orgs["a"]})
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert world.client.get("/api/v1/kits", headers=headers).status_code == 200
    listed = {t["id"]: t for t in world.ok("a-admin", "GET", "/tokens")["data"]}
    assert listed[created["id"]]["last_used_at"] == NOW and "token" not in listed[created["id"]]
    world.ok("a-admin", "DELETE", f"/tokens/{created['id']}")
    assert world.client.get("/api/v1/kits", headers=headers).status_code == 401


def test_kiosk_token_reads_only_its_deployments(world: World) -> None:
    """Test that a kiosk token reads its deployments and nothing else, and cannot change anything."""
    one = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "lobby"})
    two = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "office"})
    kiosk = world.ok(
        "a-admin",
        "POST",
        "/tokens",
        201,
        json={
            "name": "lobby screen",
            "org_id": world.orgs["a"],
            "kind": "kiosk",
            "deployment_ids": [one["id"]],
        },
    )
    headers = {"Authorization": f"Bearer {kiosk['token']}"}
    assert world.client.get(f"/api/v1/deployments/{one['id']}/chart", headers=headers).status_code == 200
    assert world.client.get(f"/api/v1/deployments/{two['id']}", headers=headers).status_code == 404
    assert world.client.get("/api/v1/deployments", headers=headers).json()["count"] == 1
    assert (
        world.client.patch(
            f"/api/v1/deployments/{one['id']}", json={"name": "x"}, headers=headers
        ).status_code
        == 403  # a kiosk token may not use PATCH at all (server.api.access.KIND_ROUTES)
    )


def test_browser_session_needs_its_csrf_header(world: World) -> None:
    """Test that a session cookie alone cannot change anything: the CSRF header is required."""
    login = world.client.post(
        "/api/v1/auth/login", json={"email": "operator@a.example.org", "password": "correct horse battery"}
    )
    assert login.status_code == 200 and "httponly" in login.headers["set-cookie"].lower()
    body = {"name": "via cookie"}
    assert world.client.post("/api/v1/deployments", json=body).status_code == 403
    made = world.client.post("/api/v1/deployments", json=body, headers={"X-CSRF-Token": login.json()["csrf"]})
    assert made.status_code == 201
    world.client.post("/api/v1/auth/logout")
    assert world.client.get("/api/v1/deployments").status_code == 401


def test_login_guessing_is_rate_limited(world: World) -> None:
    """Test that repeated wrong passwords from one address get 429 with Retry-After."""
    statuses = [
        world.client.post(
            "/api/v1/auth/login", json={"email": "admin@a.example.org", "password": "no"}
        ).status_code
        for _ in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429
