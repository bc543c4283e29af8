"""Alert notifications (webhook, SMTP), export, enrollment codes, calibration, loans, personal data."""

from __future__ import annotations

import csv
import dataclasses
import http.server
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.store import SqliteStore
from kits.wire import Record
from server.geo import blur
from server.outbound import OutboundPolicy
from suitcase.broker import free_port
from tests.server.data import NOW
from tests.server.world import World


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture()
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    """A local SMTP server (aiosmtpd) that keeps what it receives."""
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, box
    controller.stop()


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[Any]]]:
    """A local HTTP server that records the JSON posted to it."""
    got: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()


def test_offline_alert_notifies_once_by_webhook_and_email(
    world: World, store: SqliteStore, smtp: tuple[int, _Mailbox], webhook: tuple[str, list[Any]]
) -> None:
    """Test that an offline device fires one webhook and one e-mail, and its return resolves once."""
    port, box = smtp
    url, posts = webhook
    app = world.client.app
    settings = app.state.resources.settings  # type: ignore[attr-defined]
    settings.smtp_host, settings.smtp_port = "127.0.0.1", port
    # The receivers run on loopback, which the outbound guard refuses unless allow-listed.
    app.state.resources = dataclasses.replace(  # type: ignore[attr-defined]
        app.state.resources,  # type: ignore[attr-defined]
        outbound=OutboundPolicy.from_settings(["127.0.0.1/32"]),
    )
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    device = world.client.post("/api/v1/enroll", json={"code": code}).json()["config"]["device"]
    world.ok(
        "a-operator",
        "POST",
        "/alert-rules",
        201,
        json={
            "name": "offline",
            "kind": "offline",
            "params": {"interval_s": 60, "intervals": 3},
            "webhooks": [url],
            "emails": ["ops@a.example.org"],
        },
    )
    fired = world.ok("a-operator", "POST", "/alerts/evaluate")
    assert len(fired["fired"]) == 1
    world.ok("a-operator", "POST", "/alerts/evaluate")
    assert [p["event"] for p in posts] == ["firing"] and len(box.messages) == 1
    assert "[FIRING]" in box.messages[0].content.decode()
    store.write([Record("city-a", device, "bme280", "temperature", 21.0, NOW - 10)])
    assert world.ok("a-operator", "POST", "/alerts/evaluate")["resolved"] == fired["fired"]
    assert [p["event"] for p in posts] == ["firing", "resolved"] and len(box.messages) == 2
    alert = world.ok("a-viewer", "GET", "/alerts")["data"][0]
    assert all(n["ok"] for n in alert["notifications"]) and len(alert["notifications"]) == 4


