"""The real Mosquitto broker for tests marked ``mosquitto``: one per session, loopback, free port.

Its config is made by :func:`suitcase.services.mosquitto.render_conf` (through
:class:`suitcase.broker.MosquittoBroker`), and the dynamic-security state by
:func:`suitcase.services.mosquitto.dynsec_state`: exactly as `suitcase services up`, the demo and
production make theirs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suitcase.broker import EmbeddedBroker, MosquittoBroker, find_mosquitto
from suitcase.services.mosquitto import (
    ACCOUNTS_ROLE,
    DYNSEC_PLUGIN,
    GATEWAY_ROLE,
    SERVER_ROLE,
    Account,
    dynsec_state,
    find_dynsec_plugin,
)
from tests.services import require_service

__all__ = [
    "DYNSEC_ADMIN",
    "DYNSEC_PLUGIN",
    "OPERATOR_ROLE",
    "STACK_ACCOUNTS",
    "STACK_GATEWAY",
    "STACK_SERVER",
    "embedded_broker",
    "mosquitto",
    "mosquitto_dynsec",
    "mosquitto_dynsec_files",
    "running_accounts_service",
    "tls_session",
]


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A running Mosquitto 2 with the project's config."""
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture()
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded (amqtt) broker for one test."""
    with EmbeddedBroker() as broker:
        yield broker  # type: ignore[misc]


DYNSEC_ADMIN = ("admin", "dynsec-admin-password")
# The stack's own accounts, with the roles `suitcase services up` gives them.
STACK_GATEWAY = Account("suitcase-gateway", "gateway-password", (GATEWAY_ROLE,))
STACK_SERVER = Account("suitcase-server", "server-password", (SERVER_ROLE,))
# The broker host's accounts service (`suitcase broker accounts`).
STACK_ACCOUNTS = Account("suitcase-accounts", "accounts-password", (ACCOUNTS_ROLE,))
# A test's operator: may do anything, as `mosquitto_ctrl dynsec init` makes it, and send commands.
OPERATOR_ROLE = {
    "rolename": "admin",
    "acls": [
        {"acltype": kind, "topic": topic, "priority": 0, "allow": True}
        for kind, topic in [
            ("publishClientSend", "$CONTROL/dynamic-security/#"),
            ("publishClientReceive", "$CONTROL/dynamic-security/#"),
            ("subscribePattern", "$CONTROL/dynamic-security/#"),
            ("publishClientReceive", "#"),
            ("subscribePattern", "#"),
            ("unsubscribePattern", "#"),
            ("publishClientSend", "suitcase/v1/+/+/cmd/#"),
        ]
    ],
}


def _dynsec_broker(tmp_path: Path, device_accounts_dir: Path | None = None) -> MosquittoBroker:
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    config = tmp_path / "dynsec.json"
    state = dynsec_state(
        [STACK_GATEWAY, STACK_SERVER, STACK_ACCOUNTS, Account(DYNSEC_ADMIN[0], DYNSEC_ADMIN[1], ("admin",))],
        extra_roles=[OPERATOR_ROLE],
    )
    config.write_text(json.dumps(state))
    return MosquittoBroker(
        tmp_path / "mosquitto-dynsec", dynsec_file=config, device_accounts_dir=device_accounts_dir
    )


@pytest.fixture()
def mosquitto_dynsec_files(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """:func:`mosquitto_dynsec` whose device accounts are in password and ACL files in
    ``broker.device_accounts_dir`` (``server/broker_files.py``), as with
    ``SUITCASE_SERVER_DEVICE_ACCOUNTS=files``."""
    broker = _dynsec_broker(tmp_path, tmp_path / "device-accounts")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture()
def mosquitto_dynsec(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto that authenticates every client through the dynamic-security plugin.

    Its state is the one `suitcase services up` writes (the stack's gateway and server roles and
    accounts, :data:`STACK_GATEWAY`, :data:`STACK_SERVER`), plus an operator account
    (:data:`DYNSEC_ADMIN`) that manages clients over ``$CONTROL/dynamic-security/v1`` and, as the
    server's account in older tests, may also send commands to devices.
    """
    broker = _dynsec_broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@contextlib.contextmanager
def running_accounts_service(broker: MosquittoBroker) -> Iterator[None]:
    """`suitcase broker accounts` serving ``broker``'s account files (``broker.device_accounts_dir``)
    in a thread, with its own stack account (:data:`STACK_ACCOUNTS`), as on the broker's host."""
    from suitcase.broker_accounts import AccountsService, AccountsSettings, files_backend

    assert broker.device_accounts_dir is not None
    settings = AccountsSettings(
        dir=broker.device_accounts_dir,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username=STACK_ACCOUNTS.username,
        mqtt_password=STACK_ACCOUNTS.password,
    )
    service = AccountsService(
        files_backend(settings), broker.host, broker.port, STACK_ACCOUNTS.username, STACK_ACCOUNTS.password
    )
    thread = threading.Thread(target=service.serve, name="accounts-service", daemon=True)
    thread.start()
    try:
        yield
    finally:
        service.stop()
        thread.join(timeout=10)
        service.close()
        assert not thread.is_alive(), "the accounts service did not stop"


@contextlib.contextmanager
def tls_session(
    host: str, port: int, username: str, password: str, ca: str | Path, client_id: str | None = None
) -> Iterator[tuple[Any, bool]]:
    """A paho client of ``username`` connected over TLS (checking the broker against ``ca``), and
    whether the broker accepted the login; disconnected on exit."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username)
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    answered = threading.Event()
    codes: list[Any] = []

    def on_connect(*args: Any) -> None:
        codes.append(args[3])
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    try:
        assert answered.wait(30), f"no CONNACK for {username} from {host}:{port}"
        yield client, not codes[0].is_failure
    finally:
        client.loop_stop()
        client.disconnect()
