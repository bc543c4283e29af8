"""The server's MQTT listener (server/listener.py) against a real Mosquitto and a SQLite registry:
statuses applied in order per device through batches, malformed ones refused with a logged reason
without stopping the others, and nothing lost while the registry is slow."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.db import create_registry_engine, ensure_schema
from server.listener import StatusListener
from server.settings import ServerSettings
from server.tables import DeviceRow, OrganisationRow
from suitcase.broker import MosquittoBroker
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto


@dataclass
class Registry:
    engine: Engine
    path: Path
    org: str
    devices: list[str]
    listener: StatusListener

    def states(self) -> dict[str, tuple[bool, float | None]]:
        with Session(self.engine) as session:
            rows = session.exec(select(DeviceRow).where(col(DeviceRow.id).in_(self.devices))).all()
            return {row.id: (row.online, row.status_since) for row in rows}


@contextlib.contextmanager
def _registry(broker: MosquittoBroker, url: str, path: Path, tmp_path: Path) -> Iterator[Registry]:
    """A registry of 40 devices of an organisation of this test alone, and a listener on it."""
    engine = create_registry_engine(url)
    ensure_schema(engine, upgrade=True)
    org = f"lst{uuid.uuid4().hex[:8]}"
    devices = [f"{org}-d{i:02d}" for i in range(40)]
    with Session(engine) as session:
        row = OrganisationRow(slug=org, name="Listener test", created_at=time.time())
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add_all(DeviceRow(id=d, org_id=row.id, registered_at=time.time()) for d in devices)
        session.commit()
    settings = ServerSettings(
        registry_url=url,
        store=str(tmp_path / "store.db"),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        command_sweep_s=0,
    )
    listener = StatusListener(settings, engine, time.time)
    listener.start()
    try:
        assert listener.subscribed.wait(30), "the listener did not subscribe"
        yield Registry(engine, path, org, devices, listener)
    finally:
        listener.stop()
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(
    mosquitto: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    """The listener on a SQLite registry, and on a real PostgreSQL one."""
    path = tmp_path / "registry.db"
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else f"sqlite:///{path}"
    with _registry(mosquitto, url, path, tmp_path) as registry:
        yield registry


@pytest.fixture
def sqlite_registry(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Registry]:
    """The listener on a SQLite registry (whose lock a test can hold)."""
    path = tmp_path / "registry.db"
    with _registry(mosquitto, f"sqlite:///{path}", path, tmp_path) as registry:
        yield registry


def _publish(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    """Publish in order with QoS 1 from one client (not retained: the broker is shared)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-listener-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def _refusals(caplog: pytest.LogCaptureFixture, org: str) -> list[str]:
    """The refusal lines logged for statuses of ``org``'s devices."""
    return [
        r.getMessage()
        for r in caplog.records
        if "status/meta refused" in r.getMessage() and str(getattr(r, "topic", "")).split("/")[2:3] == [org]
    ]


def _status(state: str, since: float) -> bytes:
    return json.dumps({"state": state, "since": since, "agent": "1.4.0"}).encode()


def test_statuses_apply_in_order_per_device_through_batches(
    mosquitto: MosquittoBroker, registry: Registry
) -> None:
    """Test that 20 statuses per device, interleaved across 40 devices (batched by the listener),
    leave each device in its last status with its last ``since``."""
    messages, last = [], {}
    for step in range(20):
        for i, device in enumerate(registry.devices):
            state = "online" if (step + i) % 2 == 0 else "offline"
            since = 1_000.0 + step
            messages.append((f"suitcase/v1/{registry.org}/{device}/status", _status(state, since)))
            last[device] = (state == "online", since)
    _publish(mosquitto, messages)
    wait_until(lambda: registry.states() == last, 60, "every device in its last status")
    assert registry.listener.failures == 0


