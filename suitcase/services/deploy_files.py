"""The files in ``deploy/``: the systemd units and the services' configs, rendered for a default install.

``python -m suitcase.services.deploy_files`` writes them; a test keeps ``deploy/`` equal to what
this renders, so the shipped files are the ones ``suitcase services up`` writes on a Debian
machine with the default directories (``/etc/suitcase``, ``/var/lib/suitcase``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy import DEPLOY_DIR
from suitcase.services import influxdb
from suitcase.services.layout import Layout
from suitcase.services.mosquitto import Listener, render_conf
from suitcase.services.processes import Binaries, process_specs
from suitcase.services.systemd import render_units
from suitcase.services.tls import TlsFiles

__all__ = ["DEBIAN_BINARIES", "DEFAULT_LAYOUT", "render_deploy_files", "write_deploy_files"]

DEFAULT_LAYOUT = Layout(
    config_dir=Path("/etc/suitcase"), data_dir=Path("/var/lib/suitcase"), hostname="broker.example"
)
# Where Debian 12 installs the programs (mosquitto 2.0, influxdb 1.6, postgresql 15).
DEBIAN_BINARIES = Binaries(
    mosquitto="/usr/sbin/mosquitto",
    influxd="/usr/bin/influxd",
    pg_bin=Path("/usr/lib/postgresql/15/bin"),
    openssl="/usr/bin/openssl",
)
_HEADER = "# Rendered by `python -m suitcase.services.deploy_files` for the default directories; "
_HEADER += "`suitcase services up` writes\n# the same for your paths and ports (do not edit here).\n"


def render_deploy_files(layout: Layout = DEFAULT_LAYOUT) -> dict[str, str]:
    """Path under ``deploy/`` -> text: the systemd units and the services' configs."""
    specs = process_specs(layout, DEBIAN_BINARIES, as_root=True, suitcase=["/usr/local/bin/suitcase"])
    files = {f"systemd/{name}": text for name, text in render_units(layout, specs).items()}
    tls = TlsFiles(layout.tls_dir / "ca.crt", layout.tls_dir / "server.crt", layout.tls_dir / "server.key")
    files["config/mosquitto.conf"] = _HEADER + render_conf(
        [Listener(layout.ports.mqtt_tls, layout.mqtt_bind, tls)],
        persistence_dir=layout.mosquitto_dir,
        log_file=layout.mosquitto_dir / "mosquitto.log",
        dynsec_file=layout.dynsec_file,
        device_accounts_dir=layout.device_accounts_dir,
        user="mosquitto",
    )
    files["config/influxdb.conf"] = _HEADER + influxdb.render_conf(
        layout.influxdb_dir,
        port=layout.ports.influx_http,
        rpc_port=layout.ports.influx_rpc,
        bind=layout.bind,
        auth=True,
    )
    return files


def write_deploy_files(root: Path = DEPLOY_DIR) -> list[str]:
    """Write the rendered files under ``root``; return those that changed."""
    changed = []
    for name, text in render_deploy_files().items():
        path = root / name
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(name)
    return changed


if __name__ == "__main__":
    for name in write_deploy_files(Path(sys.argv[1]) if len(sys.argv) > 1 else DEPLOY_DIR):
        print(f"wrote deploy/{name}")
