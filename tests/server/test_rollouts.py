"""Agent releases and staged rollouts on the server (server/agent_releases.py, server/rollouts.py).

The rings and the stop rule are driven here with the devices' replies through the real reply path
(``server.device_commands.apply_reply``); tests/e2e/test_rollout.py runs real agents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.store import SqliteStore
from kits.wire import CommandReply
from server.app import create_app
from server.device_commands import apply_reply, dispatch, sweep
from server.settings import ServerSettings
from server.tables import DeviceCommandRow, DeviceRow, OrganisationRow
from tests.agent_wheels import AgentWheel
from tests.server.data import NOW
from tests.server.world import PASSWORD, World


class _Recorder:
    """The broker connection, where a test looks only at what the server publishes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, json.loads(payload)))
        return True


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'r.db'}",
        store=str(tmp_path / "s.db"),
        alert_interval_s=0,
        public_url="https://suitcase.example.org",
        max_body_bytes=100_000,  # a release is larger: its route has its own bound
    )
    with SqliteStore(settings.store), TestClient(create_app(settings, clock=lambda: NOW)) as client:
        yield client


def _engine(client: TestClient) -> Any:
    return client.app.state.resources.engine  # type: ignore[attr-defined]


def _admin(client: TestClient) -> dict[str, str]:
    """Log the global admin in (a session: tokens never carry global rights); return CSRF headers."""
    login = client.post("/api/v1/auth/login", json={"email": "root@example.org", "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"X-CSRF-Token": login.json()["csrf"]}


def _devices(client: TestClient, world: World, names: dict[str, str], version: str = "0.1.0") -> None:
    with Session(_engine(client)) as session:
        for device, org in names.items():
            session.add(
                DeviceRow(
                    id=device, org_id=world.orgs[org], registered_at=NOW, online=True, agent_version=version
                )
            )
        session.commit()


def _upload(client: TestClient, csrf: dict[str, str], wheel: AgentWheel) -> Any:
    return client.post(
        f"/api/v1/agent-releases?filename={wheel.path.name}",
        content=wheel.path.read_bytes(),
        headers={**csrf, "Content-Type": "application/octet-stream"},
    )


def _answer(client: TestClient, command_id: str, ok: bool, at: float, error: str | None = None) -> None:
    with Session(_engine(client)) as session:
        row = session.exec(select(DeviceCommandRow).where(DeviceCommandRow.command_id == command_id)).one()
        device = session.get(DeviceRow, row.device_id)
        org = session.get(OrganisationRow, device.org_id if device else 0)
        assert device is not None and org is not None
        reply = CommandReply(id=command_id, ok=ok, result={"version": "x"} if ok else None, error=error)
        topic = f"suitcase/v1/{org.slug}/{device.id}/cmd/update/reply"
        assert apply_reply(session, topic, reply.model_dump_json().encode(), at) is not None


def _offers(recorder: _Recorder) -> dict[str, dict[str, Any]]:
    return {topic.split("/")[3]: request for topic, request in recorder.sent if topic.endswith("/cmd/update")}


def test_a_release_is_served_with_its_sha256_and_bad_wheels_are_refused(
    client: TestClient, agent_wheels: dict[str, AgentWheel], tmp_path: Path
) -> None:
    """Test that a global admin uploads a wheel, that anyone fetches
    it byte for byte with its SHA-256, and that a wrong name, a non-wheel, a wheel whose metadata
    disagrees with its name, a duplicate and a non-admin are refused with the reason."""
    world = World.build(client)
    good = agent_wheels["good"]
    assert _upload(client, {}, good).status_code == 401
    client.cookies.clear()
    response = client.post(
        f"/api/v1/agent-releases?filename={good.path.name}", content=b"x", headers=world.as_("a-admin")
    )
    assert response.status_code == 403  # an organisation's admin is not a global admin
    csrf = _admin(client)
    created = _upload(client, csrf, good)
    assert created.status_code == 201, created.text
    assert created.json() == {
        **created.json(),
        "version": "0.2.0",
        "sha256": good.sha256,
        "size": good.size,
        "url": f"/api/v1/agent-releases/0.2.0/{good.path.name}",
    }
    assert _upload(client, csrf, good).status_code == 409
    renamed = tmp_path / "iot_suitcase-0.9.0-py3-none-any.whl"
    renamed.write_bytes(good.path.read_bytes())
    cases = [
        ("evil.whl", good.path.read_bytes(), "is not an agent wheel name"),
        ("iot_suitcase-0.4.0-py3-none-any.whl", b"not a zip", "is not a wheel of iot-suitcase 0.4.0"),
        (renamed.name, renamed.read_bytes(), "is not a wheel of iot-suitcase 0.9.0"),
    ]
    for name, data, expected in cases:
        response = client.post(f"/api/v1/agent-releases?filename={name}", content=data, headers=csrf)
        assert response.status_code == 422 and expected in response.json()["detail"], response.text
    client.cookies.clear()
    wheel = client.get(f"/api/v1/agent-releases/0.2.0/{good.path.name}")  # anonymous
    assert wheel.status_code == 200 and hashlib.sha256(wheel.content).hexdigest() == good.sha256
    assert wheel.headers["X-Checksum-Sha256"] == good.sha256
    assert client.get("/api/v1/agent-releases/0.2.0/other.whl").status_code == 404


def test_rings_advance_on_healthy_replies_and_skip_opted_out_devices(
    sqlite_client: TestClient, agent_wheels: dict[str, AgentWheel]
) -> None:
    """Test that a rollout offers the canary first, then half of the others, then the rest, each
    ring only once the previous one has updated, that opted-out devices (one by itself, one by its
    organisation) are never offered anything, that the offer names the served wheel and its
    SHA-256, and that the progress and figures say so."""
    client = sqlite_client
    world = World.build(client)
    _devices(client, world, {f"a-{i}": "a" for i in range(5)} | {"a-out": "a", "b-0": "b"})
    world.ok("a-admin", "PUT", "/devices/a-out/updates", json={"opt_out": True})
    world.ok("b-admin", "PUT", f"/orgs/{world.orgs['b']}/updates", json={"opt_out": True})
    assert world.call("a-operator", "PUT", "/devices/a-0/updates", json={"opt_out": True}).status_code == 403
    assert world.call("b-admin", "PUT", "/devices/a-0/updates", json={"opt_out": True}).status_code == 404
    csrf = _admin(client)
    assert client.post("/api/v1/orgs", content=b"x" * 100_001, headers=csrf).status_code == 413
    assert agent_wheels["good"].size > 100_000
    assert _upload(client, csrf, agent_wheels["good"]).status_code == 201
    body = {"version": "0.2.0", "canaries": ["a-3"], "share_percent": 50, "deadline_s": 60}
    started = client.post("/api/v1/rollouts", json=body, headers=csrf)
    assert started.status_code == 201, started.text
    rollout = started.json()
    assert rollout["rings"]["canary"] == {"waiting": 0, "offered": 1, "updated": 0, "failed": 0}
    assert sum(rollout["rings"]["share"].values()) == 2 and sum(rollout["rings"]["all"].values()) == 2
    assert rollout["opted_out"] == 2
    assert client.post("/api/v1/rollouts", json=body, headers=csrf).status_code == 409  # one at a time

    recorder = _Recorder()
    dispatch(_engine(client), recorder, NOW, "r1")
    offers = _offers(recorder)
    assert list(offers) == ["a-3"]
    wheel = agent_wheels["good"]
    assert offers["a-3"]["args"] == {
        "version": "0.2.0",
        "url": f"https://suitcase.example.org/api/v1/agent-releases/0.2.0/{wheel.path.name}",
        "sha256": wheel.sha256,
        "size": wheel.size,
        "filename": wheel.path.name,
        "deadline_s": 60.0,
    }
    _answer(client, offers["a-3"]["id"], True, NOW + 30)
    recorder.sent.clear()
    dispatch(_engine(client), recorder, NOW + 30, "r1")
    share = _offers(recorder)
    assert len(share) == 2 and "a-3" not in share
    for request in share.values():
        _answer(client, request["id"], True, NOW + 50)
    recorder.sent.clear()
    dispatch(_engine(client), recorder, NOW + 50, "r1")
    rest = _offers(recorder)
    assert len(rest) == 2 and not set(rest) & (set(share) | {"a-3", "a-out", "b-0"})
    for request in rest.values():
        _answer(client, request["id"], True, NOW + 70)
    done = client.get(f"/api/v1/rollouts/{rollout['id']}", headers=csrf).json()
    assert done["state"] == "done" and done["rings"]["all"]["updated"] == 2
    assert done["figures"] == {"canary_healthy_after_s": 30.0, "all_updated_after_s": 70.0}
    out = {d["device"]: d for d in done["devices"] if d["state"] == "opted_out"}
    assert set(out) == {"a-out", "b-0"} and all(d["command_id"] is None for d in out.values())


def test_a_failed_canary_stops_the_rollout_by_itself(
    sqlite_client: TestClient, agent_wheels: dict[str, AgentWheel]
) -> None:
    """Test that a canary whose update was rolled back stops the rollout, with the device and its
    reason, that no other device is offered the release, and that an offer nobody answers before
    its expiry stops a rollout too; and that a person cannot give an update command directly."""
    client = sqlite_client
    world = World.build(client)
    _devices(client, world, {"a-1": "a", "a-2": "a", "a-3": "a"})
    csrf = _admin(client)
    assert _upload(client, csrf, agent_wheels["bad"]).status_code == 201
    rollout = client.post(
        "/api/v1/rollouts", json={"version": "0.3.0", "canary_count": 2, "share_percent": 100}, headers=csrf
    ).json()
    recorder = _Recorder()
    dispatch(_engine(client), recorder, NOW, "r1")
    first, second = _offers(recorder).items()
    reason = "update to 0.3.0 rolled back: agent 0.3.0 exited with code 1"
    _answer(client, first[1]["id"], False, NOW + 20, error=reason)
    stopped = client.get(f"/api/v1/rollouts/{rollout['id']}", headers=csrf).json()
    assert stopped["state"] == "stopped"
    assert f"canary device {first[0]} failed: {reason}: the rollout stopped itself" in stopped["reason"]
    assert stopped["rings"]["share"] == {"waiting": 1, "offered": 0, "updated": 0, "failed": 0}
    recorder.sent.clear()
    sweep(_engine(client), recorder, NOW + 21, "r1")
    assert _offers(recorder) == {}  # nothing more goes out

    # An offer that is never answered: the sweep expires it and the rollout stops.
    assert _upload(client, csrf, agent_wheels["good"]).status_code == 201
    second_rollout = client.post(
        "/api/v1/rollouts", json={"version": "0.2.0", "canaries": ["a-2"], "ttl_s": 60}, headers=csrf
    ).json()
    sweep(_engine(client), recorder, NOW + 61, "r1")
    with Session(_engine(client)) as session:
        from server.rollouts import advance_running

        advance_running(session, NOW + 61)
        session.commit()
    expired = client.get(f"/api/v1/rollouts/{second_rollout['id']}", headers=csrf).json()
    assert expired["state"] == "stopped" and "not answered before its expiry" in expired["reason"]

    client.cookies.clear()
    direct = world.call(
        "a-operator", "POST", "/devices/a-1/commands", json={"name": "update", "args": second[1]["args"]}
    )
    assert direct.status_code == 422 and "come from a rollout only" in direct.json()["detail"]
