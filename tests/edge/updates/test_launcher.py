"""A real agent under the real launcher takes a good update and rolls a bad one back by itself.

The agent (`python -m edge.updates.launcher ... edge run`) talks to a real Mosquitto; the wheels are
real (tests/agent_wheels.py), installed with ``pip --no-index`` from the download folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from edge.updates.home import AgentHome
from tests.agent_wheels import AgentWheel, WheelServer
from tests.edge.updates.mqtt_peer import Peer

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ROOT = Path(__file__).resolve().parents[3]
ORG = "aarhus"


def write_config(path: Path, device: str, port: int) -> Path:
    path.write_text(
        f"""\
device: {device}
org: {ORG}
bus: emulated
scenario: office-day
publish_interval_s: 0.3
mqtt:
  host: 127.0.0.1
  port: {port}
sensors:
  - name: indoor
    part: bme280
    address: 0x77
    interval_s: 0.3
"""
    )
    return path


def start_launcher(home: Path, config: Path, state: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.updates.launcher",
            "--home",
            str(home),
            "--",
            "edge",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def offer(wheel: AgentWheel, server: WheelServer, deadline_s: float, **changes: Any) -> dict[str, Any]:
    shutil.copy(wheel.path, server.root / wheel.path.name)
    args = {
        "version": wheel.version,
        "url": f"{server.url}/{wheel.path.name}",
        "sha256": wheel.sha256,
        "size": wheel.size,
        "filename": wheel.path.name,
        "deadline_s": deadline_s,
    }
    return {**args, **changes}


def test_a_good_update_switches_and_a_bad_one_rolls_back_by_itself(
    mosquitto: Any, agent_wheels: dict[str, AgentWheel], wheel_server: WheelServer, tmp_path: Path
) -> None:
    """Test that the agent installs 0.2.0 beside 0.1.0, switches and reports it healthy; that 0.3.0,
    which fails as it starts, is rolled back to 0.2.0 by the launcher with the reason in the reply;
    that the agent samples again after each; and that the outbox stays intact across the switches."""
    device = f"upd-{uuid.uuid4().hex[:8]}"
    home, state = tmp_path / "agent", tmp_path / "state"
    config = write_config(tmp_path / "device.yaml", device, mosquitto.port)
    peer = Peer(mosquitto.host, mosquitto.port, ORG, device)
    log_path = tmp_path / "launcher.log"
    with open(log_path, "wb") as log:
        launcher = start_launcher(home, config, state, log)
        try:
            peer.ready(30)
            assert peer.status[-1]["agent"] == "0.1.0"

            began = time.monotonic()
            good = peer.send("update", offer(agent_wheels["good"], wheel_server, 60))
            reply = peer.reply(good, 120)
            good_s = time.monotonic() - began
            assert reply["ok"] is True, reply
            assert reply["result"]["version"] == "0.2.0" and reply["result"]["from"] == "0.1.0"
            assert AgentHome(home).current_version() == "0.2.0"
            assert any(s["state"] == "online" and s["agent"] == "0.2.0" for s in peer.status)
            assert peer.sampling_since(time.monotonic(), 20), "0.2.0 does not sample"

            began = time.monotonic()
            bad = peer.send("update", offer(agent_wheels["bad"], wheel_server, 60))
            reply = peer.reply(bad, 120)
            bad_s = time.monotonic() - began
            assert reply["ok"] is False, reply
            assert "update to 0.3.0 rolled back" in reply["error"]
            assert "broken on purpose at start" in reply["error"]  # the failing version's own words
            assert "agent 0.2.0 runs and samples" in reply["error"]
            assert AgentHome(home).current_version() == "0.2.0"
            assert AgentHome(home).installed() == ["0.2.0"]  # the failed version is removed
            assert peer.sampling_since(time.monotonic(), 20), "0.2.0 does not sample after the rollback"
            assert peer.status[-1] == {**peer.status[-1], "state": "online", "agent": "0.2.0"}
            rollback_state = AgentHome(home).read_state()
            assert rollback_state is not None and rollback_state["replied"] is True
            print(
                f"\nrollout figures: good update command->healthy reply {good_s:.1f} s; "
                f"bad update command->rollback reply {bad_s:.1f} s "
                f"(launcher rollback {rollback_state['rollback_s']:.2f} s, "
                f"install {rollback_state['installed_s']:.1f} s)"
            )
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(30)
            except subprocess.TimeoutExpired:
                launcher.kill()
            peer.close()
    assert launcher.returncode == 0, log_path.read_text()[-3000:]
    with sqlite3.connect(state / "outbox.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
