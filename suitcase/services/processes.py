"""The stack's processes: what runs, as whom, and how to tell it is ready.

One list, read by the supervisor (a machine without systemd) and by the systemd units alike.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kits.errors import ConfigError
from suitcase.services.influxdb import find_influxd
from suitcase.services.layout import Layout
from suitcase.services.postgres import find_pg_bin, server_argv, server_options

__all__ = ["SERVICES", "Binaries", "ProcessSpec", "find_binaries", "process_specs"]

SERVICES = ("mosquitto", "influxdb", "postgres")
# The Debian packages each service comes from (what `up` installs when root and missing).
PACKAGES = {
    "mosquitto": ["mosquitto", "mosquitto-clients"],
    "influxdb": ["influxdb"],
    "postgres": ["postgresql"],
    "openssl": ["openssl"],
}
# The system user each service runs as when started by root (the Debian packages create them).
SERVICE_USERS = {"mosquitto": "mosquitto", "influxdb": "influxdb", "postgres": "postgres"}


@dataclass(frozen=True)
class Binaries:
    """The installed programs the stack needs."""

    mosquitto: str
    influxd: str
    pg_bin: Path
    openssl: str


def find_binaries(path: str | None = None) -> tuple[Binaries | None, list[str]]:
    """Find the programs (on ``path``, default PATH plus the sbin directories); return them and the
    services whose programs are missing."""
    search = path if path is not None else os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    mosquitto = shutil.which("mosquitto", path=search)
    influxd = shutil.which("influxd", path=search) if path is not None else find_influxd()
    pg_bin = (
        find_pg_bin()
        if path is None
        else next((Path(d) for d in search.split(":") if d and (Path(d) / "initdb").exists()), None)
    )
    openssl = shutil.which("openssl", path=search)
    missing = [
        name
        for name, found in (
            ("mosquitto", mosquitto),
            ("influxdb", influxd),
            ("postgres", pg_bin),
            ("openssl", openssl),
        )
        if found is None
    ]
    if missing:
        return None, missing
    assert mosquitto and influxd and pg_bin and openssl
    return Binaries(mosquitto, influxd, pg_bin, openssl), []


@dataclass(frozen=True)
class ProcessSpec:
    """One long-running process of the stack.

    Attributes:
        name: the service (``mosquitto``, ``influxdb``, ``postgres``).
        argv: its command, in the foreground.
        user: who it runs as when started by root (None: it drops privileges itself, or not root).
        host, port: where it accepts connections once ready.
        stop_signal: what stops it cleanly and quickly.
    """

    name: str
    argv: list[str]
    user: str | None
    host: str
    port: int
    stop_signal: int = 15


def _run_as(name: str, as_root: bool | None = None) -> str | None:
    """The user ``name`` runs as: its system user when started by root (checked to exist), else None.

    ``as_root=True`` names the user without checking (units rendered for another machine).
    """
    if as_root is True:
        return SERVICE_USERS[name]
    if as_root is False or os.geteuid() != 0:
        return None
    user = SERVICE_USERS[name]
    try:
        import pwd

        pwd.getpwnam(user)
    except KeyError as exc:
        raise ConfigError(
            f"the system user {user!r} does not exist: it comes with the {name} package; "
            f"reinstall it (apt-get install --reinstall {' '.join(PACKAGES[name])})"
        ) from exc
    return user


def process_specs(layout: Layout, binaries: Binaries, *, as_root: bool | None = None) -> list[ProcessSpec]:
    """The stack's three processes, configured from the files ``up`` wrote for ``layout``."""
    ready_host = "127.0.0.1" if layout.mqtt_bind in ("0.0.0.0", "::") else layout.mqtt_bind
    return [
        # Started as root, Mosquitto drops to the `user` of its config (the owner of its data).
        ProcessSpec("mosquitto", [binaries.mosquitto, "-c", str(layout.mosquitto_conf)], None, ready_host,
                    layout.ports.mqtt_tls),
        ProcessSpec("influxdb", [binaries.influxd, "-config", str(layout.influxdb_conf)],
                    _run_as("influxdb", as_root), layout.bind, layout.ports.influx_http),
        ProcessSpec(
            "postgres",
            server_argv(binaries.pg_bin, layout.postgres_dir,
                        server_options(layout.bind, layout.ports.postgres, layout.run_dir / "postgres")),
            _run_as("postgres", as_root),
            layout.bind,
            layout.ports.postgres,
            stop_signal=2,  # SIGINT: "fast" shutdown (SIGTERM waits for every client to leave)
        ),
    ]  # fmt: skip


def data_owner(name: str) -> str | None:
    """The user who owns a service's data directory (None: whoever runs `up`)."""
    return _run_as(name)


def ensure_dir(path: Path, owner: str | None, mode: int = 0o750) -> None:
    """Make ``path`` (mode ``mode``) and give it to ``owner`` when running as root."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owner is not None and os.geteuid() == 0:
        shutil.chown(path, owner)
