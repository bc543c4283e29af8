"""Commands with state (server/device_commands.py, the commands API): queued while the device is
offline, sent once when it is online (a lease, also across two server replicas on one PostgreSQL
registry and a real Mosquitto), answered or failed by the reply, expired when nobody answers."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session, select

from kits.wire import CommandReply, CommandRequest, Status
from server.app import create_app
from server.device_commands import dispatch, sweep
from server.settings import ServerSettings
from server.tables import DeviceRow
from suitcase.broker import MosquittoBroker
from tests.server.data import NOW
from tests.server.world import World
from tests.waiting import wait_until


class _Recorder:
    """Stands in for the broker connection where a test looks only at what the server publishes."""

    def __init__(self, connected: bool = True) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.connected = connected

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.connected:
            self.sent.append((topic, json.loads(payload)))
        return self.connected


@pytest.fixture
def sqlite_client(tmp_path: Any) -> Iterator[TestClient]:
    """A server on SQLite only (the registry-bound lease is tested on PostgreSQL too, below)."""
    from gateway.store import SqliteStore

    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'r.db'}", store=str(tmp_path / "s.db"), alert_interval_s=0
    )
    with SqliteStore(settings.store), TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        yield test_client


def _device(client: TestClient, world: World, device: str = "a-dev-1", online: bool = False) -> str:
    with Session(client.app.state.resources.engine) as session:  # type: ignore[attr-defined]
        session.add(DeviceRow(id=device, org_id=world.orgs["a"], registered_at=NOW, online=online))
        session.commit()
    return device


def _engine(client: TestClient) -> Any:
    return client.app.state.resources.engine  # type: ignore[attr-defined]


def _set_online(client: TestClient, device: str, online: bool) -> None:
    with Session(_engine(client)) as session:
        row = session.get(DeviceRow, device)
        assert row is not None
        row.online = online
        session.add(row)
        session.commit()


def test_a_command_waits_for_its_device_then_is_answered(client: TestClient) -> None:
    """Test that a command to an offline device is queued, goes out once when the device is
    online, and that the device's reply makes it answered (ok) or failed (refused), kept in the
    device's history newest first."""
    from server.device_commands import apply_reply

    world = World.build(client)
    device = _device(client, world)
    path = f"/devices/{device}/commands"
    resend = world.ok(
        "a-operator", "POST", path, 201, json={"name": "resend", "args": {"from": 10, "to": 20}}
    )
    ping = world.ok("a-operator", "POST", path, 201, json={"name": "ping"})
    assert (resend["state"], resend["args"], resend["expires_at"]) == (
        "queued",
        {"start": 10.0, "end": 20.0},
        NOW + 86400,
    )
    recorder = _Recorder()
    assert dispatch(_engine(client), recorder, NOW, "r1").sent == []  # offline: nothing goes
    _set_online(client, device, True)
    assert dispatch(_engine(client), recorder, NOW, "r1").sent == [resend["command_id"], ping["command_id"]]
    assert dispatch(_engine(client), recorder, NOW, "r1").sent == []  # once
    (topic, request), _ = recorder.sent
    assert topic == f"suitcase/v1/city-a/{device}/cmd/resend"
    assert request == {"id": resend["command_id"], "args": {"from": 10.0, "to": 20.0}}

    with Session(_engine(client)) as session:
        ok = CommandReply(id=resend["command_id"], ok=True, result={"readings": 7})
        assert apply_reply(session, f"{topic}/reply", ok.model_dump_json().encode(), NOW + 1) is not None
        refused = CommandReply(id=ping["command_id"], ok=False, error="busy")
        ping_reply = f"suitcase/v1/city-a/{device}/cmd/ping/reply"
        assert apply_reply(session, ping_reply, refused.model_dump_json().encode(), NOW + 2) is not None
        # A reply on another command's topic, another device's, or a second reply changes nothing.
        assert apply_reply(session, f"{topic}/reply", refused.model_dump_json().encode(), NOW) is None
        assert apply_reply(session, ping_reply, ok.model_dump_json().encode(), NOW) is None
        assert apply_reply(session, ping_reply, b"\xff not json", NOW) is None
    history = world.ok("a-viewer", "GET", path)
    assert [(c["name"], c["state"], c["reply"], c["error"]) for c in history] == [
        ("ping", "failed", None, "busy"),
        ("resend", "answered", {"readings": 7}, None),
    ]
    one = world.ok("a-viewer", "GET", f"{path}/{resend['command_id']}")
    assert (one["sent_at"], one["answered_at"], one["attempts"]) == (NOW, NOW + 1, 1)


