"""The broker host's accounts service (``suitcase broker accounts``) and the server's admin that asks
it over MQTT (``server/broker_remote.py``, ``device_accounts=files-remote``): requests applied to
the broker's files, errors answered per request, on a real Mosquitto."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from server.broker_admin import (
    ACCOUNTS_REQUEST_TOPIC,
    ACCOUNTS_RESPONSE_TOPIC,
    BrokerAdminError,
    DeviceAccount,
)
from server.broker_files import BARRIER_USERNAME, PASSWORD_FILE, MosquittoFilesAdmin, login_probe
from server.broker_remote import RemoteFilesAdmin
from suitcase.broker import MosquittoBroker
from suitcase.broker_accounts import handle_request, notify_systemd
from suitcase.services.mosquitto import ACCOUNTS_ROLE, GATEWAY_ROLE, SERVER_ROLE, role_acls
from tests.services.mosquitto import STACK_SERVER, running_accounts_service
from tests.waiting import wait_until


def _accounts(directory: Path) -> set[str]:
    lines = (directory / PASSWORD_FILE).read_text().splitlines()
    return {line.split(":")[0] for line in lines} - {BARRIER_USERNAME}


def test_each_command_gets_its_own_answer(tmp_path: Path) -> None:
    """Test that a request that is not JSON, a command the service does not know and a command the
    files refuse are each answered with an error naming the problem, and that the commands beside
    them in the same request are applied."""
    files = MosquittoFilesAdmin(tmp_path, reload=lambda: None, probe=None)
    bad = handle_request(files, b"\xff not json")["responses"]
    assert len(bad) == 1 and bad[0]["error"].startswith("malformed request")
    account = {"org": "city-a", "device": "d1", "username": "d1", "password": "pw"}
    reply = handle_request(
        files,
        json.dumps(
            {
                "commands": [
                    {"command": "dropTable", "correlationData": "1"},
                    {"command": "createDevices", "correlationData": "2", "accounts": [account]},
                    {"command": "createDevices", "correlationData": "3", "accounts": [account]},
                    {"command": "createDevice", "correlationData": "4", **account, "extra": 1},
                    "not a command",
                ]
            }
        ).encode(),
    )["responses"]
    assert [r["correlationData"] for r in reply] == ["1", "2", "3", "4", ""]
    assert "malformed command" in reply[0]["error"] and "createDevices" in reply[0]["error"]
    assert "error" not in reply[1]
    assert "d1: Client already exists" in reply[2]["error"]
    assert "extra" in reply[3]["error"] and "malformed command" in reply[4]["error"]
    assert _accounts(tmp_path) == {"d1"}


def test_only_the_accounts_role_reads_requests() -> None:
    """Test that of the stack's roles only the accounts service's may read account requests (they
    carry passwords), only the server's may send them and read the replies."""

    def allowed(role: str, kind: str, topic: str) -> bool:
        return any(a["acltype"] == kind and a["topic"] == topic for a in role_acls(role))

    roles = (GATEWAY_ROLE, SERVER_ROLE, ACCOUNTS_ROLE)
    readers = {r for r in roles if allowed(r, "publishClientReceive", ACCOUNTS_REQUEST_TOPIC)}
    senders = {r for r in roles if allowed(r, "publishClientSend", ACCOUNTS_REQUEST_TOPIC)}
    assert (readers, senders) == ({ACCOUNTS_ROLE}, {SERVER_ROLE})
    assert {r for r in roles if allowed(r, "publishClientReceive", ACCOUNTS_RESPONSE_TOPIC)} == {SERVER_ROLE}


@pytest.mark.mosquitto
def test_server_manages_accounts_through_the_service(
    mosquitto_dynsec_files: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the server's admin, knowing only the broker's address and its own account, creates
    a batch of accounts the broker accepts, revokes one (its login is refused on return), that a
    malformed request is answered with an error and the next request served, that the server's
    account never receives the requests, and that a bulk creation over several requests is all or
    nothing."""
    broker = mosquitto_dynsec_files
    files = broker.device_accounts_dir
    assert files is not None
    (tmp_path / "server").mkdir()
    monkeypatch.chdir(tmp_path / "server")  # the server's side: no access to the broker's files
    probe = login_probe(broker.host, broker.port)
    with (
        running_accounts_service(broker),
        _Watcher(broker) as watcher,
    ):
        admin = RemoteFilesAdmin(broker.host, broker.port, STACK_SERVER.username, STACK_SERVER.password)
        try:
            admin.create_devices([DeviceAccount("city-a", f"d{i}", f"d{i}", f"pw-{i}") for i in range(3)])
            assert _accounts(files) == {"d0", "d1", "d2"}
            assert probe("d1", "pw-1") and not probe("d1", "wrong")
            admin.delete_device("d1")
            assert not probe("d1", "pw-1") and _accounts(files) == {"d0", "d2"}

            watcher.client.publish(ACCOUNTS_REQUEST_TOPIC, b"{not json", qos=1)
            reply = wait_until(lambda: watcher.replies, what="the reply to a malformed request")
            assert reply[0]["responses"][0]["error"].startswith("malformed request")
            admin.create_device("city-a", "d5", "d5", "pw-5")
            assert probe("d5", "pw-5")
            assert watcher.requests == []  # the server's account may send requests, not read them

            one_each = RemoteFilesAdmin(
                broker.host, broker.port, STACK_SERVER.username, STACK_SERVER.password, max_request_bytes=1
            )
            try:
                batch = [DeviceAccount("city-a", f"n{i}", f"n{i}", f"pw-n{i}") for i in range(3)]
                with pytest.raises(BrokerAdminError, match="d2: Client already exists"):
                    one_each.create_devices([*batch, DeviceAccount("city-a", "d2", "d2", "x")])
                assert _accounts(files) == {"d0", "d2", "d5"}
                assert not probe("n0", "pw-n0")
            finally:
                one_each.close()
        finally:
            admin.close()


@pytest.mark.mosquitto
def test_no_service_is_a_clear_error(mosquitto_dynsec_files: MosquittoBroker) -> None:
    """Test that without the accounts service running the server's call fails within its timeout,
    saying to start `suitcase broker accounts`."""
    broker = mosquitto_dynsec_files
    admin = RemoteFilesAdmin(
        broker.host, broker.port, STACK_SERVER.username, STACK_SERVER.password, timeout=0.5
    )
    try:
        with pytest.raises(BrokerAdminError, match="suitcase broker accounts"):
            admin.delete_device("d1")
    finally:
        admin.close()


class _Untouchable:
    """A files backend that fails the test if any command reaches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"ping reached the files ({name})")


