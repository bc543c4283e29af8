"""Device accounts in Mosquitto's password and ACL files (``server/broker_files.py``): what the files
hold, names they cannot hold, a broker that never takes them, and a real Mosquitto taking them."""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from server.broker_admin import BrokerAdminError, DeviceAccount
from server.broker_files import (
    ACL_FILE,
    BARRIER_USERNAME,
    PASSWORD_FILE,
    PID_FILE,
    MosquittoFilesAdmin,
    login_probe,
    signal_reload,
)
from suitcase.broker import MosquittoBroker
from tests.waiting import wait_until


def _admin(directory: Path, probe: Any = None, **kwargs: Any) -> tuple[MosquittoFilesAdmin, list[int]]:
    reloads: list[int] = []
    return MosquittoFilesAdmin(directory, reload=lambda: reloads.append(1), probe=probe, **kwargs), reloads


def test_files_hold_hashes_one_acl_line_and_a_barrier(tmp_path: Path) -> None:
    """Test that a bulk creation writes each device's PBKDF2-SHA512 hash as mosquitto_passwd does,
    one ACL line confining it to its own topic level, a barrier account with no ACL, and reloads
    the broker once; that a deletion takes both lines out; and that an existing name refuses the
    whole creation with nothing written."""
    admin, reloads = _admin(tmp_path)
    admin.create_devices([DeviceAccount("city-a", f"d{i}", f"d{i}", f"pw{i}") for i in range(3)])
    assert reloads == [1]
    hashes = dict(line.split(":", 1) for line in (tmp_path / PASSWORD_FILE).read_text().splitlines())
    assert set(hashes) == {"d0", "d1", "d2", BARRIER_USERNAME}
    kind, iterations, salt, digest = hashes["d1"].split("$")[1:]
    expected = hashlib.pbkdf2_hmac("sha512", b"pw1", base64.b64decode(salt), int(iterations))
    assert (kind, iterations) == ("7", "101") and base64.b64decode(digest) == expected
    acl = (tmp_path / ACL_FILE).read_text()
    assert "user d1\ntopic readwrite suitcase/v1/city-a/d1/#\n" in acl
    assert BARRIER_USERNAME not in acl
    before = (tmp_path / PASSWORD_FILE).read_text()
    with pytest.raises(BrokerAdminError, match="d2: Client already exists"):
        admin.create_devices(
            [DeviceAccount("city-a", "d9", "d9", "x"), DeviceAccount("city-a", "d2", "d2", "x")]
        )
    assert (tmp_path / PASSWORD_FILE).read_text() == before and reloads == [1]
    admin.delete_device("d1")
    admin.delete_device("d1")  # gone already: nothing to do
    assert "d1:" not in (tmp_path / PASSWORD_FILE).read_text()
    assert "user d1\n" not in (tmp_path / ACL_FILE).read_text() and reloads == [1, 1]


@pytest.mark.parametrize("name", ["a b", "a:b", "a\nuser x", "", "suitcase-accounts-barrier"])
def test_names_the_files_cannot_hold_are_refused(tmp_path: Path, name: str) -> None:
    """Test that a name with a space, colon or line break (or the barrier's) is refused with a
    message naming it, before anything is written."""
    admin, reloads = _admin(tmp_path)
    with pytest.raises(BrokerAdminError, match="cannot hold the name"):
        admin.create_device("city-a", name or "x", name, "pw")
    assert (tmp_path / PASSWORD_FILE).read_text() == "" and reloads == []


def test_a_broker_that_never_takes_the_files_refuses_and_leaves_no_accounts(tmp_path: Path) -> None:
    """Test that when the broker never accepts the barrier's new password, the creation fails
    after the timeout with a message naming the config lines to check, and its accounts are taken
    out of the files again (the registry rolls back too)."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    admin, _ = _admin(tmp_path, probe=lambda _u, _p: False, timeout=5, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(BrokerAdminError, match=r"password_file .*devices\.passwd"):
        admin.create_devices([DeviceAccount("city-a", "d0", "d0", "pw")])
    assert "d0:" not in (tmp_path / PASSWORD_FILE).read_text()


def test_reload_without_a_broker_says_what_to_check(tmp_path: Path) -> None:
    """Test that a pid file that is missing gives a message naming it and the setting to change."""
    with pytest.raises(BrokerAdminError, match=r"pid_file.*DEVICE_ACCOUNTS=dynsec"):
        signal_reload(tmp_path / PID_FILE)()


@pytest.mark.mosquitto
def test_mosquitto_takes_created_replaced_and_deleted_accounts(
    mosquitto_dynsec_files: MosquittoBroker,
) -> None:
    """Test that a real Mosquitto (dynamic security beside the files) accepts a created account,
    takes a replaced password at once, drops a live session of a deleted account, and still
    accepts the stack's dynamic-security accounts."""
    broker = mosquitto_dynsec_files
    assert broker.device_accounts_dir is not None
    probe = login_probe(broker.host, broker.port)
    admin = MosquittoFilesAdmin(
        broker.device_accounts_dir, reload=signal_reload(broker.device_accounts_dir / PID_FILE), probe=probe
    )
    admin.create_devices(
        [DeviceAccount("city-a", "d0", "d0", "first"), DeviceAccount("city-a", "d1", "d1", "x")]
    )
    assert probe("d0", "first") and not probe("d0", "second")
    admin.create_device("city-a", "d0", "d0", "second")
    assert probe("d0", "second") and not probe("d0", "first")
    assert probe("suitcase-server", "server-password")

    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d1")
    client.username_pw_set("d1", "x")
    client.on_connect = lambda *args: connected.set() if not args[3].is_failure else None
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(30)
        admin.delete_device("d1")
        assert not probe("d1", "x")
        wait_until(lambda: not client.is_connected(), 30, "the deleted device's session dropped", every=0.05)
    finally:
        client.loop_stop()


def test_files_without_a_directory_is_refused_with_the_setting_to_set() -> None:
    """Test that ``device_accounts=files`` without its directory names the variable to set."""
    from pydantic import ValidationError

    from server.settings import ServerSettings

    with pytest.raises(ValidationError, match="SUITCASE_SERVER_DEVICE_ACCOUNTS_DIR"):
        ServerSettings(device_accounts="files")


def test_a_directory_the_server_cannot_write_is_named(tmp_path: Path) -> None:
    """Test that an account directory that cannot be made gives a message naming it and the setting."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BrokerAdminError, match="SUITCASE_SERVER_DEVICE_ACCOUNTS_DIR"):
        MosquittoFilesAdmin(blocker / "accounts", reload=lambda: None, probe=None)
