"""The Compose stack's one-shot ``init`` container: ``suitcase services compose-init``.

It does in containers what ``up`` does on one machine, with the same code: the broker's TLS files,
its config and dynamic-security state, the gateway's and server's settings files (pointing at the
Compose services by name), InfluxDB's users and grants, the registry's role and database. The
passwords come from the environment (``deploy/compose/.env``): there is no default; a missing or
short one is refused, naming the variable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from kits.errors import SuitcaseError
from server.broker_files import ensure_account_files, import_accounts
from suitcase.services import influxdb, postgres
from suitcase.services.layout import Layout, Ports
from suitcase.services.mosquitto import (
    ACCOUNTS_ROLE,
    Account,
    Listener,
    dynsec_state,
    merge_accounts,
    move_device_accounts,
    render_conf,
)
from suitcase.services.preflight import ServicesError
from suitcase.services.secrets import Secrets
from suitcase.services.settings_files import (
    MQTT_ACCOUNTS_USER,
    MQTT_GATEWAY_USER,
    MQTT_SERVER_USER,
    accounts_env,
    gateway_env,
    render_env,
    server_env,
)
from suitcase.services.tls import TlsFiles, check_server_cert, make_ca, make_server_cert

__all__ = [
    "IMAGE_PLUGIN",
    "MOSQUITTO_UID",
    "compose_init",
    "compose_layout",
    "secret_variable",
    "secrets_from",
]

# The eclipse-mosquitto image: its user and where its dynamic-security plugin is; the group of
# the image of deploy/compose/Dockerfile, whose gateway and server read the settings files.
MOSQUITTO_UID = 1883
PARTS_GID = 10001
IMAGE_PLUGIN = Path("/usr/lib/mosquitto_dynamic_security.so")
_MIN_SECRET = 16


def secret_variable(name: str) -> str:
    """The ``.env`` variable of a :class:`Secrets` field (``mqtt_gateway`` -> ``MQTT_GATEWAY_PASSWORD``)."""
    return name.upper() if name.endswith("key") else f"{name.upper()}_PASSWORD"


def secrets_from(env: Mapping[str, str]) -> Secrets:
    """The stack's passwords from ``env``.

    Raises:
        ServicesError: one is missing or shorter than 16 characters; all such are named.
    """
    bad = [
        secret_variable(f.name)
        for f in fields(Secrets)
        if len(env.get(secret_variable(f.name), "").strip()) < _MIN_SECRET
    ]
    if bad:
        raise ServicesError(
            f"{', '.join(bad)} not set (or shorter than {_MIN_SECRET} characters) in deploy/compose/.env: "
            "set each to a long random value, e.g. `openssl rand -base64 32`; there are no defaults"
        )
    return Secrets(**{f.name: env[secret_variable(f.name)].strip() for f in fields(Secrets)})


def compose_layout(env: Mapping[str, str], config_dir: Path, data_dir: Path) -> Layout:
    """The layout of the Compose stack: services reached by their Compose names."""
    hostname = env.get("SUITCASE_HOSTNAME", "").strip()
    if not hostname:
        raise ServicesError(
            "SUITCASE_HOSTNAME is not set in deploy/compose/.env: set it to the name devices use for "
            "the broker (its certificate names it)"
        )
    ports = {
        field: int(env[variable])
        for field, variable in (
            ("mqtt_tls", "SUITCASE_MQTT_PORT"),
            ("influx_http", "SUITCASE_INFLUX_PORT"),
            ("postgres", "SUITCASE_POSTGRES_PORT"),
        )
        if env.get(variable, "").strip().isdigit()
    }
    return Layout(
        config_dir=config_dir,
        data_dir=data_dir,
        ports=Ports(**ports),
        hostname=hostname,
        mqtt_bind=env.get("SUITCASE_MQTT_BIND", "0.0.0.0"),
        bind="0.0.0.0",
        influx_host=env.get("SUITCASE_INFLUX_HOST", "influxdb"),
        postgres_host=env.get("SUITCASE_POSTGRES_HOST", "postgres"),
        mqtt_host=env.get("SUITCASE_MQTT_HOST", "mosquitto"),
    )


def _give(path: Path, uid: int | None) -> None:
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, -1)


def _wait(url: str, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ServicesError(f"{what} did not answer {url} within {timeout:.0f} s: {exc}") from exc
            time.sleep(0.5)


def compose_init(
    env: Mapping[str, str],
    config_dir: Path,
    data_dir: Path,
    *,
    plugin: Path = IMAGE_PLUGIN,
    mosquitto_uid: int | None = MOSQUITTO_UID,
    parts_gid: int | None = PARTS_GID,
    timeout: float = 120.0,
) -> list[str]:
    """Write the Compose stack's configuration and make its accounts; return what changed.

    Raises:
        ServicesError: a variable is missing, a service does not answer, or one refused.
    """
    secrets = secrets_from(env)
    layout = compose_layout(env, config_dir, data_dir)
    changes: list[str] = []
    for directory in (layout.config_dir, layout.tls_dir, layout.mosquitto_dir):
        directory.mkdir(parents=True, exist_ok=True)
    _give(layout.mosquitto_dir, mosquitto_uid)
    tls = TlsFiles(layout.tls_dir / "ca.crt", layout.tls_dir / "server.crt", layout.tls_dir / "server.key")
    hosts = list(dict.fromkeys([layout.hostname, layout.mqtt_host or "mosquitto", "localhost"]))
    if not tls.cert.exists():
        ca = make_ca(layout.tls_dir / "ca")
        shutil.copyfile(ca[0], tls.ca)
        make_server_cert(ca, layout.tls_dir, hosts)
        changes.append(f"made a CA and the broker's certificate for {', '.join(hosts)}")
    for host in hosts:
        try:
            check_server_cert(tls, host)
        except SuitcaseError as exc:
            raise ServicesError(
                f"the broker's certificate in {layout.tls_dir} cannot be used: {exc}"
            ) from exc
    tls.ca.chmod(0o644)
    _give(tls.key, mosquitto_uid)
    devices = layout.device_accounts_dir  # the accounts container (uid of the broker) writes them
    ensure_account_files(devices)
    (devices / ".lock").touch()
    for path in (devices, *devices.iterdir()):
        _give(path, mosquitto_uid)
    files = {
        layout.mosquitto_conf: render_conf(
            [Listener(layout.ports.mqtt_tls, layout.mqtt_bind, tls)],
            persistence_dir=layout.mosquitto_dir,
            log_file=layout.mosquitto_dir / "mosquitto.log",
            dynsec_file=layout.dynsec_file,
            device_accounts_dir=devices,
            plugin=plugin,
            user="mosquitto" if mosquitto_uid == MOSQUITTO_UID else None,
        ),
        layout.gateway_env: render_env(gateway_env(layout, secrets), "IoT Suitcase gateway (Compose)"),
        layout.server_env: render_env(server_env(layout, secrets), "IoT Suitcase server (Compose)"),
        layout.accounts_env: render_env(accounts_env(layout, secrets), "IoT Suitcase accounts (Compose)"),
    }
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o644 if path.suffix == ".conf" else 0o640)
            if path.suffix == ".env" and parts_gid is not None and os.geteuid() == 0:
                os.chown(path, -1, parts_gid)
            changes.append(f"wrote {path}")
    accounts = [
        Account(MQTT_GATEWAY_USER, secrets.mqtt_gateway, ("suitcase-gateway",)),
        Account(MQTT_SERVER_USER, secrets.mqtt_server, ("suitcase-server",)),
        Account(MQTT_ACCOUNTS_USER, secrets.mqtt_accounts, (ACCOUNTS_ROLE,)),
    ]
    if layout.dynsec_file.exists():
        state, changed = merge_accounts(json.loads(layout.dynsec_file.read_text()), accounts)
        state, moved = move_device_accounts(state)  # an older stack's devices, as `up` does
        if moved:
            import_accounts(devices, moved)
            for path in devices.iterdir():
                _give(path, mosquitto_uid)
            changes.append(f"moved {len(moved)} device accounts from dynamic security to the broker's files")
            changed = True
    else:
        state, changed = dynsec_state(accounts), True
    if changed:
        layout.dynsec_file.write_text(json.dumps(state, indent=1))
        layout.dynsec_file.chmod(0o600)
        _give(layout.dynsec_file, mosquitto_uid)
        changes.append(f"wrote the broker's accounts in {layout.dynsec_file}")
    influx = f"http://{layout.influx_host}:{layout.ports.influx_http}"
    _wait(f"{influx}/ping", "InfluxDB", timeout)
    made = influxdb.apply_accounts(
        influx,
        influxdb.InfluxAccounts(
            admin=(influxdb.INFLUX_ADMIN_USER, secrets.influx_admin),
            gateway=(influxdb.INFLUX_GATEWAY_USER, secrets.influx_gateway),
            server=(influxdb.INFLUX_SERVER_USER, secrets.influx_server),
        ),
    )
    if made:
        changes.append("made InfluxDB's databases and users")
    admin_url = (
        f"postgresql://{postgres.ADMIN_ROLE}:{secrets.postgres_admin}@{layout.postgres_host}:"
        f"{layout.ports.postgres}/postgres"
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if postgres.apply_registry(
                admin_url, postgres.SERVER_ROLE, secrets.postgres_server, postgres.REGISTRY_DATABASE
            ):
                changes.append("made the registry database and its role")
            break
        except SuitcaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    return changes
