"""A sped-up ``suitcase demo`` with its script of faults: the server hears the devices, and each
fault shows where a person would look for it (alerts that fire and resolve, the fleet page).

The demo runs in-process (a thread) on a real Mosquitto, 20 times faster than the ten-minute
script, once for the module; the tests read what it made.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import create_engine
from sqlmodel import Session, select

from server.tables import AlertRow, AlertRuleRow, DeviceCommandRow, DeviceRow
from suitcase.broker import find_mosquitto
from suitcase.demo import run_demo
from suitcase.demo_faults import SCRIPT_S
from tests.services import require_service
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

SPEED = 20.0


@dataclass
class RunningDemo:
    url: str
    email: str
    password: str
    kiosk_url: str
    workdir: Path
    output: io.StringIO

    def text(self) -> str:
        return self.output.getvalue()

    def alerts(self) -> list[tuple[str, str, float | None]]:
        """(rule kind, subject, resolved_at) of every alert so far."""
        engine = create_engine(f"sqlite:///{self.workdir / 'registry.sqlite'}")
        try:
            with Session(engine) as s:
                rows = s.exec(select(AlertRow, AlertRuleRow).where(AlertRow.rule_id == AlertRuleRow.id)).all()
                return [(rule.kind, alert.subject, alert.resolved_at) for alert, rule in rows]
        finally:
            engine.dispose()

    def devices(self) -> dict[str, DeviceRow]:
        engine = create_engine(f"sqlite:///{self.workdir / 'registry.sqlite'}")
        try:
            with Session(engine) as s:
                return {d.id: d for d in s.exec(select(DeviceRow)).all()}
        finally:
            engine.dispose()

    def deliveries(self) -> list[DeviceCommandRow]:
        engine = create_engine(f"sqlite:///{self.workdir / 'registry.sqlite'}")
        try:
            with Session(engine) as s:
                return list(s.exec(select(DeviceCommandRow).where(DeviceCommandRow.name == "config")).all())
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def sped_up_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """Three Pis, the fault script at speed 20 (30 s), running until the module's tests are done."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    workdir = tmp_path_factory.mktemp("sped-up-demo")
    output = io.StringIO()
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_demo(
                broker_kind="mosquitto",
                devices=3,
                duration=None,
                workdir=workdir,
                interval=1.0,
                console=Console(file=output, width=200),
                stop=stop,
                speed=SPEED,
                map_tiles_url="",  # the offline outline map: the test reaches no tile server
            )
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name="sped-up-demo", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: "running (Ctrl-C" in output.getvalue() or bool(failed),
            timeout=120,
            what="the demo to start",
        )
        assert not failed, failed
        text = output.getvalue()
        url = re.search(r"^page: (\S+)$", text, re.MULTILINE)
        login = re.search(r"\(log in as (\S+) / (\S+)\)$", text, re.MULTILINE)
        kiosk = re.search(r"^kiosk: (\S+)$", text, re.MULTILINE)
        assert url and login and kiosk, text
        yield RunningDemo(url.group(1), login.group(1), login.group(2), kiosk.group(1), workdir, output)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the demo did not stop"
    assert not failed, failed


def _wait_script_end(demo: RunningDemo) -> None:
    wait_until(
        lambda: "end of the fault script" in demo.text(),
        timeout=SCRIPT_S / SPEED + 60,
        what="the end of the fault script",
    )


def _faults_undone(demo: RunningDemo) -> bool:
    """Whether each fault's alert has fired and resolved, and the overdue loan's fires."""
    alerts = demo.alerts()
    resolved = {(kind, subject) for kind, subject, at in alerts if at is not None}
    firing = {(kind, subject) for kind, subject, at in alerts if at is None}
    return {
        ("sensor_unhealthy", "demo-pi-2:bme280"),
        ("offline", "demo-pi-3"),
        ("calibration_due", "kit:OPEN-LAB-DEMO:pi1:bme280/temperature"),
    } <= resolved and ("loan_overdue", "loan:1") in firing


