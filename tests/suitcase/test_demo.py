"""``suitcase demo`` as a person runs it: a subprocess that exits 0 and reports readings landed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from gateway.store import SqliteStore
from server.tables import DeviceConfigRow, DeviceRow
from suitcase.broker import find_mosquitto
from suitcase.demo import DEFAULT_DEVICES, DEMO_ORG
from tests.services import require_service
from tests.services.influxdb import InfluxD


def _run_demo(
    broker: str, tmp_path: Path, *extra: str, devices: str = "2"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "suitcase",
            "demo",
            *(["--devices", devices] if devices else []),
            "--duration",
            "15",
            "--broker",
            broker,
            "--workdir",
            str(tmp_path / "demo"),
            "--interval",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def test_demo_runs_and_reports_readings_landed(broker: str, tmp_path: Path) -> None:
    """Test that `suitcase demo --devices 2 --duration 15` exits 0 having stored readings."""
    if broker == "mosquitto" and find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto")
    result = _run_demo(broker, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    landed = re.search(r"(\d+) readings landed from 2 devices", result.stdout)
    assert landed, result.stdout
    # 2 devices x 3 quantities, about once a second for 15 s
    assert int(landed.group(1)) >= 2 * 3 * 5
    assert "http://127.0.0.1:" in result.stdout
    kiosk = r"Open Lab kiosk: http://127\.0\.0\.1:\d+/kiosk#token=sct_\S{20,}\n"
    assert re.search(kiosk, result.stdout), result.stdout


@pytest.mark.slow
@pytest.mark.influxdb
def test_demo_on_influxdb_writes_and_reads_there(influxd: InfluxD, tmp_path: Path) -> None:
    """Test that `suitcase demo --store influxdb1://...` lands its readings (history and live) in
    InfluxDB, one database per org, counts them from there, and leaves the embedded file empty."""
    result = _run_demo("embedded", tmp_path, "--store", influxd.sink_url)
    assert result.returncode == 0, result.stdout + result.stderr
    landed = re.search(r"(\d+) readings landed from 2 devices", result.stdout)
    assert landed and int(landed.group(1)) >= 2 * 3 * 5, result.stdout
    database = "suitcase_" + DEMO_ORG.replace("-", "_")
    assert influxd.count(database) >= int(landed.group(1)) * 0.9
    with SqliteStore(tmp_path / "demo" / "store.sqlite") as local:
        assert local.count_readings() == 0


def test_demo_rejects_an_unknown_broker(tmp_path: Path) -> None:
    """Test that a misspelt --broker fails with exit 2 and names the choices."""
    result = subprocess.run(
        [sys.executable, "-m", "suitcase", "demo", "--broker", "mosquito", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "embedded or mosquitto" in result.stdout + result.stderr


def test_help_lists_every_part() -> None:
    """Test that `suitcase --help` lists the parts registered in suitcase/cli.py."""
    result = subprocess.run(
        [sys.executable, "-m", "suitcase", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for part in ("edge", "gateway", "server", "demo"):
        assert part in result.stdout


@pytest.mark.slow
def test_default_demo_runs_every_use_case_live(tmp_path: Path) -> None:
    """Test that the default demo (no --devices) runs a Pi per use-case it ships and that the
    counter's and the board's live readings land: passes counted by the VL53L1X across the path,
    the clamp's RMS volts from the ADS1x15 (what the pages read as passes per hour and power)."""
    started = time.time()
    result = _run_demo("embedded", tmp_path, "--no-faults", devices="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"readings landed from {DEFAULT_DEVICES} devices", result.stdout), result.stdout
    with SqliteStore(tmp_path / "demo" / "store.sqlite") as store:
        live = {
            (r.device, r.quantity): r.value
            for r in store.latest()
            if r.time >= started and r.quantity in ("passes", "voltage_a0", "distance")
        }
    assert ("demo-pi-4", "passes") in live, live
    assert ("demo-pi-3", "distance") in live, live
    assert 0 < live[("demo-pi-5", "voltage_a0")] < 1, live  # 2-16 A on a 30 A/V clamp
    # The Pis with derived quantities (the bin, the board) report the config version the demo
    # made for them as in force: the fleet page does not say "newest is 1" for the whole run.
    engine = create_engine(f"sqlite:///{tmp_path / 'demo' / 'registry.sqlite'}")
    try:
        with Session(engine) as s:
            newest = {row.device_id: row.version for row in s.exec(select(DeviceConfigRow)).all()}
            in_force = {d: s.get(DeviceRow, d).config_version for d in newest}  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert {"demo-pi-3", "demo-pi-5"} <= set(newest), newest
    assert in_force == newest, (in_force, newest)
