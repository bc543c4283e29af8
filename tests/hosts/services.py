"""Start the tiers on lab hosts: Mosquitto, influxd, PostgreSQL, gateways, server replicas, Pis.

Each launcher takes the :class:`~tests.hosts.host.Host` to run on and keeps everything the service
writes in that host's directory. Configuration comes from the code production uses:
Mosquitto loads deploy/mosquitto/suitcase.conf through :class:`suitcase.broker.MosquittoBroker`,
the gateway and the server read their ``SUITCASE_*`` settings (as from their env files), and talk
to the others over the lab network only, by address.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kits.errors import ConfigError
from suitcase.broker import find_mosquitto
from suitcase.services.influxdb import (
    INFLUX_ADMIN_USER,
    INFLUX_GATEWAY_USER,
    INFLUX_SERVER_USER,
    READINGS_DATABASE,
    InfluxAccounts,
    apply_accounts,
    find_influxd,
    influx_query,
)
from suitcase.services.influxdb import render_conf as render_influxd_conf
from suitcase.services.mosquitto import Account, Listener, dynsec_state
from suitcase.services.mosquitto import render_conf as render_mosquitto_conf
from suitcase.services.postgres import (
    REGISTRY_DATABASE,
    apply_registry,
    find_pg_bin,
    initdb_argv,
    server_argv,
    server_options,
)
from suitcase.services.postgres import SERVER_ROLE as PG_SERVER_ROLE
from suitcase.services.secrets import Secrets, make_secrets
from suitcase.services.tls import TlsFiles
from tests.hosts.host import Host, HostProcess

__all__ = [
    "HostInfluxD",
    "HostMosquitto",
    "HostPostgres",
    "HostServer",
    "gateway_metrics",
    "http_json",
    "metric_total",
    "pis_status",
    "start_gateway",
    "start_pis",
]


def _wait(check: Any, timeout: float, what: str, proc: HostProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and not proc.running():
            raise RuntimeError(
                f"{proc.name} on {proc.host.name} exited while waiting for {what}:\n{proc.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; return (status, JSON body or text, headers). Status 0: no connection."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            raw, status, got = r.read(), r.status, dict(r.headers.items())
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers.items())
    except OSError:
        return 0, None, {}
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text else None, got
    except json.JSONDecodeError:
        return status, text, got


# -- broker ---------------------------------------------------------------------------------------
class HostMosquitto:
    """Mosquitto on ``host`` with the project's config (:func:`suitcase.services.mosquitto.render_conf`).

    Without arguments: one plain listener on the host's address:1883, anonymous clients (a test of
    the network). ``accounts`` turns dynamic security on with the stack's roles (every client logs
    in); ``tls`` adds the TLS listener on :attr:`tls_port` (8883); ``plain=False`` drops the plain one.
    """

    def __init__(
        self,
        host: Host,
        port: int = 1883,
        *,
        accounts: Sequence[Account] = (),
        tls: TlsFiles | None = None,
        tls_port: int = 8883,
        plain: bool = True,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.binary = binary
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_port = tls_port
        self.plain = plain
        self.accounts = list(accounts)
        self.workdir = host.dir / "mosquitto"
        self.proc: HostProcess | None = None

    @property
    def address(self) -> str:
        return self.host.address

    def start(self) -> HostMosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        dynsec_file = None
        if self.accounts:
            dynsec_file = self.workdir / "dynamic-security.json"
            if not dynsec_file.exists():  # the plugin keeps the device accounts the server adds
                dynsec_file.write_text(json.dumps(dynsec_state(self.accounts)))
        listeners = [Listener(self.port, self.address)] if self.plain else []
        if self.tls is not None:
            listeners.append(Listener(self.tls_port, self.address, self.tls))
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            render_mosquitto_conf(
                listeners,
                persistence_dir=self.workdir,
                log_file=self.workdir / "mosquitto.log",
                dynsec_file=dynsec_file,
            )
        )
        if self.proc is None:
            self.proc = self.host.spawn("mosquitto", [self.binary, "-c", str(config)])
        else:
            self.proc.start()
        for listener in listeners:
            self.host.wait_port(listener.port, proc=self.proc)
        return self


# -- store ----------------------------------------------------------------------------------------
class HostInfluxD:
    """influxd on ``on``, configured as production (:mod:`suitcase.services.influxdb`).

    HTTP on the host's address:8086 with authentication on; :func:`apply_accounts` makes the admin,
    the gateway's user (``sink_url``) and the server's read-only user (``reader_url``), and the
    databases (every org's readings in ``suitcase_readings``, the org a tag).
    """

    def __init__(
        self, on: Host, port: int = 8086, *, secrets: Secrets | None = None, data_options: str = ""
    ) -> None:
        binary = find_influxd()
        if binary is None:
            raise RuntimeError("influxd is not installed: apt-get install influxdb")
        self.binary = binary
        self.on = on
        self.host = on.address
        self.port = port
        self.root = on.dir / "influxdb"
        self.data_options = data_options
        secrets = secrets or make_secrets()
        self.accounts = InfluxAccounts(
            admin=(INFLUX_ADMIN_USER, secrets.influx_admin),
            gateway=(INFLUX_GATEWAY_USER, secrets.influx_gateway),
            server=(INFLUX_SERVER_USER, secrets.influx_server),
        )
        self.proc: HostProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _store_url(self, user: tuple[str, str], extra: str = "") -> str:
        query = urllib.parse.urlencode(
            {"database": READINGS_DATABASE, "username": user[0], "password": user[1]}
        )
        return f"influxdb1://{self.host}:{self.port}?{query}{extra}"

    @property
    def sink_url(self) -> str:
        """The gateway's sink URL (its own user; the databases exist already)."""
        return self._store_url(self.accounts.gateway, "&create_databases=false")

    @property
    def reader_url(self) -> str:
        """The server's store URL (a read-only user)."""
        return self._store_url(self.accounts.server)

    def start(self) -> HostInfluxD:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "influxdb.conf"
        config.write_text(
            render_influxd_conf(
                self.root, port=self.port, rpc_port=8088, bind=self.host, auth=True,
                data_options=self.data_options,
            )
        )  # fmt: skip
        # RPC (backups) binds the same address; only the test's own hosts are on this network.
        if self.proc is None:
            self.proc = self.on.spawn("influxd", [self.binary, "-config", str(config)])
        else:
            self.proc.start()
        self.on.wait_port(self.port, proc=self.proc)

        def ping() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as r:
                    return r.status == 204
            except OSError:
                return False

        _wait(ping, 30, "influxd to answer /ping", self.proc)
        apply_accounts(self.url, self.accounts)
        return self

    def query(self, q: str, db: str = "") -> list[dict[str, Any]]:
        """Run InfluxQL ``q`` as the admin; return the result's series."""
        return influx_query(self.url, q, self.accounts.admin, db)

    def count(self, db: str = READINGS_DATABASE) -> int:
        """The number of points in every measurement of ``db`` (0 if it does not exist yet)."""
        try:
            series = self.query('SELECT count("value") FROM /.*/', db)
        except ConfigError:
            return 0
        return sum(int(s["values"][0][1]) for s in series)


# -- registry -------------------------------------------------------------------------------------
class HostPostgres:
    """PostgreSQL on ``host``, configured as production (:mod:`suitcase.services.postgres`).

    The cluster belongs to user postgres; TCP logins need a scram-sha-256 password and come only
    from the lab's /24. ``url`` is the server's: role ``suitcase_server``, owner of the registry
    database (:func:`apply_registry`). Durability is off: a real server, not a real disk.
    """

    def __init__(self, host: Host, subnet: str, port: int = 5432, *, secrets: Secrets | None = None) -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise RuntimeError("postgresql is not installed: apt-get install postgresql-15")
        self.pg_bin = pg_bin
        self.host = host
        self.subnet = subnet
        self.port = port
        secrets = secrets or make_secrets()
        self.admin_password = secrets.postgres_admin
        self.password = secrets.postgres_server
        self.data = host.dir / "pgdata"
        self.proc: HostProcess | None = None

    @property
    def url(self) -> str:
        """The server's registry URL (SQLAlchemy)."""
        return (
            f"postgresql+psycopg://{PG_SERVER_ROLE}:{self.password}@{self.host.address}:{self.port}/"
            f"{REGISTRY_DATABASE}"
        )

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres:{self.admin_password}@{self.host.address}:{self.port}/postgres"

    def start(self) -> HostPostgres:
        if self.proc is not None:
            self.proc.start()
            self.host.wait_port(self.port, timeout=60, proc=self.proc)
            return self
        self._init()
        options = server_options(self.host.address, self.port, self.host.dir / "run", durable=False)
        self.proc = self.host.spawn(
            "postgres",
            server_argv(self.pg_bin, self.data, options),
            user="postgres",
            stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM would wait for every client to leave
        )
        self.host.wait_port(self.port, timeout=60, proc=self.proc)
        apply_registry(self.admin_dsn, PG_SERVER_ROLE, self.password, REGISTRY_DATABASE)
        return self

    def _init(self) -> None:
        (self.host.dir / "run").mkdir(exist_ok=True)
        pwfile = self.host.dir / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        for path in (self.host.dir, self.host.dir / "run", self.host.dir / "tmp", pwfile):
            shutil.chown(path, "postgres", "postgres")
        initdb = self.host.spawn(
            "initdb",
            initdb_argv(self.pg_bin, self.data, superuser="postgres", password_file=pwfile, durable=False),
            user="postgres",
        )
        code = initdb.wait(120)
        pwfile.unlink()
        if code != 0:
            raise RuntimeError(f"initdb failed ({code}):\n{initdb.log_tail()}")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet} scram-sha-256\n")