def _row(html: str, device: str) -> str:
    found = re.search(rf'<tr data-device="{device}".*?</tr>', html, re.DOTALL)
    return found.group(0) if found else ""


@pytest.mark.browser
def test_a_browser_walks_every_page_and_finds_the_faults(
    sped_up_demo: RunningDemo, browser: Any, screenshot_dir: Path
) -> None:
    """Test that while the script plays, the fleet page shows each fault as it happens (the Pi
    offline, the unplugged sensor, the stuck sensor, the calibration due), and afterwards every page
    (fleet, kits, deployments, public, use-cases, kiosk, an unknown page) loads in Chromium without
    console errors and with no serious axe violation, showing what the faults left: the alerts that
    fired and resolved, the overdue loan, the new calibration, the offline outline map."""
    from tests.server.test_web_pages import axe, watch

    demo = sped_up_demo
    url = demo.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        login = context.request.post(
            f"{url}api/v1/auth/login", data={"email": demo.email, "password": demo.password}
        )
        assert login.ok, login.text()

        wanted: dict[str, Callable[[str], bool]] = {
            "offline": lambda h: 'data-device="demo-pi-3" data-state="offline"' in h,
            "unplugged": lambda h: re.search(r"bme280: (missing|failing)", _row(h, "demo-pi-2")) is not None,
            "stuck": lambda h: "bme280: stuck" in _row(h, "demo-pi-1"),
            "calibration due": lambda h: (
                re.search(r'class="badge err">due ', _row(h, "demo-pi-1")) is not None
            ),
        }
        seen: set[str] = set()
        deadline = time.monotonic() + SCRIPT_S / SPEED + 30
        while seen != set(wanted) and time.monotonic() < deadline:
            html = context.request.get(f"{url}fleet/live").text()
            seen |= {name for name, shows in wanted.items() if shows(html)}
            time.sleep(0.2)
        assert seen == set(wanted), f"the fleet page never showed: {set(wanted) - seen}"
        _wait_script_end(demo)

        def recovered() -> bool:
            html = context.request.get(f"{url}fleet/live").text()
            rows = [_row(html, pi) for pi in ("demo-pi-1", "demo-pi-2", "demo-pi-3")]
            return all('data-state="online"' in row and "bme280: ok" in row for row in rows)

        # The alert rounds and statuses after the last fault cleared (was a 3 s sleep: a few rounds
        # at this speed, fewer on a loaded machine).
        wait_until(lambda: _faults_undone(demo), timeout=60, what="the alerts to fire and resolve", every=0.5)
        wait_until(recovered, timeout=60, what="every Pi online with its bme280 ok", every=0.5)

        page = context.new_page()
        errors = watch(page)

        def visit(path: str, name: str | None = None) -> str:
            response = page.goto(f"{url}{path.lstrip('/')}")
            assert response is not None and response.ok, (path, response and response.status)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)  # charts and maps draw
            if name:
                page.screenshot(path=str(screenshot_dir / f"demo-{name}.png"), full_page=True)
            assert axe(page) == [], path
            assert errors == [], (path, errors)
            return str(page.content())

        fleet = visit("/fleet", "fleet")
        for pi in ("demo-pi-1", "demo-pi-2", "demo-pi-3"):
            row = _row(fleet, pi)
            assert 'data-state="online"' in row and "bme280: ok" in row, row
        assert re.search(r'class="badge ok">next ', _row(fleet, "demo-pi-1")), "no recalibration shown"

        kits = visit("/kits")
        assert re.search(r'id="count-overdue">1<', kits), "the overdue loan is not on the kits page"
        assert "OPEN-LAB-LOAN" in kits

        deployments = dict(re.findall(r'<a href="/deployments/(\d+)">[^<]*demo Pi (\d)', fleet))
        assert len(deployments) == 3, deployments
        by_pi = {pi: dep for dep, pi in deployments.items()}
        offline = visit(f"/deployments/{by_pi['3']}", "deployment")
        assert re.search(r"demo-pi-3 sent no data|demo-pi-3 is offline", offline), "offline alert not shown"
        assert 'class="badge ok">resolved' in offline
        unplugged = visit(f"/deployments/{by_pi['2']}")
        assert "sensor bme280 on demo-pi-2 is" in unplugged, "the unplugged sensor's alert is not shown"

        public = visit("/public", "public")
        assert "Natural Earth" in public  # the outlines' credit on the offline map
        assert int(page.get_attribute("[data-basemap]", "data-basemap") or 0) >= 5
        visit(f"/public/deployments/{by_pi['1']}")
        visit("/use-cases")

        kiosk = context.new_page()
        kiosk_errors = watch(kiosk)
        kiosk.goto(demo.kiosk_url)
        kiosk.wait_for_load_state("networkidle")
        kiosk.wait_for_timeout(1500)
        kiosk.screenshot(path=str(screenshot_dir / "demo-kiosk.png"), full_page=True)
        assert axe(kiosk) == [] and kiosk_errors == []
        assert "Street air" in kiosk.content() or "Office climate" in kiosk.content()

        missing = page.goto(f"{url}no/such/page")
        assert missing is not None and missing.status == 404
        assert "Page not found" in page.content() and '<header class="site">' in page.content()
        assert axe(page) == []
    finally:
        context.close()


