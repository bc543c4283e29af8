"""The stack's processes: what runs, as whom, and how to tell it is ready.

One list, read by the supervisor (a machine without systemd) and by the systemd units alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kits.errors import ConfigError
from suitcase.services.influxdb import find_influxd
from suitcase.services.layout import Layout
from suitcase.services.postgres import find_pg_bin, server_argv, server_options

__all__ = ["ACCOUNTS_SERVICE", "SERVICES", "Binaries", "ProcessSpec", "find_binaries", "process_specs"]

SERVICES = ("mosquitto", "influxdb", "postgres")
# The device-accounts service beside Mosquitto (`suitcase broker accounts`): no port of its own.
ACCOUNTS_SERVICE = "accounts"
# The Debian packages each service comes from (what `up` installs when root and missing).
PACKAGES = {
    "mosquitto": ["mosquitto", "mosquitto-clients"],
    "influxdb": ["influxdb"],
    "postgres": ["postgresql"],
    "openssl": ["openssl"],
}
# The system user each service runs as when started by root (the Debian packages create them).
SERVICE_USERS = {
    "mosquitto": "mosquitto",
    "influxdb": "influxdb",
    "postgres": "postgres",
    ACCOUNTS_SERVICE: "mosquitto",  # it writes the broker's files and signals it
}
PACKAGES[ACCOUNTS_SERVICE] = PACKAGES["mosquitto"]


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
        host, port: where it accepts connections once ready (port None: it listens on none).
        stop_signal: what stops it cleanly and quickly.
        env_file: settings it reads from its environment (an env file, ``settings_files``).
    """

    name: str
    argv: list[str]
    user: str | None
    host: str
    port: int | None
    stop_signal: int = 15
    env_file: Path | None = None


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


def suitcase_command() -> list[str]:
    """This version's ``suitcase`` CLI, run by this Python (what the supervisor starts)."""
    return [sys.executable, "-m", "suitcase"]


def _accounts_user(argv: list[str], as_root: bool | None) -> str | None:
    """The accounts service's user: the broker's, when it may run ``argv``'s program.

    A Python the broker's user cannot run (one in root's home, as on a developer's machine) leaves
    the supervisor to run the service as root: it still writes the broker's files (readable by the
    broker) and signals it; the systemd unit always names the broker's user.
    """
    user = _run_as(ACCOUNTS_SERVICE, as_root)
    if user is None or as_root is True:
        return user
    try:
        subprocess.run([argv[0], "--version"], user=user, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return user


def process_specs(
    layout: Layout,
    binaries: Binaries,
    *,
    as_root: bool | None = None,
    suitcase: list[str] | None = None,
) -> list[ProcessSpec]:
    """The stack's processes, configured from the files ``up`` wrote for ``layout``.

    ``suitcase`` runs the accounts service (default :func:`suitcase_command`).
    """
    accounts_argv = [*(suitcase or suitcase_command()), "broker", "accounts"]
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
        # Devices' accounts in the broker's files, on the server's requests (files-remote).
        ProcessSpec(ACCOUNTS_SERVICE, accounts_argv, _accounts_user(accounts_argv, as_root), ready_host, None,
                    env_file=layout.accounts_env),
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
