"""The one versioned device config (server/device_config.py, its API): version 1 at bind, each
change a new version holding every section, the diff, the push as a ``config`` command carrying
the version, the applied version from the reply, and bad versions refused with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from gateway.store import SqliteStore
from kits.wire import CommandReply
from server.app import create_app
from server.device_commands import apply_reply, dispatch
from server.device_config import diff
from server.settings import ServerSettings
from server.tables import DeviceRow
from tests.server.data import NOW
from tests.server.world import World


@pytest.fixture
def client(tmp_path: Any) -> Iterator[TestClient]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'r.db'}", store=str(tmp_path / "s.db"), alert_interval_s=0
    )
    with SqliteStore(settings.store), TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        yield test_client


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, json.loads(payload)))
        return True


def _bound(client: TestClient, world: World, profile: str = "starter") -> dict[str, Any]:
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "CFG-1", "profile_id": profile})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"kit_id": kit["id"], "name": "hall"})
    claim = kit["claim_codes"][0]["code"]
    world.ok(
        "a-operator", "POST", "/claims/bind", 201, json={"claim_code": claim, "deployment_id": dep["id"]}
    )
    config: dict[str, Any] = client.post("/api/v1/claims/poll", json={"claim_code": claim}).json()["device"][
        "config"
    ]
    return config


def test_a_change_is_a_new_version_diffed_pushed_and_applied(client: TestClient) -> None:
    """Test that a bound device has version 1 (what it was issued, with config_version 1), that a
    change of sampling makes version 2 holding every section with the change named in the diff,
    that the push sends the version's fields with its number, and that the device's ok reply
    marks it applied; a sensor turned off is version 3, diffed by the sensor's name."""
    world = World.build(client)
    issued = _bound(client, world, "full")
    device = issued["device"]
    assert issued["config_version"] == 1
    base = f"/devices/{device}/config/versions"
    [first] = world.ok("a-viewer", "GET", base)
    sensors = first["body"]["sensors"]
    assert first["version"] == 1 and first["body"]["sampling"] == {"publish_interval_s": 10.0}
    assert [s["name"] for s in sensors] == [s["name"] for s in issued["sensors"]]

    second = world.ok(
        "a-operator",
        "POST",
        base,
        201,
        json={"sections": {"sampling": {"publish_interval_s": 30}}, "note": "slower"},
    )
    assert (second["version"], second["note"], second["applied"]) == (2, "slower", False)
    assert second["changes"] == [{"path": "sampling.publish_interval_s", "old": 10.0, "new": 30.0}]
    assert second["body"]["sensors"] == sensors and second["command"]["state"] == "queued"

    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        row = session.get(DeviceRow, device)
        assert row is not None
        row.online = True
        session.add(row)
        session.commit()
    recorder = _Recorder()
    dispatch(engine, recorder, NOW, "replica")
    [(topic, request)] = recorder.sent
    assert topic.endswith("/cmd/config") and request["args"]["config_version"] == 2
    assert request["args"]["publish_interval_s"] == 30.0 and request["args"]["sensors"] == sensors
    reply = CommandReply(id=request["id"], ok=True, result={"applied": [], "config_version": 2})
    with Session(engine) as session:
        assert apply_reply(session, f"{topic}/reply", reply.model_dump_json().encode(), NOW) is not None
    assert world.ok("a-viewer", "GET", f"{base}/2")["applied"] is True

    off = [{**s, "enabled": s["name"] != sensors[-1]["name"]} for s in sensors]
    third = world.ok("a-operator", "POST", base, 201, json={"sections": {"sensors": off}, "push": False})
    assert third["changes"] == [
        {"path": f"sensors[{sensors[-1]['name']}].enabled", "old": True, "new": False}
    ]
    assert third["command"] is None
    against = world.ok("a-viewer", "GET", f"{base}/3", params={"against": 1})
    assert {c["path"] for c in against["changes"]} == {
        "sampling.publish_interval_s",
        f"sensors[{sensors[-1]['name']}].enabled",
    }
    assert [v["version"] for v in world.ok("a-viewer", "GET", base)] == [3, 2, 1]