# -- gateway --------------------------------------------------------------------------------------
def start_gateway(
    host: Host,
    *,
    broker: HostMosquitto,
    sink_url: str,
    client_id: str,
    group: str | None = None,
    env: dict[str, str] | None = None,
    name: str = "gateway",
) -> HostProcess:
    """``suitcase gateway run`` on ``host``: MQTT 5, writes ``sink_url``, metrics on host:9100.

    Its own SQLite file (dead letters) stays in its directory; it waits until the gateway serves
    ``/metrics``, i.e. is running.
    """
    settings = {
        "SUITCASE_GATEWAY_MQTT_HOST": broker.address,
        "SUITCASE_GATEWAY_MQTT_PORT": str(broker.port),
        "SUITCASE_GATEWAY_CLIENT_ID": client_id,
        "SUITCASE_GATEWAY_MQTT_VERSION": "5",
        "SUITCASE_GATEWAY_SINKS": json.dumps([sink_url]),
        "SUITCASE_GATEWAY_STORE": str(host.dir / "gateway-letters.db"),
        "SUITCASE_GATEWAY_METRICS_PORT": "9100",
        "SUITCASE_GATEWAY_METRICS_HOST": host.address,
    }
    if group is not None:
        settings["SUITCASE_GATEWAY_GROUP"] = group
    settings.update(env or {})
    proc = host.python(name, ["-m", "suitcase", "gateway", "run", "--quiet"], settings)
    host.wait_port(9100, timeout=60, proc=proc)
    return proc


