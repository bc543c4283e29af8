"""A sped-up ``suitcase demo`` with its script of faults: the server hears the devices, and each
fault shows where a person would look for it (alerts that fire and resolve, the fleet page).

The demo runs in-process (a thread) on a real Mosquitto, 20 times faster than the ten-minute
script, once for the module; the tests read what it made.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import create_engine
from sqlmodel import Session, select

from server.tables import AlertRow, AlertRuleRow, CalibrationDeliveryRow, DeviceRow
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

    def deliveries(self) -> list[CalibrationDeliveryRow]:
        engine = create_engine(f"sqlite:///{self.workdir / 'registry.sqlite'}")
        try:
            with Session(engine) as s:
                return list(s.exec(select(CalibrationDeliveryRow)).all())
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


def test_each_fault_fires_an_alert_that_resolves(sped_up_demo: RunningDemo) -> None:
    """Test that the unplugged sensor, the stuck sensor, the offline Pi and the calibration falling
    due each fire an alert that resolves once the fault is undone; the overdue loan fires and stays."""
    _wait_script_end(sped_up_demo)

    def seen() -> bool:
        alerts = sped_up_demo.alerts()
        resolved = {(kind, subject) for kind, subject, at in alerts if at is not None}
        firing = {(kind, subject) for kind, subject, at in alerts if at is None}
        return {
            ("sensor_unhealthy", "demo-pi-2:bme280"),
            ("offline", "demo-pi-3"),
            ("calibration_due", "kit:OPEN-LAB-DEMO:pi1:bme280/temperature"),
        } <= resolved and ("loan_overdue", "loan:1") in firing

    wait_until(seen, timeout=30, what="the alerts to fire and resolve", every=0.5)
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
        replies = [d for d in sped_up_demo.deliveries() if d.device_id == "demo-pi-1" and d.state == "ok"]
        return len(replies) >= 2  # the seeded calibration at start, the recalibration later

    wait_until(calibrated, timeout=30, what="the device's replies to both calibration commands")
    pi1 = sped_up_demo.devices()["demo-pi-1"]
    bme = next(s for s in pi1.sensors if s["name"] == "bme280")
    assert bme["calibration_version"] is not None and bme["calibration_version"] >= 2, pi1.sensors
