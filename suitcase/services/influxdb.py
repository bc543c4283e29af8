"""InfluxDB 1.x (``influxd``): its config file, and the databases, users and grants of a stack.

The tests' ``influxd`` fixtures and ``suitcase services up`` render the config with the same
:func:`render_conf`; production turns authentication on and :func:`apply_accounts` makes the admin,
the gateway's user (writes, and reads back for late rollups) and the server's (reads only).
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.influx.lines import SEEN_LOG_POLICY, seen_log_policy
from kits.errors import ConfigError

__all__ = [
    "INFLUX_ADMIN_USER",
    "INFLUX_GATEWAY_USER",
    "INFLUX_SERVER_USER",
    "META_DATABASE",
    "READINGS_DATABASE",
    "InfluxAccounts",
    "apply_accounts",
    "find_influxd",
    "influx_query",
    "render_conf",
]

# One database for every organisation's readings (the org is a tag): the gateway's user then needs
# no right to create databases. The server's device list and dead letters are in META_DATABASE.
READINGS_DATABASE = "suitcase_readings"
META_DATABASE = "suitcase"
INFLUX_ADMIN_USER = "suitcase_admin"
INFLUX_GATEWAY_USER = "suitcase_gateway"
INFLUX_SERVER_USER = "suitcase_server"

_CONFIG = """\
reporting-disabled = true
bind-address = "{bind}:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  wal-fsync-delay = "{fsync_delay}"
{data_options}
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = true
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "{bind}:{port}"
  auth-enabled = {auth}
  log-enabled = false
  write-tracing = false
  max-body-size = 0
[subscriber]
  enabled = false
[continuous_queries]
  enabled = true
  log-enabled = false
[logging]
  level = "warn"
"""


def find_influxd() -> str | None:
    """Return the influxd binary, or None."""
    return shutil.which("influxd") or shutil.which("influxd", path="/usr/bin:/usr/sbin")


def render_conf(
    root: Path,
    *,
    port: int,
    rpc_port: int,
    bind: str = "127.0.0.1",
    auth: bool = True,
    data_options: str = "",
    fsync_delay: str = "0s",
) -> str:
    """The ``influxd`` config: data under ``root``, HTTP on ``bind:port``, backups on ``bind:rpc_port``.

    Args:
        data_options: extra lines of the ``[data]`` section (e.g. ``max-values-per-tag = 5``).
        fsync_delay: ``wal-fsync-delay``; 0s fsyncs every write (the gateway acks only after it).
    """
    return _CONFIG.format(
        root=root,
        port=port,
        rpc_port=rpc_port,
        bind=bind,
        data_options=data_options,
        auth="true" if auth else "false",
        fsync_delay=fsync_delay,
    )


def influx_query(url: str, q: str, auth: tuple[str, str] | None = None, db: str = "") -> list[dict[str, Any]]:
    """Run InfluxQL ``q`` on ``url`` (as ``auth``); return the result's series.

    Raises:
        ConfigError: InfluxDB refused the statement or did not answer.
    """
    params = {"q": q, "epoch": "ns"}
    if db:
        params["db"] = db
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(params).encode())
    if auth is not None:
        # influxd reads u/p from the URL or Basic auth, never from a form body (401 "unable to
        # parse authentication credentials"); Basic keeps the password out of URLs and logs.
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ConfigError(f"InfluxDB at {url} refused {q.split(' WITH ')[0]!r}: {exc.code} {detail}") from exc
    except OSError as exc:
        raise ConfigError(f"InfluxDB at {url} did not answer ({exc}): is influxd running?") from exc
    result = body["results"][0]
    if "error" in result:
        raise ConfigError(f"InfluxDB at {url} refused {q.split(' WITH ')[0]!r}: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


@dataclass(frozen=True)
class InfluxAccounts:
    """The users of a stack's InfluxDB: (name, password) each."""

    admin: tuple[str, str]
    gateway: tuple[str, str]
    server: tuple[str, str]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def apply_accounts(url: str, accounts: InfluxAccounts) -> bool:
    """Create the admin, the databases (and the meta database's ``seen_log`` retention policy), the
    gateway and server users and their grants; return whether anything was created. Idempotent:
    existing users keep their passwords (set again to the stack's).

    The first admin may be created without credentials (InfluxDB allows it while no user exists).
    """
    users: set[str] = set()
    try:
        for series in influx_query(url, "SHOW USERS", accounts.admin):
            users |= {row[0] for row in series.get("values", [])}
    except ConfigError:
        users = set()
    created = False
    admin = accounts.admin
    if admin[0] not in users:
        influx_query(url, f'CREATE USER "{admin[0]}" WITH PASSWORD {_quote(admin[1])} WITH ALL PRIVILEGES')
        created = True
    names = {row[0] for s in influx_query(url, "SHOW DATABASES", admin) for row in s.get("values", [])}
    for database in (READINGS_DATABASE, META_DATABASE):
        if database not in names:
            influx_query(url, f'CREATE DATABASE "{database}"', admin)
            created = True
    # The sinks' log of devices seen (gateway/store/influxdb1_seen.py): the gateway's user may not
    # make it (create_databases=false); without it servers read every device seen on each read.
    policies = influx_query(url, f'SHOW RETENTION POLICIES ON "{META_DATABASE}"', admin)
    if SEEN_LOG_POLICY not in {row[0] for s in policies for row in s.get("values", [])}:
        influx_query(url, seen_log_policy(META_DATABASE), admin)
        created = True
    for (user, password), privilege in ((accounts.gateway, "ALL"), (accounts.server, "READ")):
        if user not in users:
            influx_query(url, f'CREATE USER "{user}" WITH PASSWORD {_quote(password)}', admin)
            created = True
        for database in (READINGS_DATABASE, META_DATABASE):
            influx_query(url, f'GRANT {privilege} ON "{database}" TO "{user}"', admin)
    return created


def grants_of(url: str, admin: tuple[str, str], user: str) -> dict[str, str]:
    """Database -> privilege of ``user`` (for status and tests)."""
    return {
        row[0]: row[1]
        for s in influx_query(url, f'SHOW GRANTS FOR "{user}"', admin)
        for row in s.get("values", [])
    }
