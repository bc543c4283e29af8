"""Tests of the broker configuration `suitcase services up` writes: TLS listener, dynamic security,
least-privilege roles of the gateway and the server. On a real Mosquitto."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from suitcase.broker import MosquittoBroker, find_mosquitto
from suitcase.services.mosquitto import (
    GATEWAY_ROLE,
    SERVER_ROLE,
    Account,
    dynsec_state,
    find_dynsec_plugin,
    merge_accounts,
    move_device_accounts,
    password_matches,
)
from suitcase.services.tls import TlsFiles, make_ca, make_server_cert
from tests.services import require_service

pytestmark = pytest.mark.mosquitto

GATEWAY = Account("gw", "gw-secret", (GATEWAY_ROLE,))
SERVER = Account("srv", "srv-secret", (SERVER_ROLE,))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MosquittoBroker, TlsFiles]]:
    """A Mosquitto configured as `services up` does: TLS only, dynamic security, the stack's roles."""
    if find_mosquitto() is None or find_dynsec_plugin() is None:
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    root = tmp_path_factory.mktemp("tls-broker")
    ca = make_ca(root / "ca")
    tls = make_server_cert(ca, root / "tls", ["localhost", "127.0.0.1"])
    dynsec = root / "dynsec.json"
    dynsec.write_text(json.dumps(dynsec_state([GATEWAY, SERVER])))
    broker = MosquittoBroker(root / "mosquitto", dynsec_file=dynsec, tls=tls)
    broker.start()
    yield broker, tls
    broker.stop()