def test_calibration_due_and_loan_overdue(world: World) -> None:
    """Test calibration versions, the due list, the overdue loans and their alerts."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "K-9", "profile_id": "starter"})
    for offset in (-0.3, -0.5):
        world.ok(
            "a-operator",
            "POST",
            f"/kits/{kit['id']}/calibrations",
            201,
            json={
                "pi_index": 2,
                "sensor": "bme280",
                "quantity": "temperature",
                "offset": offset,
                "due_at": NOW - 1,
            },
        )
    current = world.ok("a-viewer", "GET", f"/kits/{kit['id']}/calibrations")
    assert [(c["version"], c["offset"], c["due"]) for c in current] == [(2, -0.5, True)]
    assert len(world.ok("a-viewer", "GET", f"/kits/{kit['id']}/calibrations", params={"history": True})) == 2
    assert len(world.ok("a-viewer", "GET", "/calibrations/due")) == 1
    world.ok(
        "a-admin",
        "POST",
        f"/kits/{kit['id']}/loans",
        201,
        json={
            "org_id": world.orgs["b"],
            "borrower": "Bo",
            "starts_at": NOW - 10 * 86400,
            "due_at": NOW - 86400,
        },
    )
    assert world.ok("b-viewer", "GET", "/loans", params={"overdue": True})["count"] == 1
    assert world.ok("b-viewer", "GET", f"/kits/{kit['id']}")["loan"]["overdue"] is True
    for kind in ("calibration_due", "loan_overdue"):
        world.ok("a-operator", "POST", "/alert-rules", 201, json={"name": kind, "kind": kind})
    assert len(world.ok("a-operator", "POST", "/alerts/evaluate")["fired"]) == 2


def test_enrollment_code_is_single_use_and_guessing_is_limited(world: World) -> None:
    """Test that an enrollment code works once, a wrong code is 404, and guessing gets 429."""
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "lab"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    assert world.client.post("/api/v1/enroll", json={"code": code}).status_code == 200
    assert "already used" in world.client.post("/api/v1/enroll", json={"code": code}).json()["detail"]
    statuses = [
        world.client.post("/api/v1/claims/poll", json={"claim_code": f"SC-GUESS-{i:05d}"}).status_code
        for i in range(11)
    ]
    assert statuses[-1] == 429 and set(statuses[:9]) == {404}


def test_claim_label_qr_and_revocation(world: World) -> None:
    """Test that a claim code renders as an SVG/PNG QR label and stops working once revoked."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "Q-1", "profile_id": "starter"})
    code = kit["claim_codes"][0]["code"]
    svg = world.call("a-operator", "POST", "/claims/qr", json={"claim_code": code})
    assert (
        svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    )
    png = world.call("a-operator", "POST", "/claims/qr", json={"claim_code": code, "format": "png"})
    assert png.content.startswith(b"\x89PNG")
    world.ok("a-operator", "DELETE", f"/kits/{kit['id']}/pis/1/claim-code", 204)
    assert world.client.post("/api/v1/claims/poll", json={"claim_code": code}).status_code == 404
    fresh = world.ok("a-operator", "POST", f"/kits/{kit['id']}/pis/1/claim-code")["code"]
    assert world.client.post("/api/v1/claims/poll", json={"claim_code": fresh}).json()["status"] == "pending"


def test_a_pi_bound_to_another_kit_s_deployment_is_told_how_to_make_its_own(world: World) -> None:
    """Test that binding a new kit's Pi to a deployment of another kit (all the claim page offers
    before the new kit has a deployment) is refused naming both kits and how to make a deployment."""
    new = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "NEW-1", "profile_id": "starter"})
    old = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "OLD-1", "profile_id": "starter"})
    deployment = world.ok(
        "a-operator",
        "POST",
        "/deployments",
        201,
        json={"name": "hall", "lat": 1, "lon": 1, "kit_id": old["id"]},
    )
    answer = world.call(
        "a-operator",
        "POST",
        "/claims/bind",
        json={"claim_code": new["claim_codes"][0]["code"], "deployment_id": deployment["id"]},
    )
    assert answer.status_code == 409
    detail = answer.json()["detail"]
    assert "kit NEW-1" in detail and "uses kit OLD-1" in detail and "Deploy this" in detail, detail


def test_open_data_export_streams_csv_senml_and_blurred_geojson(world: World, store: SqliteStore) -> None:
    """Test the exports: CSV with licence, SenML, GeoJSON of public deployments with blurred homes."""
    home = world.ok(
        "a-operator",
        "POST",
        "/deployments",
        201,
        json={
            "name": "balcony",
            "use_case_id": "citizen-air-quality",
            "lat": 56.1572,
            "lon": 10.2107,
            "address": "Private 1",
            "private_address": True,
            "public": True,
            "environment": "outdoor",
            "starts_at": NOW - 3600,
        },
    )
    world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hidden", "lat": 1, "lon": 1})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": home["id"]})[
        "code"
    ]
    device = world.client.post("/api/v1/enroll", json={"code": code}).json()["config"]["device"]
    store.write(
        [Record("city-a", device, "pmsa003i", "pm2_5", 7.0 + i, NOW - 600 + i * 60) for i in range(10)]
    )
    text = world.client.get(f"/api/v1/export/deployments/{home['id']}/readings").text
    assert "# licence: CC-BY-4.0" in text
    rows = list(csv.DictReader(io.StringIO("\n".join(x for x in text.splitlines() if not x.startswith("#")))))
    assert len(rows) == 10 and rows[0]["unit"] == "ug/m3" and rows[0]["device"] == device
    senml = world.client.get(
        "/api/v1/export/use-cases/citizen-air-quality/readings", params={"format": "senml"}
    )
    pack = senml.json()
    assert (
        len(pack) == 10 and pack[0]["bver"] == 26 and pack[0]["n"].startswith(f"urn:dev:suitcase:{device}:")
    )
    geo = world.client.get("/api/v1/export/deployments.geojson").json()
    assert geo["licence"] == "CC-BY-4.0" and len(geo["features"]) == 1
    lon, lat = geo["features"][0]["geometry"]["coordinates"]
    assert (lat, lon) == blur(56.1572, 10.2107) and (lat, lon) != (56.1572, 10.2107)
    assert geo["features"][0]["properties"]["address"] == ""
    assert abs(lat - 56.1572) < 0.005 and abs(lon - 10.2107) < 0.01


