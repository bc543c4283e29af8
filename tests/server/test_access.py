"""The security review's access-control findings (issue 13), each pinned by a test that failed
before its fix: the front page, token kinds, stale roles, the login redirect, the guess limiter,
minted tokens, secrets in logs and personal data."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.store import SqliteStore
from server.app import create_app
from server.security import GuessLimiter, redact_url
from server.settings import ServerSettings
from server.tables import ApiTokenRow
from server.web.views.login import safe_next
from tests.server.data import NOW, climate
from tests.server.world import PASSWORD, World, bearer


def _login(client: TestClient, email: str) -> dict[str, str]:
    """Log ``email`` in on ``client`` (its cookie jar) and return the CSRF header."""
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf"]}


def test_front_page_shows_anonymous_nothing_and_members_their_own(world: World, store: SqliteStore) -> None:
    """Test that on a closed server ``GET /`` sends an anonymous visitor to the login and shows a
    member only their organisations' devices (it listed every organisation's before)."""
    store.write(climate("a-lobby", NOW - 5, org="city-a") + climate("b-secret", NOW - 5, org="city-b"))
    anonymous = world.client.get("/", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2F"
    assert "b-secret" not in anonymous.text
    _login(world.client, "viewer@a.example.org")
    page = world.client.get("/")
    assert page.status_code == 200 and "a-lobby" in page.text and "b-secret" not in page.text
    world.client.cookies.clear()


def test_front_page_of_the_demo_is_open(client: TestClient, store: SqliteStore) -> None:
    """Test that a development server (reads open: the demo) still shows every device to all."""
    store.write(climate("demo-1", NOW - 5, org="demo"))
    assert "demo-1" in client.get("/").text


def _kiosk(world: World, deployment_id: int) -> dict[str, str]:
    body = {"name": "lobby", "org_id": world.orgs["a"], "kind": "kiosk", "deployment_ids": [deployment_id]}
    return bearer(world.ok("a-admin", "POST", "/tokens", 201, json=body)["token"])


def test_kiosk_token_may_not_act_for_its_person(world: World) -> None:
    """Test that a kiosk token, whose URL sits on a public screen, cannot delete or export its
    person's account, revoke their tokens, or read members, kits, loans and alert rules."""
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "lobby"})
    kiosk = _kiosk(world, dep["id"])
    own = world.ok("a-admin", "GET", "/tokens")["data"][0]["id"]
    a = world.orgs["a"]
    for method, path in (
        ("DELETE", "/me"),
        ("GET", "/me/export"),
        ("GET", "/auth/me"),
        ("DELETE", f"/tokens/{own}"),
        ("POST", "/tokens"),
        ("GET", f"/orgs/{a}/members"),
        ("GET", "/kits"),
        ("GET", "/loans"),
        ("GET", "/alert-rules"),
        ("GET", "/audit"),
        ("GET", "/devices"),
    ):
        response = world.client.request(method, f"/api/v1{path}", headers=kiosk)
        assert response.status_code == 403, (method, path, response.text)
        assert "kiosk token may not use" in response.json()["detail"]
    assert world.ok("a-admin", "GET", "/auth/me")["user"] is not None  # the person is still there
    assert world.client.get(f"/api/v1/deployments/{dep['id']}", headers=kiosk).status_code == 200
    assert world.client.get("/kiosk/data", headers=kiosk).json()["deployments"][0]["name"] == "lobby"


def test_device_token_reads_only_its_own_device(world: World) -> None:
    """Test that a device token (the agent does not use it) is no org-wide viewer: it reads its
    own device and nothing else of the organisation."""
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    enrolled = world.client.post("/api/v1/enroll", json={"code": code}).json()
    other_code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})
    other = world.client.post("/api/v1/enroll", json={"code": other_code["code"]}).json()["config"]["device"]
    device = bearer(enrolled["token"])
    mine = enrolled["config"]["device"]
    assert world.client.get(f"/api/v1/devices/{mine}", headers=device).status_code == 200
    assert world.client.get(f"/api/v1/devices/{other}", headers=device).status_code == 404
    for path in (
        "/devices",
        "/deployments",
        f"/deployments/{dep['id']}",
        "/kits",
        f"/orgs/{world.orgs['a']}",
    ):
        assert world.client.get(f"/api/v1{path}", headers=device).status_code == 403, path


