"""More gateways (#16 item 4): kill -9 of one of three supervised gateways in a shared group, mid
stream: its share waits in its persistent session and the restarted worker (same client id)
drains it; 0 readings lost, 0 doubled, and the other members kept taking their share meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gateway.store import SqliteStore
from suitcase.broker import MosquittoBroker, find_mosquitto
from tests.gateway.gwtools import publish_all, six_pack
from tests.services import require_service
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.timeout(300)]

ORG = "group-city"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    b = MosquittoBroker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


def _workers(supervisor: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The supervisor's gateway processes (its direct children)."""
    return [p for p in psutil.Process(supervisor.pid).children() if "gateway" in " ".join(p.cmdline())]


def test_kill_9_of_one_of_three_gateways_loses_and_doubles_nothing(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that 12,000 readings through three gateways in one group land exactly once although one
    gateway is killed with SIGKILL mid-stream, and that the supervisor restarts it."""
    store_path = tmp_path / "s.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=str(store_path),
        SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-g-{uuid.uuid4().hex[:6]}",
        SUITCASE_GATEWAY_MQTT_VERSION="5",
        SUITCASE_GATEWAY_BATCH_MESSAGES="200",
    )
    cmd = [sys.executable, "-m", "suitcase", "gateway", "run", "--workers", "3", "--group", "pool"]
    supervisor = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = 2000
    messages = [six_pack(ORG, f"dev-{i % 20}", i // 20) for i in range(n)]
    try:
        wait_until(
            lambda: len(_workers(supervisor)) == 3 and store_path.exists(), timeout=30, what="3 workers"
        )
        time.sleep(2.0)  # each worker subscribed (they start in parallel)
        victim = _workers(supervisor)[1]
        reader = SqliteStore(store_path)
        feeder = threading.Thread(target=publish_all, args=(broker.host, broker.port, messages), daemon=True)
        feeder.start()
        wait_until(lambda: reader.count_readings() >= 6 * n // 5, timeout=60, what="a fifth of the stream")
        victim.send_signal(signal.SIGKILL)
        killed_at = reader.count_readings()
        feeder.join(120)
        assert not feeder.is_alive(), "the broker did not take the whole stream"
        assert killed_at < 6 * n, "the kill came too late to test anything"
        wait_until(
            lambda: reader.count_readings() >= 6 * n, timeout=120, what="every reading, after the restart"
        )
        time.sleep(1.0)
        assert reader.count_readings() == 6 * n  # none doubled
        for d in range(20):
            got = reader.readings(ORG, f"dev-{d}", 0, 2e9, limit=10**6)
            assert len(got) == len({(r.sensor, r.quantity, r.time) for r in got}) == 6 * len(range(d, n, 20))
        assert victim.pid not in {p.pid for p in _workers(supervisor)}
        assert len(_workers(supervisor)) == 3  # restarted with the same client id
        reader.close()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
