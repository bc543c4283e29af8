"""Tests of `suitcase services backup` and `restore`: a stack filled and backed up while readings
are written, restored into a fresh stack, every reading and registry row compared.

The readings are written through the gateway's own write path (its InfluxDB sink, with the URL of
gateway.env) from a thread that keeps writing during the backup."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.sinks import open_sink
from kits.wire import Record
from suitcase.services.backup import backup, restore
from suitcase.services.influxdb import INFLUX_ADMIN_USER, READINGS_DATABASE, influx_query
from suitcase.services.layout import Layout
from suitcase.services.preflight import ServicesError
from suitcase.services.secrets import load_or_make_secrets
from suitcase.services.settings_files import parse_env, registry_url
from tests.waiting import wait_until

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.postgres]

QUANTITIES = ("temperature", "humidity")
Reading = tuple[str, str, str, str, int, float]  # org, device, sensor, quantity, time (ns), value


def _readings(layout: Layout) -> set[Reading]:
    secrets, _ = load_or_make_secrets(layout.secrets_file)
    url = f"http://{layout.bind}:{layout.ports.influx_http}"
    found: set[Reading] = set()
    for quantity in QUANTITIES:
        series = influx_query(
            url,
            f'SELECT "value" FROM "{quantity}" GROUP BY "org", "device", "sensor"',
            (INFLUX_ADMIN_USER, secrets.influx_admin),
            db=READINGS_DATABASE,
        )
        for s in series:
            tags = s["tags"]
            found |= {(tags["org"], tags["device"], tags["sensor"], quantity, t, v) for t, v in s["values"]}
    return found


def _registry_rows(layout: Layout, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    secrets, _ = load_or_make_secrets(layout.secrets_file)
    url = registry_url(layout, secrets.postgres_server).replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}


def _previous_revision() -> tuple[str, str]:
    """The registry's newest migration and the one before it."""
    from alembic.script import ScriptDirectory

    from server.db import head_revision

    head = head_revision()
    from sqlalchemy import create_engine

    from server.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    down = script.get_revision(head).down_revision
    assert isinstance(down, str)
    return head, down


def _table_names(layout: Layout) -> set[str]:
    secrets, _ = load_or_make_secrets(layout.secrets_file)
    url = registry_url(layout, secrets.postgres_server).replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _fill_registry(layout: Layout, revision: str) -> list[str]:
    """Migrate the registry to ``revision`` (an older version) and add rows; return its tables."""
    from sqlalchemy import create_engine

    from server.db import migrate

    secrets, _ = load_or_make_secrets(layout.secrets_file)
    engine = create_engine(registry_url(layout, secrets.postgres_server))
    migrate(engine, revision)
    engine.dispose()
    url = registry_url(layout, secrets.postgres_server).replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        for i in range(40):
            conn.execute(
                "INSERT INTO organisations (slug, name, kind, created_at) VALUES (%s, %s, 'city', %s)",
                (f"city-{i}", f"City {i} - Ærø", 1.7e9 + i),
            )
            conn.execute(
                "INSERT INTO users (email, name, password_hash, is_global_admin, active, created_at) "
                "VALUES (%s, %s, %s, false, true, %s)",
                (f"u{i}@city.example", f"User {i}", f"$argon2id$fake{i}", 1.7e9 + i),
            )
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return sorted(tables)


class _Writer(threading.Thread):
    """Writes readings through the gateway's sink until stopped; remembers when each batch was acked."""

    def __init__(self, layout: Layout) -> None:
        super().__init__(daemon=True)
        env = parse_env(layout.gateway_env.read_text())
        self.sink = open_sink(json.loads(env["SUITCASE_GATEWAY_SINKS"])[0])
        self.acked: list[tuple[float, list[Record]]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        self.sink.open()
        base = 1_767_000_000.0
        n = 0
        try:
            while not self.stop.is_set() and n < 400:  # bounded: at most 400 batches
                batch = [
                    Record(org=f"city-{d % 2}", device=f"dev-{d}", sensor="bme280", quantity=q,
                           value=round(n * 0.25 + d, 3), time=base + n * 60)
                    for d in range(6)
                    for q in QUANTITIES
                ]  # fmt: skip
                self.sink.write(batch)
                self.acked.append((time.monotonic(), batch))
                n += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.sink.close()


def _as_readings(batches: list[tuple[float, list[Record]]], before: float) -> set[Reading]:
    return {
        (r.org, r.device, r.sensor, r.quantity, round(r.time * 1e9), r.value)
        for at, batch in batches
        if at <= before
        for r in batch
    }


def _mqtt_connects(layout: Layout, username: str, password: str) -> bool:
    env = parse_env(layout.gateway_env.read_text())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}")
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=env["SUITCASE_GATEWAY_MQTT_CA_FILE"], cert_reqs=ssl.CERT_REQUIRED)
    result: list[Any] = []
    done = threading.Event()

    def on_connect(*args: Any) -> None:
        result.append(args[3])
        done.set()

    client.on_connect = on_connect
    client.connect("localhost", layout.ports.mqtt_tls)
    client.loop_start()
    try:
        assert done.wait(30), f"no answer to {username}'s CONNECT"
        return not result[0].is_failure
    finally:
        client.loop_stop()
        client.disconnect()


