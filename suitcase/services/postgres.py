"""PostgreSQL, the registry's database: the cluster's ``initdb`` and server options, and its accounts.

The tests' ``postgres_server`` fixture and ``suitcase services up`` make their clusters with the
same functions; production keeps durability on and authenticates every TCP client by password
(scram-sha-256). PostgreSQL refuses to run as root: as root the cluster belongs to ``postgres``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from kits.errors import ConfigError

__all__ = [
    "REGISTRY_DATABASE",
    "SERVER_ROLE",
    "apply_registry",
    "bin_version",
    "data_version",
    "find_pg_bin",
    "initdb_argv",
    "server_argv",
    "server_options",
]

REGISTRY_DATABASE = "suitcase_registry"
SERVER_ROLE = "suitcase_server"
ADMIN_ROLE = "postgres"


def find_pg_bin() -> Path | None:
    """The ``bin`` directory of the newest installed PostgreSQL (or ``$SUITCASE_PG_BIN``), or None."""
    given = os.environ.get("SUITCASE_PG_BIN")
    if given:
        return Path(given) if (Path(given) / "initdb").exists() else None
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def bin_version(pg_bin: Path) -> str:
    """The major version of the binaries in ``pg_bin`` (Debian's path names it: .../15/bin)."""
    name = pg_bin.parent.name
    return name if name.isdigit() else ""


def data_version(data: Path) -> str | None:
    """The major version a cluster directory was made by (its ``PG_VERSION``), or None when new."""
    marker = data / "PG_VERSION"
    return marker.read_text().strip() if marker.exists() else None


def initdb_argv(
    pg_bin: Path, data: Path, *, superuser: str, password_file: Path | None = None, durable: bool = True
) -> list[str]:
    """``initdb`` of a cluster: UTF-8; with ``password_file``, TCP clients need scram-sha-256 passwords."""
    argv = [str(pg_bin / "initdb"), "-D", str(data), "-U", superuser, "-E", "UTF8"]
    if password_file is not None:
        argv += ["--auth-host=scram-sha-256", "--auth-local=peer", f"--pwfile={password_file}"]
    else:
        argv += ["--auth=trust"]
    if not durable:
        argv.append("--no-sync")
    return argv


def server_options(bind: str, port: int, socket_dir: Path, *, durable: bool = True) -> list[str]:
    """The ``-c`` settings the server runs with (listen address, port, socket directory)."""
    options = [
        f"listen_addresses={bind}",
        f"port={port}",
        f"unix_socket_directories={socket_dir}",
        "max_connections=200",
    ]
    if not durable:  # tests: a real server, not durability
        options += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
    return options


def server_argv(pg_bin: Path, data: Path, options: list[str]) -> list[str]:
    """The ``postgres`` command of a cluster, run in the foreground (systemd or our supervisor)."""
    argv = [str(pg_bin / "postgres"), "-D", str(data)]
    for option in options:
        argv += ["-c", option]
    return argv


_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _connect(url: str, wait_s: float) -> Any:
    """Connect to ``url``, waiting up to ``wait_s`` while the server is still starting (it opens its
    port before it takes connections: "the database system is starting up")."""
    import psycopg

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            starting = "starting up" in str(exc) or "Connection refused" in str(exc)
            if not starting or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def apply_registry(admin_url: str, role: str, password: str, database: str, *, wait_s: float = 60.0) -> bool:
    """Create the server's role and the registry database it owns; return whether anything was made.

    Waits up to ``wait_s`` seconds for a server that is still starting.

    Idempotent: an existing role and database are kept as they are.

    Raises:
        ConfigError: PostgreSQL refused the connection or a statement.
    """
    import psycopg
    from psycopg import sql

    for name in (role, database):
        if not _NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a plain PostgreSQL name: use lower-case letters, digits and _"
            )
    created = False
    try:
        with _connect(admin_url, wait_s) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
                created = True
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                        sql.Identifier(database), sql.Identifier(role)
                    )
                )
                created = True
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
    except psycopg.Error as exc:
        raise ConfigError(f"PostgreSQL refused the registry's setup: {exc}".strip()) from exc
    return created