def test_unanswered_commands_expire_and_a_lost_broker_keeps_them_queued(sqlite_client: TestClient) -> None:
    """Test that a command nobody answers expires (queued or sent), with the reason, and that a
    publish the broker connection refuses leaves the command queued for the next round."""
    world = World.build(sqlite_client)
    device = _device(sqlite_client, world, online=True)
    path = f"/devices/{device}/commands"
    short = world.ok("a-operator", "POST", path, 201, json={"name": "identify", "ttl_s": 60})
    down = _Recorder(connected=False)
    assert dispatch(_engine(sqlite_client), down, NOW, "r1").waiting == [short["command_id"]]
    assert world.ok("a-viewer", "GET", f"{path}/{short['command_id']}")["state"] == "queued"
    up = _Recorder()
    expired, done = sweep(_engine(sqlite_client), up, NOW + 10, "r1")
    assert (expired, done.sent) == (0, [short["command_id"]])
    expired, _ = sweep(_engine(sqlite_client), up, NOW + 61, "r1")
    got = world.ok("a-viewer", "GET", f"{path}/{short['command_id']}")
    assert expired == 1 and got["state"] == "expired" and "not answered before its expiry" in got["error"]
    late = world.ok("a-operator", "POST", path, 201, json={"name": "ping", "ttl_s": 5})
    _set_online(sqlite_client, device, False)
    assert sweep(_engine(sqlite_client), up, NOW + 6, "r1")[0] == 1
    assert world.ok("a-viewer", "GET", f"{path}/{late['command_id']}")["state"] == "expired"


BAD = [
    ({"name": "reboot"}, "unknown command 'reboot': use one of ping, identify, resend, logs, config, update"),
    ({"name": "resend", "args": {"from": 20, "to": 10}}, "is before 'from'"),
    ({"name": "resend", "args": {"from": 0, "to": 90000}}, "at most 24 h"),
    ({"name": "resend", "args": {"from": 0}}, "to: Field required"),
    ({"name": "resend", "args": {"from": "yesterday", "to": 1}}, "from: Input should be a valid number"),
    ({"name": "identify", "args": {"seconds": 3600}}, "seconds: Input should be less than or equal to 300"),
    ({"name": "ping", "args": {"force": True}}, "force: Extra inputs are not permitted"),
    ({"name": "logs", "args": {"lines": 0}}, "lines: Input should be greater than or equal to 1"),
    ({"name": "config", "args": {}}, "version: Field required"),
    ({"name": "ping", "ttl_s": 0}, "ttl_s"),
    ({"name": "ping", "ttl_s": 10**9}, "ttl_s"),
    ({"name": "ping", "when": 1}, "when"),
    ({"name": "ping", "args": []}, "args"),
]


def test_bad_commands_are_refused_with_the_reason(sqlite_client: TestClient) -> None:
    """Test that a command with a bad name, bad arguments or a bad expiry is refused with 422
    naming the problem and nothing is queued; that a viewer may read a device's commands but not
    give one, another organisation's member sees no such device, and a revoked device takes none."""
    world = World.build(sqlite_client)
    device = _device(sqlite_client, world)
    path = f"/devices/{device}/commands"
    for body, needle in BAD:
        answer = world.call("a-operator", "POST", path, json=body)
        assert answer.status_code == 422 and needle in answer.text, (body, answer.text)
    assert world.ok("a-viewer", "GET", path) == []
    assert world.call("a-viewer", "POST", path, json={"name": "ping"}).status_code == 403
    assert world.call("b-admin", "POST", path, json={"name": "ping"}).status_code == 404
    assert world.call("b-admin", "GET", path).status_code == 404
    assert world.call("a-operator", "GET", f"{path}/no-such-id").status_code == 404
    world.ok("a-operator", "DELETE", f"/devices/{device}")
    refused = world.call("a-operator", "POST", path, json={"name": "ping"})
    assert refused.status_code == 422 and "revoked" in refused.text