def test_pilot_assessment_and_report(world: World) -> None:
    """Test the assessment score and threshold and the Annex I report in Markdown and HTML."""
    dep = world.ok(
        "a-operator", "POST", "/deployments", 201, json={"name": "pilot", "use_case_id": "indoor-climate"}
    )
    body = {
        "benefits": {
            a: 4
            for a in (
                "economy",
                "governance",
                "environment",
                "people",
                "living",
                "energy_efficiency",
                "mobility",
                "ict",
            )
        },
        "risks": {"technical": 1, "financial": 1, "legal_privacy": 0, "organisational": 2},
        "expert_score_pct": 70,
        "report": {"a1_needs": "Stuffy classrooms."},
    }
    scored = world.ok("a-operator", "PUT", f"/deployments/{dep['id']}/assessment", json=body)
    assert scored["tool_score_pct"] == 80.0 and scored["passes"] is True
    md = world.call("a-viewer", "GET", f"/deployments/{dep['id']}/report").text
    assert (
        "# Pilot report: pilot" in md and "Stuffy classrooms." in md and "F. Summary and future outlook" in md
    )
    page = world.call("a-viewer", "GET", f"/deployments/{dep['id']}/report", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html") and "<h2>D. Results</h2>" in page.text


def test_use_cases_filter_by_sensor_and_theme(world: World) -> None:
    """Test that the catalogue has at least 15 use-cases, filterable by sensor, theme and words."""
    everything = world.client.get("/api/v1/use-cases").json()
    assert everything["count"] >= 15
    by_sensor = world.client.get("/api/v1/use-cases", params={"sensor": "pmsa003i"}).json()["data"]
    assert by_sensor and all("pmsa003i" in u["sensors"] for u in by_sensor)
    by_theme = world.client.get("/api/v1/use-cases", params={"theme": "port"}).json()["data"]
    assert {u["id"] for u in by_theme} == {"port-dust-bulk-cargo", "structure-monitoring"}
    assert world.client.get("/api/v1/use-cases", params={"q": "bulk cargo"}).json()["count"] == 1
    readonly = world.call(
        "a-operator", "PUT", "/use-cases/indoor-climate", json={"use_case": everything["data"][0]}
    )
    assert readonly.status_code in (403, 422)


def test_personal_data_export_and_delete(world: World) -> None:
    """Test that a user can export their data and delete their account; audit entries are pseudonymised."""
    world.ok("a-operator", "POST", "/deployments", 201, json={"name": "mine"})
    exported = world.ok("a-operator", "GET", "/me/export")
    assert exported["user"]["email"] == "operator@a.example.org" and exported["audit_log"]
    world.ok("a-operator", "DELETE", "/me", 204)
    assert world.call("a-operator", "GET", "/kits").status_code == 401
    audit = world.ok("a-admin", "GET", "/audit", params={"entity": "deployment"})["data"]
    assert audit and all("operator@a.example.org" not in json.dumps(e) for e in audit)


def test_agent_polls_with_code_key_and_enrollment_codes(world: World) -> None:
    """Test that the agent's poll body ``{"code": ...}`` works for claim codes and for single-use
    enrollment codes (edge/claim.py sends both to /claims/poll)."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "P-1", "profile_id": "starter"})
    claim = kit["claim_codes"][0]["code"]
    assert world.client.post("/api/v1/claims/poll", json={"code": claim}).json()["status"] == "pending"
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "bench"})
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    ready = world.client.post("/api/v1/claims/poll", json={"code": code}).json()
    assert ready["status"] == "ready" and ready["device"]["config"]["org"] == "city-a"
    assert world.client.post("/api/v1/claims/poll", json={"code": code}).status_code == 404
