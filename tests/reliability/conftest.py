"""The fault suite's shared stack: a Mosquitto, an influxd and a gateway per test module.

A module's cases share one stack (each on devices of its own, so their readings never mix); a case
that restarts or kills a part brings it back before it ends, and the stack is checked whole
before each case (:meth:`Stack.ready`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from edge.agent import Agent
from edge.emulated import build_bus
from gateway.consumer import Gateway
from gateway.sinks import open_sink
from gateway.store import SqliteStore, open_reader
from gateway.store.base import Reader
from kits.models import DeviceConfig, DeviceSensor, MqttSettings, OutboxSettings
from kits.tls import client_context
from kits.wire import Record
from server.app import create_app
from server.broker_admin import device_acls
from server.settings import ServerSettings
from server.tables import DeviceRow, OrganisationRow
from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from suitcase.services.mosquitto import GATEWAY_ROLE, SERVER_ROLE, Account, dynsec_state, find_dynsec_plugin
from suitcase.services.secrets import make_secrets
from suitcase.services.settings_files import MQTT_GATEWAY_USER, MQTT_SERVER_USER
from suitcase.services.tls import make_ca, make_server_cert
from tests.reliability.faults import Ledger, Tally, record, stored_rows, tally, wait_landed
from tests.services import require_service
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

#: The six readings a second of the suite's devices: a BME280, an SHT4x and a VEML7700 at 1 Hz.
SENSORS = (
    DeviceSensor(name="indoor", part="bme280", address=0x77, interval_s=1.0),
    DeviceSensor(name="air", part="sht4x", address=0x44, interval_s=1.0),
    DeviceSensor(name="light", part="veml7700", address=0x10, interval_s=1.0),
)
ORG = "faults"
DATABASE = "suitcase_faults"  # the influxdb1 sink's database of ORG
#: The devices of the module stacks' cases: each has its broker account from the start, as the
#: server would have made it at enrollment (a device role allowed its own topics only).
DEVICES = (
    *(f"{case}-{i}" for case in ("restart", "crash", "store") for i in range(3)),
    *("stays", "leaves", "arrives", "offline", "killed", "full", "clock"),
)


@dataclass(frozen=True)
class Credentials:
    """How a device reaches the stack's broker: its account and the CA of the broker's certificate."""

    username: str
    password: str
    ca_file: Path


class Stack:
    """Mosquitto (restartable on its port), influxd (stoppable) and a running gateway writing to it.

    Mosquitto runs as production does: TLS only (a CA made for the module), every client logs in
    through the dynamic-security plugin with the stack's roles (the gateway's, the server's, one
    per device).
    """

    def __init__(self, root: Path, influxd: InfluxD) -> None:
        if find_mosquitto() is None or find_dynsec_plugin() is None:
            require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
        self.root = root
        self.keys = make_secrets()
        ca = make_ca(root / "ca")
        self.ca_file = ca[0]
        self.passwords = {device: uuid.uuid4().hex for device in DEVICES}
        accounts = [
            Account(MQTT_GATEWAY_USER, self.keys.mqtt_gateway, (GATEWAY_ROLE,)),
            Account(MQTT_SERVER_USER, self.keys.mqtt_server, (SERVER_ROLE,)),
            *(Account(d, pw, (f"device-{d}",)) for d, pw in self.passwords.items()),
        ]
        roles = [{"rolename": f"device-{d}", "acls": device_acls(ORG, d)} for d in DEVICES]
        dynsec = root / "dynamic-security.json"
        dynsec.write_text(json.dumps(dynsec_state(accounts, roles)))
        self.broker = MosquittoBroker(
            root / "mosquitto",
            port=free_port(),
            dynsec_file=dynsec,
            tls=make_server_cert(ca, root / "tls", ["127.0.0.1"]),
        )
        self.broker.start()
        self.influxd = influxd
        self.letters = SqliteStore(root / "letters.db")
        self.paused = False
        self.reader: Reader = open_reader(influxd.sink_url)
        self.client_id = f"gw-faults-{uuid.uuid4().hex[:6]}"
        self.gateway = self._gateway()
        self.gateway.start()
        self.gateway.wait_subscribed(30)

    def credentials(self, device: str) -> Credentials:
        """The broker account of ``device`` (one of :data:`DEVICES`)."""
        return Credentials(device, self.passwords[device], self.ca_file)

    @property
    def server_login(self) -> Credentials:
        """The server's broker account (commands to devices, their status, meta and replies)."""
        return Credentials(MQTT_SERVER_USER, self.keys.mqtt_server, self.ca_file)

    def _gateway(self) -> Gateway:
        self.sink = open_sink(self.influxd.sink_url + "?timeout=2")
        return Gateway(
            self.letters,
            host=self.broker.host,
            port=self.broker.port,
            client_id=self.client_id,  # fixed: its persistent session queues while it is away
            username=MQTT_GATEWAY_USER,
            password=self.keys.mqtt_gateway,
            tls=client_context(ca_file=self.ca_file),
            sinks=[self.sink],
            batch_messages=500,
            batch_age_s=0.1,
            mqtt_version="5",
        )

    def pause_gateway(self) -> None:
        """The gateway goes away (a clean stop); the broker queues for its session meanwhile."""
        self.gateway.stop()
        self.paused = True

    def resume_gateway(self) -> None:
        """A new gateway process with the same client id takes up the session."""
        self.gateway = self._gateway()
        self.gateway.start()
        self.paused = False
        self.gateway.wait_subscribed(30)

    def count(self, devices: Iterable[str]) -> int:
        """The rows influxd holds for ``devices`` (one cheap query)."""
        names = "|".join(sorted(devices))
        statement = f'SELECT count("value") FROM /.*/ WHERE "device" =~ /^({names})$/'
        try:
            series = self.influxd.query(statement, DATABASE)
        except Exception:  # influxd restarting: nothing counted yet
            return 0
        return sum(int(s["values"][0][1]) for s in series)

    def outcome(
        self,
        fault: str,
        ledger: Ledger,
        *,
        begin: float,
        back: float,
        timeout: float = 60.0,
        count: bool = False,
        recovery_s: float | None = None,
        **fields: Any,
    ) -> Tally:
        """Wait (up to ``timeout``) until every reading of ``ledger`` has landed in the store, then
        tally the store's rows since ``begin`` against it and record the case's row.

        The recovery is the seconds from ``back`` (the fault's end) until all had landed, unless
        the case measured its own (``recovery_s``): then the landing time is kept as
        ``readings_recovery_s``. ``count`` polls the store's cheap row count first (large ledgers).
        ``fields`` go to :func:`~tests.reliability.faults.tally` (conditions, order, details).
        """
        landed = self.landed(ledger, begin=begin, back=back, timeout=timeout, count=count)
        if recovery_s is None:
            recovery_s = landed
        else:
            fields["readings_recovery_s"] = None if landed is None else round(landed, 2)
        return self.tally(fault, ledger, begin=begin, recovery_s=recovery_s, **fields)

    def landed(
        self, ledger: Ledger, *, begin: float, back: float, timeout: float = 60.0, count: bool = False
    ) -> float | None:
        """Wait (up to ``timeout``) until every reading of ``ledger`` since ``begin`` is in the store;
        return the seconds from ``back`` (the fault's end) until then, or None if some never came.
        ``count`` polls the store's cheap row count first (large ledgers)."""
        devices = [device for _, device in ledger.devices()]
        return wait_landed(
            self.reader,
            ledger,
            since=back,
            timeout=timeout,
            start=begin,
            end=time.time() + 5,
            count=(lambda: self.count(devices)) if count else None,
        )

    def tally(self, fault: str, ledger: Ledger, *, begin: float, **fields: Any) -> Tally:
        """Tally the store's rows of ``ledger``'s devices since ``begin`` against it and record the
        case's row; ``fields`` go to :func:`~tests.reliability.faults.tally` (recovery_s,
        conditions, order, details)."""
        stored = stored_rows(self.reader, ledger.devices(), begin, time.time() + 5)
        return record(tally(fault, ledger, stored, **fields))

    def server_settings(self, registry_url: str, **settings: Any) -> ServerSettings:
        """A server on the stack: its registry at ``registry_url``, the stack's store, and the
        broker through the server's own TLS account; ``settings`` override the rest."""
        base: dict[str, Any] = {
            "registry_url": registry_url,
            "store": self.influxd.sink_url,
            "mqtt_host": self.broker.host,
            "mqtt_port": self.broker.port,
            "mqtt_tls": True,
            "mqtt_ca_file": self.ca_file,
            "mqtt_username": self.server_login.username,
            "mqtt_password": self.server_login.password,
            "alert_interval_s": 0,
        }
        return ServerSettings(**{**base, **settings})

    @contextlib.contextmanager
    def server(self, registry_url: str, devices: Iterable[str], **settings: Any) -> Iterator[TestClient]:
        """Run a server on the stack (:meth:`server_settings`) with its listener subscribed and
        ``devices`` enrolled in its registry (organisation :data:`ORG`), as binding their Pis leaves
        them; a server error answers 500 rather than raising in the test."""
        client = TestClient(
            create_app(self.server_settings(registry_url, **settings)), raise_server_exceptions=False
        )
        with client:
            listener = client.app.state.listener  # type: ignore[attr-defined]
            assert listener is not None
            wait_until(listener.subscribed.is_set, 30, "the server's listener subscribed")
            engine = client.app.state.resources.engine  # type: ignore[attr-defined]
            with Session(engine) as session:
                org = OrganisationRow(slug=ORG, name="Fault city", created_at=time.time())
                session.add(org)
                session.commit()
                assert org.id is not None
                for device in devices:
                    session.add(DeviceRow(id=device, org_id=org.id, registered_at=time.time()))
                session.commit()
            yield client

    def kill_broker(self) -> None:
        """kill -9 of Mosquitto: what it had not saved is gone."""
        process = self.broker._process
        assert process is not None
        process.kill()
        process.wait(10)
        self.broker._process = None

    def ready(self) -> None:
        """Bring back whatever a previous case left down, and wait for the gateway's session."""
        if self.broker._process is None or self.broker._process.poll() is not None:
            self.broker.start()
        if self.influxd._process is None:
            self.influxd.start()
        if self.paused:
            self.resume_gateway()
        self.gateway.wait_subscribed(30)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gateway.stop()
        self.broker.stop()
        self.letters.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, influxd_factory: Callable[..., InfluxD]
) -> Iterator[Stack]:
    """The module's stack (Mosquitto, influxd, gateway), brought back whole before each case."""
    s = Stack(tmp_path_factory.mktemp("stack"), influxd_factory())
    yield s
    s.close()