def test_a_token_follows_its_persons_current_role(world: World) -> None:
    """Test that a token made by an admin acts as a viewer once its person is demoted, and is
    revoked once they are removed from the organisation."""
    a = world.orgs["a"]
    made = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "ci", "org_id": a, "role": "operator"})
    token = bearer(made["token"])
    member = next(
        m for m in world.ok("a-admin", "GET", f"/orgs/{a}/members")["data"] if m["role"] == "operator"
    )
    body = {"inventory_code": "S-1", "profile_id": "starter"}
    world.ok("a-admin", "PUT", f"/orgs/{a}/members", json={"email": member["email"], "role": "viewer"})
    operator = world.tokens["a-operator"]
    assert world.client.post("/api/v1/kits", json=body, headers=operator).status_code == 403
    assert world.client.get("/api/v1/kits", headers=operator).status_code == 200
    world.ok("a-admin", "PUT", f"/orgs/{a}/members", json={"email": member["email"], "role": "operator"})
    assert world.client.post("/api/v1/kits", json=body, headers=operator).status_code == 201
    world.ok("a-admin", "DELETE", f"/orgs/{a}/members/{member['user_id']}", 204)
    removed = world.client.get("/api/v1/kits", headers=operator)
    assert removed.status_code == 401 and "revoked" in removed.json()["detail"]
    assert world.client.get("/api/v1/kits", headers=token).status_code == 200  # another person's
    engine = world.client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        row = session.exec(select(ApiTokenRow).where(ApiTokenRow.user_id == member["user_id"])).one()
        assert row.revoked_at == NOW


@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/ /evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        " /fleet",
        "/\x00/evil.example",
        "/\u00a0/evil.example",
        "evil.example",
        "",
    ],
)
def test_login_redirect_stays_on_this_site(target: str) -> None:
    """Test that no ``next`` a browser could read as another origin survives (tabs, newlines and
    backslashes are stripped or read as slashes by browsers)."""
    from urllib.parse import unquote

    for candidate in {target, unquote(target)}:
        assert safe_next(candidate) == "/fleet", repr(candidate)


def test_login_page_sends_only_to_this_site(client: TestClient) -> None:
    """Test that the login page's script is given the safe target, not the one in the URL."""
    assert '"next": "/fleet"' in client.get("/login", params={"next": "/\t/evil.example"}).text
    assert '"next": "/kits"' in client.get("/login", params={"next": "/kits"}).text


def test_login_redirect_keeps_a_path_of_this_site() -> None:
    """Test that a same-origin path, with its query and fragment, is kept."""
    assert safe_next("/claim#code=SC-1") == "/claim#code=SC-1"
    assert safe_next("/fleet?org=a&q=x%20y") == "/fleet?org=a&q=x%20y"


def test_guess_limiter_memory_is_bounded() -> None:
    """Test that keys whose failures left the window are pruned, that at most ``max_keys`` are
    kept, and that the limit still holds for a key that keeps guessing."""
    now = [0.0]
    limiter = GuessLimiter(3, lambda: now[0], window_s=60.0, max_keys=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 250}.{i % 250}")
    assert len(limiter) == 100
    now[0] = 61.0
    limiter.failed("10.9.9.9")
    assert len(limiter) == 1
    for _ in range(3):
        limiter.failed("10.9.9.9")
    assert limiter.retry_after("10.9.9.9") > 0 and limiter.retry_after("10.1.1.1") == 0
    now[0] = 200.0
    assert limiter.retry_after("10.9.9.9") == 0 and len(limiter) == 0


def test_a_token_never_outlives_or_outranks_the_token_that_made_it(world: World) -> None:
    """Test that every token expires (366 days at most), and that a token made with a token
    expires no later than it and has at most its role."""
    a = world.orgs["a"]
    first = world.ok("a-admin", "POST", "/tokens", 201, json={"name": "t", "org_id": a})
    assert first["expires_at"] == NOW + 366 * 86400
    too_long = world.call(
        "a-admin", "POST", "/tokens", json={"name": "t", "org_id": a, "expires_in_s": 400 * 86400}
    )
    assert too_long.status_code == 422
    parent = world.ok(
        "a-admin",
        "POST",
        "/tokens",
        201,
        json={"name": "p", "org_id": a, "role": "operator", "expires_in_s": 3600},
    )
    headers = bearer(parent["token"])
    child = world.client.post("/api/v1/tokens", json={"name": "c", "org_id": a}, headers=headers)
    assert child.status_code == 201 and child.json()["expires_at"] == NOW + 3600
    longer = world.client.post(
        "/api/v1/tokens", json={"name": "c", "org_id": a, "expires_in_s": 7200}, headers=headers
    )
    assert longer.status_code == 403 and "outlive" in longer.json()["detail"]
    higher = world.client.post(
        "/api/v1/tokens", json={"name": "c", "org_id": a, "role": "admin"}, headers=headers
    )
    assert higher.status_code == 403


