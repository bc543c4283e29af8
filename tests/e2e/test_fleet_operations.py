"""Operating the fleet from the server's pages against a real agent, a real Mosquitto, the gateway
and the server (issue #18): a resend from the device page recovers a gap in the store, a config
change made on the page is applied by the agent and shown, the agent's log comes back with
``logs``, a config the agent cannot sample with is refused with the reason while it keeps
sampling, and the fleet page shows the version in force and the diagnostics. The pages are
checked with axe (no serious or critical violation) and photographed.

The gap is made the way a store loses a range (a restore from an older backup): its readings are
deleted from the store file while the agent's outbox still holds them.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlmodel import Session

from edge.agent import Agent
from edge.emulated import build_bus
from gateway.consumer import Gateway
from gateway.store import SqliteStore
from kits.models import DeviceConfig
from server.app import create_app
from server.cli import add_global_admin
from server.runner import ServerThread
from server.settings import ServerSettings
from suitcase.broker import MosquittoBroker, free_port
from tests.server.test_web_pages import axe, phone_width, watch
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.browser]

ADMIN = ("ops@govtech.example.org", "a long enough password")


@pytest.fixture()
def stack(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The gateway and the server (with its listener) on one broker, sharing one store file."""
    store_path = tmp_path / "store.sqlite"
    store = SqliteStore(store_path)
    gateway = Gateway(store, host=mosquitto.host, port=mosquitto.port, client_id=f"fleet-gw-{free_port()}")
    gateway.start()
    port = free_port()
    settings = ServerSettings(
        store=str(store_path),
        registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}",
        open_reads=False,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        alert_interval_s=0,
        command_sweep_s=1.0,
    )
    app = create_app(settings)
    server = ServerThread(app, "127.0.0.1", port)
    server.start()
    try:
        with Session(app.state.resources.engine) as session:
            add_global_admin(session, ADMIN[0], ADMIN[1], now=time.time())
            session.commit()
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60)
        login = api.post("/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        assert login.status_code == 200, login.text
        api.headers["X-CSRF-Token"] = login.json()["csrf"]
        yield {"url": f"http://127.0.0.1:{port}", "api": api, "store": store_path, "app": app}
    finally:
        server.stop()
        gateway.stop()
        store.close()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.status_code, response.text)
    return response.json()


def _enrolled(api: httpx.Client) -> DeviceConfig:
    """A kit of the 'full' profile bound to a deployment; the config its first Pi collects."""
    org = _ok(api.post("/orgs", json={"slug": "govtech", "name": "GovTech", "kind": "centre"}), 201)
    kit = _ok(
        api.post("/kits", json={"inventory_code": "OPS-1", "profile_id": "full", "org_id": org["id"]}), 201
    )
    dep = _ok(
        api.post("/deployments", json={"kit_id": kit["id"], "name": "town hall", "org_id": org["id"]}), 201
    )
    claim = kit["claim_codes"][0]["code"]
    _ok(api.post("/claims/bind", json={"claim_code": claim, "deployment_id": dep["id"]}), 201)
    issued = _ok(api.post("/claims/poll", json={"claim_code": claim}))["device"]["config"]
    return DeviceConfig.model_validate(issued)


def _count(store: Path, device: str, start: float, end: float) -> int:
    with sqlite3.connect(store, timeout=30) as db:
        (n,) = db.execute(
            "SELECT COUNT(*) FROM readings JOIN series ON series.id = readings.series_id "
            "WHERE series.device = ? AND time >= ? AND time <= ?",
            (device, start, end),
        ).fetchone()
    return int(n)


def _times(store: Path, device: str) -> list[float]:
    with sqlite3.connect(store, timeout=30) as db:
        rows = db.execute(
            "SELECT DISTINCT time FROM readings JOIN series ON series.id = readings.series_id "
            "WHERE series.device = ? ORDER BY time",
            (device,),
        ).fetchall()
    return [float(t) for (t,) in rows]


def _lose(store: Path, device: str, start: float, end: float) -> None:
    with sqlite3.connect(store, timeout=30) as db:
        db.execute(
            "DELETE FROM readings WHERE time >= ? AND time <= ? AND series_id IN "
            "(SELECT id FROM series WHERE device = ?)",
            (start, end, device),
        )


def _set_local_time(page: Any, selector: str, epoch: float) -> None:
    """Put ``epoch`` in a datetime-local input as the browser's local time (whole seconds)."""
    page.eval_on_selector(
        selector,
        """(el, t) => { const d = new Date(t * 1000); const p = (n) => String(n).padStart(2, '0');
        el.value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:` +
                   `${p(d.getMinutes())}:${p(d.getSeconds())}`; }""",
        epoch,
    )


