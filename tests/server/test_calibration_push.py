"""The server sends calibration to devices as a new device config version with the ``config``
command (server/calibration_push.py, server/device_config.py): through a real Mosquitto with
dynamic security, and held as queued without a broker."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlmodel import Session

from gateway.store import SqliteStore
from kits.models import DeviceConfig
from kits.wire import CommandReply, CommandRequest, Status
from server.app import create_app
from server.device_commands import dispatch
from server.settings import ServerSettings
from server.tables import DeviceRow
from suitcase.broker import MosquittoBroker
from tests.server.data import NOW
from tests.server.world import World
from tests.services.mosquitto import DYNSEC_ADMIN
from tests.waiting import wait_until


def _enroll(client: TestClient, world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register a kit, bind its first Pi, and return the kit and the device's issued config."""
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "CAL-1", "profile_id": "starter"})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "hall"})
    claim = kit["claim_codes"][0]["code"]
    body = {"claim_code": claim, "deployment_id": dep["id"]}
    world.ok("a-operator", "POST", "/claims/bind", 201, json=body)
    return kit, client.post("/api/v1/claims/poll", json={"claim_code": claim}).json()["device"]


class _Device:
    """A device on the broker with its own credentials that answers ``config`` as the agent does:
    it validates the merged config (edge.agent.Agent.apply_config) and replies on cmd/config/reply."""

    def __init__(self, broker: MosquittoBroker, config: dict[str, Any]) -> None:
        self.config = config
        self.requests: list[CommandRequest] = []
        self.version: int | None = None
        connected = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config["device"])
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.username_pw_set(config["mqtt"]["username"], config["mqtt"]["password"])
        self.client.on_connect = lambda *args: connected.set() if not args[3].is_failure else None
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(30), "the device could not log in with its credentials"
        base = f"suitcase/v1/{config['org']}/{config['device']}"
        self.client.subscribe(f"{base}/cmd/+", qos=1)
        assert subscribed.wait(30), "the broker did not grant the device its command topics"
        online = Status(state="online", since=NOW, agent="test").encode()
        self.client.publish(f"{base}/status", online, qos=1, retain=True).wait_for_publish(30)

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        request = CommandRequest.model_validate_json(message.payload)
        self.requests.append(request)
        try:
            new = DeviceConfig.model_validate({**self.config, **request.args})
        except ValidationError as exc:
            reply = CommandReply(id=request.id, ok=False, error=f"config refused, nothing changed: {exc}")
        else:
            self.version = max((c.version for c in new.calibration), default=None)
            result = {"applied": sorted(request.args), "calibration_version": self.version}
            reply = CommandReply(id=request.id, ok=True, result=result)
        client.publish(f"{message.topic}/reply", reply.model_dump_json(), qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.mosquitto
def test_calibration_reaches_the_device_and_its_reply_is_recorded(
    mosquitto_dynsec: MosquittoBroker, store: SqliteStore, settings: ServerSettings
) -> None:
    """Test that POSTing a calibration sends the Pi's calibration to its enrolled device as a
    ``config`` command, through the broker's ACL, and that the device's reply (applied, or
    refused) shows in the kit's deliveries."""
    settings = ServerSettings.model_validate(
        {
            **settings.model_dump(),
            "mqtt_host": mosquitto_dynsec.host,
            "mqtt_port": mosquitto_dynsec.port,
            "mqtt_username": DYNSEC_ADMIN[0],
            "mqtt_password": DYNSEC_ADMIN[1],
            "mqtt_dynsec": True,
        }
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        world = World.build(client)
        kit, issued = _enroll(client, world)
        listener = client.app.state.listener  # type: ignore[attr-defined]
        assert listener.subscribed.wait(30), "the server's listener did not subscribe"
        device = _Device(mosquitto_dynsec, issued["config"])
        device_path = f"/devices/{issued['config']['device']}"
        wait_until(lambda: world.ok("a-viewer", "GET", device_path)["online"], what="the device online")
        sensor = issued["config"]["sensors"][0]["name"]
        cal = {"pi_index": 1, "sensor": sensor, "quantity": "temperature", "offset": -0.4, "scale": 1.01}
        world.ok("a-operator", "POST", f"/kits/{kit['id']}/calibrations", 201, json=cal)
        cal2 = {**cal, "offset": -0.5}
        world.ok("a-operator", "POST", f"/kits/{kit['id']}/calibrations", 201, json=cal2)

        deliveries = f"/kits/{kit['id']}/calibrations/deliveries"
        wait_until(
            lambda: all(d["state"] == "answered" for d in world.ok("a-viewer", "GET", deliveries)),
            what="every delivery ok",
            every=0.05,
        )
        newest, first = world.ok("a-viewer", "GET", deliveries)
        assert (newest["version"], newest["device_id"], newest["replied_at"]) == (
            2,
            issued["config"]["device"],
            NOW,
        )
        assert first["version"] == 1
        assert [r.id for r in device.requests] == [first["command_id"], newest["command_id"]]
        assert device.requests[-1].args["calibration"] == [
            {
                "sensor": sensor,
                "quantity": "temperature",
                "offset": -0.5,
                "scale": 1.01,
                "version": 2,
                "date": None,
            }
        ]
        assert device.requests[-1].args["config_version"] == newest["config_version"] == 3
        assert device.version == 2

        # A calibration of a sensor the device does not have: refused, the server says why.
        bad = {**cal, "sensor": "not_on_this_pi"}
        world.ok("a-operator", "POST", f"/kits/{kit['id']}/calibrations", 201, json=bad)
        assert world.ok("a-viewer", "GET", deliveries)[0]["state"] == "failed"
        assert "not_on_this_pi" in world.ok("a-viewer", "GET", deliveries)[0]["error"]
        device.stop()


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, payload))
        return True


def test_without_a_broker_the_calibration_waits_for_the_device(client: TestClient) -> None:
    """Test that without MQTT the calibration is stored and its config version queued, that only
    the newest version waits, and that it goes out as a ``config`` command once the device is online."""
    world = World.build(client)
    kit, issued = _enroll(client, world)
    sensor = issued["config"]["sensors"][0]["name"]
    cal = {"pi_index": 1, "sensor": sensor, "quantity": "temperature", "offset": 0.3}
    world.ok("a-operator", "POST", f"/kits/{kit['id']}/calibrations", 201, json=cal)
    world.ok("a-operator", "POST", f"/kits/{kit['id']}/calibrations", 201, json={**cal, "offset": 0.2})
    deliveries = world.ok("a-viewer", "GET", f"/kits/{kit['id']}/calibrations/deliveries")
    assert [(d["state"], d["version"]) for d in deliveries] == [("queued", 2), ("expired", 1)]

    recorder = _Recorder()
    device_id = issued["config"]["device"]
    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        device = session.get(DeviceRow, device_id)
        assert device is not None
        device.online = True
        session.add(device)
        session.commit()
    assert len(dispatch(engine, recorder, NOW, "replica").sent) == 1
    [(topic, payload)] = recorder.sent
    assert topic == f"suitcase/v1/city-a/{device_id}/cmd/config"
    request = json.loads(payload)
    assert request["id"] == deliveries[0]["command_id"]
    assert request["args"]["calibration"][0]["offset"] == 0.2
    assert request["args"]["config_version"] == 3 and request["args"]["sensors"][0]["name"] == sensor
    assert world.ok("a-viewer", "GET", f"/kits/{kit['id']}/calibrations/deliveries")[0]["state"] == "sent"
