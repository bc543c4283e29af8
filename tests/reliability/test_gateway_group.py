"""More gateways (#16 item 4): one of three gateways in a shared group is killed with SIGKILL
mid-stream. Without a restart its share moves to the others (the lowest live member adopts its
session, gateway/group.py): 0 readings lost, 0 doubled. With the supervisor, the restarted worker
resumes its own session."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gateway.store import SqliteStore
from suitcase.broker import MosquittoBroker, find_mosquitto, free_port
from tests.gateway.gwtools import publish_all, six_pack
from tests.services import require_service
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.timeout(300)]

ORG = "group-city"
DEVICES = 20


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if find_mosquitto() is None:
        require_service("mosquitto", "apt-get install mosquitto mosquitto-clients")
    b = MosquittoBroker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


def _metric(port: int, name: str) -> float:
    """The sum of metric ``name`` (every label) on a gateway's /metrics, 0 if absent or unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def _check_exactly_once(reader: SqliteStore, n: int) -> None:
    """Every reading of the ``n`` packs is in the store once (the count, and each key once)."""
    assert reader.count_readings() == 6 * n
    for d in range(DEVICES):
        got = reader.readings(ORG, f"dev-{d}", 0, 2e9, limit=10**6)
        assert len(got) == len({(r.sensor, r.quantity, r.time) for r in got}) == 6 * len(range(d, n, DEVICES))


def test_kill_9_of_one_of_three_gateways_moves_its_share_to_the_others(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that 18,000 readings through three gateways in one group land exactly once although one
    gateway is killed with SIGKILL mid-stream and never restarted: the two others write its share,
    what it had not acknowledged and what the broker had queued for it, through its adopted session."""
    store_path = tmp_path / "s.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=str(store_path),
        SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
        SUITCASE_GATEWAY_MQTT_VERSION="5",
        SUITCASE_GATEWAY_BATCH_MESSAGES="200",
    )
    run = f"gw-{uuid.uuid4().hex[:6]}"
    ports = [free_port() for _ in range(3)]
    command = [sys.executable, "-m", "suitcase", "gateway", "run", "--quiet", "--group", "pool"]
    gateways = [
        subprocess.Popen(
            [*command, "--client-id", f"{run}-{i}", "--metrics-port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, port in enumerate(ports)
    ]
    n = 3000
    messages = [six_pack(ORG, f"dev-{i % DEVICES}", i // DEVICES) for i in range(n)]
    victim, survivors = gateways[0], ports[1:]  # the lowest client id: the next one adopts
    try:
        wait_until(
            lambda: all(_metric(p, "suitcase_gateway_connected") == 1 for p in ports),
            timeout=60,
            what="3 gateways subscribed",
        )
        reader = SqliteStore(store_path)
        feeder = threading.Thread(target=publish_all, args=(broker.host, broker.port, messages), daemon=True)
        feeder.start()
        wait_until(lambda: reader.count_readings() >= 6 * n // 5, timeout=60, what="a fifth of the stream")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # The survivors' counts first, then the store's: what they write in between is in both, so
        # the survivors' writes after the first read cover what the store lacked at the second.
        written_before = [_metric(p, "suitcase_gateway_points_written_total") for p in survivors]
        killed_at = reader.count_readings()
        feeder.join(120)
        assert not feeder.is_alive(), "the broker did not take the whole stream"
        assert killed_at < 6 * n, "the kill came too late to test anything"
        wait_until(
            lambda: reader.count_readings() >= 6 * n, timeout=60, what="every reading, without a restart"
        )
        wait_until(
            lambda: sum(_metric(p, 'suitcase_gateway_adoptions_total{outcome="drained"}') for p in survivors),
            timeout=30,
            what="the dead member's session drained",
        )
        _check_exactly_once(reader, n)
        written_after = [
            _metric(p, "suitcase_gateway_points_written_total") - b
            for p, b in zip(survivors, written_before, strict=True)
        ]
        adopted = [_metric(p, "suitcase_gateway_adopted_messages_total") for p in survivors]
        # What the store lacked at the kill was written by the two survivors (rewrites count too).
        assert sum(written_after) >= 6 * n - killed_at
        assert all(w > 0 for w in written_after)
        assert adopted[0] > 0 and adopted[1] == 0  # the victim's share came through gw-1's adoption
        reader.close()
    finally:
        for g in gateways:
            if g.poll() is None:
                g.send_signal(signal.SIGTERM)
        for g in gateways:
            try:
                g.wait(30)
            except subprocess.TimeoutExpired:
                g.kill()


def _workers(supervisor: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The supervisor's gateway processes (its direct children)."""
    return [p for p in psutil.Process(supervisor.pid).children() if "gateway" in " ".join(p.cmdline())]


def test_kill_9_of_a_supervised_gateway_loses_and_doubles_nothing(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Test that 6,000 readings through a supervised pool of two gateways land exactly once although
    one is killed with SIGKILL mid-stream, and that the supervisor restarts it (same client id)."""
    store_path = tmp_path / "s.db"
    env = dict(
        os.environ,
        SUITCASE_GATEWAY_STORE=str(store_path),
        SUITCASE_GATEWAY_MQTT_PORT=str(broker.port),
        SUITCASE_GATEWAY_CLIENT_ID=f"gw-s-{uuid.uuid4().hex[:6]}",
        SUITCASE_GATEWAY_MQTT_VERSION="5",
        SUITCASE_GATEWAY_BATCH_MESSAGES="200",
    )
    metrics = free_port()
    cmd = [sys.executable, "-m", "suitcase", "gateway", "run", "--workers", "2", "--group", "pool"]
    cmd += ["--metrics-port", str(metrics)]
    supervisor = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = 1000
    messages = [six_pack(ORG, f"dev-{i % DEVICES}", i // DEVICES) for i in range(n)]
    try:
        wait_until(
            lambda: all(_metric(metrics + i, "suitcase_gateway_connected") == 1 for i in range(2)),
            timeout=60,
            what="2 workers subscribed",
        )
        victim = _workers(supervisor)[1]
        reader = SqliteStore(store_path)
        feeder = threading.Thread(target=publish_all, args=(broker.host, broker.port, messages), daemon=True)
        feeder.start()
        wait_until(lambda: reader.count_readings() >= 6 * n // 5, timeout=60, what="a fifth of the stream")
        victim.send_signal(signal.SIGKILL)
        feeder.join(120)
        assert not feeder.is_alive(), "the broker did not take the whole stream"
        wait_until(lambda: reader.count_readings() >= 6 * n, timeout=60, what="every reading")
        _check_exactly_once(reader, n)
        wait_until(
            lambda: (
                len(_workers(supervisor)) == 2 and victim.pid not in {p.pid for p in _workers(supervisor)}
            ),
            timeout=30,
            what="the killed worker restarted",
        )
        reader.close()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
