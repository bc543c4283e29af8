"""The systemd unit that runs the agent at boot (``suitcase edge install-service``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

__all__ = ["AGENT_HOME", "UNIT_NAME", "unit_text", "write_unit"]

UNIT_NAME = "suitcase-edge.service"


AGENT_HOME = Path("/var/lib/suitcase/agent")


def unit_text(config: Path, python: str = sys.executable, home: Path = AGENT_HOME) -> str:
    """The unit: start after the network, restart on failure, keep state in /var/lib/suitcase.

    It runs the launcher (:mod:`edge.updates.launcher`), which runs the agent version in ``home``
    and rolls back an update that does not report healthy.
    """
    command = (
        f"{shlex.quote(python)} -m edge.updates.launcher --home {shlex.quote(str(home))} "
        f"-- edge run --config {shlex.quote(str(config))}"
    )
    return f"""[Unit]
Description=IoT Suitcase edge agent (reads the I2C sensors, publishes over MQTT)
Documentation=https://example.invalid/iot-suitcase
Wants=network-online.target time-sync.target
After=network-online.target

[Service]
Type=simple
ExecStart={command}
Restart=always
RestartSec=5
# The outbox and the config received from the server live here (survive reboots and updates).
StateDirectory=suitcase/edge suitcase/agent
# The agent needs the I2C bus and the ACT LED: run as root on a Pi, or give a user group i2c.
SupplementaryGroups=i2c gpio
TimeoutStopSec=20
KillSignal=SIGTERM

[Install]
WantedBy=multi-user.target
"""


def write_unit(root: Path, config: Path, python: str = sys.executable) -> Path:
    """Write the unit under ``root`` (``/`` on a Pi) and return its path."""
    path = root / "etc/systemd/system" / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(config, python))
    return path
