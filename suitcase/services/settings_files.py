"""The settings files the gateway and the server read: ``gateway.env`` and ``server.env``.

Each is a list of ``SUITCASE_<PART>_<FIELD>=value`` lines, read by systemd (``EnvironmentFile=``)
and by Compose (``env_file:``) alike; the parts read their environment (gateway/settings.py,
server/settings.py). Values that are JSON (lists, maps) are single-quoted, which both take literally.
Both files hold passwords: mode 0640, readable by the group the parts run as.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from suitcase.services.influxdb import (
    INFLUX_ADMIN_USER,
    INFLUX_GATEWAY_USER,
    INFLUX_SERVER_USER,
    META_DATABASE,
    READINGS_DATABASE,
)
from suitcase.services.layout import Layout
from suitcase.services.mosquitto import ACCOUNTS_ROLE, GATEWAY_ROLE, SERVER_ROLE
from suitcase.services.postgres import REGISTRY_DATABASE
from suitcase.services.postgres import SERVER_ROLE as PG_SERVER_ROLE
from suitcase.services.secrets import Secrets

__all__ = [
    "GATEWAY_GROUP",
    "INFLUX_ADMIN_USER",
    "INFLUX_GATEWAY_USER",
    "INFLUX_SERVER_USER",
    "MQTT_ACCOUNTS_USER",
    "MQTT_GATEWAY_USER",
    "MQTT_SERVER_USER",
    "accounts_env",
    "gateway_env",
    "influx_url",
    "parse_env",
    "registry_url",
    "render_env",
    "server_env",
]

MQTT_GATEWAY_USER = GATEWAY_ROLE  # the account has its role's name
MQTT_SERVER_USER = SERVER_ROLE
MQTT_ACCOUNTS_USER = ACCOUNTS_ROLE
GATEWAY_GROUP = "gw"


def influx_url(layout: Layout, user: str, password: str, *, writer: bool) -> str:
    """The ``influxdb1://`` URL of the stack's store for ``user`` (gateway's sink, server's reader)."""
    options = f"database={READINGS_DATABASE}&meta={META_DATABASE}&username={user}&password={quote(password)}"
    if writer:
        options += "&create_databases=false"
    return f"influxdb1://{layout.influx_host or layout.bind}:{layout.ports.influx_http}?{options}"


def registry_url(layout: Layout, password: str) -> str:
    """The SQLAlchemy URL of the registry database, as the server's role."""
    host = layout.postgres_host or layout.bind
    return (
        f"postgresql+psycopg://{PG_SERVER_ROLE}:{quote(password, safe='')}@{host}:"
        f"{layout.ports.postgres}/{REGISTRY_DATABASE}"
    )


def gateway_env(layout: Layout, secrets: Secrets) -> dict[str, str]:
    """The gateway's settings (what every instance shares; the unit adds its client id and store)."""
    return {
        "SUITCASE_GATEWAY_ENVIRONMENT": "production",
        "SUITCASE_GATEWAY_MQTT_HOST": layout.mqtt_host or layout.hostname,
        "SUITCASE_GATEWAY_MQTT_PORT": str(layout.ports.mqtt_tls),
        "SUITCASE_GATEWAY_MQTT_TLS": "true",
        "SUITCASE_GATEWAY_MQTT_CA_FILE": str(layout.tls_dir / "ca.crt"),
        "SUITCASE_GATEWAY_MQTT_VERSION": "5",
        "SUITCASE_GATEWAY_USERNAME": MQTT_GATEWAY_USER,
        "SUITCASE_GATEWAY_PASSWORD": secrets.mqtt_gateway,
        "SUITCASE_GATEWAY_GROUP": GATEWAY_GROUP,
        "SUITCASE_GATEWAY_SINKS": json.dumps(
            [influx_url(layout, INFLUX_GATEWAY_USER, secrets.influx_gateway, writer=True)]
        ),
    }


def server_env(layout: Layout, secrets: Secrets) -> dict[str, str]:
    """The server's settings: registry, store (read only), broker account, production."""
    return {
        "SUITCASE_SERVER_ENVIRONMENT": "production",
        "SUITCASE_SERVER_SECRET_KEY": secrets.server_secret_key,
        "SUITCASE_SERVER_OPEN_READS": "false",
        "SUITCASE_SERVER_REGISTRY_URL": registry_url(layout, secrets.postgres_server),
        "SUITCASE_SERVER_STORE": influx_url(layout, INFLUX_SERVER_USER, secrets.influx_server, writer=False),
        "SUITCASE_SERVER_MQTT_HOST": layout.mqtt_host or layout.hostname,
        "SUITCASE_SERVER_MQTT_PORT": str(layout.ports.mqtt_tls),
        "SUITCASE_SERVER_MQTT_TLS": "true",
        "SUITCASE_SERVER_MQTT_CA_FILE": str(layout.tls_dir / "ca.crt"),
        "SUITCASE_SERVER_MQTT_USERNAME": MQTT_SERVER_USER,
        "SUITCASE_SERVER_MQTT_PASSWORD": secrets.mqtt_server,
        "SUITCASE_SERVER_MQTT_DYNSEC": "true",
        # Devices' accounts in the broker's files, through the accounts service beside it (O(n)).
        "SUITCASE_SERVER_DEVICE_ACCOUNTS": "files-remote",
        "SUITCASE_SERVER_DEVICE_MQTT_HOST": layout.hostname,
        "SUITCASE_SERVER_DEVICE_MQTT_PORT": str(layout.ports.mqtt_tls),
    }


def accounts_env(layout: Layout, secrets: Secrets) -> dict[str, str]:
    """The device-accounts service's settings (``suitcase broker accounts``, beside the broker)."""
    return {
        "SUITCASE_ACCOUNTS_DIR": str(layout.device_accounts_dir),
        "SUITCASE_ACCOUNTS_MQTT_HOST": layout.mqtt_host or layout.hostname,
        "SUITCASE_ACCOUNTS_MQTT_PORT": str(layout.ports.mqtt_tls),
        "SUITCASE_ACCOUNTS_MQTT_TLS": "true",
        "SUITCASE_ACCOUNTS_MQTT_CA_FILE": str(layout.tls_dir / "ca.crt"),
        "SUITCASE_ACCOUNTS_MQTT_USERNAME": MQTT_ACCOUNTS_USER,
        "SUITCASE_ACCOUNTS_MQTT_PASSWORD": secrets.mqtt_accounts,
    }


def render_env(values: dict[str, str], title: str) -> str:
    """An env file: a header, then ``KEY=value`` lines (JSON values single-quoted)."""
    lines = [f"# {title}", "# Written by `suitcase services up`; holds passwords (mode 0640)."]
    for key, value in values.items():
        lines.append(f"{key}='{value}'" if value[:1] in "[{" else f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    """Read an env file written by :func:`render_env` (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[key.strip()] = value
    return values
