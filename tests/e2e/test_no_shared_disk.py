"""No tier reads a file another tier writes: a gateway and a server with only URLs between them.

``suitcase gateway run`` and ``suitcase server run`` run as two processes in two working
directories, against a real Mosquitto and a real influxd. Readings and a dead letter published to
the broker reach the server's page and API, and the server process (and any child) is watched
through ``/proc/PID/fd`` the whole time: it never opens a file under the gateway's directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from kits.wire import Record, build_topic, encode_pack
from suitcase.broker import free_port
from tests.services.influxdb import InfluxD
from tests.waiting import wait_until

pytestmark = [pytest.mark.influxdb, pytest.mark.mosquitto, pytest.mark.slow]


class FdWatcher(threading.Thread):
    """Samples every file a process and its children hold open, every few milliseconds."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.seen: set[str] = set()
        self.samples = 0
        self._stop_event = threading.Event()

    def _pids(self) -> list[int]:
        pids, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            pids.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            queue.extend(int(c) for c in children)
        return pids

    def run(self) -> None:
        while not self._stop_event.wait(0.005):
            for pid in self._pids():
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    with contextlib.suppress(OSError):  # closed between listdir and readlink
                        self.seen.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, None


def test_gateway_and_server_share_only_urls(mosquitto: Any, influxd: InfluxD, tmp_path: Path) -> None:
    """Test that with the gateway and the server in separate directories, against Mosquitto and
    influxd, the server's page and API show every reading and the dead letter the gateway wrote,
    and the server never opened a file under the gateway's directory."""
    gateway_dir, server_dir = tmp_path / "gateway-host", tmp_path / "server-host"
    gateway_dir.mkdir()
    server_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUITCASE_")}
    procs: list[subprocess.Popen[bytes]] = []
    watcher: FdWatcher | None = None
    try:
        gateway = subprocess.Popen(
            [
                sys.executable, "-m", "suitcase", "gateway", "run", "--quiet",
                "--sink", influxd.sink_url,
                "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port),
                "--client-id", f"gw-{uuid.uuid4().hex[:8]}",
            ],
            cwd=gateway_dir, env=env, stdout=subprocess.DEVNULL,
            stderr=(gateway_dir / "gateway.log").open("wb"),
        )  # fmt: skip
        procs.append(gateway)
        # The gateway's sink creates the meta database the server's start-up probe looks for.
        wait_until(
            lambda: any(
                row[0] == "suitcase" for s in influxd.query("SHOW DATABASES") for row in s.get("values", [])
            ),
            30,
            "the gateway's sink to create the meta database",
        )
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable, "-m", "suitcase", "server", "run",
                "--store", influxd.sink_url,
                "--registry-url", f"sqlite:///{server_dir / 'registry.db'}",
                "--port", str(port),
            ],
            cwd=server_dir, env=env, stdout=subprocess.DEVNULL,
            stderr=(server_dir / "server.log").open("wb"),
        )  # fmt: skip
        procs.append(server)
        watcher = FdWatcher(server.pid)
        watcher.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{base}/api/v1/health")[0] == 200, 60, "the server to answer /health")

        now = time.time()
        sent = {
            device: [
                Record("aarhus", device, "bme280", "temperature", 20.0 + i / 4, now - 60 + i)
                for i in range(12)
            ]
            for device in ("pi-north", "pi-south")
        }
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        try:
            for device, records in sent.items():
                for i in range(0, len(records), 4):
                    client.publish(
                        build_topic("aarhus", device, "telemetry"), encode_pack(records[i : i + 4]), qos=1
                    ).wait_for_publish(10)
            client.publish(
                build_topic("aarhus", "pi-north", "telemetry"), b"not senml", qos=1
            ).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

        def landed() -> bool:
            status, body = _get(f"{base}/api/v1/devices")
            return status == 200 and {d["device"] for d in body["data"]} >= set(sent)

        wait_until(landed, 60, "both devices on the server's API")
        for device, records in sent.items():
            status, body = _get(f"{base}/api/v1/devices/{device}/readings?start={now - 120}")
            assert status == 200 and [r["value"] for r in body["readings"]] == [r.value for r in records], (
                body
            )
            status, body = _get(f"{base}/api/v1/devices/{device}/latest")
            assert status == 200 and body["readings"][0]["value"] == records[-1].value
        wait_until(
            lambda: (_get(f"{base}/api/v1/dead-letters")[1] or {}).get("count", 0) >= 1, 30, "the dead letter"
        )
        status, page = _get(f"{base}/")
        assert status == 200 and "pi-north" in page and "pi-south" in page
    finally:
        if watcher is not None:
            watcher.stop()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert watcher is not None and watcher.samples > 10
    assert any(path.startswith(str(server_dir)) for path in watcher.seen), (
        "the watcher sees the server's files"
    )
    assert (gateway_dir / "suitcase-store.db").exists(), "the gateway keeps its own file in its directory"
    opened = sorted(path for path in watcher.seen if path.startswith(str(gateway_dir)))
    assert opened == [], f"the server opened files of the gateway: {opened}"
