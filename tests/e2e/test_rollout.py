"""A staged rollout from the server's API to real agents, and a bad one that stops itself.

Everything is real: the server (HTTP, its listener and command sweep on a real Mosquitto; the
rollouts are started on its fleet page in headless Chromium), three
agents under the launcher (`python -m edge.updates.launcher ... edge run`, each with its own agent
home: the launcher's switch and rollback are the device side's whole test), and two wheels built in
the test (tests/agent_wheels.py), served by the server from its registry and installed by each
agent with ``pip --no-index`` from its download folder.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlmodel import Session, select

from edge.updates.home import AgentHome
from gateway.store import SqliteStore
from server.app import create_app
from server.cli import add_global_admin
from server.runner import ServerThread
from server.settings import ServerSettings
from server.tables import DeviceRow, OrganisationRow
from tests.agent_wheels import AgentWheel
from tests.edge.updates.launching import start_launcher, write_config
from tests.edge.updates.mqtt_peer import Peer
from tests.server.test_web_pages import check, watch
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.browser]

ORG = "city-a"
DEVICES = ("roll-1", "roll-2", "roll-3")
PASSWORD = "a long admin password"


def _registry(engine: Any) -> dict[str, DeviceRow]:
    with Session(engine) as session:
        return {d.id: d for d in session.exec(select(DeviceRow)).all()}


def start_from_page(page: Any, version: str, canary: str) -> None:
    """Start a rollout the way a global admin does: the fleet page's form."""
    panel = page.locator("#rollout-panel")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    page.select_option("#r-version", version)
    page.fill("#r-canaries", canary)
    page.fill("#r-share", "50")
    page.fill("#r-deadline", "60")
    page.click("#rollout-form button[type=submit]")


