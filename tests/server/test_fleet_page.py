"""Tests of the fleet page's pages, filters, sorting and counts (server/web/views/fleet.py and
fleet_index.py), on the embedded store and on a real influxd."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from kits.wire import Record
from server.tables import (
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitRow,
    LoanRow,
    MembershipRow,
    OrganisationRow,
    UserRow,
)
from tests.server.data import NOW
from tests.server.world import PASSWORD, _hash

STALE = 120.0  # ServerSettings.stale_after_s


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-device="([^"]+)"', html)


def _count(html: str, name: str) -> int:
    found = re.search(rf'id="count-{name}">(\d+)<', html)
    assert found, name
    return int(found.group(1))


def _pages(client: TestClient, **params: Any) -> list[list[str]]:
    """Every page of the fleet page with ``params``, following its "next" links."""
    pages: list[list[str]] = []
    html = client.get("/fleet", params=params).text
    while True:
        pages.append(_rows(html))
        link = re.search(r'<a href="([^"]+)" rel="next">', html)
        if link is None:
            return pages
        html = client.get(link.group(1).replace("&amp;", "&")).text
        assert len(pages) < 100


@pytest.fixture
def fleet(closed_client: TestClient, store: Any) -> dict[str, Any]:
    """City A: 120 registered devices (every 3rd silent, every 10th told it is offline, every 7th
    with a backlog, every 11th with a failing sensor, a kit of 4 per deployment, kit 0 lent out
    with a calibration due), 5 devices only seen in the store; city B: 3 devices. Logged in as
    city A's viewer."""
    engine = closed_client.app.state.resources.engine  # type: ignore[attr-defined]
    expect: dict[str, Any] = {
        "online": set(),
        "unhealthy": set(),
        "backlog": set(),
        "calibration": set(),
        "silent": set(),
    }
    records: list[Record] = []
    with Session(engine) as session:
        orgs = [OrganisationRow(slug=f"city-{x}", name=f"City {x.upper()}", created_at=NOW) for x in "ab"]
        user = UserRow(email="viewer@a.example.org", password_hash=_hash(), created_at=NOW)
        session.add_all([*orgs, user])
        session.flush()
        a, b = orgs[0].id or 0, orgs[1].id or 0
        session.add(MembershipRow(user_id=user.id or 0, org_id=a, role="viewer"))
        kits = [
            KitRow(org_id=a, inventory_code=f"KIT-{k:03d}", profile_id="starter", created_at=NOW)
            for k in range(30)
        ]
        session.add_all(kits)
        session.flush()
        deployments = [
            DeploymentRow(org_id=a, kit_id=kit.id, name=f"School {k}", starts_at=NOW - 86_400, created_at=NOW)
            for k, kit in enumerate(kits)
        ]
        session.add_all(deployments)
        session.add(
            LoanRow(
                kit_id=kits[0].id or 0,
                org_id=b,
                owner_org_id=a,
                borrower="Ms Jensen",
                starts_at=NOW - 86_400,
                due_at=NOW + 86_400,
            )
        )
        session.add(
            CalibrationRow(
                kit_id=kits[0].id or 0,
                pi_index=2,
                sensor="bme280",
                quantity="temperature",
                calibrated_at=NOW - 86_400,
                due_at=NOW + 86_400,
                version=1,
            )
        )
        session.flush()
        for i in range(120):
            device = f"a-dev-{i:03d}"
            said_offline = i % 10 == 0
            session.add(
                DeviceRow(
                    id=device,
                    org_id=a,
                    kit_id=kits[i // 4].id,
                    pi_index=i % 4 + 1,
                    registered_at=NOW - 86_400,
                    online=not said_offline,
                    status_since=NOW - 5 if said_offline else NOW - 3_600,
                    backlog=3 if i % 7 == 0 else 0,
                    meta_at=NOW - 60,
                    sensors=[{"name": "bme280", "state": "failing" if i % 11 == 0 else "ok"}],
                )
            )
            silent = i % 3 == 0
            records.append(
                Record(
                    "city-a",
                    device,
                    "bme280",
                    "temperature",
                    20.0,
                    NOW - (600 + i if silent else 30 + i // 2),
                )
            )
            if not silent and not said_offline:
                expect["online"].add(device)
            if silent and not said_offline:  # its Pi says it is connected, but no reading comes
                expect["silent"].add(device)
            if i % 11 == 0:
                expect["unhealthy"].add(device)
            if i % 7 == 0:
                expect["backlog"].add(device)
            if i // 4 == 0 and i % 4 + 1 == 2:
                expect["calibration"].add(device)
        session.flush()
        session.add_all(
            DeploymentDeviceRow(
                deployment_id=deployments[i // 4].id or 0, device_id=f"a-dev-{i:03d}", from_t=NOW
            )
            for i in range(120)
        )
        for i in range(3):
            session.add(DeviceRow(id=f"b-dev-{i}", org_id=b, registered_at=NOW))
            records.append(Record("city-b", f"b-dev-{i}", "bme280", "temperature", 20.0, NOW - 10))
        session.commit()
    for i in range(5):
        records.append(Record("city-a", f"a-stray-{i}", "bme280", "temperature", 20.0, NOW - 10 - i * 100))
    expect["online"] |= {"a-stray-0", "a-stray-1"}
    store.write(records)
    login = closed_client.post(
        "/api/v1/auth/login", json={"email": "viewer@a.example.org", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    expect["all"] = sorted([f"a-dev-{i:03d}" for i in range(120)] + [f"a-stray-{i}" for i in range(5)])
    return expect


def test_pages_hold_every_device_once_in_order(closed_client: TestClient, fleet: dict[str, Any]) -> None:
    """Test that the fleet page shows 50 devices a page and its pages, followed by their links,
    hold every device of the viewer's organisation once, in organisation and device order, under
    counts of the whole fleet."""
    pages = _pages(closed_client)
    assert [len(p) for p in pages] == [50, 50, 25]
    assert [d for p in pages for d in p] == fleet["all"]
    last = closed_client.get("/fleet", params={"page": 3}).text
    assert 'rel="prev"' in last and 'rel="next"' not in last
    assert "Page 3 of 3" in last and "Devices 101\u2013125 of 125 shown (125 in all)" in last
    # A page past the end shows the last one; the live fragment shows the page it is asked for.
    assert _rows(closed_client.get("/fleet", params={"page": 99}).text) == pages[2]
    assert _rows(closed_client.get("/fleet/live", params={"page": 2}).text) == pages[1]
    # The counts at the top are of every device the viewer sees, on any page or filter.
    for params in ({}, {"page": 3}, {"state": "offline"}, {"problem": "backlog", "page": 2}):
        html = closed_client.get("/fleet", params=params).text
        assert _count(html, "total") == 125
        assert _count(html, "online") == len(fleet["online"])
        assert _count(html, "offline") == 125 - len(fleet["online"])
        assert _count(html, "unhealthy") == len(fleet["unhealthy"])
        assert _count(html, "backlog") == len(fleet["backlog"])
        assert _count(html, "calibration") == len(fleet["calibration"])
        assert _count(html, "silent") == len(fleet["silent"])


def test_filters_page_their_devices(closed_client: TestClient, fleet: dict[str, Any]) -> None:
    """Test that each filter shows exactly its devices, over as many pages as they need, and that
    the page links keep the filter."""
    for params, key in (
        ({"state": "online"}, "online"),
        ({"state": "offline"}, "offline"),
        ({"problem": "unhealthy"}, "unhealthy"),
        ({"problem": "backlog"}, "backlog"),
        ({"problem": "calibration"}, "calibration"),
        ({"problem": "silent"}, "silent"),
    ):
        wanted = set(fleet["all"]) - fleet["online"] if key == "offline" else fleet[key]
        pages = _pages(closed_client, **params)
        assert [d for p in pages for d in p] == sorted(wanted), params
        assert all(len(p) == 50 for p in pages[:-1]), params
    # A Pi that says it is connected but sends nothing says so in its row, beside "Offline".
    html = closed_client.get("/fleet", params={"problem": "silent"}).text
    assert html.count('class="small muted silent"') == len(_rows(html)) > 0


def test_search_finds_devices_by_id_deployment_kit_and_loan(
    closed_client: TestClient, fleet: dict[str, Any]
) -> None:
    """Test that the search matches a device id, a current deployment's name, a kit's inventory code
    and a loan's borrower, in any case, and treats % and _ as text."""

    def search(q: str) -> list[str]:
        return [d for p in _pages(closed_client, q=q) for d in p]

    assert search("A-DEV-11") == [f"a-dev-{i:03d}" for i in range(110, 120)]
    assert search("school 29") == [f"a-dev-{i:03d}" for i in range(116, 120)]
    assert search("kit-001") == [f"a-dev-{i:03d}" for i in range(4, 8)]
    assert search("jensen") == [f"a-dev-{i:03d}" for i in range(4)]
    assert search("stray") == [f"a-stray-{i}" for i in range(5)]
    assert search("%") == [] and search("a_dev") == []


def test_sort_by_last_seen_and_organisation_filter(closed_client: TestClient, fleet: dict[str, Any]) -> None:
    """Test that "silent longest first" orders by last reading, oldest first, across pages, and that
    the viewer sees only its organisation's devices (another's slug shows none)."""
    shown = [d for p in _pages(closed_client, sort="last_seen") for d in p]
    assert sorted(shown) == fleet["all"]
    assert shown[0] == "a-dev-117" and shown[-1] == "a-stray-0"
    recent = [d for p in _pages(closed_client, sort="-last_seen") for d in p]
    assert recent[0] == "a-stray-0"
    assert [d for p in _pages(closed_client, org="city-a") for d in p] == fleet["all"]
    html = closed_client.get("/fleet", params={"org": "city-b"}).text
    assert _rows(html) == [] and "b-dev" not in html