def test_secrets_in_urls_are_not_logged(
    world: World, settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that a webhook that fails leaves its secret path out of the logs, and that the
    registry URL is logged without its password."""
    assert redact_url("postgresql+psycopg://suitcase:hunter2@db:5432/registry", keep_path=True) == (
        "postgresql+psycopg://suitcase:***@db:5432/registry"
    )
    assert "hunter2" not in redact_url("postgresql://db/registry?password=hunter2", keep_path=True)
    assert redact_url("sqlite:///var/lib/suitcase/registry.db", keep_path=True) == (
        "sqlite:///var/lib/suitcase/registry.db"
    )
    assert redact_url("https://hooks.example/services/T0/B0/s3cr3t?x=1") == "https://hooks.example/***"
    a = world.orgs["a"]
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "L-1", "profile_id": "starter"})
    loan = {"org_id": a, "borrower": "b", "starts_at": NOW - 100, "due_at": NOW - 10}
    world.ok("a-admin", "POST", f"/kits/{kit['id']}/loans", 201, json=loan)
    secret = "https://127.0.0.1:9/services/T0/B0/s3cr3tw3bh00k"
    rule = {"name": "late", "kind": "loan_overdue", "webhooks": [secret]}
    world.ok("a-operator", "POST", "/alert-rules", 201, json=rule)
    with caplog.at_level(logging.DEBUG):
        assert world.ok("a-operator", "POST", "/alerts/evaluate")["fired"]
        with TestClient(create_app(settings, clock=lambda: NOW)):
            pass
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "s3cr3tw3bh00k" not in logged
    assert f"'registry': '{redact_url(settings.registry_url, keep_path=True)}'" in logged


def _personal(world: World) -> dict[str, Any]:
    """A person added by an admin (the audit entry names them), who wrote an assessment and
    borrowed a kit."""
    a = world.orgs["a"]
    email = "vera@a.example.org"
    member = {"email": email, "role": "operator", "password": PASSWORD, "name": "Vera Viewer"}
    user_id = world.ok("a-admin", "PUT", f"/orgs/{a}/members", json=member)["user_id"]
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "P-1", "profile_id": "starter"})
    loan = {"org_id": a, "borrower": "Vera Viewer", "due_at": NOW + 99}
    world.ok("a-admin", "POST", f"/kits/{kit['id']}/loans", 201, json=loan)
    dep = world.ok("a-admin", "POST", "/deployments", 201, json={"name": "school"})
    csrf = _login(world.client, email)
    assessment = world.client.put(
        f"/api/v1/deployments/{dep['id']}/assessment", json={"expert_score_pct": 50}, headers=csrf
    )
    assert assessment.status_code == 200, assessment.text
    return {"user_id": user_id, "email": email, "csrf": csrf, "deployment_id": dep["id"]}


def test_personal_data_export_finds_every_mention(world: World) -> None:
    """Test that a person's export holds the audit entries of others that name them, the
    assessments they wrote and the loans they borrowed."""
    person = _personal(world)
    export = world.client.get("/api/v1/me/export").json()
    world.client.cookies.clear()
    assert any(person["email"] in str(e["detail"]) for e in export["audit_mentions"])
    assert [a["deployment_id"] for a in export["assessments"]] == [person["deployment_id"]]
    assert [loan["borrower"] for loan in export["loans"]] == ["Vera Viewer"]


def test_personal_data_deletion_leaves_no_mention(world: World) -> None:
    """Test that deleting an account removes the person's e-mail and name from audit details,
    assessments and loans."""
    person = _personal(world)
    assert world.client.delete("/api/v1/me", headers=person["csrf"]).status_code == 204
    world.client.cookies.clear()
    audit = world.client.get("/api/v1/audit", params={"limit": 500}, headers=world.tokens["a-admin"]).text
    assessment = world.ok("a-admin", "GET", f"/deployments/{person['deployment_id']}/assessment")
    loans = world.ok("a-admin", "GET", "/loans")
    for text in (audit, str(assessment), str(loans)):
        assert person["email"] not in text and "Vera Viewer" not in text
    assert f"deleted user #{person['user_id']}" in str(loans)


def test_a_viewer_sees_that_a_rule_notifies_not_where(world: World) -> None:
    """Test that viewers get alert rules with the webhook's host only and masked e-mails (a
    webhook URL carries its secret), while operators, who edit the rule, see them whole."""
    hook = "https://hooks.example.org/services/T0/B0/s3cr3t"
    body = {"name": "r", "kind": "offline", "webhooks": [hook], "emails": ["duty@a.example.org"]}
    rule = world.ok("a-operator", "POST", "/alert-rules", 201, json=body)
    seen = world.ok("a-viewer", "GET", f"/alert-rules/{rule['id']}")
    assert seen["webhooks"] == ["https://hooks.example.org/***"] and seen["emails"] == ["d***@a.example.org"]
    assert "s3cr3t" not in str(world.ok("a-viewer", "GET", "/alert-rules"))
    assert world.ok("a-operator", "GET", f"/alert-rules/{rule['id']}")["webhooks"] == [hook]
