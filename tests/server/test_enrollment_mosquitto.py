"""Enrollment against a real Mosquitto with the dynamic-security plugin: a device is confined to
its own topics, and kit return takes its broker account away; with its account in the plugin
(``device_accounts=dynsec``) or in Mosquitto's password and ACL files (``files``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from server.app import create_app
from server.settings import ServerSettings
from suitcase.broker import MosquittoBroker
from tests.server.data import NOW
from tests.server.world import World
from tests.services.mosquitto import DYNSEC_ADMIN
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto

ADMIN_PASSWORD = DYNSEC_ADMIN[1]


@pytest.fixture(params=["dynsec", "files"])
def dynsec_broker(request: pytest.FixtureRequest) -> MosquittoBroker:
    """Mosquitto with dynamic security (tests/services/mosquitto.py), devices' accounts in the
    plugin or in files."""
    name = "mosquitto_dynsec" if request.param == "dynsec" else "mosquitto_dynsec_files"
    broker: MosquittoBroker = request.getfixturevalue(name)
    return broker


def _accounts(broker: MosquittoBroker) -> dict[str, Any]:
    """The server's settings for the broker's device accounts."""
    if broker.device_accounts_dir is None:
        return {"device_accounts": "dynsec"}
    return {"device_accounts": "files", "device_accounts_dir": broker.device_accounts_dir}


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
    assert connected.wait(30), f"{username} could not connect"
    return client, got


def _subscribe(client: mqtt.Client, topic: str) -> None:
    """Subscribe and wait for the broker's answer (its SUBACK): from then on, what is published
    on ``topic`` reaches the client."""
    granted = threading.Event()
    client.on_subscribe = lambda *_args: granted.set()
    client.subscribe(topic, qos=1)
    assert granted.wait(30), f"no answer to the subscription to {topic}"


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
            **_accounts(dynsec_broker),
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
        _subscribe(watcher, "suitcase/v1/#")  # in place before the device publishes (was a 0.3 s sleep)
        dev, dev_got = _client(dynsec_broker, one["mqtt"]["username"], one["mqtt"]["password"], one["device"])
        own = configs[0]["topics"]["telemetry"]
        other = configs[1]["topics"]["telemetry"]
        dev.publish(own, b"mine", qos=1).wait_for_publish(30)
        dev.publish(other, b"forged", qos=1).wait_for_publish(30)
        # The broker handled the forged message before it acknowledged it: once "after", published
        # later, is seen, the forged one was refused or delivered before it. (A refused publish
        # ends the device's connection: paho sends "after" once it has connected again.)
        dev.publish(own, b"after", qos=1)
        wait_until(lambda: (own, b"after") in seen, 30, "its own messages", every=0.05)
        assert (own, b"mine") in seen
        assert (other, b"forged") not in seen
        dev.subscribe(f"suitcase/v1/city-a/{two['device']}/cmd/+", qos=1)
        watcher.publish(f"suitcase/v1/city-a/{two['device']}/cmd/ping", b"{}", qos=1).wait_for_publish(30)
        time.sleep(0.5)  # nothing may arrive (a check of absence: load only makes it weaker)
        assert dev_got == []

        status = f"suitcase/v1/city-a/{one['device']}/status"
        dev.publish(status, b'{"state": "online", "since": 1750000000, "agent": "0.1.0"}', qos=1, retain=True)
        listener = client.app.state.listener  # type: ignore[attr-defined]
        assert listener.wait_applied(1, 30)
        assert world.ok("a-viewer", "GET", f"/devices/{one['device']}")["online"] is True

        world.ok("a-admin", "POST", f"/kits/{kit['id']}/return", json={"condition": "good"})
        wait_until(lambda: not dev.is_connected(), 30, "the device disconnected", every=0.05)
        dev.loop_stop()
        refused = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="again")
        refused.username_pw_set(one["mqtt"]["username"], one["mqtt"]["password"])
        outcome: list[Any] = []
        refused.on_connect = lambda *args: outcome.append(args[3])
        refused.connect(dynsec_broker.host, dynsec_broker.port)
        refused.loop_start()
        wait_until(lambda: bool(outcome), 30, "an outcome", every=0.05)
        assert outcome[0].is_failure
        refused.loop_stop()
        watcher.loop_stop()
