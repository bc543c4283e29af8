"""Enrollment against a real Mosquitto with the dynamic-security plugin: a device is confined to
its own topics, and kit return takes its broker account away."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from server.app import create_app
from server.settings import ServerSettings
from suitcase.broker import MosquittoBroker, find_mosquitto
from tests.server.data import NOW
from tests.server.world import World
from tests.services import require_service

pytestmark = pytest.mark.mosquitto

PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN_PASSWORD = "dynsec-admin-password"


@pytest.fixture()
def dynsec_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto that authenticates every client through the dynamic-security plugin."""
    if find_mosquitto() is None or not PLUGIN.exists():
        require_service("mosquitto with dynamic security", "apt-get install mosquitto mosquitto-clients")
    # Mosquitto started as root drops to the mosquitto user, which must read and rewrite the
    # plugin's file: pytest's tmp dirs are private to root.
    root = Path(tempfile.mkdtemp(prefix="suitcase-dynsec-"))
    config = root / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(config), "admin", ADMIN_PASSWORD],
        check=True,
        capture_output=True,
    )
    # The server's account also sends commands to devices.
    state = json.loads(config.read_text())
    admin = next(r for r in state["roles"] if r["rolename"] == "admin")
    admin["acls"].append({"acltype": "publishClientSend", "topic": "suitcase/v1/+/+/cmd/#", "allow": True})
    config.write_text(json.dumps(state))
    (root / "mosquitto").mkdir()
    if os.geteuid() == 0:
        for path in (root, config, root / "mosquitto"):
            shutil.chown(path, "mosquitto")
    broker = MosquittoBroker(
        root / "mosquitto",
        allow_anonymous=False,
        extra_config=f"plugin {PLUGIN}\nplugin_opt_config_file {config}\n",
    )
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(root, ignore_errors=True)


def _client(
    broker: MosquittoBroker, username: str, password: str, name: str
) -> tuple[mqtt.Client, list[Any]]:
    got: list[Any] = []
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    client.username_pw_set(username, password)
    client.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    client.on_connect = lambda *args: connected.set() if not args[3].is_failure else None
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(5), f"{username} could not connect"
    return client, got


def _wait(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_enrolled_device_is_confined_to_its_topics(
    dynsec_broker: MosquittoBroker, tmp_path: Path, store: SqliteStore, settings: ServerSettings
) -> None:
    """Test that an enrolled device's telemetry arrives, its publish to another device's topic
    does not, it cannot subscribe there, the server sees its status, and kit return locks it out."""
    settings = settings.model_copy(
        update={
            "open_reads": False,
            "mqtt_host": dynsec_broker.host,
            "mqtt_port": dynsec_broker.port,
            "mqtt_username": "admin",
            "mqtt_password": ADMIN_PASSWORD,
            "mqtt_dynsec": True,
        }
    )
    settings = ServerSettings.model_validate(settings.model_dump())
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        world = World.build(client)
        kit = world.ok(
            "a-admin", "POST", "/kits", 201, json={"inventory_code": "MQ-1", "profile_id": "starter"}
        )
        dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "hall"})
        configs = []
        for claim in kit["claim_codes"][:2]:
            world.ok(
                "a-operator",
                "POST",
                "/claims/bind",
                201,
                json={"claim_code": claim["code"], "deployment_id": dep["id"]},
            )
            configs.append(
                client.post("/api/v1/claims/poll", json={"claim_code": claim["code"]}).json()["device"]
            )
        one, two = (c["config"] for c in configs)
        assert one["mqtt"]["port"] == dynsec_broker.port

        watcher, seen = _client(dynsec_broker, "admin", ADMIN_PASSWORD, "watcher")
        watcher.subscribe("suitcase/v1/#", qos=1)
        time.sleep(0.3)
        dev, dev_got = _client(dynsec_broker, one["mqtt"]["username"], one["mqtt"]["password"], one["device"])
        own = configs[0]["topics"]["telemetry"]
        other = configs[1]["topics"]["telemetry"]
        dev.publish(own, b"mine", qos=1).wait_for_publish(5)
        dev.publish(other, b"forged", qos=1).wait_for_publish(5)
        dev.subscribe(f"suitcase/v1/city-a/{two['device']}/cmd/+", qos=1)
        assert _wait(lambda: (own, b"mine") in seen)
        watcher.publish(f"suitcase/v1/city-a/{two['device']}/cmd/ping", b"{}", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert (other, b"forged") not in seen
        assert dev_got == []

        status = f"suitcase/v1/city-a/{one['device']}/status"
        dev.publish(status, b'{"state": "online", "since": 1750000000, "agent": "0.1.0"}', qos=1, retain=True)
        listener = client.app.state.listener  # type: ignore[attr-defined]
        assert listener.wait_applied(1, 5)
        assert world.ok("a-viewer", "GET", f"/devices/{one['device']}")["online"] is True

        world.ok("a-admin", "POST", f"/kits/{kit['id']}/return", json={"condition": "good"})
        assert _wait(lambda: not dev.is_connected())
        dev.loop_stop()
        refused = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="again")
        refused.username_pw_set(one["mqtt"]["username"], one["mqtt"]["password"])
        outcome: list[Any] = []
        refused.on_connect = lambda *args: outcome.append(args[3])
        refused.connect(dynsec_broker.host, dynsec_broker.port)
        refused.loop_start()
        assert _wait(lambda: bool(outcome))
        assert outcome[0].is_failure
        refused.loop_stop()
        watcher.loop_stop()
