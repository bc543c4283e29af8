"""Secrets at rest (issue 13): a bound Pi's config waits sealed to its claim code and expires, and
a kit's return rotates every claim code (``server/sealed.py``, the enrollment and kit routes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from gateway.store import SqliteStore
from server.app import create_app
from server.sealed import SealBroken, seal, unseal
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.web_world import Clock
from tests.server.world import World


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def timed(tmp_path: Path, registry_url: str, clock: Clock) -> Iterator[World]:
    """The usual world, on a server whose clock the test moves."""
    settings = ServerSettings(
        registry_url=registry_url, store=str(tmp_path / "store.db"), alert_interval_s=0, open_reads=False
    )
    with SqliteStore(settings.store), TestClient(create_app(settings, clock=clock)) as client:
        yield World.build(client)


def _bound(world: World) -> tuple[dict[str, Any], str]:
    kit = world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "SEC-1", "profile_id": "starter"})
    dep = world.ok("a-operator", "POST", "/deployments", 201, json={"name": "hall", "kit_id": kit["id"]})
    code = kit["claim_codes"][0]["code"]
    world.ok("a-operator", "POST", "/claims/bind", 201, json={"claim_code": code, "deployment_id": dep["id"]})
    return kit, code


def _raw_pending(world: World) -> list[str]:
    engine = world.client.app.state.resources.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text("SELECT pending FROM kit_pis"))]
    return [str(r) for r in rows if r is not None and str(r) != "null"]  # SQL NULL or JSON null


def test_seal_opens_only_with_its_code() -> None:
    """Test that a sealed value opens with its code, not with another, and not once altered."""
    sealed = seal("SC-AAAA", {"password": "hunter2"}, {"expires_at": 5.0})
    assert "hunter2" not in str(sealed)
    assert unseal("SC-AAAA", sealed) == {"password": "hunter2"}
    with pytest.raises(SealBroken):
        unseal("SC-BBBB", sealed)
    with pytest.raises(SealBroken):
        unseal("SC-AAAA", {**sealed, "expires_at": 9e9})  # the expiry cannot be pushed back
    with pytest.raises(SealBroken):
        unseal("SC-AAAA", {"password": "hunter2"})  # a plain, unsealed value


def test_pending_config_is_not_readable_at_rest(timed: World) -> None:
    """Test that between bind and poll the registry holds no readable broker password or token, and
    the poll with the claim code still gets them, once."""
    _, code = _bound(timed)
    rows = _raw_pending(timed)
    assert len(rows) == 1
    ready = timed.client.post("/api/v1/claims/poll", json={"claim_code": code}).json()
    assert ready["status"] == "ready"
    password, token = ready["device"]["config"]["mqtt"]["password"], ready["device"]["token"]
    assert (
        password not in rows[0]
        and token not in rows[0]
        and ready["device"]["config"]["device"] not in rows[0]
    )
    assert _raw_pending(timed) == []
    assert timed.client.post("/api/v1/claims/poll", json={"claim_code": code}).json()["status"] == "delivered"


def test_pending_config_expires(timed: World, clock: Clock) -> None:
    """Test that a config not collected within pending_ttl_s (24 h) is dropped, with a message
    saying to bind again."""
    _, code = _bound(timed)
    clock.now = NOW + 24 * 3600 + 1
    late = timed.client.post("/api/v1/claims/poll", json={"claim_code": code}).json()
    assert late["status"] == "pending" and late["device"] is None and "bind it again" in late["message"]
    assert _raw_pending(timed) == []


def test_return_rotates_every_claim_code(timed: World) -> None:
    """Test that a kit's return revokes every Pi's claim code, hands out new ones once, and drops
    what was waiting for the last borrower."""
    kit, old = _bound(timed)
    returned = timed.ok("a-operator", "POST", f"/kits/{kit['id']}/return", json={"condition": "good"})
    fresh = returned["claim_codes"]
    assert [c["pi_index"] for c in fresh] == [c["pi_index"] for c in kit["claim_codes"]]
    assert not {c["code"] for c in fresh} & {c["code"] for c in kit["claim_codes"]}
    assert any("claim code" in step for step in returned["reset_steps"])
    assert _raw_pending(timed) == []
    for c in kit["claim_codes"]:
        assert timed.client.post("/api/v1/claims/poll", json={"claim_code": c["code"]}).status_code == 404
    new = timed.client.post("/api/v1/claims/poll", json={"claim_code": fresh[0]["code"]}).json()
    assert new["status"] == "pending"
    assert old != fresh[0]["code"]
    listed = timed.ok("a-viewer", "GET", f"/kits/{kit['id']}")
    assert fresh[0]["code"] not in str(listed)  # shown once, never listed


def test_expired_configs_are_swept_without_a_poll(timed: World, clock: Clock) -> None:
    """Test that the periodic sweep drops a config whose Pi never came to collect it, and keeps one
    that has not expired yet."""
    from sqlmodel import Session

    from server.fleet import expire_pending

    _bound(timed)
    engine = timed.client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        assert expire_pending(session, NOW + 3600) == 0
    assert len(_raw_pending(timed)) == 1
    with Session(engine) as session:
        assert expire_pending(session, NOW + 24 * 3600 + 1) == 1
        session.commit()
    assert _raw_pending(timed) == []
