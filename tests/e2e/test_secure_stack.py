"""The production settings against a real Mosquitto with dynamic security and TLS listeners.

The CA is made in the test (tests/services/tls.py). Every MQTT client we ship connects over TLS
and checks the broker's certificate and host name: the server's broker admin and status listener,
the gateway's own client (with a client certificate, on a listener that asks for one) and the
edge agent (with the CA the server put in its config). A wrong CA or a wrong host name is refused
by each, with a message that says what to check.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from edge.counters import AgentCounters
from edge.logs import device_log
from edge.session import Session as AgentSession
from gateway._mqtt import MqttSession, MqttTlsError
from gateway.consumer import Gateway
from gateway.settings import load_settings as gateway_settings
from gateway.store import SqliteStore
from kits.catalog import load_catalog
from kits.models import DeviceConfig, DeviceSensor, MqttSettings
from kits.tls import client_context
from kits.wire import Record, build_topic, encode_pack
from server.app import create_app
from server.broker_admin import BrokerAdminError, DynSecAdmin
from server.db import create_registry_engine, init_registry
from server.fleet import device_ca_pem
from server.listener import StatusListener
from server.settings import ServerSettings
from server.settings import load_settings as server_settings
from server.tables import DeviceRow, OrganisationRow
from tests.services.tls import TlsBroker
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto

ORG = "tls-town"
SECRET = "a-long-random-secret-for-this-test"


def _server_settings(broker: TlsBroker, tmp_path: Path, **change: Any) -> ServerSettings:
    settings = server_settings(
        environment="production",
        secret_key=SECRET,
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        mqtt_host="localhost",
        mqtt_port=broker.tls_port,
        mqtt_tls=True,
        mqtt_ca_file=broker.pki.ca,
        mqtt_dynsec=True,
        mqtt_username=broker.server.username,  # the stack's least-privilege server account
        mqtt_password=broker.server.password,
    )
    return settings.model_copy(update=change)


@pytest.fixture
def production_server(mosquitto_tls: TlsBroker, tmp_path: Path) -> Iterator[TestClient]:
    """A production server (TLS, dynamic security) on a migrated SQLite registry."""
    settings = _server_settings(mosquitto_tls, tmp_path)
    engine = create_registry_engine(settings.registry_url)
    init_registry(engine, load_catalog(settings.catalog_dir), upgrade=True)  # production never migrates
    engine.dispose()
    # Production's session cookie is Secure: the test talks to it as through the TLS proxy.
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client


def test_every_client_talks_tls_in_production(
    production_server: TestClient, mosquitto_tls: TlsBroker, tmp_path: Path
) -> None:
    """Test that a reading goes agent -> broker -> gateway -> store, and status agent -> server,
    all over TLS with certificates checked, with the production settings of server and gateway."""
    resources = production_server.app.state.resources  # type: ignore[attr-defined]
    listener = production_server.app.state.listener  # type: ignore[attr-defined]
    assert listener.subscribed.wait(15), "the server's status listener did not subscribe over TLS"
    device, password = f"tls-dev-{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    with Session(resources.engine) as session:
        org = OrganisationRow(slug=ORG, name="TLS town", created_at=time.time())
        session.add(org)
        session.commit()
        assert org.id is not None
        session.add(DeviceRow(id=device, org_id=org.id, mqtt_username=device, registered_at=time.time()))
        session.commit()
    resources.broker.create_device(ORG, device, device, password)  # the broker admin, over TLS

    username, gw_password = mosquitto_tls.gateway.username, mosquitto_tls.gateway.password
    pki = mosquitto_tls.pki
    gw = gateway_settings(
        environment="production",
        mqtt_host="localhost",
        mqtt_port=mosquitto_tls.mtls_port,
        mqtt_tls=True,
        mqtt_ca_file=pki.ca,
        mqtt_cert_file=pki.client_cert,
        mqtt_key_file=pki.client_key,
        username=username,
        password=gw_password,
        client_id=f"gw-{secrets.token_hex(4)}",
    )
    store = SqliteStore(tmp_path / "gateway-store.db")
    gateway = Gateway(
        store,
        host=gw.mqtt_host,
        port=gw.mqtt_port,
        client_id=gw.client_id,
        username=gw.username,
        password=gw.password.get_secret_value() if gw.password else None,
        tls=client_context(
            ca_file=gw.mqtt_ca_file, cert_file=gw.mqtt_cert_file, key_file=gw.mqtt_key_file, setting="GW"
        ),
    )
    agent = _agent(
        device,
        MqttSettings(
            host="localhost",
            port=mosquitto_tls.tls_port,
            username=device,
            password=password,
            tls=True,
            ca_pem=device_ca_pem(resources.settings),  # the CA the server gives devices
        ),
    )
    gateway.start()
    try:
        wait_until(lambda: gateway.subscribed, 30, "the gateway's subscription over TLS")
        agent.open()
        assert agent.wait_connected(30), agent.connection_error
        now = time.time()
        pack = encode_pack([Record(ORG, device, "bme280", "temperature", 21.5, now)])
        assert agent.publish(build_topic(ORG, device, "telemetry"), pack) is None
        wait_until(lambda: store.count_readings() == 1, 30, "the reading in the store")
        with Session(resources.engine) as session:
            wait_until(lambda: _online(session, device), 30, "the device online in the registry")
    finally:
        agent.close(5)
        gateway.stop()
        store.close()


def _online(session: Session, device: str) -> bool:
    session.expire_all()
    row = session.get(DeviceRow, device)
    return bool(row is not None and row.online)


def _agent(device: str, mqtt: MqttSettings, org: str = ORG) -> AgentSession:
    config = DeviceConfig(
        device=device, org=org, mqtt=mqtt, sensors=[DeviceSensor(name="bme280", part="bme280", address=0x77)]
    )
    return AgentSession(
        config,
        AgentCounters(),
        log=device_log(logging.getLogger("tests.tls"), org, device),
        status=lambda state: f'{{"state": "{state}", "since": {time.time()}, "agent": "0.test"}}'.encode(),
        on_connected=lambda: None,
        on_command=lambda _name, _payload: None,
        on_acknowledged=lambda: None,
    )


# host connected to, CA used, what the refusal says
REFUSED = [
    pytest.param("localhost", "other_ca", "self-signed certificate in certificate chain", id="wrong-ca"),
    pytest.param("127.0.0.1", "ca", "IP address mismatch", id="wrong-host-name"),
]


@pytest.mark.parametrize(("host", "ca", "reason"), REFUSED)
def test_the_gateway_refuses_a_broker_it_cannot_trust(
    mosquitto_tls: TlsBroker, host: str, ca: str, reason: str
) -> None:
    """Test that the gateway's own client refuses a certificate from another CA or for another host."""
    session = MqttSession(
        host,
        mosquitto_tls.tls_port,
        f"gw-{secrets.token_hex(4)}",
        "suitcase/v1/+/+/telemetry",
        lambda *_: None,
        tls=client_context(ca_file=getattr(mosquitto_tls.pki, ca), setting="SUITCASE_GATEWAY_MQTT"),
    )
    with pytest.raises(MqttTlsError) as refused:
        session.start()
    message = str(refused.value)
    assert reason in message and "SUITCASE_GATEWAY_MQTT_CA_FILE" in message


