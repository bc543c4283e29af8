"""End to end: emulated Pis -> broker -> gateway -> store -> server API, on each kind of broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from edge.agent import Agent
from edge.emulated import build_bus
from gateway.consumer import Gateway
from gateway.store import SqliteStore
from kits.models import DeviceConfig, DeviceSensor, MqttSettings
from kits.wire import build_topic
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings
from suitcase.broker import free_port
from tests.waiting import wait_until

ORG = "aarhus"


@pytest.fixture(params=["embedded", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The broker under test: a fresh embedded one, or the session's real Mosquitto."""
    if request.param == "embedded":
        yield request.getfixturevalue("embedded_broker")
    else:
        yield request.getfixturevalue("mosquitto")


@pytest.fixture()
def stack(broker: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Gateway, store and server running against ``broker``."""
    store_path = tmp_path / "store.sqlite"
    store = SqliteStore(store_path)
    gateway = Gateway(store, host=broker.host, port=broker.port, client_id=f"gw-{tmp_path.name}"[:60])
    gateway.start()
    port = free_port()
    settings = ServerSettings(store=str(store_path), registry_url=f"sqlite:///{tmp_path / 'registry.sqlite'}")
    server = ServerThread(create_app(settings), "127.0.0.1", port)
    server.start()
    try:
        yield {"broker": broker, "store": store, "api": f"http://127.0.0.1:{port}/api/v1"}
    finally:
        server.stop()
        gateway.stop()
        store.close()


def _agent(device: str, broker: Any, seed: int) -> Agent:
    config = DeviceConfig(
        device=device,
        org=ORG,
        kit_profile="starter",
        mqtt=MqttSettings(host=broker.host, port=broker.port),
        sensors=[DeviceSensor(name="bme280", part="bme280", address=0x77, interval_s=1.0)],
        bus="emulated",
        publish_interval_s=1.0,
    )
    return Agent(config, build_bus(config.sensors, "office-day", clock=time.time, seed=seed))


def test_readings_of_two_devices_reach_the_api_and_bad_payloads_are_dead_lettered(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """Test that two emulated Pis' readings are stored and served within 10 s, and that a bad
    payload lands in the dead-letter table with its reason."""
    suffix = tmp_path.name[-6:].replace("_", "-").strip("-") or "x"
    devices = [f"e2e-pi-1-{suffix}", f"e2e-pi-2-{suffix}"]
    agents = [_agent(device, stack["broker"], seed) for seed, device in enumerate(devices)]
    for agent in agents:
        agent.start()
    try:
        started = time.time() - 5
        with httpx.Client(base_url=stack["api"], timeout=60) as api:

            def both_have_readings() -> bool:
                for device in devices:
                    reply = api.get(f"/devices/{device}/readings", params={"start": started})
                    if reply.status_code != 200 or not reply.json()["readings"]:
                        return False
                return True

            wait_until(both_have_readings, 30, "readings of both devices returned by the API", every=0.2)
            readings = api.get(f"/devices/{devices[0]}/readings", params={"start": started}).json()[
                "readings"
            ]
            quantities = {r["quantity"] for r in readings}
            assert quantities == {"temperature", "humidity", "pressure"}
            for reading in readings:
                if reading["quantity"] == "temperature":
                    assert 10 < reading["value"] < 35

            seen = {d["device"] for d in api.get("/devices").json()["data"]}
            assert set(devices) <= seen

            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bad-{suffix}")
            publisher.connect(stack["broker"].host, stack["broker"].port)
            publisher.loop_start()
            topic = build_topic(ORG, devices[0], "telemetry")
            publisher.publish(
                topic, b'[{"bn":"urn:dev:suitcase:intruder:","n":"x/temperature","v":1}]', qos=1
            ).wait_for_publish(5)
            publisher.publish(topic, b"this is not json", qos=1).wait_for_publish(5)
            publisher.loop_stop()
            publisher.disconnect()

            def dead_letters() -> list[dict[str, Any]]:
                letters: list[dict[str, Any]] = api.get("/dead-letters").json()["data"]
                mine = [d for d in letters if d["topic"] == topic]
                return mine if len(mine) >= 2 else []

            letters = wait_until(dead_letters, 30, "two dead letters for the bad payloads", every=0.2)
            codes = {d["code"]: d["reason"] for d in letters}
            assert "intruder" in codes["device_mismatch"]
            assert "not JSON" in codes["not_json"]
    finally:
        for agent in agents:
            agent.stop()