def test_malformed_status_is_refused_and_logged_and_the_others_apply(
    mosquitto: MosquittoBroker, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that malformed statuses (not JSON, an unknown state, no ``since``, a non-finite
    ``since``, a list) between good ones are each refused with a logged reason, and every good
    status around them is applied."""
    bad = [
        b"{not json",
        b'{"state": "sleeping", "since": 1, "agent": "x"}',
        b'{"state": "online"}',
        b"[1, 2]",
    ]
    bad.append(b'{"state": "online", "since": 1e999, "agent": "x"}')
    messages = []
    for i, device in enumerate(registry.devices):
        topic = f"suitcase/v1/{registry.org}/{device}/status"
        messages.append((topic, _status("online", 2_000.0)))
        messages.append((topic, bad[i % len(bad)]))  # after the good one: must not undo it
    refused_before = registry.listener.refused
    with caplog.at_level(logging.WARNING, logger="server.listener"):
        _publish(mosquitto, messages)
        wait_until(
            lambda: registry.states() == {d: (True, 2_000.0) for d in registry.devices},
            60,
            "every good status applied",
        )
        wait_until(
            lambda: registry.listener.refused - refused_before >= len(registry.devices), 60, "refusals"
        )
        # Retained statuses of other tests' devices on the shared broker are refused (and counted)
        # too: wait for a line of this test's own.
        wait_until(lambda: any("not a JSON object" in m for m in _refusals(caplog, registry.org)), 30, "log")
    reasons = [r.getMessage() for r in caplog.records if "status/meta refused" in r.getMessage()]
    assert reasons, "a refused status is logged"
    assert any("not a JSON object" in r for r in reasons)
    assert registry.listener.failures == 0


def test_a_flood_of_one_refusal_does_not_hide_another(
    mosquitto: MosquittoBroker, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that the refusal log's bound is per reason: 30 statuses of devices never enrolled (as a
    broker's retained ones can be) log at most 10 lines, and a malformed status after them is still
    logged with its reason."""
    org, device = registry.org, registry.devices[0]
    strangers = [(f"suitcase/v1/{org}/stranger-{i}/status", _status("online", 1.0)) for i in range(30)]
    refused_before = registry.listener.refused
    with caplog.at_level(logging.WARNING, logger="server.listener"):
        _publish(mosquitto, [*strangers, (f"suitcase/v1/{org}/{device}/status", b"{not json")])
        wait_until(lambda: registry.listener.refused - refused_before >= 31, 60, "refusals")
        # Other tests' retained statuses on the shared broker are counted too: wait for the line.
        wait_until(lambda: any("not a JSON object" in r.getMessage() for r in caplog.records), 30, "log")
    reasons = [r.getMessage() for r in caplog.records if "status/meta refused" in r.getMessage()]
    assert any("not a JSON object" in r for r in reasons), reasons
    assert 1 <= sum("not enrolled" in r for r in reasons) <= 10, reasons


def test_no_status_is_lost_while_the_registry_is_slow(
    mosquitto: MosquittoBroker, sqlite_registry: Registry
) -> None:
    """Test that statuses arriving while another writer holds the SQLite registry locked are all
    applied, in order, once the lock is released."""
    blocker = sqlite3.connect(sqlite_registry.path, timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        messages = [
            (f"suitcase/v1/{sqlite_registry.org}/{d}/status", _status(state, since))
            for since, state in ((3_000.0, "online"), (3_001.0, "offline"), (3_002.0, "online"))
            for d in sqlite_registry.devices
        ]
        _publish(mosquitto, messages)  # acknowledged by the broker while the registry is locked
        # Read through the lock's own connection: the listener has written nothing yet.
        online = blocker.execute(
            "SELECT count(*) FROM devices WHERE online AND id LIKE ?", (f"{sqlite_registry.org}-%",)
        )
        assert online.fetchone() == (0,)
    finally:
        blocker.rollback()
        blocker.close()
    wait_until(
        lambda: sqlite_registry.states() == {d: (True, 3_002.0) for d in sqlite_registry.devices},
        90,
        "every status applied after the lock",
    )


def test_devices_coming_online_in_a_batch_get_their_waiting_commands(
    mosquitto: MosquittoBroker, registry: Registry
) -> None:
    """Test that when 40 devices come online together (one batch), the three with a queued
    command are each sent it, once, and the others are sent nothing."""
    from server.device_commands import queue_command
    from server.tables import DeviceCommandRow

    waiting = registry.devices[5:8]
    with Session(registry.engine) as session:
        for device in waiting:
            row = session.get(DeviceRow, device)
            assert row is not None
            queue_command(session, row, "ping", {}, time.time())
        session.commit()
    received: list[str] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-watch-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()
    watcher.on_message = lambda _c, _u, message: received.append(message.topic)
    watcher.on_subscribe = lambda *_args: subscribed.set()
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.loop_start()
    try:
        watcher.subscribe(f"suitcase/v1/{registry.org}/+/cmd/#", qos=1)
        assert subscribed.wait(30), "the watcher's subscription was not granted"
        statuses = [
            (f"suitcase/v1/{registry.org}/{d}/status", _status("online", 4_000.0)) for d in registry.devices
        ]
        _publish(mosquitto, statuses)
        wait_until(lambda: len(received) >= len(waiting), 30, "the waiting commands sent")

        def sent() -> list[str]:
            with Session(registry.engine) as session:
                rows = session.exec(
                    select(DeviceCommandRow).where(col(DeviceCommandRow.state) == "sent")
                ).all()
                return sorted(row.device_id for row in rows)

        wait_until(lambda: sent() == waiting, 30, "the commands marked sent")
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert sorted(received) == sorted(f"suitcase/v1/{registry.org}/{d}/cmd/ping" for d in waiting)