@pytest.mark.parametrize(("host", "ca", "reason"), REFUSED)
def test_the_server_refuses_a_broker_it_cannot_trust(
    mosquitto_tls: TlsBroker, tmp_path: Path, host: str, ca: str, reason: str
) -> None:
    """Test that the server's broker admin and status listener refuse a broker they cannot trust."""
    settings = _server_settings(
        mosquitto_tls, tmp_path, mqtt_host=host, mqtt_ca_file=getattr(mosquitto_tls.pki, ca)
    )
    with pytest.raises(BrokerAdminError) as refused:
        DynSecAdmin(
            host,
            mosquitto_tls.tls_port,
            mosquitto_tls.server.username,
            mosquitto_tls.server.password,
            tls=settings.mqtt_tls_context(),
            timeout=5,
        )
    assert reason in str(refused.value) and "SUITCASE_SERVER_MQTT_CA_FILE" in str(refused.value)
    listener = StatusListener(settings, create_registry_engine("sqlite://"), time.time)
    with pytest.raises(BrokerAdminError, match=reason):
        listener.start()


@pytest.mark.parametrize(("host", "ca", "reason"), REFUSED)
def test_the_agent_refuses_a_broker_it_cannot_trust(
    mosquitto_tls: TlsBroker, host: str, ca: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that the edge agent does not connect to a broker whose certificate it cannot check."""
    device = f"tls-dev-{secrets.token_hex(3)}"
    ca_file = getattr(mosquitto_tls.pki, ca)
    agent = _agent(
        device,
        MqttSettings(host=host, port=mosquitto_tls.tls_port, username="x", tls=True, ca_file=str(ca_file)),
    )
    caplog.set_level(logging.WARNING, "tests.tls")
    agent.open()
    try:
        wait_until(lambda: agent.connection_error, 30, "the agent's connection failure")
        assert not agent.connected
        assert "mqtt.ca_file" in caplog.text
    finally:
        agent.close(1)


def test_the_gateway_drains_a_backlog_over_tls(mosquitto_tls: TlsBroker) -> None:
    """Test that the gateway's own client reads a 2,000-message backlog over mutual TLS, every
    message once, and that what it acked is not sent again to its next connection."""
    import paho.mqtt.client as mqtt

    username, password = mosquitto_tls.gateway.username, mosquitto_tls.gateway.password
    publisher, publisher_password = mosquitto_tls.publisher.username, mosquitto_tls.publisher.password
    pki = mosquitto_tls.pki
    tls = client_context(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key, setting="GW")
    got: list[bytes] = []
    lock = threading.Lock()
    sessions: list[MqttSession] = []

    def deliver(generation: int, _at: float, messages: list[Any]) -> None:
        with lock:
            got.extend(payload for _, payload, _, _ in messages)
        sessions[-1].ack(generation, [mid for _, _, mid, _ in messages])

    def session(on_subscribed: Callable[[], None] | None = None) -> MqttSession:
        made = MqttSession(
            "localhost", mosquitto_tls.mtls_port, client_id, "suitcase/v1/+/+/telemetry", deliver,
            username=username, password=password, tls=tls, on_subscribed=on_subscribed,
        )  # fmt: skip
        sessions.append(made)
        return made

    client_id = f"gw-{secrets.token_hex(4)}"
    subscribed = threading.Event()
    first = session(subscribed.set)
    first.start()
    assert subscribed.wait(15)
    first.stop()  # the session stays on the broker: the backlog is queued for it
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{publisher}-{secrets.token_hex(3)}")
    pub.username_pw_set(publisher, publisher_password)
    pub.tls_set_context(client_context(ca_file=pki.ca, setting="PUB"))
    pub.max_inflight_messages_set(500)
    pub.connect("localhost", mosquitto_tls.tls_port)
    pub.loop_start()
    try:
        infos = [pub.publish(f"suitcase/v1/o/d{i % 7}/telemetry", b"m%d" % i, qos=1) for i in range(2000)]
        for info in infos:
            info.wait_for_publish(30)
        second = session()
        second.start()
        wait_until(lambda: len(got) >= 2000, 60, "the backlog over TLS")
        second.stop()
        assert sorted(got) == sorted(b"m%d" % i for i in range(2000))
        got.clear()
        pub.publish("suitcase/v1/o/late/telemetry", b"late", qos=1).wait_for_publish(30)
        third = session()
        third.start()
        wait_until(lambda: got, 30, "the late message")
        time.sleep(0.5)
        third.stop()
        assert got == [b"late"], "acked messages came back"
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_the_server_says_when_it_cannot_reach_the_broker(
    mosquitto_tls: TlsBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that a server started while the broker is away starts, and logs what to check."""
    from suitcase.broker import free_port

    settings = _server_settings(mosquitto_tls, tmp_path, mqtt_port=free_port())
    listener = StatusListener(settings, create_registry_engine("sqlite://"), time.time)
    caplog.set_level(logging.WARNING, "server.listener")
    listener.start()
    try:
        wait_until(lambda: "SUITCASE_SERVER_MQTT_CA_FILE" in caplog.text, 30, "the listener's warning")
    finally:
        listener.stop()


def test_gateway_run_exits_2_on_a_broker_it_cannot_trust(
    mosquitto_tls: TlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that `suitcase gateway run` in production with the wrong CA exits 2 saying what to check."""
    from typer.testing import CliRunner

    from gateway.cli import app

    for name, value in {
        "ENVIRONMENT": "production",
        "MQTT_HOST": "localhost",
        "MQTT_PORT": str(mosquitto_tls.tls_port),
        "MQTT_TLS": "true",
        "MQTT_CA_FILE": str(mosquitto_tls.pki.other_ca),
        "USERNAME": mosquitto_tls.gateway.username,
        "PASSWORD": secrets.token_urlsafe(24),
        "STORE": str(tmp_path / "store.db"),
    }.items():
        monkeypatch.setenv(f"SUITCASE_GATEWAY_{name}", value)
    result = CliRunner().invoke(app, ["run", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "was not accepted" in result.output and "SUITCASE_GATEWAY_MQTT_CA_FILE" in result.output


def test_a_claimed_pi_gets_the_ca_and_connects_over_tls(
    production_server: TestClient, mosquitto_tls: TlsBroker
) -> None:
    """Test that a Pi bound by staff on the production server gets TLS and the broker's CA in its
    config (no file to copy onto the SD card), and connects with it, its own account, over TLS."""
    from tests.server.world import World

    world = World.build(production_server)
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "TLS-1", "profile_id": "starter"})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "hall"})
    code = kit["claim_codes"][0]["code"]
    world.ok("a-operator", "POST", "/claims/bind", 201, json={"claim_code": code, "deployment_id": dep["id"]})
    polled = production_server.post("/api/v1/claims/poll", json={"claim_code": code})
    assert polled.status_code == 200, polled.text
    config = DeviceConfig.model_validate(polled.json()["device"]["config"])
    assert config.mqtt.tls and config.mqtt.ca_pem == mosquitto_tls.pki.ca.read_text()
    agent = _agent(config.device, config.mqtt, config.org)  # as the server gave it
    agent.open()
    try:
        assert agent.wait_connected(30), agent.connection_error
        listener = production_server.app.state.listener  # type: ignore[attr-defined]
        assert listener.wait_applied(1, 15), "the server did not hear the Pi's status over TLS"
    finally:
        agent.close(5)
