"""The walk-through of issue 5, through the API: from "create org" to "alert resolved"."""

from __future__ import annotations

from sqlmodel import Session

from gateway.store import SqliteStore
from kits.models import DeviceConfig
from kits.wire import Meta, OutboxMeta, Record, SensorMeta, Status
from server.listener import apply_message
from tests.server.data import NOW
from tests.server.world import World


def _co2(org: str, device: str, value: float, start: float, end: float) -> list[Record]:
    return [Record(org, device, "scd4x", "co2", value, float(t)) for t in range(int(start), int(end), 30)]


def test_create_org_to_alert_resolved(world: World, store: SqliteStore) -> None:
    """Test the whole path: kit, loan, deployment, claim, device status, readings, an alert fired
    once and resolved once, kit return."""
    a = world.orgs["a"]
    kit = world.ok(
        "root",
        "POST",
        "/kits",
        201,
        json={"inventory_code": "GT-001", "profile_id": "starter", "org_id": world.orgs["govtech"]},
    )
    assert len(kit["claim_codes"]) == 3 and all(c["code"].startswith("SC-") for c in kit["claim_codes"])
    world.ok(
        "root",
        "POST",
        f"/kits/{kit['id']}/loans",
        201,
        json={"org_id": a, "borrower": "Ann at City A", "due_at": NOW + 30 * 86400},
    )
    assert world.ok("a-viewer", "GET", f"/kits/{kit['id']}")["status"] == "on_loan"
    dep = world.ok(
        "a-operator",
        "POST",
        "/deployments",
        201,
        json={
            "kit_id": kit["id"],
            "name": "School 7 classroom",
            "use_case_id": "indoor-climate",
            "lat": 56.15,
            "lon": 10.2,
            "address": "Skolevej 7",
            "environment": "indoor",
            "public": True,
            "starts_at": NOW - 86400,
        },
    )

    code = kit["claim_codes"][0]["code"]
    assert world.client.post("/api/v1/claims/poll", json={"claim_code": code}).json()["status"] == "pending"
    bound = world.ok(
        "a-operator", "POST", "/claims/bind", 201, json={"claim_code": code, "deployment_id": dep["id"]}
    )
    device = bound["device_id"]
    assert device.startswith("city-a-school-7")
    ready = world.client.post("/api/v1/claims/poll", json={"claim_code": code.lower()}).json()
    assert ready["status"] == "ready"
    config = DeviceConfig.model_validate(ready["device"]["config"])
    assert config.device == device and config.org == "city-a" and config.mqtt.password
    assert ready["device"]["topics"]["telemetry"] == f"suitcase/v1/city-a/{device}/telemetry"
    again = world.client.post("/api/v1/claims/poll", json={"claim_code": code}).json()
    assert again["status"] == "delivered" and again["device"] is None

    engine = world.client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        status = Status(state="online", since=NOW - 60, agent="0.1.0").encode()
        assert apply_message(session, f"suitcase/v1/city-a/{device}/status", status, NOW)
        meta = Meta(
            agent="0.1.0",
            time=NOW,
            uptime_s=60,
            clock_synced=True,
            publish_interval_s=10,
            outbox=OutboxMeta(pending=3),
            sensors={"scd4x": SensorMeta(part="scd4x", address=0x62, state="ok")},
        )
        assert apply_message(
            session, f"suitcase/v1/city-a/{device}/meta", meta.model_dump_json().encode(), NOW
        )
        # The same device id under another organisation's topic changes nothing.
        assert not apply_message(session, f"suitcase/v1/city-b/{device}/status", status, NOW)
    fleet = world.ok("a-viewer", "GET", "/devices")
    mine = next(d for d in fleet["data"] if d["device"] == device)
    assert mine["registered"] and mine["online"] and mine["deployment_id"] == dep["id"] and mine["healthy"]
    assert mine["backlog"] == 3 and mine["sensors"][0]["name"] == "scd4x"
    assert world.ok("b-viewer", "GET", "/devices")["count"] == 0

    store.write(_co2("city-a", device, 1600.0, NOW - 900, NOW))
    readings = world.ok("a-viewer", "GET", f"/deployments/{dep['id']}/readings", params={"start": NOW - 3600})
    assert readings["count"] == 30 and readings["readings"][0]["device"] == device
    chart = world.ok(
        "a-viewer", "GET", f"/deployments/{dep['id']}/chart", params={"start": NOW - 3600, "points": 10}
    )
    assert len(chart["series"]) == 1 and 1 <= len(chart["series"][0]["times"]) <= 10

    rule = world.ok(
        "a-operator",
        "POST",
        "/alert-rules",
        201,
        json={
            "name": "CO2 over 1400 ppm for 10 min",
            "kind": "threshold",
            "deployment_id": dep["id"],
            "params": {"quantity": "co2", "op": ">", "value": 1400, "window_s": 600},
        },
    )
    first = world.ok("a-operator", "POST", "/alerts/evaluate")
    assert len(first["fired"]) == 1 and first["resolved"] == []
    assert world.ok("a-operator", "POST", "/alerts/evaluate") == {"fired": [], "resolved": []}
    store.write(_co2("city-a", device, 600.0, NOW - 900, NOW))  # rewrites: idempotent by time
    assert world.ok("a-operator", "POST", "/alerts/evaluate")["resolved"] == first["fired"]
    alerts = world.ok("a-viewer", "GET", "/alerts", params={"rule_id": rule["id"]})
    assert alerts["count"] == 1 and alerts["data"][0]["state"] == "resolved"
    assert world.ok("b-admin", "GET", "/alerts")["count"] == 0

    returned = world.ok("root", "POST", f"/kits/{kit['id']}/return", json={"condition": "good"})
    assert returned["devices_revoked"] == [device] and returned["deployments_ended"] == [dep["id"]]
    assert (
        returned["tokens_revoked"] == 1
        and returned["reset_steps"]
        and returned["kit"]["status"] == "in_stock"
    )
    device_token = {"Authorization": f"Bearer {ready['device']['token']}"}
    assert world.client.get("/api/v1/auth/me", headers=device_token).status_code == 401
    assert world.call("a-viewer", "GET", f"/kits/{kit['id']}").status_code == 404
    audit = world.ok("root", "GET", "/audit", params={"entity": "kit"})
    assert {"create", "lend", "return"} <= {e["action"] for e in audit["data"]}
