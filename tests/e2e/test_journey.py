"""The first hour of a suitcase, end to end, on emulated hardware against the real parts.

Mosquitto with the dynamic-security plugin, the server (uvicorn thread), the gateway and its
SQLite store, headless Chromium for the staff member's phone. Only the Pi's I2C hardware is
emulated (register-level chips under the real Adafruit drivers). Waiting is compressed: the agent
samples every second, the server evaluates alerts every second, the agent's claim polling every
second. The wall time of each step is printed as a table and written to
``$SUITCASE_JOURNEY_TIMINGS`` (default: the test's tmp dir, ``journey-timings.txt``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from edge.agent import Agent
from edge.claim import claim
from edge.config import load_edge_settings, save_device_config
from edge.emulated import build_bus
from edge.verify import verify
from gateway.consumer import Gateway
from gateway.store import SqliteStore
from server.app import create_app
from server.cli import add_global_admin
from server.runner import ServerThread
from server.security import hash_password
from server.settings import ServerSettings
from server.tables import MembershipRow, UserRow
from suitcase.broker import MosquittoBroker, free_port
from tests.services.mosquitto import DYNSEC_ADMIN
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.browser, pytest.mark.slow]

ADMIN = DYNSEC_ADMIN
OPERATOR = ("operator@govtech.example.org", "operator password 1")
STAFF = ("staff@aarhus.example.org", "staff password 1")


class Steps:
    """The wall time of each step of the journey."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []
        self._last = time.monotonic()
        self.started = self._last

    def done(self, what: str) -> None:
        now = time.monotonic()
        self.rows.append((what, now - self._last))
        self._last = now

    def table(self) -> Table:
        table = Table(title="The first hour, on emulated hardware (wall time)")
        table.add_column("#", justify="right")
        table.add_column("step")
        table.add_column("s", justify="right")
        for index, (what, took) in enumerate(self.rows, 1):
            table.add_row(str(index), what, f"{took:.2f}")
        table.add_row("", "total", f"{time.monotonic() - self.started:.2f}")
        return table


@pytest.fixture()
def dynsec(mosquitto_dynsec: MosquittoBroker) -> MosquittoBroker:
    """The journey's broker: Mosquitto with dynamic security (tests/services/mosquitto.py)."""
    return mosquitto_dynsec


@pytest.fixture()
def stack(dynsec: MosquittoBroker, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The server and the gateway on the dynsec broker, sharing one store file."""
    store_path = tmp_path / "store.sqlite"
    store = SqliteStore(store_path)
    gateway = Gateway(
        store,
        host=dynsec.host,
        port=dynsec.port,
        client_id="journey-gateway",
        username=ADMIN[0],
        password=ADMIN[1],
    )
    gateway.start()
    port = free_port()
    settings = ServerSettings(
        store=str(store_path),
        registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}",
        open_reads=False,
        mqtt_host=dynsec.host,
        mqtt_port=dynsec.port,
        mqtt_username=ADMIN[0],
        mqtt_password=SecretStr(ADMIN[1]),
        mqtt_dynsec=True,
        public_url=f"http://127.0.0.1:{port}",
        alert_interval_s=1.0,
    )
    app = create_app(settings)
    server = ServerThread(app, "127.0.0.1", port)
    server.start()
    try:
        yield {"broker": dynsec, "store": store, "url": f"http://127.0.0.1:{port}", "app": app}
    finally:
        server.stop()
        gateway.stop()
        store.close()


def _people(app: Any, url: str) -> dict[str, Any]:
    """The operator (global admin of the lending centre) and a municipality's staff member."""
    engine = app.state.resources.engine
    with Session(engine) as session:
        add_global_admin(session, OPERATOR[0], OPERATOR[1], now=time.time())
        session.commit()
    operator = httpx.Client(base_url=f"{url}/api/v1", timeout=60)
    login = operator.post("/auth/login", json={"email": OPERATOR[0], "password": OPERATOR[1]})
    assert login.status_code == 200, login.text
    operator.headers["X-CSRF-Token"] = login.json()["csrf"]
    orgs = {}
    for slug, name, kind in (("govtech", "GovTech", "centre"), ("aarhus", "Aarhus Kommune", "municipality")):
        reply = operator.post("/orgs", json={"slug": slug, "name": name, "kind": kind})
        assert reply.status_code == 201, reply.text
        orgs[slug] = reply.json()["id"]
    with Session(engine) as session:
        user = UserRow(email=STAFF[0], password_hash=hash_password(STAFF[1]), created_at=time.time())
        session.add(user)
        session.flush()
        assert user.id is not None
        session.add(MembershipRow(user_id=user.id, org_id=orgs["aarhus"], role="operator"))
        session.commit()
    staff = httpx.Client(base_url=f"{url}/api/v1", timeout=60)
    login = staff.post("/auth/login", json={"email": STAFF[0], "password": STAFF[1]})
    assert login.status_code == 200, login.text
    staff.headers["X-CSRF-Token"] = login.json()["csrf"]
    return {"operator": operator, "staff": staff, "orgs": orgs}


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.status_code, response.text)
    return response.json()