class _Client:
    """A paho client that records connect results, granted QoS and messages."""

    def __init__(self, broker: MosquittoBroker, account: Account, ca: Path | None, name: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.username_pw_set(account.username, account.password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.granted: list[list[Any]] = []
        self.subscribed = threading.Event()
        self.messages: list[str] = []
        self.got = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("localhost", broker.port)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            self.refused.append(str(reason))
        self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: Any, _p: Any = None) -> None:
        self.granted.append([c.value for c in codes])
        self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self.messages.append(message.topic)
        self.got.set()

    def subscribe(self, topic: str) -> list[Any]:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(30), f"no SUBACK for {topic}"
        return self.granted[-1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_gateway_role_receives_telemetry_only(tls_broker: tuple[MosquittoBroker, TlsFiles]) -> None:
    """Test that the gateway's account gets telemetry through a shared subscription, and nothing else:
    no status, no publishing telemetry or commands."""
    broker, tls = tls_broker
    gateway = _Client(broker, GATEWAY, tls.ca, "gateway-1")
    server = _Client(broker, SERVER, tls.ca, "server-1")
    try:
        assert gateway.connected.wait(30) and server.connected.wait(30)
        assert gateway.refused == [] and server.refused == []
        assert gateway.subscribe("$share/gw/suitcase/v1/+/+/telemetry") == [1]
        assert gateway.subscribe("suitcase/v1/+/+/status")[0] >= 0x80  # refused
        assert server.subscribe("suitcase/v1/+/+/telemetry")[0] >= 0x80
        assert server.subscribe("suitcase/v1/+/+/status") == [1]
        assert server.subscribe("$CONTROL/dynamic-security/v1/response") == [1]
        # The server may not publish telemetry: the forged pack never reaches the gateway (the
        # broker may also drop the server's connection for it, so this comes last).
        server.client.publish("suitcase/v1/city/dev-1/telemetry", b"[]", qos=1)
        assert not gateway.got.wait(1.5)
    finally:
        gateway.close()
        server.close()


def test_server_role_manages_device_accounts(tls_broker: tuple[MosquittoBroker, TlsFiles]) -> None:
    """Test that the server's account creates a device client over TLS (what enrollment does), and
    the device's telemetry reaches the gateway."""
    broker, tls = tls_broker
    gateway = _Client(broker, GATEWAY, tls.ca, "gateway-2")
    try:
        assert gateway.connected.wait(30) and gateway.refused == []
        assert gateway.subscribe("$share/gw/suitcase/v1/+/+/telemetry") == [1]
        device = Account("city-dev-2", "dev-secret", ())
        server = _Client(broker, SERVER, tls.ca, "server-2")
        assert server.connected.wait(30) and server.refused == []
        server.subscribe("$CONTROL/dynamic-security/v1/response")
        commands = [
            {"command": "createRole", "rolename": "dev-2"},
            {
                "command": "addRoleACL",
                "rolename": "dev-2",
                "acltype": "publishClientSend",
                "topic": "suitcase/v1/city/city-dev-2/telemetry",
                "allow": True,
            },
            {"command": "createClient", "username": device.username, "password": device.password},
            {"command": "addClientRole", "username": device.username, "rolename": "dev-2"},
        ]
        server.client.publish("$CONTROL/dynamic-security/v1", json.dumps({"commands": commands}), qos=1)
        assert server.got.wait(30), "no answer from the dynamic-security plugin"
        server.close()
        pi = _Client(broker, device, tls.ca, "city-dev-2")
        assert pi.connected.wait(30) and pi.refused == []
        pi.client.publish("suitcase/v1/city/city-dev-2/telemetry", b"[]", qos=1).wait_for_publish(30)
        assert gateway.got.wait(30)
        assert gateway.messages == ["suitcase/v1/city/city-dev-2/telemetry"]
        pi.close()
    finally:
        gateway.close()


def test_plain_tcp_and_a_wrong_ca_are_refused(
    tls_broker: tuple[MosquittoBroker, TlsFiles], tmp_path: Path
) -> None:
    """Test that the listener speaks only TLS, and a client trusting another CA does not connect."""
    broker, _tls = tls_broker
    plain = _Client(broker, GATEWAY, None, "plain")
    try:
        # No CONNACK ever comes: the broker waits for a TLS handshake and drops the connection.
        assert not plain.connected.wait(3) or plain.refused
    finally:
        plain.close()
    other_ca = make_ca(tmp_path / "other")
    stranger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stranger")
    stranger.tls_set(ca_certs=str(other_ca[0]), cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises(ssl.SSLError):
        stranger.connect("localhost", broker.port)


def test_wrong_password_is_refused(tls_broker: tuple[MosquittoBroker, TlsFiles]) -> None:
    """Test that the plugin checks the password hashed by dynsec_state (PBKDF2-SHA512)."""
    broker, tls = tls_broker
    wrong = _Client(broker, Account(GATEWAY.username, "not-it", ()), tls.ca, "wrong")
    try:
        assert wrong.connected.wait(30)
        assert wrong.refused != []
    finally:
        wrong.close()


def test_merge_keeps_device_accounts_and_changes_nothing_twice() -> None:
    """Test that merging the stack's accounts into a plugin state keeps the devices' accounts, and
    a second merge changes nothing (a second `up` writes no file)."""
    state = dynsec_state([GATEWAY])
    state["clients"].append({"username": "city-dev-9", "roles": [{"rolename": "dev-9"}]})
    merged, changed = merge_accounts(state, [GATEWAY, SERVER])
    assert changed
    names = [c["username"] for c in merged["clients"]]
    assert names == ["gw", "city-dev-9", "srv"]
    again, changed = merge_accounts(json.loads(json.dumps(merged)), [GATEWAY, SERVER])
    assert not changed and again == merged
    rotated, changed = merge_accounts(again, [Account("gw", "new-secret", (GATEWAY_ROLE,)), SERVER])
    assert changed
    assert password_matches(next(c for c in rotated["clients"] if c["username"] == "gw"), "new-secret")


def test_move_device_accounts_keeps_their_hashes_and_the_rest() -> None:
    """Test that an older install's devices (a `device-<id>` role with their own topics) leave the
    plugin's state with their PBKDF2 hashes as the password file writes them, and one ACL line of
    their own level; the stack's accounts and any other client or role stay."""
    from server.broker_admin import device_acls
    from server.broker_files import device_acl_lines, password_hash

    state = dynsec_state([GATEWAY])
    hashed = {"password": "ZGlnZXN0", "salt": "c2FsdA==", "iterations": 101}
    state["roles"].append({"rolename": "device-dev-1", "acls": device_acls("city", "dev-1")})
    state["clients"].append({"username": "dev-1", **hashed, "roles": [{"rolename": "device-dev-1"}]})
    state["roles"].append({"rolename": "device-odd", "acls": device_acls("city", "other")})  # not its own
    state["clients"].append({"username": "odd", **hashed, "roles": [{"rolename": "device-odd"}]})
    state["clients"].append({"username": "no-role", **hashed, "roles": []})
    moved_state, moved = move_device_accounts(json.loads(json.dumps(state)))
    assert moved == {"dev-1": ("$7$101$c2FsdA==$ZGlnZXN0", device_acl_lines("city", "dev-1"))}
    assert [c["username"] for c in moved_state["clients"]] == ["gw", "odd", "no-role"]
    assert "device-dev-1" not in [r["rolename"] for r in moved_state["roles"]]
    assert move_device_accounts(moved_state)[1] == {}
    # The moved hash is what the password file holds for that password.
    salt_hash = password_hash("pw", b"salt-of-12-b").split("$")
    client = {"password": salt_hash[4], "salt": salt_hash[3], "iterations": 101}
    assert password_matches(client, "pw")


def test_an_older_secrets_file_gets_the_new_secret(tmp_path: Path) -> None:
    """Test that a secrets.yaml from before the accounts service gets its secret on the next load
    (the others unchanged, mode 0600), and one lacking an original secret is still refused."""
    import yaml

    from kits.errors import ConfigError
    from suitcase.services.secrets import load_or_make_secrets

    path = tmp_path / "secrets.yaml"
    made, new = load_or_make_secrets(path)
    assert new
    old = yaml.safe_load(path.read_text())
    del old["mqtt_accounts"]
    path.write_text(yaml.safe_dump(old))
    upgraded, new = load_or_make_secrets(path)
    assert not new and upgraded.mqtt_gateway == made.mqtt_gateway and len(upgraded.mqtt_accounts) > 30
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_make_secrets(path) == (upgraded, False)
    del old["mqtt_server"]
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="damaged or incomplete"):
        load_or_make_secrets(path)