def test_each_fault_fires_an_alert_that_resolves(sped_up_demo: RunningDemo) -> None:
    """Test that the unplugged sensor, the stuck sensor, the offline Pi and the calibration falling
    due each fire an alert that resolves once the fault is undone; the overdue loan fires and stays."""
    _wait_script_end(sped_up_demo)
    wait_until(
        lambda: _faults_undone(sped_up_demo), timeout=60, what="the alerts to fire and resolve", every=0.5
    )
    alerts = sped_up_demo.alerts()
    assert any(kind == "stuck" and subject.startswith("demo-pi-1:bme280") for kind, subject, _ in alerts), (
        alerts
    )
    # Nothing fires that the script did not make (no false alarm at start, e.g. a sensor warming up).
    assert {kind for kind, _, _ in alerts} <= {
        "sensor_unhealthy",
        "stuck",
        "offline",
        "calibration_due",
        "loan_overdue",
    }
    assert not [a for a in alerts if a[0] == "sensor_unhealthy" and a[1] != "demo-pi-2:bme280"], alerts
    lines = sped_up_demo.text()
    for step in ("unplugged", "plugged back", "stuck", "goes offline", "back online", "recalibrated"):
        assert re.search(rf"^t\+\d+ s: .*{step}", lines, re.MULTILINE), lines


def test_the_server_hears_the_devices(sped_up_demo: RunningDemo) -> None:
    """Test that status, meta and the calibration command's reply reach the registry: every Pi is
    online with its agent version, backlog and sensor health, and Pi 1 runs the new calibration."""

    def heard() -> bool:
        devices = sped_up_demo.devices()
        return len(devices) == 3 and all(d.online and d.meta_at and d.agent_version for d in devices.values())

    wait_until(heard, timeout=60, what="status and meta of all three Pis")
    devices = sped_up_demo.devices()
    for device in devices.values():
        assert device.backlog is not None and device.uptime_s is not None
        assert {s["name"] for s in device.sensors} >= {"bme280"}
    _wait_script_end(sped_up_demo)

    def calibrated() -> bool:
        replies = [
            d for d in sped_up_demo.deliveries() if d.device_id == "demo-pi-1" and d.state == "answered"
        ]
        return len(replies) >= 2  # the seeded calibration at start, the recalibration later

    wait_until(calibrated, timeout=30, what="the device's replies to both calibration commands")
    pi1 = sped_up_demo.devices()["demo-pi-1"]
    bme = next(s for s in pi1.sensors if s["name"] == "bme280")
    assert bme["calibration_version"] is not None and bme["calibration_version"] >= 2, pi1.sensors
