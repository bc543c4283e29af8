"""Where a stack's files live and which ports it listens on: one :class:`Layout`, saved with the stack.

A city's install keeps its settings in ``/etc/suitcase`` and its data in ``/var/lib/suitcase``;
tests use two temporary directories. ``services.yaml`` in the config directory records the ports
and host the stack was made with, so a second ``up`` (or ``status``, ``backup``) finds the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kits.errors import ConfigError

__all__ = ["LAYOUT_VERSION", "Layout", "Ports", "load_layout", "save_layout"]

# The layout of the data directory; a data directory made by another version is refused, never
# rewritten (see check_data_version).
LAYOUT_VERSION = 1
_MARKER = "SUITCASE_SERVICES_VERSION"
_MANIFEST = "services.yaml"


@dataclass(frozen=True)
class Ports:
    """The stack's TCP ports; defaults: Mosquitto TLS 8883, InfluxDB 8086 (8088 backups), PostgreSQL 5432."""

    mqtt_tls: int = 8883
    influx_http: int = 8086
    influx_rpc: int = 8088
    postgres: int = 5432


@dataclass(frozen=True)
class Layout:
    """One stack's directories, addresses and ports.

    Args:
        config_dir: settings files, certificates, secrets (``/etc/suitcase``).
        data_dir: the services' data (``/var/lib/suitcase``).
        hostname: the name (or address) devices and gateways use for the broker; the broker's
            certificate must name it.
        mqtt_bind: address of the broker's TLS listener (all interfaces: the Pis connect to it).
        bind: address of InfluxDB and PostgreSQL (loopback on a single machine).
        ports: see :class:`Ports`.
        influx_host, postgres_host, mqtt_host: where the parts reach each service, when not on
            ``bind`` (InfluxDB, PostgreSQL) or ``hostname`` (the broker): the service names of a
            Compose stack.
    """

    config_dir: Path
    data_dir: Path
    hostname: str = "localhost"
    mqtt_bind: str = "0.0.0.0"
    bind: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    influx_host: str | None = None
    postgres_host: str | None = None
    mqtt_host: str | None = None

    # -- config files --
    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    @property
    def secrets_file(self) -> Path:
        return self.config_dir / "secrets.yaml"

    @property
    def mosquitto_conf(self) -> Path:
        return self.config_dir / "mosquitto.conf"

    @property
    def influxdb_conf(self) -> Path:
        return self.config_dir / "influxdb.conf"

    @property
    def gateway_env(self) -> Path:
        return self.config_dir / "gateway.env"

    @property
    def server_env(self) -> Path:
        return self.config_dir / "server.env"

    @property
    def accounts_env(self) -> Path:
        """The broker host's accounts service's settings (its broker account)."""
        return self.config_dir / "accounts.env"

    # -- data --
    @property
    def mosquitto_dir(self) -> Path:
        return self.data_dir / "mosquitto"

    @property
    def dynsec_file(self) -> Path:
        return self.mosquitto_dir / "dynamic-security.json"

    @property
    def device_accounts_dir(self) -> Path:
        """Devices' accounts: Mosquitto's password and ACL files, kept by the accounts service."""
        return self.mosquitto_dir / "devices"

    @property
    def influxdb_dir(self) -> Path:
        return self.data_dir / "influxdb"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def run_dir(self) -> Path:
        """Sockets, pid files and the supervisor's state."""
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def marker(self) -> Path:
        return self.data_dir / _MARKER

    def with_ports(self, **ports: int) -> Layout:
        return replace(self, ports=replace(self.ports, **ports))


def save_layout(layout: Layout) -> bool:
    """Write ``services.yaml`` (the stack's host and ports) into the config directory, when it
    differs; return whether it was written."""
    data: dict[str, Any] = {
        "version": LAYOUT_VERSION,
        "data_dir": str(layout.data_dir),
        "hostname": layout.hostname,
        "mqtt_bind": layout.mqtt_bind,
        "bind": layout.bind,
        "ports": asdict(layout.ports),
    }
    text = "# Written by `suitcase services up`; change a port here and run `up` again.\n" + yaml.safe_dump(
        data, sort_keys=False
    )
    path = layout.config_dir / _MANIFEST
    if path.exists() and path.read_text() == text:
        return False
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def load_layout(config_dir: Path) -> Layout | None:
    """Read the layout saved in ``config_dir``; None when no stack was made there.

    Raises:
        ConfigError: the file is damaged or from another version.
    """
    path = config_dir / _MANIFEST
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text())
        if data.get("version") != LAYOUT_VERSION:
            raise ConfigError(
                f"{path} is from another version of the layout ({data.get('version')!r}, this is "
                f"{LAYOUT_VERSION}): upgrade with the version that made it first (README, Upgrade)"
            )
        return Layout(
            config_dir=config_dir,
            data_dir=Path(data["data_dir"]),
            hostname=str(data["hostname"]),
            mqtt_bind=str(data["mqtt_bind"]),
            bind=str(data["bind"]),
            ports=Ports(**{k: int(v) for k, v in data["ports"].items()}),
        )
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is damaged ({exc}): restore it from a backup or remove it and run `up`"
        ) from exc


def read_marker(layout: Layout) -> int | None:
    """The layout version the data directory was made with, or None for a new one."""
    if not layout.marker.exists():
        return None
    text = layout.marker.read_text().strip()
    return int(text) if text.isdigit() else -1
