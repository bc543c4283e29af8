"""Tests of the fleet page's reused index (``fleet_cache_s``): it expires on its own monotonic
clock, whatever the domain clock says, and a request that changes the registry clears it
(server/web/views/fleet.py, server/api/deps.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from server.api.deps import request_session
from server.app import create_app
from server.resources import Resources
from server.settings import ServerSettings
from server.tables import DeviceRow, OrganisationRow, UserRow
from tests.server.data import NOW
from tests.server.test_fleet_page import _count, fleet  # noqa: F401  (the fixture)
from tests.server.web_world import Clock
from tests.waiting import wait_until

TTL = 5.0


@pytest.fixture
def monotonic() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def cache_ttl() -> float:
    return TTL


@pytest.fixture
def cache_stale() -> float:
    return 0.0


@pytest.fixture
def closed_client(
    closed_settings: ServerSettings, store: Any, monotonic: Clock, cache_ttl: float, cache_stale: float
) -> Iterator[TestClient]:
    """The closed server, its fleet index kept ``cache_ttl`` s on ``monotonic`` (and shown
    ``cache_stale`` s more while the next is read)."""
    settings = closed_settings.model_copy(
        update={"fleet_cache_s": cache_ttl, "fleet_cache_stale_s": cache_stale}
    )
    with TestClient(create_app(settings, clock=lambda: NOW, monotonic=monotonic)) as test_client:
        yield test_client


def _resources(client: TestClient) -> Resources:
    resources: Resources = client.app.state.resources  # type: ignore[attr-defined]
    return resources


def _enrol(engine: Any, device: str) -> None:
    """Register ``device`` in city A straight in the registry (as a process other than this
    replica's requests would: the listener, another replica)."""
    with Session(engine) as session:
        org = session.exec(select(OrganisationRow).where(OrganisationRow.slug == "city-a")).one()
        session.add(DeviceRow(id=device, org_id=org.id or 0, registered_at=NOW))
        session.commit()


@pytest.mark.usefixtures("fleet")
def test_index_is_reused_until_its_monotonic_clock_runs_out(
    closed_client: TestClient, monotonic: Clock
) -> None:
    """Test that counts come from the index built first until ``fleet_cache_s`` has passed on the
    monotonic clock (the domain clock stands still), that the page says as of when, and that the
    live fragment shares the index."""
    resources = _resources(closed_client)
    first = closed_client.get("/fleet").text
    total = _count(first, "total")
    assert 'id="fleet-as-of"' in first
    _enrol(resources.engine, "a-late-device")
    monotonic.now += TTL - 0.5
    assert _count(closed_client.get("/fleet").text, "total") == total
    assert _count(closed_client.get("/fleet/live").text, "total") == total
    monotonic.now += 1.0
    assert _count(closed_client.get("/fleet").text, "total") == total + 1


@pytest.mark.parametrize("cache_stale", [TTL])
@pytest.mark.usefixtures("fleet")
def test_a_stale_index_is_shown_while_the_next_is_read(closed_client: TestClient, monotonic: Clock) -> None:
    """Test that past ``fleet_cache_s``, within ``fleet_cache_stale_s``, a page shows the index it
    has (its counts as of then) and the next index is read in the background, shown once read;
    and that past both, the page waits for a new one."""
    resources = _resources(closed_client)
    total = _count(closed_client.get("/fleet").text, "total")
    _enrol(resources.engine, "a-late-device")
    monotonic.now += TTL + 1.0
    assert _count(closed_client.get("/fleet").text, "total") == total  # shown while read anew
    wait_until(
        lambda: _count(closed_client.get("/fleet/live").text, "total") == total + 1,
        what="the index read in the background",
    )
    _enrol(resources.engine, "a-later-device")
    monotonic.now += 2 * TTL + 1.0  # past the index's age and the time it may be shown after
    assert _count(closed_client.get("/fleet").text, "total") == total + 2
    assert ServerSettings(environment="development").fleet_cache_stale_ttl_s == 0.0


@pytest.mark.parametrize("cache_ttl", [0.0])
@pytest.mark.usefixtures("fleet")
def test_index_off_is_read_every_time(closed_client: TestClient) -> None:
    """Test that with the cache off (the development default) every page reads the registry and
    says nothing about the counts' age."""
    resources = _resources(closed_client)
    assert resources.fleet_index.ttl_s == 0.0
    assert ServerSettings().fleet_cache_ttl_s == 0.0  # development's default
    page = closed_client.get("/fleet").text
    total = _count(page, "total")
    assert 'id="fleet-as-of"' not in page
    _enrol(resources.engine, "a-late-device")
    assert _count(closed_client.get("/fleet").text, "total") == total + 1


@pytest.mark.usefixtures("fleet")
def test_a_request_changing_the_registry_clears_the_index(
    closed_client: TestClient,
) -> None:
    """Test that a request's session committing a device (enrolment) clears the index at once
    and has it read anew in the background, so the next page shows the device without reading
    every device itself; and that one committing nothing the index holds (a user) leaves it."""
    resources = _resources(closed_client)
    total = _count(closed_client.get("/fleet").text, "total")

    with request_session(resources) as session:
        session.add(UserRow(email="someone@a.example.org", password_hash="x", created_at=NOW))
        session.commit()
    assert len(resources.fleet_index) == 1

    misses = resources.fleet_index.misses
    with request_session(resources) as session:
        org = session.exec(select(OrganisationRow).where(OrganisationRow.slug == "city-a")).one()
        session.add(DeviceRow(id="a-enrolled-device", org_id=org.id or 0, registered_at=NOW))
        session.flush()
        assert len(resources.fleet_index) == 0  # forgotten at the flush already
        session.commit()
    page = closed_client.get("/fleet").text
    assert (
        _count(page, "total") == total + 1
        and "a-enrolled-device" in closed_client.get("/fleet", params={"q": "a-enrolled-device"}).text
    )
    # Read anew in the background from the commit: the page waited for that read (if it was still
    # under way), it did not read every device itself.
    assert resources.fleet_index.misses == misses


@pytest.mark.usefixtures("fleet")
def test_the_index_is_read_as_the_server_starts(
    closed_client: TestClient, closed_settings: ServerSettings, monotonic: Clock
) -> None:
    """Test that with ``fleet_cache_warm`` a starting server reads the index of every organisation
    and of each one in the background, so the first page after a start (one left open across a
    restart) does not read every device; and that development does not (its default)."""
    total = _count(closed_client.get("/fleet").text, "total")
    settings = closed_settings.model_copy(
        update={"fleet_cache_s": TTL, "fleet_cache_stale_s": TTL, "fleet_cache_warm": True}
    )
    with TestClient(create_app(settings, clock=lambda: NOW, monotonic=monotonic)) as restarted:
        cache = _resources(restarted).fleet_index
        wait_until(lambda: len(cache) == 3, what="the indexes of both organisations and of each")
        restarted.cookies.update(closed_client.cookies)  # the viewer's session, in the registry
        assert _count(restarted.get("/fleet").text, "total") == total
        assert cache.misses == 0
    assert not ServerSettings().fleet_cache_warm_at_start
    assert not ServerSettings(fleet_cache_warm=True).fleet_cache_warm_at_start  # no cache: nothing to warm