def test_bad_versions_are_refused_with_the_reason(client: TestClient) -> None:
    """Test that a version that would break sampling or is not a config is refused with 422 naming
    the problem, that nothing is made, and that viewers and other organisations may not change it."""
    world = World.build(client)
    device = _bound(client, world)["device"]
    base = f"/devices/{device}/config/versions"
    sensors = world.ok("a-viewer", "GET", base)[0]["body"]["sensors"]
    bad = [
        ({"sampling": {"publish_interval_s": 0.2}}, "publish_interval_s 0.2 s is below 1 s"),
        (
            {"sampling": {"publish_interval_s": -1}},
            "sampling.publish_interval_s: Input should be greater than 0",
        ),
        ({"sampling": {"every": 3}}, "sampling.every: Extra inputs are not permitted"),
        ({"sensors": [{**s, "enabled": False} for s in sensors]}, "every sensor is turned off"),
        ({"sensors": [{**s, "interval_s": 0.5} for s in sensors]}, "interval_s 0.5 s is below 1 s"),
        ({"sensors": []}, "sensors: List should have at least 1 item"),
        ({"sensors": sensors + sensors[:1]}, "both claim"),
        (
            {"calibration": [{"sensor": "window", "quantity": "temperature"}]},
            "calibration of sensor 'window'",
        ),
        ({"calibration": [{"sensor": "bme280", "quantity": "colour"}]}, "unknown quantities"),
        (
            {"firmware": {"url": "x"}},
            "unknown section 'firmware': the sections are sampling, sensors, calibration",
        ),
        ({"sampling": {"publish_interval_s": 10.0}}, "nothing changed: version 1 already holds this config"),
    ]
    for sections, needle in bad:
        answer = world.call("a-operator", "POST", base, json={"sections": sections})
        assert answer.status_code == 422 and needle in answer.text, (sections, answer.text)
    assert [v["version"] for v in world.ok("a-viewer", "GET", base)] == [1]
    assert world.ok("a-viewer", "GET", f"/devices/{device}/commands") == []
    good = {"sections": {"sampling": {"publish_interval_s": 20}}}
    assert world.call("a-viewer", "POST", base, json=good).status_code == 403
    assert world.call("b-admin", "POST", base, json=good).status_code == 404
    assert world.call("b-admin", "GET", base).status_code == 404
    assert world.call("a-viewer", "GET", f"{base}/9").status_code == 404


def test_a_device_configured_by_its_own_file_gets_only_the_sections_changed(client: TestClient) -> None:
    """Test that a device with no version (enrolled before versions, or run from its own file)
    gets a version holding only the section changed, and its push sends only that section: its
    own sensors and intervals stay as its file says."""
    world = World.build(client)
    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.add(DeviceRow(id="a-own-file", org_id=world.orgs["a"], registered_at=NOW, online=True))
        session.commit()
    cal = [{"sensor": "bme280", "quantity": "temperature", "offset": -0.2, "version": 3}]
    made = world.ok(
        "a-operator",
        "POST",
        "/devices/a-own-file/config/versions",
        201,
        json={"sections": {"calibration": cal}},
    )
    assert set(made["body"]) == {"calibration"} and made["version"] == 1
    recorder = _Recorder()
    dispatch(engine, recorder, NOW, "replica")
    [(_topic, request)] = recorder.sent
    assert set(request["args"]) == {"calibration", "config_version"}


def test_the_diff_matches_sensors_by_name_and_calibration_by_quantity() -> None:
    """Test the diff of two versions: sensors matched by name, calibration by sensor and quantity,
    so reordering is no change and an edit names what changed."""
    old = {
        "sensors": [{"name": "a", "interval_s": 10}, {"name": "b", "interval_s": 10}],
        "calibration": [{"sensor": "a", "quantity": "temperature", "offset": 0.1}],
    }
    new = {
        "sensors": [{"name": "b", "interval_s": 10}, {"name": "a", "interval_s": 5}],
        "calibration": [{"sensor": "a", "quantity": "temperature", "offset": 0.2}],
        "sampling": {"publish_interval_s": 10},
    }
    assert diff(old, new) == [
        {"path": "calibration[a.temperature].offset", "old": 0.1, "new": 0.2},
        {"path": "sampling.publish_interval_s", "old": None, "new": 10},
        {"path": "sensors[a].interval_s", "old": 10, "new": 5},
    ]
