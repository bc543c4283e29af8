"""A PostgreSQL cluster of one test module, stopped and started on the same port by its cases.

The session's cluster (tests/services/postgres.py) is shared by every test; a fault case needs one
of its own to take down. Same binaries, same root handling (the cluster belongs to ``postgres``
when the tests run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from suitcase.broker import free_port, wait_for_port
from tests.services import require_service
from tests.services.postgres import PG_BIN, _as_owner

__all__ = ["PrivatePostgres"]


class PrivatePostgres:
    """``initdb`` in a temporary directory, ``pg_ctl start/stop`` on a fixed loopback port."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            require_service("postgresql", "apt-get install postgresql-15 (or set SUITCASE_PG_BIN)")
        self.root = Path(tempfile.mkdtemp(prefix="suitcase-faults-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self.port = free_port()
        subprocess.run(
            _as_owner(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "suitcase",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://suitcase@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]), check=True, capture_output=True
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self._ctl("-l", str(self.root / "log"), "-o", options, "-w", "start")
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused."""
        self._ctl("-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