def _watch(broker: MosquittoBroker, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    """An admin subscriber recording, in order, the payloads on ``topic`` and on MARKER_TOPIC."""
    arrivals: list[bytes] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="journey-watcher")
    client.username_pw_set(*ADMIN)

    def on_connect(c: mqtt.Client, *args: Any) -> None:
        c.subscribe([(topic, 1), (MARKER_TOPIC, 1)])

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: ready.set()
    client.on_message = lambda c, u, m: arrivals.append(m.payload)
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert ready.wait(30)
    return client, arrivals


# Not a device's: the admin may publish on command topics only.
MARKER_TOPIC = "suitcase/v1/aarhus/journey-marker/cmd/marker"


def test_the_first_hour(stack: dict[str, Any], page: Any, tmp_path: Path, screenshot_dir: Path) -> None:
    """Test the journey from a registered kit to live data and back: register and lend, deploy a
    use-case, a Pi claims by its label (bound from a phone), verifies, samples; readings reach the
    deployment page and the store; an unplugged sensor shows missing and fires an alert that
    resolves when it is plugged back; the kit's return closes the loan and locks the Pi out."""
    steps = Steps()
    url, store, broker = stack["url"], stack["store"], stack["broker"]
    people = _people(stack["app"], url)
    operator, staff, orgs = people["operator"], people["staff"], people["orgs"]
    steps.done("server, broker, gateway up; operator and staff accounts")

    # 1. The operator registers a kit from the starter profile and lends it to the municipality.
    kit = _ok(
        operator.post(
            "/kits", json={"inventory_code": "AAR-01", "profile_id": "starter", "org_id": orgs["govtech"]}
        ),
        201,
    )
    assert len(kit["claim_codes"]) == 3
    claim_code = kit["claim_codes"][0]
    loan = _ok(
        operator.post(
            f"/kits/{kit['id']}/loans",
            json={
                "org_id": orgs["aarhus"],
                "borrower": "Anna, Teknik og Miljø",
                "due_at": time.time() + 30 * 86400,
            },
        ),
        201,
    )
    steps.done("operator registers kit AAR-01 (starter) and lends it to Aarhus")

    # 2. Staff pick a use-case from the catalogue and create a deployment with the kit.
    cases = _ok(staff.get("/use-cases", params={"limit": 100}))["data"]
    case = next(c for c in cases if c["kit_profile"] == "starter")
    deployment = _ok(
        staff.post(
            "/deployments",
            json={
                "org_id": orgs["aarhus"],
                "kit_id": kit["id"],
                "name": "School 7, room 12",
                "use_case_id": case["id"],
                "address": "Skolevej 7",
            },
        ),
        201,
    )
    rule = _ok(
        staff.post(
            "/alert-rules",
            json={"org_id": orgs["aarhus"], "name": "sensor unplugged", "kind": "sensor_unhealthy"},
        ),
        201,
    )
    steps.done(f"staff pick use-case {case['id']!r}, create the deployment and an alert rule")

    # 3. The Pi boots with its claim code (pi-setup.sh wrote this config) and polls.
    config_path = tmp_path / "edge.toml"
    config_path.write_text(
        f'state_dir = "{tmp_path / "pi-state"}"\n'
        f'[claim]\nserver = "{url}"\ncode = "{claim_code["code"]}"\npoll_s = 1\n',
        encoding="utf-8",
    )
    settings = load_edge_settings(config_path)
    claim_settings = settings.claim
    assert claim_settings is not None
    stop_claim = threading.Event()
    claimed: list[Any] = []
    poller = threading.Thread(
        target=lambda: claimed.append(claim(claim_settings, stop=stop_claim)), daemon=True
    )
    poller.start()
    time.sleep(1.5)
    assert poller.is_alive() and not claimed  # pending: nobody has scanned the label yet
    steps.done("the Pi boots with its claim code and polls (pending)")

    # 4. The staff member scans the label: the phone opens the QR's URL, logs in, picks, confirms.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(claim_code["claim_url"])
    page.wait_for_url("**/login?next=*")
    page.fill("#email", STAFF[0])
    page.fill("#password", STAFF[1])
    page.click("button[type=submit]")
    page.wait_for_url("**/claim#code=*")
    page.wait_for_selector("#claim-form:not([hidden])")
    page.select_option("#claim-deployment", str(deployment["id"]))
    page.screenshot(path=str(screenshot_dir / "journey-claim.png"), full_page=True)
    page.click("#claim-confirm")
    page.wait_for_selector("#claim-done:not([hidden])")
    device_id = page.get_attribute("#claim-done", "data-device")
    assert device_id
    steps.done("staff scan the label in Chromium: log in, pick the deployment, confirm")

    # 5. The Pi receives its config on its next poll.
    poller.join(30)
    assert claimed and claimed[0] is not None
    device = claimed[0]
    assert device.device == device_id and device.mqtt.username == device_id
    save_device_config(settings.state_dir, device)
    steps.done("the Pi's next poll returns its config (credentials, sensors)")

    # 6. It verifies the kit: bus, first plausible reading, broker with its credentials, server.
    bus = build_bus(device.sensors, "office-day", clock=time.time, seed=7)
    report = verify(
        bus,
        device.sensors,
        mqtt=device.mqtt,
        client_id=f"{device.device}-verify",
        server=url,
        clock_synced=lambda: True,  # this machine's clock; a Pi asks timedatectl
    )
    assert report.ok, [(c.name, c.detail) for c in report.failures]
    steps.done("`suitcase kit verify`: bus, reading, broker, server, clock all ok")

    # 7. It starts sampling; readings reach the store, the API and the deployment's page.
    device = device.model_copy(update={"publish_interval_s": 1.0})
    device = device.model_copy(
        update={"sensors": [s.model_copy(update={"interval_s": 1.0}) for s in device.sensors]}
    )
    agent = Agent(device, bus, clock_synced=lambda: True, state_dir=settings.state_dir)
    agent.start()
    watcher = None
    try:
        assert agent.wait_connected(30)
        wait_until(
            lambda: store.latest([("aarhus", device_id)]), 30, "readings of the Pi in the store", every=0.1
        )
        steps.done("agent connects and its first readings are in the store")
        readings = wait_until(
            lambda: _ok(
                staff.get(f"/deployments/{deployment['id']}/readings", params={"start": time.time() - 600})
            )["readings"],
            30,
            "readings on the deployment",
            every=0.1,
        )
        assert readings
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{url}/deployments/{deployment['id']}")
        page.wait_for_load_state("networkidle")
        assert "School 7, room 12" in page.content()
        page.screenshot(path=str(screenshot_dir / "journey-deployment.png"), full_page=True)
        page.goto(f"{url}/kits/{kit['id']}/unboxing#codes={','.join(c['code'] for c in kit['claim_codes'])}")
        wait_until(
            lambda: page.locator("#pi-1.done").count() == 1,
            30,
            "Pi 1's unboxing checklist all green",
            every=0.5,
        )
        page.wait_for_selector("#pi-2 .qr svg")
        page.screenshot(path=str(screenshot_dir / "journey-unboxing.png"), full_page=True)
        steps.done("readings on the deployment's page; unboxing checklist all green")

        # 8. A sensor is unplugged: the fleet page shows it missing and an alert fires.
        chip = bus.detach(0x77)
        assert chip is not None

        def firing() -> list[dict[str, Any]]:
            alerts = _ok(staff.get("/alerts", params={"rule_id": rule["id"]}))["data"]
            return [a for a in alerts if a["state"] == "firing"]

        fired = wait_until(firing, 60, "a sensor_unhealthy alert firing", every=0.1)
        sensor = device.sensors[0].name

        def fleet_shows_missing() -> bool:
            # A failed read first marks the sensor failing; once the driver cannot even be
            # created again (after 3 failures, with backoff) it is missing.
            page.goto(f"{url}/fleet")
            return bool(page.locator(".badge.err", has_text=f"{sensor}: missing").count() > 0)

        wait_until(fleet_shows_missing, 30, "the fleet page showing the sensor missing", every=1.0)
        page.screenshot(path=str(screenshot_dir / "journey-fleet-missing.png"), full_page=True)
        steps.done("sensor unplugged: fleet page shows it missing, alert fires")

        # 9. Plugged back: the alert resolves.
        bus.attach(0x77, chip)

        def resolved() -> bool:
            alerts = _ok(staff.get("/alerts", params={"rule_id": rule["id"]}))["data"]
            return any(a["id"] == fired[0]["id"] and a["state"] == "resolved" for a in alerts)

        wait_until(resolved, 30, "the alert resolved", every=0.1)
        steps.done("sensor plugged back: the alert resolves")

        # 10. The kit is returned: the loan closes and the Pi's next publish no longer arrives.
        telemetry = f"suitcase/v1/aarhus/{device_id}/telemetry"
        watcher, arrivals = _watch(broker, telemetry)
        wait_until(lambda: arrivals, 30, "telemetry seen by the watcher before the return", every=0.1)
        back = _ok(operator.post(f"/kits/{kit['id']}/return", json={"condition": "good"}))
        assert back["loan_id"] == loan["id"] and device_id in back["devices_revoked"]
        loans = _ok(operator.get("/loans", params={"active": False}))["data"]
        assert any(item["id"] == loan["id"] and item["returned_at"] is not None for item in loans)
        wait_until(lambda: not agent.wait_connected(0), 30, "the broker drops the revoked Pi", every=0.1)
        # The broker queues what it receives to the watcher in order: what the Pi sent before it was
        # dropped arrives before this marker, anything after it came on a new connection (was: the
        # arrival time against the return's plus 0.5 s, which a loaded machine can exceed).
        watcher.publish(MARKER_TOPIC, b"marker", qos=1).wait_for_publish(30)
        wait_until(lambda: b"marker" in arrivals, 30, "the watcher's marker", every=0.1)
        time.sleep(4)  # several publish intervals: nothing may arrive
        late = arrivals[arrivals.index(b"marker") + 1 :]
        assert late == [], f"{len(late)} telemetry messages arrived after the kit was returned"
        assert agent.counters.connection_refused >= 1 or not agent.wait_connected(0)
        steps.done("kit returned: loan closed, dynsec client removed, the Pi's publishes stop")
    finally:
        if watcher is not None:
            watcher.loop_stop()
            watcher.disconnect()
        agent.stop()
        stop_claim.set()

    table = steps.table()
    console = Console(record=True, width=110)
    console.print(table)
    target = Path(os.environ.get("SUITCASE_JOURNEY_TIMINGS", tmp_path / "journey-timings.txt"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(console.export_text(), encoding="utf-8")
    # How long it took is the table's figure, not asserted: each step waits on its own event with
    # its own bound (a bound on the total would fail a loaded machine, not the product).
