"""Tests of the unboxing page (server/web/views/unboxing.py): each Pi's checklist follows the
device from its label to stored data."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from gateway.store import SqliteStore
from kits.wire import Record
from server.tables import DeviceRow
from tests.server.data import NOW
from tests.server.world import PASSWORD, World


def _details(world: World, kit_id: int, pi: int = 1) -> dict[str, str]:
    reply = world.client.get(f"/kits/{kit_id}/unboxing/status", headers=world.as_("a-operator"))
    entry: dict[str, Any] = next(p for p in reply.json()["pis"] if p["pi_index"] == pi)
    return {s["key"]: s["detail"] for s in entry["steps"]}


def _steps(world: World, kit_id: int, pi: int = 1) -> dict[str, str]:
    reply = world.client.get(f"/kits/{kit_id}/unboxing/status", headers=world.as_("a-operator"))
    assert reply.status_code == 200, reply.text
    status = reply.json()
    entry: dict[str, Any] = next(p for p in status["pis"] if p["pi_index"] == pi)
    return {s["key"]: s["state"] for s in entry["steps"]}


def test_the_checklist_goes_green_step_by_step(world: World, store: SqliteStore) -> None:
    """Test that a Pi's checklist is all to-do before its label is scanned, waits after binding,
    and turns each step green as the device claims, connects, reports its sensor and stores a
    plausible reading; an implausible value does not count."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "UB-1", "profile_id": "starter"})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "hall"})
    assert set(_steps(world, kit["id"]).values()) == {"todo"}

    code = kit["claim_codes"][0]["code"]
    bound = world.ok(
        "a-operator", "POST", "/claims/bind", 201, json={"claim_code": code, "deployment_id": dep["id"]}
    )
    assert _steps(world, kit["id"])["claimed"] == "wait"
    world.client.post("/api/v1/claims/poll", json={"code": code})
    assert _steps(world, kit["id"])["claimed"] == "ok"

    engine = world.client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        device = session.get(DeviceRow, bound["device_id"])
        assert device is not None
        device.online, device.meta_at = True, NOW
        device.sensors = [{"name": "bme280", "part": "bme280", "address": 0x77, "state": "missing"}]
        session.add(device)
        session.commit()
    steps = _steps(world, kit["id"])
    assert steps["connected"] == "ok" and steps["sensor:bme280"] == "todo"

    with Session(engine) as session:
        device = session.get(DeviceRow, bound["device_id"])
        assert device is not None
        device.sensors = [{"name": "bme280", "part": "bme280", "address": 0x77, "state": "ok"}]
        session.add(device)
        session.commit()
    store.write([Record("city-a", bound["device_id"], "bme280", "temperature", 500.0, NOW - 10)])
    steps = _steps(world, kit["id"])
    assert steps["sensor:bme280"] == "ok" and steps["reading"] == "todo" and steps["stored"] == "ok"

    store.write([Record("city-a", bound["device_id"], "bme280", "temperature", 21.5, NOW)])
    assert set(_steps(world, kit["id"]).values()) == {"ok"}
    assert _details(world, kit["id"])["reading"] == "bme280/temperature 21.5 °C"  # with its unit
    assert set(_steps(world, kit["id"], pi=2).values()) == {"todo"}


def test_the_page_needs_a_login_and_a_visible_kit(world: World) -> None:
    """Test that a visitor is sent to the login page, another organisation's user gets 404, and
    the owner's user sees each Pi."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "UB-2", "profile_id": "starter"})
    client = world.client
    client.cookies.clear()
    anonymous = client.get(f"/kits/{kit['id']}/unboxing", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    assert client.get(f"/kits/{kit['id']}/unboxing/status").status_code == 401
    assert client.get(f"/kits/{kit['id']}/unboxing/status", headers=world.as_("b-admin")).status_code == 404
    login = client.post("/api/v1/auth/login", json={"email": "operator@a.example.org", "password": PASSWORD})
    assert login.status_code == 200, login.text
    html = client.get(f"/kits/{kit['id']}/unboxing").text
    assert "Unboxing UB-2" in html and 'id="pi-3"' in html