def test_the_fleet_is_operated_from_the_pages(
    stack: dict[str, Any],
    browser: Any,
    tmp_path: Path,
    screenshot_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Test that from the device page a resend recovers a gap in the store, a config change
    (a sensor off, another interval) is applied by the agent and shown in force on the device
    and fleet pages, the agent's log comes back, and a config the agent has no driver for is
    refused with the reason while it keeps sampling; pages clean under axe."""
    caplog.set_level(logging.INFO, logger="edge")  # what the agent's log file would hold
    api, store = stack["api"], stack["store"]
    issued = _enrolled(api)
    device = issued.device
    # The agent as on a Pi, emulated chips, sampling every second (its own file may go that fast).
    config = issued.model_copy(
        update={
            "bus": "emulated",
            "publish_interval_s": 1.0,
            "sensors": [s.model_copy(update={"interval_s": 1.0}) for s in issued.sensors],
            "calibration": [],
        }
    )
    bus = build_bus(config.sensors, "office-day", clock=time.time, seed=1)
    agent = Agent(config, bus, clock_synced=lambda: True, state_dir=tmp_path / "pi")
    agent.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        assert agent.wait_connected(30)
        wait_until(
            lambda: _ok(api.get(f"/devices/{device}"))["online"], what="the device online in the registry"
        )
        # The gap: the readings of the agent's 2nd and 3rd sampling rounds.
        rounds = wait_until(
            lambda: _times(store, device)[:4] if len(_times(store, device)) >= 4 else None,
            timeout=60,
            what="four sampling rounds stored",
        )
        gap_start, gap_end = rounds[1] - 0.001, rounds[2] + 0.001
        stored = _count(store, device, gap_start, gap_end)
        assert stored >= 2
        _lose(store, device, gap_start, gap_end)
        assert _count(store, device, gap_start, gap_end) == 0

        response = context.request.post(
            f"{stack['url']}/api/v1/auth/login", data={"email": ADMIN[0], "password": ADMIN[1]}
        )
        assert response.ok
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{stack['url']}/fleet/devices/{device}")
        expect(page.locator("#device-state")).to_have_text(re.compile("online", re.I))
        expect(page.locator("#device-config-version")).to_contain_text("version 1 in force", timeout=30_000)

        # A resend of the lost range, from the page.
        _set_local_time(page, "#resend-from", gap_start)
        _set_local_time(page, "#resend-to", gap_end + 1)  # the input holds whole seconds
        page.click("#resend-form button[type=submit]")
        resend = page.locator('#command-history tr[data-name="resend"]')
        expect(resend).to_have_attribute("data-state", "answered", timeout=30_000)
        wait_until(
            lambda: _count(store, device, gap_start, gap_end) == stored,
            timeout=30,
            what="the resent readings back in the store",
        )
        page.screenshot(path=str(screenshot_dir / "fleet-device-resend.png"), full_page=True)
        assert axe(page) == [], "device page"

        # A config change from the page: the last sensor off, a slower cycle.
        off = config.sensors[-1].name
        page.fill("#cfg-publish", "2")
        for sensor in config.sensors:
            page.fill(f'tr[data-sensor="{sensor.name}"] input[name="interval_s"]', "1")
        page.uncheck(f"#en-{off}")
        page.fill("#cfg-note", "quieter: one sensor off")
        page.click("#config-form button[type=submit]")
        expect(page.locator("#config-result")).to_contain_text("Version 2 saved")
        expect(page.locator("#device-config-version")).to_contain_text("version 2 in force", timeout=30_000)
        assert agent.config.config_version == 2 and agent.config.publish_interval_s == 2
        assert agent.sampler.disabled == [off]
        version = page.locator('#config-versions li[data-version="2"]')
        expect(version).to_contain_text(f"sensors[{off}].enabled")
        expect(version.locator(".badge.ok")).to_have_text("in force")

        # The agent's log, from the page.
        page.fill("#logs-lines", "20")
        page.click("#logs-form button[type=submit]")
        logs = page.locator('#command-history tr[data-name="logs"]')
        expect(logs).to_have_attribute("data-state", "answered", timeout=30_000)
        expect(logs.locator("pre.reply")).to_contain_text("config applied")

        # A config with a part this agent has no driver for: refused, and sampling goes on.
        body = _ok(api.get(f"/devices/{device}/config/versions/2"))["body"]
        bad = [{**body["sensors"][0], "part": "bme999"}, *body["sensors"][1:]]
        made = _ok(api.post(f"/devices/{device}/config/versions", json={"sections": {"sensors": bad}}), 201)
        refused = page.locator(f'#command-history tr[data-command-id="{made["command"]["command_id"]}"]')
        expect(refused).to_have_attribute("data-state", "failed", timeout=30_000)
        expect(refused).to_contain_text("'bme999', which this agent has no driver for")
        expect(page.locator("#device-config-version")).to_contain_text("version 2 in force")
        before = time.time()
        wait_until(
            lambda: _count(store, device, before, time.time() + 5) > 0, timeout=30, what="sampling goes on"
        )
        page.screenshot(path=str(screenshot_dir / "fleet-device.png"), full_page=True)
        assert axe(page) == [], "device page after the changes"
        page.set_viewport_size({"width": 390, "height": 844})
        width = phone_width(page)  # once the charts took their new size (was a fixed 300 ms)
        page.screenshot(path=str(screenshot_dir / "fleet-device-phone.png"), full_page=True)
        assert width <= 400, f"the device page scrolls sideways on a phone ({width} px)"
        page.set_viewport_size({"width": 1280, "height": 900})

        page.goto(f"{stack['url']}/fleet")
        row = page.locator(f'tr[data-device="{device}"]')
        expect(row.locator(".config-version")).to_contain_text("v2")
        expect(row.locator(".config-version .badge.warn")).to_contain_text("newest is 3")
        expect(row.locator(".diagnostics")).to_contain_text("GB")
        page.screenshot(path=str(screenshot_dir / "fleet-diagnostics.png"), full_page=True)
        assert axe(page) == [], "fleet page"
        assert errors == []
    finally:
        context.close()
        agent.stop()
