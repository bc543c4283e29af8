"""A real PostgreSQL 15 for tests marked ``postgres``: one cluster per session, a database per test.

The cluster is made with ``initdb`` in a temporary directory and listens on a free loopback port.
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user and
its commands run through ``runuser``. ``fsync`` is off: the tests need a real server, not durability.
The cluster's ``initdb`` and server options are :mod:`suitcase.services.postgres`'s, as in production.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from suitcase.broker import free_port, wait_for_port
from suitcase.services.postgres import initdb_argv, server_options
from tests.services import require_service

__all__ = ["PG_BIN", "postgres_db", "postgres_server"]

PG_BIN = Path(os.environ.get("SUITCASE_PG_BIN", "/usr/lib/postgresql/15/bin"))
_counter = itertools.count()


def _as_owner(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a PostgreSQL cluster; yield its base URL (no database name)."""
    if not (PG_BIN / "initdb").exists():
        require_service("postgresql", "apt-get install postgresql-15 (or set SUITCASE_PG_BIN)")
    # Not under pytest's tmp dirs: they are private to root, and the cluster's owner must reach it.
    root = Path(tempfile.mkdtemp(prefix="suitcase-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_owner(initdb_argv(PG_BIN, data, superuser="suitcase", durable=False)),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = " ".join(f"-c {o}" for o in server_options("127.0.0.1", port, sockets, durable=False))
    subprocess.run(
        _as_owner(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield f"postgresql+psycopg://suitcase@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def postgres_db(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database in the session's cluster; yield its SQLAlchemy URL."""
    import psycopg

    name = f"test_{os.getpid()}_{next(_counter)}"
    admin = postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
