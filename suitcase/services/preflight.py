"""What ``up`` checks before it writes anything: programs, data versions, ports, certificates.

Every refusal is a :class:`ServicesError` naming the thing, the problem and the fix; when one is
raised, nothing has been written or overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

from kits.errors import SuitcaseError
from suitcase.services.layout import LAYOUT_VERSION, Layout, read_marker
from suitcase.services.postgres import bin_version, data_version
from suitcase.services.processes import PACKAGES, Binaries, find_binaries
from suitcase.services.tls import TlsFiles, check_server_cert

__all__ = ["ServicesError", "check_data_versions", "check_ports", "check_tls", "ensure_installed"]


class ServicesError(SuitcaseError):
    """``suitcase services`` refused: the message says what and how to fix it."""


def ensure_installed(*, euid: int | None = None, path: str | None = None, apt: str | None = None) -> Binaries:
    """Return the programs, installing the missing Debian packages first when root and apt is there.

    Args:
        euid: the effective user id (tests pass one); default: this process's.
        path: where to look for the programs (tests pass one); default: PATH and sbin.
        apt: the ``apt-get`` to use; default: found on PATH.

    Raises:
        ServicesError: something is missing and cannot be installed here.
    """
    binaries, missing = find_binaries(path)
    if binaries is not None:
        return binaries
    packages = sorted({p for name in missing for p in PACKAGES[name]})
    uid = os.geteuid() if euid is None else euid
    if uid != 0:
        raise ServicesError(
            f"{', '.join(missing)} not installed, and `up` is not running as root, so it cannot install "
            f"them: run `sudo suitcase services up`, or `sudo apt-get install {' '.join(packages)}` first"
        )
    apt_get = apt if apt is not None else shutil.which("apt-get")
    if apt_get is None or not Path(apt_get).exists():
        raise ServicesError(
            f"{', '.join(missing)} not installed and this system has no apt-get: install "
            f"{', '.join(packages)} (Mosquitto 2 with its dynamic-security plugin, InfluxDB 1.x, "
            "PostgreSQL) with its package manager, then run `up` again"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt_get, "update", "-qq"],
        [apt_get, "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ServicesError(f"`{' '.join(command)}` failed: {result.stderr.strip()[-400:]}")
    # The packages start their own default instances; the stack runs its own, on its own data.
    for unit in ("mosquitto", "influxdb", "postgresql"):
        with contextlib.suppress(OSError):
            subprocess.run(["systemctl", "disable", "--now", unit], capture_output=True, check=False)
            subprocess.run(["service", unit, "stop"], capture_output=True, check=False)
    binaries, missing = find_binaries(path)
    if binaries is None:
        raise ServicesError(f"{', '.join(missing)} still missing after installing {' '.join(packages)}")
    return binaries


def check_data_versions(layout: Layout, binaries: Binaries) -> None:
    """Refuse a data directory made by another version of the layout or of PostgreSQL."""
    made = read_marker(layout)
    if made is not None and made != LAYOUT_VERSION:
        raise ServicesError(
            f"the data directory {layout.data_dir} was made by another version of IoT Suitcase (layout "
            f"{made}, this one reads {LAYOUT_VERSION}); nothing was changed: upgrade it with the release "
            "notes' steps (README, Upgrade), or give another --data-dir"
        )
    if made is None and layout.data_dir.exists() and any(layout.data_dir.iterdir()):
        raise ServicesError(
            f"the data directory {layout.data_dir} holds files but no stack of IoT Suitcase "
            f"({layout.marker.name} is missing); nothing was changed: give an empty or new --data-dir"
        )
    cluster = data_version(layout.postgres_dir)
    have = bin_version(binaries.pg_bin)
    if cluster is not None and have and cluster != have:
        raise ServicesError(
            f"the registry's PostgreSQL data in {layout.postgres_dir} is from PostgreSQL {cluster}, but "
            f"{have} is installed; nothing was changed: install postgresql-{cluster} too and upgrade the "
            f"cluster with pg_upgradecluster (or pg_upgrade), or restore a backup into a new --data-dir"
        )


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(layout: Layout) -> None:
    """Refuse ports that another program already holds (checked only while the stack is stopped)."""
    wanted = [
        ("mosquitto (MQTT over TLS)", layout.mqtt_bind, layout.ports.mqtt_tls, "--mqtt-port"),
        ("InfluxDB (HTTP)", layout.bind, layout.ports.influx_http, "--influx-port"),
        ("InfluxDB (backup RPC)", layout.bind, layout.ports.influx_rpc, "--influx-rpc-port"),
        ("PostgreSQL", layout.bind, layout.ports.postgres, "--postgres-port"),
    ]
    taken = [
        f"{host}:{port} for {what} (or {flag})"
        for what, host, port, flag in wanted
        if not _port_free(host, port)
    ]
    if taken:
        raise ServicesError(
            f"port already taken by another program: {'; '.join(taken)}; nothing was changed: stop that "
            "program (`ss -ltnp` shows which), or choose another port"
        )


def check_tls(layout: Layout, given: TlsFiles | None) -> None:
    """Check the given certificate, or the one made earlier, against the broker's host name."""
    made = TlsFiles(layout.tls_dir / "ca.crt", layout.tls_dir / "server.crt", layout.tls_dir / "server.key")
    files = given if given is not None else made
    if given is None and not made.cert.exists():
        return  # up makes them
    try:
        check_server_cert(files, layout.hostname)
    except SuitcaseError as exc:
        where = "given" if given is not None else f"made earlier in {layout.tls_dir}"
        raise ServicesError(
            f"the broker's certificate {where} cannot be used: {exc}; nothing was changed"
        ) from exc
