"""The server's dynamic-security client (``server/broker_admin.py``) against a real Mosquitto:
batches sized to the broker's pace, and replies heard again after its connection dropped."""

from __future__ import annotations

import socket

import pytest

from server.broker_admin import BATCH_DEVICES, BATCH_SECONDS, DeviceAccount, DynSecAdmin
from suitcase.broker import MosquittoBroker
from tests.services.mosquitto import DYNSEC_ADMIN
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto


def _accounts(prefix: str, n: int) -> list[DeviceAccount]:
    return [DeviceAccount("city-a", f"{prefix}-{i}", f"{prefix}-{i}", "pw") for i in range(n)]


def test_batches_fit_the_measured_pace(mosquitto_dynsec: MosquittoBroker) -> None:
    """Test that the first batch is small, that the next ones hold as many devices as the last
    pace fits in BATCH_SECONDS (never more than BATCH_DEVICES, never none), and that a creation in
    several batches makes every account."""
    admin = DynSecAdmin(mosquitto_dynsec.host, mosquitto_dynsec.port, *DYNSEC_ADMIN)
    sizes: list[int] = []
    call = admin._call

    def counting(commands: list[dict[str, object]], **kwargs: tuple[str, ...]) -> None:
        sizes.append(len(commands) // 2)
        call(commands, **kwargs)

    try:
        admin._call = counting  # type: ignore[method-assign]
        admin.create_devices(_accounts("pace", 30))
        assert sizes[0] == 4 and sum(sizes) == 30
        assert admin._pace_s is not None and admin._pace_s > 0
        admin._pace_s = BATCH_SECONDS / 20  # 2 commands a device: 10 devices fit
        assert admin._batch_size() == 10
        admin._pace_s = 10 * BATCH_SECONDS
        assert admin._batch_size() == 1
        admin._pace_s = 1e-9
        assert admin._batch_size() == BATCH_DEVICES
    finally:
        admin.close()


def test_replies_are_heard_after_the_connection_dropped(mosquitto_dynsec: MosquittoBroker) -> None:
    """Test that when the admin client's connection drops (as when a long batch starves its
    keepalive), it subscribes to the replies again on reconnecting, so the next creation works."""
    admin = DynSecAdmin(mosquitto_dynsec.host, mosquitto_dynsec.port, *DYNSEC_ADMIN)
    try:
        admin.create_devices(_accounts("before", 2))
        admin._control._connected.clear()
        sock = admin._control._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # paho sees the connection lost and reconnects
        wait_until(admin._control._connected.is_set, 60, "the admin client reconnected", every=0.05)
        admin.create_devices(_accounts("after", 2))
    finally:
        admin.close()