def test_ping_is_answered_without_touching_the_files() -> None:
    """Test that `ping` is answered, without an error, and changes nothing; a ping with a field it
    does not take is refused as any malformed command is."""
    reply = handle_request(
        _Untouchable(),  # type: ignore[arg-type]
        json.dumps(
            {"commands": [{"command": "ping", "correlationData": "p"}, {"command": "ping", "x": 1}]}
        ).encode(),
    )["responses"]
    assert reply[0] == {"command": "ping", "correlationData": "p"}
    assert "malformed command" in reply[1]["error"] and "ping" in reply[1]["error"]


@pytest.mark.mosquitto
def test_wait_answering_returns_once_the_service_serves(mosquitto_dynsec_files: MosquittoBroker) -> None:
    """Test the readiness wait `suitcase services up` uses: without the service it fails within its
    bound, saying what to start; with the service starting only after the first ping (which nobody
    receives), it pings again and returns once the service answers."""
    broker = mosquitto_dynsec_files
    admin = RemoteFilesAdmin(broker.host, broker.port, STACK_SERVER.username, STACK_SERVER.password)
    try:
        with pytest.raises(BrokerAdminError, match=r"suitcase broker accounts.*journalctl"):
            admin.wait_answering(timeout=0.5)
        pings: list[int] = []
        call = admin._control.call
        with contextlib.ExitStack() as service:

            def ping_then_start(commands: list[dict[str, Any]], timeout: float) -> Any:
                pings.append(len(pings))
                replies = call(commands, timeout)
                if len(pings) == 1:
                    assert replies is None  # published before anyone subscribed: lost
                    service.enter_context(running_accounts_service(broker))
                return replies

            admin._control.call = ping_then_start  # type: ignore[method-assign]
            admin.wait_answering(timeout=120)
            assert len(pings) >= 2
            admin._control.call = call  # type: ignore[method-assign]
            admin.delete_device("nobody")  # served at once: no retry needed
    finally:
        admin.close()


@pytest.mark.mosquitto
def test_service_tells_systemd_it_is_ready(
    mosquitto_dynsec_files: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the service sends READY=1 to $NOTIFY_SOCKET once it is subscribed (its unit is
    Type=notify) and STOPPING=1 when it stops; without the variable nothing is sent, and a socket
    nobody listens on is not fatal."""
    assert not notify_systemd("READY=1", socket_path="")
    assert not notify_systemd("READY=1", socket_path=str(tmp_path / "nobody"))
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(60)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    broker = mosquitto_dynsec_files
    try:
        with running_accounts_service(broker):
            assert manager.recv(100) == b"READY=1"
            admin = RemoteFilesAdmin(broker.host, broker.port, STACK_SERVER.username, STACK_SERVER.password)
            try:  # READY means serving: the first request is answered, no retry
                admin.delete_device("nobody")
            finally:
                admin.close()
        assert manager.recv(100) == b"STOPPING=1"
    finally:
        manager.close()


class _Watcher:
    """The server's account, subscribed to the requests (refused delivery) and the replies."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.requests: list[bytes] = []
        self.replies: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        self.client.username_pw_set(STACK_SERVER.username, STACK_SERVER.password)
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message
        self._broker = broker

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        if message.topic == ACCOUNTS_REQUEST_TOPIC:
            self.requests.append(message.payload)
        else:
            body = json.loads(message.payload)
            if any(r["correlationData"] == "" for r in body["responses"]):
                self.replies.append(body)

    def __enter__(self) -> _Watcher:
        self.client.connect(self._broker.host, self._broker.port)
        self.client.loop_start()
        self.client.subscribe([(ACCOUNTS_REQUEST_TOPIC, 1), (ACCOUNTS_RESPONSE_TOPIC, 1)])
        assert self._ready.wait(10), "the watcher's subscription was not acknowledged"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.loop_stop()
        self.client.disconnect()