@pytest.fixture()
def ready(stack: Stack) -> Stack:
    stack.ready()
    return stack


class Link:
    """A Pi's uplink: a TCP relay on loopback between the agent and the broker, that the test can
    cut (every connection reset, new ones refused) and restore."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target = (host, target_port)
        self.port = free_port(host)
        self._up = threading.Event()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(16)
        server.settimeout(0.1)
        self._server = server
        self._up.set()
        self._thread = threading.Thread(target=self._accept, args=(server,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """The link goes down: open connections reset, new ones refused."""
        self._up.clear()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    conn.close()
            self._conns.clear()

    def close(self) -> None:
        self.cut()

    def _accept(self, server: socket.socket) -> None:
        with server:
            while self._up.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    upstream = socket.create_connection(self.target, timeout=2)
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._conns += [client, upstream]
                threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while self._up.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if src is a else a).sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()


class LedgerAgent(Agent):
    """The real agent, noting every reading it sampled (and stamped) in :attr:`ledger`."""

    ledger: Ledger
    quiet = False  # set: the sensors are not read any more (the outbox can drain to empty)

    def sample_once(self) -> list[Record]:
        if self.quiet:
            return []
        records = super().sample_once()
        self.ledger.add(records)
        return records


def device_config(
    device: str,
    port: int,
    login: Credentials | None,
    *,
    host: str = "127.0.0.1",
    publish_interval_s: float = 0.25,
    **outbox: Any,
) -> DeviceConfig:
    mqtt = MqttSettings(host=host, port=port, keepalive=5)
    if login is not None:
        mqtt = MqttSettings(
            host=host,
            port=port,
            keepalive=5,
            username=login.username,
            password=login.password,
            tls=True,
            ca_file=str(login.ca_file),
        )
    return DeviceConfig(
        device=device,
        org=ORG,
        mqtt=mqtt,
        sensors=list(SENSORS),
        bus="emulated",
        publish_interval_s=publish_interval_s,
        outbox=OutboxSettings(**outbox),
    )


def make_agent(
    stack: Stack,
    device: str,
    state: Path,
    *,
    port: int | None = None,
    clock: Callable[[], float] = time.time,
    publish_interval_s: float = 0.25,
    **outbox: Any,
) -> LedgerAgent:
    """A real agent of the suite's six readings a second, with its outbox in ``state``, logging in
    to the stack's broker (on ``port``: a :class:`Link` in between) with its own account over TLS."""
    config = device_config(
        device,
        port or stack.broker.port,
        stack.credentials(device),
        publish_interval_s=publish_interval_s,
        **outbox,
    )
    bus = build_bus(config.sensors, "office-day", clock=clock, seed=7)
    agent = LedgerAgent(config, bus, clock=clock, state_dir=state)
    agent.ledger = Ledger()
    return agent