def _add_device_account(layout: Layout, username: str, password: str) -> None:
    """Create a device's broker account as the server does at enrollment (server's account, TLS)."""
    env = parse_env(layout.server_env.read_text())
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-server")
    client.username_pw_set(env["SUITCASE_SERVER_MQTT_USERNAME"], env["SUITCASE_SERVER_MQTT_PASSWORD"])
    client.tls_set(ca_certs=env["SUITCASE_SERVER_MQTT_CA_FILE"], cert_reqs=ssl.CERT_REQUIRED)
    answered = threading.Event()
    client.on_message = lambda *_: answered.set()
    client.on_connect = lambda c, *_: c.subscribe("$CONTROL/dynamic-security/v1/response", qos=1)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("localhost", layout.ports.mqtt_tls)
    client.loop_start()
    try:
        assert subscribed.wait(30)
        commands = [{"command": "createClient", "username": username, "password": password}]
        client.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands": commands}), qos=1)
        assert answered.wait(30)
    finally:
        client.loop_stop()
        client.disconnect()


def _add_files_device_account(layout: Layout, device: str, password: str) -> None:
    """Create a device's account as the production server does (files-remote: the accounts service
    writes the broker's files); again while the service is not logged in yet."""
    from server.app import _broker_admin
    from server.broker_admin import BrokerAdminError
    from server.settings import load_settings

    env = parse_env(layout.server_env.read_text())
    admin = _broker_admin(
        load_settings(**{k.removeprefix("SUITCASE_SERVER_").lower(): v for k, v in env.items()})
    )
    admin.timeout = 10.0  # type: ignore[attr-defined]

    def made() -> bool:
        try:
            admin.create_device("city", device, device, password)
        except BrokerAdminError:
            return False
        return True

    try:
        wait_until(made, timeout=90, what="the accounts service answering")
    finally:
        admin.close()


def test_backup_under_load_restores_into_a_fresh_stack(
    stack_factory: Callable[[], Layout], tmp_path: Path
) -> None:
    """Test that a backup made while readings are written, of a registry one migration behind,
    restores into a fresh stack: every reading acked before the backup began is there and nothing
    else; every registry row is there and the registry is migrated to this version; the devices'
    broker accounts work (in dynamic security and in the broker's files), and the stack's own
    accounts take the new stack's passwords."""
    source = stack_factory()
    head, previous = _previous_revision()
    tables = _fill_registry(source, previous)
    _add_device_account(source, "city-0-dev-0", "device-password")
    _add_files_device_account(source, "city-0-dev-1", "files-device-password")
    writer = _Writer(source)
    writer.start()
    deadline = time.monotonic() + 30
    while len(writer.acked) < 40 and time.monotonic() < deadline and writer.error is None:
        time.sleep(0.05)
    assert writer.error is None and len(writer.acked) >= 40
    began = time.monotonic()
    manifest = backup(source, tmp_path / "backup")
    during = len(writer.acked)
    writer.stop.set()
    writer.join(30)
    assert writer.error is None
    assert manifest["registry_revision"] == previous
    assert during > 40 or writer.acked[-1][0] > began, "the writer did not write during the backup"
    with pytest.raises(ServicesError, match="not empty"):
        backup(source, tmp_path / "backup")

    target = stack_factory()
    restore(target, tmp_path / "backup", use_systemd=False)
    restored = _readings(target)
    everything = _readings(source)
    assert _as_readings(writer.acked, began) <= restored, "a reading acked before the backup is missing"
    assert restored <= everything, "the restored store holds readings the source never had"
    # A migration may fold a table into another (0007: calibration_deliveries into
    # device_commands); such a table must have been empty here, so nothing is lost with it.
    kept = [t for t in tables if t in _table_names(target)]
    assert all(not rows for t, rows in _registry_rows(source, tables).items() if t not in kept)
    assert _registry_rows(target, kept) == {
        t: rows for t, rows in _registry_rows(source, kept).items() if t != "alembic_version"
    } | {"alembic_version": [(head,)]}
    assert _mqtt_connects(target, "city-0-dev-0", "device-password")
    assert _mqtt_connects(target, "city-0-dev-1", "files-device-password")  # from the broker's files
    assert not _mqtt_connects(target, "city-0-dev-1", "another-password")
    target_gateway = parse_env(target.gateway_env.read_text())
    source_gateway = parse_env(source.gateway_env.read_text())
    assert _mqtt_connects(target, "suitcase-gateway", target_gateway["SUITCASE_GATEWAY_PASSWORD"])
    assert not _mqtt_connects(target, "suitcase-gateway", source_gateway["SUITCASE_GATEWAY_PASSWORD"])
    # The restored stack takes readings from its gateway, and its server reads them.
    from gateway.store import open_reader

    reader = open_reader(parse_env(target.server_env.read_text())["SUITCASE_SERVER_STORE"])
    assert {d.device for d in reader.devices()} == {f"dev-{d}" for d in range(6)}

    # Nothing is overwritten: a second restore into the now filled stack is refused.
    with pytest.raises(ServicesError, match="already holds data"):
        restore(target, tmp_path / "backup", use_systemd=False)
    assert _readings(target) == restored
