"""Tests of edge/cli.py: `suitcase edge run` and `suitcase edge scan`."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge.cli import app
from kits.wire import Status
from tests.edge.test_agent import DEVICE, ORG, Subscriber
from tests.waiting import wait_until

runner = CliRunner()

GOOD = f"""\
device: {DEVICE}
org: {ORG}
kit_profile: starter
bus: emulated
publish_interval_s: 0.2
sensors:
  - name: indoor
    part: bme280
    address: 0x77
    interval_s: 1
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(text)
    return path


def test_a_bad_value_exits_2_naming_the_field(tmp_path: Path) -> None:
    """Test that an invalid field value exits with code 2 and a message naming the field, no traceback."""
    path = _write(tmp_path, GOOD.replace("publish_interval_s: 0.2", "publish_interval_s: -1"))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "publish_interval_s" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_misspelt_key_points_to_the_right_one(tmp_path: Path) -> None:
    """Test that a misspelt key fails with 'did you mean' the right one."""
    path = _write(tmp_path, GOOD.replace("sensors:", "sensor:"))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "did you mean 'sensors'?" in result.output


def test_an_unknown_part_exits_2_listing_the_known_parts(tmp_path: Path) -> None:
    """Test that a part without a driver is a config error, not a crash."""
    path = _write(tmp_path, GOOD.replace("part: bme280", "part: bme208"))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "bme208" in result.output and "bme280" in result.output


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    """Test that a config path that does not exist exits 2 and says to check the path."""
    result = runner.invoke(app, ["run", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "check the path" in result.output


def test_the_board_bus_off_a_pi_exits_2_with_the_fix(tmp_path: Path) -> None:
    """Test that bus 'board' on a machine without Pi I2C explains how to enable I2C or emulate."""
    path = _write(tmp_path, GOOD.replace("bus: emulated", "bus: board"))
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "bus: emulated" in result.output


def test_scan_emulated_lists_the_bme280() -> None:
    """Test that scanning the emulated starter bus shows a BME280 at 0x77."""
    result = runner.invoke(app, ["scan", "--emulated"])
    assert result.exit_code == 0, result.output
    assert "0x77" in result.output
    assert "bme280" in result.output
    assert "chip id 0x60" in result.output


def test_scan_with_a_config_marks_what_is_expected(tmp_path: Path) -> None:
    """Test that scanning with a config compares the bus with the configured sensors."""
    text = GOOD + "  - name: window\n    part: bme280\n    address: 0x76\n"
    path = _write(tmp_path, text)
    result = runner.invoke(app, ["scan", "--config", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "indoor: ok" in result.output


def test_run_publishes_until_sigterm(tmp_path: Path, embedded_broker: Any) -> None:
    """Test that `run` on an emulated bus goes online, and a SIGTERM stops it cleanly (offline)."""
    text = GOOD + f"mqtt:\n  host: {embedded_broker.host}\n  port: {embedded_broker.port}\n"
    path = _write(tmp_path, text)
    sub = Subscriber(embedded_broker, "cli-sub")
    failures: list[str] = []

    def stop_when_online() -> None:
        try:
            status = Status.model_validate_json(sub.next("status", timeout=60).payload)
        except BaseException as exc:  # pytest.fail in a thread: report it to the test
            failures.append(f"run never went online: {exc!r}")
            return  # no SIGTERM: without run's handler installed it would end the test session
        if status.state != "online":
            failures.append(f"first status was {status.state}")
        try:
            sub.next("telemetry", timeout=30)
        except BaseException as exc:
            failures.append(f"no telemetry: {exc!r}")
        # Online means the agent started, so run's SIGTERM handler is installed.
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=stop_when_online)
    helper.start()
    result = runner.invoke(app, ["run", "--config", str(path)])
    helper.join(20)
    try:
        assert not failures, failures
        assert result.exit_code == 0, result.output
        assert Status.model_validate_json(sub.next("status").payload).state == "offline"
    finally:
        sub.close()


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["scan", "--help"]])
def test_help_is_available(command: list[str]) -> None:
    """Test that the app and each command print help."""
    result = runner.invoke(app, command)
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_the_app_says_what_it_is() -> None:
    """Test the help line the root `suitcase` CLI shows for this sub-app."""
    result = runner.invoke(app, ["--help"])
    assert "Edge agent: read the Pi's sensors and publish them" in result.output


def test_a_misspelt_toml_key_is_named_with_the_fix(tmp_path: Path) -> None:
    """Test that the TOML config names a misspelt key and suggests the right one."""
    path = tmp_path / "edge.toml"
    path.write_text('state_dir = "/tmp/x"\n[claim]\nserver = "http://s"\ncoed = "ABCD-EFGH"\n')
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "claim.coed" in result.output and "did you mean 'code'" in result.output


def test_a_toml_without_device_or_claim_says_what_to_add(tmp_path: Path) -> None:
    """Test that a config with neither [device] nor [claim] exits 2 saying how to enroll."""
    path = tmp_path / "edge.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2 and "suitcase edge enroll" in result.output


def test_install_service_writes_a_systemd_unit(tmp_path: Path) -> None:
    """Test that install-service --root writes a unit that runs `suitcase edge run` with the config,
    under the launcher that rolls back a failed update."""
    result = runner.invoke(
        app,
        ["install-service", "--root", str(tmp_path), "--config", "/etc/suitcase/edge.toml", "--no-enable"],
    )
    assert result.exit_code == 0, result.output
    unit = (tmp_path / "etc/systemd/system/suitcase-edge.service").read_text()
    assert (
        "-m edge.updates.launcher --home /var/lib/suitcase/agent -- edge run --config /etc/suitcase/edge.toml"
    ) in unit
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit


def test_run_under_suitcase_logs_that_it_waits_for_its_label(tmp_path: Path) -> None:
    """Test that `suitcase edge run` says, at its config's level (INFO), that it waits for staff to
    scan its label: under `suitcase`, whose logging is set up first, the agent said nothing."""
    import http.server
    import subprocess
    import sys

    class Pending(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the server's answer while the Pi is not bound
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pending)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "edge.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[claim]\nserver = "http://127.0.0.1:{server.server_port}"\n'
        'code = "SC-TEST-CODE"\npoll_s = 1\n'
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from suitcase.cli import main; main()",
            "edge",
            "run",
            "--config",
            str(config),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("not bound yet" in line for line in lines), 60, "the agent's waiting line")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        server.shutdown()
    assert any("INFO edge.claim" in line for line in lines), lines