def test_a_rollout_reaches_every_ring_and_a_bad_one_stops_at_its_canary(
    mosquitto: Any, browser: Any, agent_wheels: dict[str, AgentWheel], tmp_path: Path, screenshot_dir: Path
) -> None:
    """Test that a rollout of 0.2.0, started on the fleet page, updates the canary, then the share,
    then the rest, each agent reporting 0.2.0 to the fleet; that a rollout of 0.3.0 (fails at
    start) is rolled back by its canary's launcher and stops itself with the canary's reason, shown
    on the page, while the other devices are never offered it; and that every agent samples on."""
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        command_sweep_s=1.0,
    )
    launchers: list[subprocess.Popen[bytes]] = []
    contexts: list[Any] = []
    peers: list[Peer] = []
    with SqliteStore(settings.store), ServerThread(create_app(settings), port=0) as server:
        # Where the agents fetch the wheels: known once the server listens (on a free port; a port
        # chosen before binding can be taken by then on a busy machine).
        server.app.state.resources.settings.public_url = server.url
        engine = server.app.state.resources.engine
        with Session(engine) as session:
            add_global_admin(session, "root@example.org", PASSWORD, now=time.time())
            org = OrganisationRow(slug=ORG, name="City A", created_at=time.time())
            session.add(org)
            session.flush()
            for device in DEVICES:
                session.add(DeviceRow(id=device, org_id=org.id or 0, registered_at=time.time()))
            session.commit()
        http = httpx.Client(base_url=server.url, timeout=30)
        login = http.post("/api/v1/auth/login", json={"email": "root@example.org", "password": PASSWORD})
        assert login.status_code == 200, login.text
        http.headers["X-CSRF-Token"] = login.json()["csrf"]
        logs = [open(tmp_path / f"{d}.log", "wb") for d in DEVICES]  # noqa: SIM115
        try:
            launched = time.monotonic()
            for device, log in zip(DEVICES, logs, strict=True):
                config = write_config(tmp_path / f"{device}.yaml", device, mosquitto.port, ORG)
                peers.append(Peer(mosquitto.host, mosquitto.port, ORG, device))
                launchers.append(
                    start_launcher(tmp_path / device / "agent", config, tmp_path / device / "state", log)
                )
            wait_until(
                lambda: all(d.online and d.agent_version == "0.1.0" for d in _registry(engine).values()),
                60,
                "every agent online with 0.1.0 in the registry",
            )
            cold_s = time.monotonic() - launched  # the same run's baseline: agents started from cold

            context = browser.new_context(viewport={"width": 1280, "height": 900})
            contexts.append(context)
            login = context.request.post(
                f"{server.url}/api/v1/auth/login", data={"email": "root@example.org", "password": PASSWORD}
            )
            assert login.ok, login.text()
            page = context.new_page()
            errors = watch(page)
            page.goto(f"{server.url}/fleet?poll_ms=500")
            for wheel in agent_wheels.values():  # uploaded on the page, as a global admin does
                if page.locator("#rollout-panel").get_attribute("open") is None:
                    page.locator("#rollout-panel summary").click()
                page.set_input_files("#r-wheel", str(wheel.path))
                page.click("#release-form button[type=submit]")
                expect(page.locator("#r-version")).to_contain_text(wheel.version)
            served = {r["version"]: r["sha256"] for r in http.get("/api/v1/agent-releases").json()}
            assert served == {w.version: w.sha256 for w in agent_wheels.values()}
            start_from_page(page, "0.2.0", "roll-1")
            expect(page.locator("#rollout-result")).to_contain_text("rollout 0.2.0: running")
            rollout_id = http.get("/api/v1/rollouts").json()[0]["id"]
            done = wait_until(
                lambda: (r := http.get(f"/api/v1/rollouts/{rollout_id}").json())["state"] != "running" and r,
                180,
                "the 0.2.0 rollout to finish",
            )
            assert done["state"] == "done", done
            assert {name: c["updated"] for name, c in done["rings"].items()} == {
                "canary": 1,
                "share": 1,
                "all": 1,
            }
            wait_until(
                lambda: all(d.agent_version == "0.2.0" for d in _registry(engine).values()),
                30,
                "the fleet to show 0.2.0 on every device",
            )
            good_figures = done["figures"]
            expect(page.locator("#fleet-rollout h2")).to_have_text("Agent update 0.2.0: done", timeout=30_000)
            expect(page.locator("#fleet-versions")).to_contain_text("0.2.0: 3", timeout=30_000)

            start_from_page(page, "0.3.0", "roll-2")
            expect(page.locator("#rollout-result")).to_contain_text("rollout 0.3.0: running")
            bad = http.get("/api/v1/rollouts").json()[0]
            stopped = wait_until(
                lambda: (r := http.get(f"/api/v1/rollouts/{bad['id']}").json())["state"] != "running" and r,
                180,
                "the 0.3.0 rollout to stop",
            )
            stop_s = stopped["finished_at"] - stopped["created_at"]
            assert stopped["state"] == "stopped"
            assert "canary device roll-2 failed: update to 0.3.0 rolled back" in stopped["reason"]
            assert "broken on purpose at start" in stopped["reason"]
            others = {d["device"]: d for d in stopped["devices"] if d["device"] != "roll-2"}
            assert all(d["state"] == "waiting" and d["command_id"] is None for d in others.values())
            since = time.monotonic()
            for peer in peers:
                assert peer.sampling_since(since, 30), f"{peer.device} stopped publishing"
            assert {d.id: d.agent_version for d in _registry(engine).values()} == dict.fromkeys(
                DEVICES, "0.2.0"
            )
            panel = page.locator("#fleet-rollout")
            expect(panel.locator("h2")).to_have_text("Agent update 0.3.0: stopped", timeout=30_000)
            expect(panel).to_contain_text("canary device roll-2 failed: update to 0.3.0 rolled back")
            check(page, errors, screenshot_dir, "fleet-rollout-stopped-live")
            canary = AgentHome(tmp_path / "roll-2" / "agent")
            assert canary.current_version() == "0.2.0" and canary.installed() == ["0.2.0"]  # 0.3.0 removed
            canary_s, all_s = good_figures["canary_healthy_after_s"], good_figures["all_updated_after_s"]
            print(
                f"\nrollout figures (3 agents, rings 1/1/1): baseline cold start of 3 agents {cold_s:.1f} s; "
                f"canary healthy after {canary_s:.1f} s ({canary_s / cold_s:.2f}x), all updated after "
                f"{all_s:.1f} s ({all_s / cold_s:.2f}x); bad canary rolled back and rollout stopped "
                f"after {stop_s:.1f} s ({stop_s / cold_s:.2f}x)"
            )
        finally:
            for context in contexts:
                context.close()
            for launcher in launchers:
                launcher.send_signal(signal.SIGTERM)
            for launcher in launchers:
                try:
                    launcher.wait(30)
                except subprocess.TimeoutExpired:
                    launcher.kill()
            for peer in peers:
                peer.close()
            for log in logs:
                log.close()
    for device in DEVICES:  # the switches never fell in the middle of an outbox write
        with sqlite3.connect(tmp_path / device / "state" / "outbox.sqlite") as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert all(launcher.returncode == 0 for launcher in launchers)
