"""The stack's systemd units: rendered from the same process list the supervisor runs.

``deploy/systemd/`` holds them rendered for the default layout (``/etc/suitcase``,
``/var/lib/suitcase``); a test keeps those files equal to :func:`render_units`. Where PID 1 is
systemd, ``up`` installs them in ``/etc/systemd/system`` and enables the services' units; the
gateway (a template: one instance per gateway, named by its metrics port) and the server are
enabled by the operator (README, "Operations").
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from kits.errors import ConfigError
from suitcase.services.layout import Layout
from suitcase.services.processes import ACCOUNTS_SERVICE, ProcessSpec

__all__ = ["UNIT_DIR", "install_units", "render_units", "restart_units", "systemd_runs", "units_active"]

UNIT_DIR = Path("/etc/systemd/system")
_SIGNALS = {2: "SIGINT", 15: "SIGTERM"}


def systemd_runs() -> bool:
    """Whether PID 1 is systemd (sd_booted(3): /run/systemd/system exists)."""
    return Path("/run/systemd/system").is_dir()


def _service_unit(spec: ProcessSpec, layout: Layout) -> str:
    user = f"User={spec.user}\n" if spec.user else ""
    env = f"EnvironmentFile={spec.env_file}\n" if spec.env_file else ""
    # The accounts service logs in to the broker: start it after Mosquitto (it retries on failure).
    after = " suitcase-mosquitto.service" if spec.name == ACCOUNTS_SERVICE else ""
    # It says READY=1 once subscribed (sd_notify): `systemctl start` returns when it can serve.
    kind = "Type=notify\n" if spec.name == ACCOUNTS_SERVICE else ""
    return f"""\
# IoT Suitcase: {spec.name} of the stack (written by `suitcase services up`).
[Unit]
Description=IoT Suitcase {spec.name}
After=network-online.target{after}
Wants=network-online.target
PartOf=suitcase.target

[Service]
{kind}{user}{env}ExecStart={shlex.join(spec.argv)}
KillSignal={_SIGNALS.get(spec.stop_signal, "SIGTERM")}
Restart=on-failure
RestartSec=2
TimeoutStopSec=60
LimitNOFILE=65536
NoNewPrivileges=true
ProtectSystem=full
PrivateTmp=true
ReadWritePaths={layout.data_dir}

[Install]
WantedBy=suitcase.target
"""


def render_units(
    layout: Layout, specs: list[ProcessSpec], suitcase: str = "/usr/local/bin/suitcase"
) -> dict[str, str]:
    """Unit file name -> text for the services, the gateway template, the server and the target."""
    units = {f"suitcase-{spec.name}.service": _service_unit(spec, layout) for spec in specs}
    services = " ".join(f"suitcase-{spec.name}.service" for spec in specs)
    units["suitcase.target"] = f"""\
# IoT Suitcase: the stack's services; `systemctl start suitcase.target` starts them all.
[Unit]
Description=IoT Suitcase services
Wants={services}

[Install]
WantedBy=multi-user.target
"""
    units["suitcase-gateway@.service"] = f"""\
# IoT Suitcase gateway, one instance per gateway: the instance name is its metrics port.
#   systemctl enable --now suitcase-gateway@9101 suitcase-gateway@9102
# The instances share the broker's subscription (group in gateway.env) and split the load.
[Unit]
Description=IoT Suitcase gateway (metrics on port %i)
After=suitcase.target
Wants=suitcase.target

[Service]
DynamicUser=true
StateDirectory=suitcase-gateway/%i
EnvironmentFile={layout.gateway_env}
Environment=SUITCASE_GATEWAY_CLIENT_ID=suitcase-gateway-%i
Environment=SUITCASE_GATEWAY_METRICS_PORT=%i
Environment=SUITCASE_GATEWAY_STORE=/var/lib/suitcase-gateway/%i/store.db
ExecStart={suitcase} gateway run
Restart=always
RestartSec=2
TimeoutStopSec=60
NoNewPrivileges=true
ProtectSystem=strict
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""
    units["suitcase-server.service"] = f"""\
# IoT Suitcase server: registry, API and pages on 127.0.0.1:8000 (put a TLS proxy in front).
[Unit]
Description=IoT Suitcase server
After=suitcase.target
Wants=suitcase.target

[Service]
DynamicUser=true
StateDirectory=suitcase-server
WorkingDirectory=/var/lib/suitcase-server
EnvironmentFile={layout.server_env}
ExecStart={suitcase} server run
Restart=always
RestartSec=2
TimeoutStopSec=60
NoNewPrivileges=true
ProtectSystem=strict
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""
    return units


def install_units(units: dict[str, str], unit_dir: Path = UNIT_DIR) -> list[str]:
    """Write the units that differ, reload systemd and enable and start the services; return the names
    of the units written (none: nothing changed).

    Raises:
        ConfigError: systemctl refused.
    """
    written = []
    for name, text in units.items():
        path = unit_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    commands = [["systemctl", "daemon-reload"]] if written else []
    commands.append(["systemctl", "enable", "--now", "suitcase.target"])
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(f"`{' '.join(command)}` failed: {result.stderr.strip()}: see `journalctl -xe`")
    return written


def restart_units(names: tuple[str, ...] = ("mosquitto", "influxdb", "postgres", ACCOUNTS_SERVICE)) -> None:
    """Restart the services' units (their settings changed).

    Raises:
        ConfigError: systemctl refused.
    """
    command = ["systemctl", "restart", *(f"suitcase-{name}.service" for name in names)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"`{' '.join(command)}` failed: {result.stderr.strip()}: see `journalctl -xe`")


def units_active(names: tuple[str, ...] = ("mosquitto", "influxdb", "postgres")) -> bool:
    """Whether every one of the stack's service units is active (then their ports are ours)."""
    units = [f"suitcase-{name}.service" for name in names]
    result = subprocess.run(["systemctl", "is-active", "--quiet", *units], capture_output=True, check=False)
    return result.returncode == 0