class _Agent:
    """A device on the broker answering every command as the agent does, counting each request."""

    def __init__(self, broker: MosquittoBroker, org: str, device: str) -> None:
        self.received: Counter[str] = Counter()
        self.base = f"suitcase/v1/{org}/{device}"
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"{self.base}/cmd/+", qos=1)
        assert subscribed.wait(30), "the broker did not grant the device its command topics"

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        request = CommandRequest.model_validate_json(message.payload)
        self.received[request.id] += 1
        reply = CommandReply(id=request.id, ok=True, result={"pong": NOW})
        client.publish(f"{message.topic}/reply", reply.model_dump_json(), qos=1)

    def status(self, state: str) -> None:
        payload = Status(state=state, since=NOW, agent="test").encode()  # type: ignore[arg-type]
        self.client.publish(f"{self.base}/status", payload, qos=1, retain=True).wait_for_publish(30)

    def stop(self) -> None:
        self.client.publish(f"{self.base}/status", b"", qos=1, retain=True).wait_for_publish(30)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.postgres
@pytest.mark.mosquitto
def test_two_replicas_dispatch_each_command_once(
    mosquitto: MosquittoBroker, postgres_db: str, tmp_path: Any
) -> None:
    """Test that with two server replicas on one PostgreSQL registry, both listening to the same
    Mosquitto, every command queued while the device was offline reaches it exactly once when it
    comes online (both replicas race for it), and every one is answered; the replicas' sweeps
    racing afterwards send nothing again."""
    from gateway.store import SqliteStore

    settings = ServerSettings(
        registry_url=postgres_db,
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        command_sweep_s=0.2,
    )
    with (
        SqliteStore(settings.store),
        TestClient(create_app(settings, clock=lambda: NOW)) as one,
        TestClient(create_app(settings, clock=lambda: NOW)) as two,
    ):
        world = World.build(one)
        device = _device(one, world, device=f"a-twin-{id(one) % 10000}")
        for app in (one, two):
            assert app.app.state.listener.subscribed.wait(30)  # type: ignore[attr-defined]
        given = [
            world.ok("a-operator", "POST", f"/devices/{device}/commands", 201, json={"name": "ping"})[
                "command_id"
            ]
            for _ in range(20)
        ]
        agent = _Agent(mosquitto, "city-a", device)
        try:
            agent.status("online")

            def all_answered() -> bool:
                history = world.ok("a-viewer", "GET", f"/devices/{device}/commands")
                return all(c["state"] == "answered" for c in history)

            wait_until(all_answered, timeout=60, what="all 20 commands answered", every=0.1)
            threading.Event().wait(1.0)  # five more sweep rounds of each replica
            assert sorted(agent.received) == sorted(given)
            assert set(agent.received.values()) == {1}, agent.received
        finally:
            agent.stop()


@pytest.mark.mosquitto
def test_a_command_held_by_a_dead_replica_goes_out_when_its_lease_ends(
    mosquitto: MosquittoBroker, tmp_path: Any
) -> None:
    """Test that a command a replica claimed and died holding (its lease taken, never sent) goes
    out once when the lease ends: the live replica, finding it held when the device comes online,
    sweeps again at the lease's end rather than after its sweep period (here far longer than the
    bound waited)."""
    from gateway.store import SqliteStore
    from server.device_commands import LEASE_S, _claim
    from server.tables import DeviceCommandRow

    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'r.db'}",
        store=str(tmp_path / "s.db"),
        alert_interval_s=0,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        command_sweep_s=3600.0,  # only the lease's end can wake this replica's sweep in time
    )
    with SqliteStore(settings.store), TestClient(create_app(settings)) as live:
        world = World.build(live)
        device = _device(live, world, device="a-orphan-1")
        assert live.app.state.listener.subscribed.wait(30)  # type: ignore[attr-defined]
        given = world.ok("a-operator", "POST", f"/devices/{device}/commands", 201, json={"name": "ping"})
        with Session(_engine(live)) as session:
            row = session.exec(
                select(DeviceCommandRow).where(DeviceCommandRow.command_id == given["command_id"])
            ).one()
        assert row.id is not None and row.state == "queued"
        # Another replica claims it, then dies before publishing or recording anything.
        assert _claim(_engine(live), row.id, "replica-that-died", time.time())
        agent = _Agent(mosquitto, "city-a", device)
        try:
            agent.status("online")

            def answered() -> bool:
                return (
                    world.ok("a-viewer", "GET", f"/devices/{device}/commands/{given['command_id']}")["state"]
                    == "answered"
                )

            wait_until(answered, timeout=LEASE_S + 60, what="the orphaned command answered", every=0.1)
            assert agent.received == {given["command_id"]: 1}
        finally:
            agent.stop()
