"""Starting a real agent under the real launcher, and offering it a wheel (the update tests).

tests/e2e/test_rollout.py runs three such agents through a server's rollout: the good update
switches, the bad one is rolled back by the launcher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.agent_wheels import AgentWheel, WheelServer

ROOT = Path(__file__).resolve().parents[3]
ORG = "aarhus"


def write_config(path: Path, device: str, port: int, org: str = ORG) -> Path:
    path.write_text(
        f"""\
device: {device}
org: {org}
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