def gateway_metrics(host: Host) -> dict[str, float]:
    """The gateway's Prometheus samples on ``host`` (name{labels} -> value); {} if unreachable."""
    try:
        with urllib.request.urlopen(f"http://{host.address}:9100/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples


def metric_total(samples: dict[str, float], name: str) -> float:
    """The sum of metric ``name`` over all its labels (``name`` or ``name{...}``)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# -- server ---------------------------------------------------------------------------------------
class HostServer:
    """``suitcase server run`` on ``host``:8000 against the lab's registry and store."""

    def __init__(self, host: Host, settings: dict[str, str], port: int = 8000, name: str = "server"):
        self.host = host
        self.port = port
        self.name = name
        self.settings = {
            "SUITCASE_SERVER_HOST": host.address,
            "SUITCASE_SERVER_PORT": str(port),
            **settings,
        }
        self.proc: HostProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    def start(self, timeout: float = 90.0, *, wait: bool = True) -> HostServer:
        """Start the replica; with ``wait``, return once it answers /api/v1/health."""
        if self.proc is None:
            self.proc = self.host.python(self.name, ["-m", "suitcase", "server", "run"], self.settings)
        else:
            self.proc.start()
        return self.wait_ready(timeout) if wait else self

    def wait_ready(self, timeout: float = 90.0) -> HostServer:
        """Wait until the replica answers /api/v1/health (fail early if it exited)."""
        assert self.proc is not None
        _wait(
            lambda: http_json("GET", f"{self.url}/api/v1/health", timeout=3)[0] == 200,
            timeout,
            f"{self.name} on {self.host.name} to answer /api/v1/health",
            self.proc,
        )
        return self

    def kill(self) -> None:
        """kill -9 the replica."""
        if self.proc is not None:
            self.proc.kill()

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Call ``/api/v1{path}``; return (status, body, headers)."""
        return http_json(method, f"{self.url}/api/v1{path}", body, headers)


# -- Pis ------------------------------------------------------------------------------------------
def start_pis(host: Host, broker: HostMosquitto, plan: dict[str, Any], name: str = "pis") -> HostProcess:
    """Run the simulated Pis (``python -m tests.hosts.pis``) on ``host`` with ``plan`` (see that module).

    The plan is written to ``<host dir>/<name>-plan.json``; the Pis report progress in
    ``<host dir>/<name>-status.json`` (see :func:`pis_status`).
    """
    plan = {"broker": broker.address, "port": broker.port, **plan}
    plan_path = host.dir / f"{name}-plan.json"
    plan_path.write_text(json.dumps(plan))
    repo = Path(__file__).resolve().parents[2]
    return host.python(
        name,
        ["-m", "tests.hosts.pis", str(plan_path), str(host.dir / f"{name}-status.json")],
        {"PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )


def pis_status(host: Host, name: str = "pis") -> dict[str, Any]:
    """The Pis' last progress report: published, acked, done (or {} before the first)."""
    try:
        data: dict[str, Any] = json.loads((host.dir / f"{name}-status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data
