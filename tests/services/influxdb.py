"""A real InfluxDB 1.x (``influxd``) for tests marked ``influxdb``: loopback, free ports, tmp dirs.

The config is :func:`suitcase.services.influxdb.render_conf`, the one `suitcase services up` writes.
The session fixture ``influxd`` is shared; ``influxd_factory`` starts private ones for tests that
stop, kill or restart the server. No system service, no usage reporting.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suitcase.broker import free_port
from suitcase.services.influxdb import find_influxd, render_conf
from tests.services import require_service

__all__ = ["InfluxD", "find_influxd", "influxd", "influxd_factory"]


_START_ATTEMPTS = 3
_START_S = 60  # a loaded CI machine: influxd opens its shards before it listens


class InfluxD:
    """One influxd process with its own config, data directories and ports; restartable."""

    def __init__(self, root: Path, data_options: str = "", *, auth: bool = False) -> None:
        binary = find_influxd()
        assert binary is not None
        self.binary = binary
        self.root = root
        self.data_options = data_options  # extra lines of the [data] section, e.g. limits
        self.host = "127.0.0.1"
        self.port = free_port()
        self.rpc_port = free_port()
        self.auth = auth
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sink_url(self) -> str:
        """The ``influxdb1://`` sink URL of this server."""
        return f"influxdb1://{self.host}:{self.port}"

    def start(self) -> None:
        """Start influxd and wait until it answers /ping.

        The ports are free when picked, not reserved: another process (any outgoing connection
        takes an ephemeral port) may bind one first, and influxd exits. On its first start it
        then tries again on fresh ports; a restart keeps its ports (the test knows them).
        """
        attempts = 1 if self._started else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            why = self._start_once()
            if why is None:
                self._started = True
                return
            if attempt == attempts or "address already in use" not in why:
                raise RuntimeError(f"influxd did not start: {why}; see {self.root / 'influxd.log'}")
            self.port, self.rpc_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> str | None:
        """Start the process once; None when it answers /ping, else why not."""
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "influxdb.conf"
        config.write_text(
            render_conf(
                self.root,
                port=self.port,
                rpc_port=self.rpc_port,
                bind=self.host,
                auth=self.auth,
                data_options=self.data_options,
            )
        )
        log_path = self.root / "influxd.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [self.binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        self._process = process
        deadline = time.monotonic() + _START_S
        while time.monotonic() < deadline:
            if process.poll() is not None:  # it could not start: say why, from its log
                self._process = None
                with log_path.open("rb") as log:
                    log.seek(start)
                    lines = log.read().decode(errors="replace").strip().splitlines()
                return f"it exited with {process.returncode} ({lines[-1] if lines else 'no log'})"
            try:  # only our influxd answers /ping with its version header
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as r:
                    if r.status == 204 and r.headers.get("X-Influxdb-Version"):
                        return None
            except OSError:
                pass
            time.sleep(0.05)
        return f"no answer to /ping on {self.url} within {_START_S} s"

    def stop(self) -> None:
        """Stop gracefully (SIGTERM)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def kill(self) -> None:
        """Kill -9: what a crash looks like."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def suspend(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        assert self._process is not None
        self._process.send_signal(19)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(18)

    def query(self, q: str, db: str = "", auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL ``q`` (as user ``auth``); return the result's series (empty list when none)."""
        params = {"q": q, "epoch": "ns"}
        if auth is not None:
            params["u"], params["p"] = auth
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as r:
            body = json.loads(r.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def count(self, db: str) -> int:
        """Return the number of points in every measurement of ``db`` (0 if it does not exist)."""
        try:
            series = self.query('SELECT count("value") FROM /.*/', db)
        except (RuntimeError, urllib.error.HTTPError):
            return 0
        return sum(int(s["values"][0][1]) for s in series)

    def drop_all(self) -> None:
        """Drop every database, so a shared server starts each test empty."""
        for series in self.query("SHOW DATABASES"):
            for (name,) in series.get("values", []):
                if name != "_internal":
                    self.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def influxd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., InfluxD]]:
    """Start private InfluxD servers on demand; all are stopped at the end of the session.

    ``data_options`` adds lines to the server's ``[data]`` section (``max-values-per-tag = 5``);
    ``auth=True`` turns authentication on.
    """
    if find_influxd() is None:
        require_service("influxdb", "apt-get install influxdb")
    started: list[InfluxD] = []

    def make(data_options: str = "", *, auth: bool = False) -> InfluxD:
        server = InfluxD(tmp_path_factory.mktemp("influxd"), data_options, auth=auth)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def influxd_session(influxd_factory: Callable[..., InfluxD]) -> InfluxD:
    """The shared InfluxDB 1.x of the session."""
    return influxd_factory()


@pytest.fixture()
def influxd(influxd_session: InfluxD) -> InfluxD:
    """The shared InfluxDB 1.x, emptied for this test."""
    influxd_session.drop_all()
    return influxd_session