def new_device(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def shm_dir(name: str) -> Iterator[Path]:
    """A directory on tmpfs (fsync costs nothing there): compressed-clock cases write thousands of
    commits a second."""
    path = Path("/dev/shm") / f"suitcase-faults-{os.getpid()}-{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(agents: list[LedgerAgent], timeout: float = 30.0) -> Iterator[list[LedgerAgent]]:
    """Start ``agents`` and wait until each is connected; stop them at the end, whatever happens."""
    for agent in agents:
        agent.start()
    try:
        for agent in agents:
            assert agent.wait_connected(timeout), f"{agent.config.device} did not connect"
        yield agents
    finally:
        for agent in agents:
            agent.quiet = True
            with contextlib.suppress(Exception):
                agent.stop()


def drained(agents: list[LedgerAgent], timeout: float = 60.0) -> None:
    """Quiet the sensors and wait until every reading each agent stored is acknowledged by the broker."""
    for agent in agents:
        agent.quiet = True
    wait_until(
        lambda: all(a.outbox.pending == 0 for a in agents),
        timeout,
        "every agent's outbox acknowledged",
        every=0.05,
    )


def ledger_of(agents: list[LedgerAgent]) -> Ledger:
    ledger = Ledger()
    for agent in agents:
        ledger.add(agent.ledger.records)
    return ledger
