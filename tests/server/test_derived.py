"""Tests of derived quantities in the server: their versioned definitions (API, bad input), and the
pages, kiosk, public page and exports showing what a person reads first, the raw readings a click
away. Runs on the SQLite store and on a real influxd (tests/server/conftest.py STORE_SUITES).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from kits.derived import dew_point, fill_level
from kits.wire import Record
from server.app import create_app
from server.security import hash_password, hash_secret, new_token
from server.settings import ServerSettings
from server.tables import (
    ApiTokenRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    MembershipRow,
    OrganisationRow,
    UserRow,
)
from tests.server.data import NOW

ORG = "derivedtown"
PASSWORD = "correct horse battery"
H0 = math.floor(NOW / 3600) * 3600


def readings() -> list[Record]:
    """Three hours: a bin filling, a clamp, passes, and a flat's climate with humidity gaps."""
    out: list[Record] = []
    start = H0 - 3 * 3600
    for i in range(int((NOW - 30 - start) // 60)):
        t = start + i * 60
        out.append(Record(ORG, "bin-1", "vl53l1x", "distance", 900.0 - i * 2, t))
        out.append(Record(ORG, "count-1", "vl53l1x", "passes", float((i * 7) % 5), t))
        out.append(Record(ORG, "meter-1", "ads1x15", "voltage_a0", 0.2 + (i % 6) / 20, t))
        out.append(Record(ORG, "flat-1", "sht4x", "temperature", 19.0 + (i % 30) / 10, t))
        if i % 5:
            out.append(Record(ORG, "flat-1", "sht4x", "humidity", 60.0 + (i % 11), t))
    return out


@dataclass
class Town:
    client: Any
    kiosk: str = ""
    deployments: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    records: list[Record] = field(default_factory=readings)


def seed_town(engine: Any, town: Town) -> None:
    """Fill the registry: the organisation, its operator and viewer (with tokens), the four
    devices each deployed for its use-case, and a kiosk token of the four."""
    with Session(engine) as s:
        org = OrganisationRow(slug=ORG, name="Derived Town", created_at=NOW - 86400)
        s.add(org)
        s.flush()
        assert org.id is not None
        for role in ("operator", "viewer"):
            user = UserRow(
                email=f"{role}@derived.example",
                password_hash=hash_password(PASSWORD) if role == "operator" else "x",
                created_at=1.0,
            )
            s.add(user)
            s.flush()
            assert user.id is not None
            s.add(MembershipRow(user_id=user.id, org_id=org.id, role=role))
            raw = new_token()
            s.add(
                ApiTokenRow(
                    name=role,
                    token_hash=hash_secret(raw),
                    prefix=raw[:10],
                    org_id=org.id,
                    role=role,
                    user_id=user.id,
                    created_at=1.0,
                )
            )
            town.tokens[role] = {"Authorization": f"Bearer {raw}"}
        for key, device, case in (
            ("bin", "bin-1", "waste-bin-fill"),
            ("energy", "meter-1", "energy-metering"),
            ("counting", "count-1", "cyclist-counting"),
            ("damp", "flat-1", "housing-damp-mould"),
        ):
            s.add(DeviceRow(id=device, org_id=org.id, registered_at=NOW - 86400))
            dep = DeploymentRow(
                org_id=org.id,
                name=f"The {key}",
                use_case_id=case,
                starts_at=NOW - 86400,
                created_at=NOW - 86400,
                public=True,
                lat=56.15,
                lon=10.2,
            )
            s.add(dep)
            s.flush()
            assert dep.id is not None
            s.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=device, from_t=NOW - 86400))
            town.deployments[key] = dep.id
        kiosk = new_token()
        s.add(
            ApiTokenRow(
                name="screen",
                token_hash=hash_secret(kiosk),
                prefix=kiosk[:10],
                org_id=org.id,
                role="viewer",
                kind="kiosk",
                deployment_ids=list(town.deployments.values()),
                created_at=1.0,
            )
        )
        town.tokens["kiosk"] = {"Authorization": f"Bearer {kiosk}"}
        town.kiosk = kiosk
        s.commit()


@pytest.fixture
def town(settings: ServerSettings, store: Any) -> Iterator[Town]:
    """An organisation with a bin, an energy meter, a path counter and a damp flat, each deployed
    for its use-case, their readings in the store, an operator and a viewer token, a logged-in page."""
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        town = Town(client)
        seed_town(client.app.state.resources.engine, town)  # type: ignore[attr-defined]
        store.write(town.records)
        login = client.post(
            "/api/v1/auth/login", json={"email": "operator@derived.example", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        yield town


def _put(town: Town, key: str, rules: list[dict[str, Any]], who: str = "operator") -> Any:
    return town.client.put(
        f"/api/v1/deployments/{town.deployments[key]}/derived",
        json={"derivations": rules},
        headers=town.tokens[who],
    )


def _set(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if v is not None} for r in rules]


def _latest(html: str, list_id: str) -> dict[str, str]:
    block = re.search(rf'<dl class="[^"]*" id="{list_id}">(.*?)</dl>', html, re.S)
    assert block is not None, list_id
    return dict(
        re.findall(r'data-quantity="([a-z0-9_]+)".*?<span class="value">([^<]*)</span>', block.group(1), re.S)
    )


def test_definitions_are_versioned_and_bad_ones_refused(town: Town) -> None:
    """Test that a depth, ratio or voltage that is missing, zero or negative is refused (422) naming
    the parameter and what to set, a viewer may not set them, and each change is a new version."""
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("bin", {"kind": "fill_level"}, "depth_mm is missing"),
        ("bin", {"kind": "fill_level", "depth_mm": 0}, "depth_mm is 0"),
        ("bin", {"kind": "fill_level", "depth_mm": -1000}, "depth_mm is -1000"),
        ("energy", {"kind": "clamp", "channel": "a0", "mains_v": 230}, "ratio_a_per_v is missing"),
        (
            "energy",
            {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 0, "mains_v": 230},
            "ratio_a_per_v is 0",
        ),
        ("energy", {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30}, "mains_v is missing"),
        (
            "energy",
            {"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": -230},
            "mains_v is -230",
        ),
    ]
    for key, rule, words in bad:
        response = _put(town, key, [rule])
        assert response.status_code == 422, response.text
        assert words in response.text and "set it to" in response.text
    assert _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000}], who="viewer").status_code == 403
    stranger = _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000, "device": "meter-1"}])
    assert stranger.status_code == 422 and "'meter-1' is not in deployment" in stranger.text
    first = _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1200}])
    assert first.status_code == 200 and first.json()["config_versions"] == {"bin-1": 1}
    second = _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000}]).json()
    assert second["config_versions"] == {"bin-1": 2} and second["outputs"] == ["fill_level"]
    assert second["missing"] == []
    assert [(v["device"], v["version"]) for v in second["versions"]] == [("bin-1", 2), ("bin-1", 1)]
    assert _set(second["versions"][1]["derivations"]) == [{"kind": "fill_level", "depth_mm": 1200.0}]
    same = _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000}]).json()  # nothing new
    assert same["config_versions"] == {"bin-1": 2}
    # one version history per device: the derived section is in the device's config, beside the rest
    config = town.client.get("/api/v1/devices/bin-1/config/versions", headers=town.tokens["viewer"]).json()
    assert [(v["version"], _set(v["body"]["derived"])) for v in config] == [
        (2, [{"kind": "fill_level", "depth_mm": 1000.0}]),
        (1, [{"kind": "fill_level", "depth_mm": 1200.0}]),
    ]
    assert config[0]["note"] == f"derived quantities of deployment {town.deployments['bin']}"
    got = town.client.get(
        f"/api/v1/deployments/{town.deployments['bin']}/derived", headers=town.tokens["viewer"]
    )
    assert got.json()["headline"] == ["fill_level"]
    # the refused ones left nothing behind
    energy = town.client.get(
        f"/api/v1/deployments/{town.deployments['energy']}/derived", headers=town.tokens["viewer"]
    )
    assert energy.json()["config_versions"] == {} and energy.json()["missing"] == ["clamp"]
    # a deployment without a device yet has nowhere to keep them: refused with what to do first
    empty = town.client.post(
        "/api/v1/deployments",
        json={"name": "no Pi yet", "use_case_id": "waste-bin-fill"},
        headers=town.tokens["operator"],
    ).json()
    town.deployments["empty"] = empty["id"]
    refused = _put(town, "empty", [{"kind": "fill_level", "depth_mm": 1000}])
    assert refused.status_code == 409 and "enroll or claim its Pis first" in refused.text


def test_bin_page_shows_fill_level_first_raw_distance_a_click_away(town: Town) -> None:
    """Test that before the depth is set the page says what to set and shows the distance first;
    after it, the fill level (from the newest distance, as of the newest version) is read first and
    the distance sits in the raw readings' details; the stored readings are unchanged."""
    page = f"/deployments/{town.deployments['bin']}"
    before = town.client.get(page).text
    assert "needs the bin&#39;s depth" in before or "needs the bin's depth" in before
    assert "distance" in _latest(before, "latest") and "fill_level" not in _latest(before, "latest")
    _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000}])
    after = town.client.get(page).text
    newest = max((r for r in town.records if r.device == "bin-1"), key=lambda r: r.time)
    shown = _latest(after, "latest")
    assert list(shown) == ["fill_level"]
    assert float(shown["fill_level"]) == pytest.approx(fill_level(newest.value, 1000), abs=0.05)
    assert '<details class="raw" id="raw-latest">' in after and "distance" in _latest(after, "latest-raw")
    assert "needs the bin" not in after
    series = town.client.get(f"{page}/series?range=6h").json()
    blocks = {b["quantity"]: b for b in series["quantities"]}
    assert series["quantities"][0]["quantity"] == "fill_level"
    assert blocks["fill_level"]["headline"] and blocks["fill_level"]["derived"]
    assert not blocks["distance"]["headline"]
    assert blocks["fill_level"]["thresholds"][0]["value"] == 80
    raw = town.client.get(
        f"/api/v1/deployments/{town.deployments['bin']}/readings",
        params={"view": "raw", "start": NOW - 4 * 3600},
        headers=town.tokens["viewer"],
    ).json()
    assert [r["value"] for r in raw["readings"]] == [r.value for r in town.records if r.device == "bin-1"]


def test_counts_are_summed_per_window_hour_and_day(town: Town) -> None:
    """Test that charts of passes draw each window's sum (never the mean), passes per hour and per
    day are the sums of the readings in each clock hour and local day, and the page reads the last
    hour's and today's totals first."""
    mine = [r for r in town.records if r.device == "count-1"]
    series = town.client.get(f"/deployments/{town.deployments['counting']}/series?range=24h").json()
    blocks = {b["quantity"]: b for b in series["quantities"]}
    assert [b["quantity"] for b in series["quantities"]][:2] == ["passes_per_hour", "passes_per_day"]
    hourly = blocks["passes_per_hour"]["series"][0]
    want: dict[float, float] = {}
    for r in mine:
        want[math.floor(r.time / 3600) * 3600] = want.get(math.floor(r.time / 3600) * 3600, 0.0) + r.value
    assert dict(zip(hourly["times"], hourly["values"], strict=True)) == pytest.approx(want)
    assert blocks["passes_per_hour"]["summed"] and blocks["passes"]["summed"]
    # the raw chart's windows are sums too: they add up to every pass
    raw = blocks["passes"]["series"][0]
    assert sum(raw["values"]) == pytest.approx(sum(r.value for r in mine))
    assert max(raw["values"]) > 4  # a mean of 0..4 never exceeds 4; a 2-minute window's sum does
    daily = blocks["passes_per_day"]["series"][0]
    assert sum(daily["values"]) == pytest.approx(sum(r.value for r in mine))
    html = town.client.get(f"/deployments/{town.deployments['counting']}").text
    shown = _latest(html, "latest")
    assert list(shown) == ["passes_per_hour", "passes_per_day"]
    last_hour = sum(r.value for r in mine if r.time >= math.ceil((NOW - 3600) / 60) * 60)
    assert float(shown["passes_per_hour"].replace(",", "")) == pytest.approx(last_hour)


def test_dew_point_where_humidity_exists_raw_values_stay(town: Town, store: Any) -> None:
    """Test that the damp flat's dew point is computed where a humidity of the same time exists,
    and every temperature is still read (raw values shown when the input is missing)."""
    response = town.client.get(
        f"/api/v1/deployments/{town.deployments['damp']}/readings",
        params={"start": NOW - 4 * 3600, "limit": 100000},
        headers=town.tokens["viewer"],
    ).json()["readings"]
    temps = [r for r in town.records if r.device == "flat-1" and r.quantity == "temperature"]
    hums = {r.time: r.value for r in town.records if r.device == "flat-1" and r.quantity == "humidity"}
    dews = {r["time"]: r["value"] for r in response if r["quantity"] == "dew_point"}
    assert len([r for r in response if r["quantity"] == "temperature"]) == len(temps)
    assert dews.keys() == {t.time for t in temps if t.time in hums} and len(dews) < len(temps)
    for t in temps:
        if t.time in hums:
            assert dews[t.time] == pytest.approx(dew_point(t.value, hums[t.time]))
    units = {r["quantity"]: r["unit"] for r in response}
    assert units["dew_point"] == "Cel"
    html = town.client.get(f"/deployments/{town.deployments['damp']}").text
    shown = _latest(html, "latest")
    # the newest temperature has no humidity of its time: no dew point now, the raw values read first
    assert temps[-1].time not in hums
    assert list(shown) == ["humidity", "temperature"]
    # once the humidity of that moment arrives (a late backlog), the dew point is read first
    store.write([Record(ORG, "flat-1", "sht4x", "humidity", 70.0, temps[-1].time)])
    shown = _latest(town.client.get(f"/deployments/{town.deployments['damp']}").text, "latest")
    assert list(shown) == ["dew_point", "humidity", "temperature"]
    assert float(shown["dew_point"]) == pytest.approx(dew_point(temps[-1].value, 70.0), abs=0.05)


def test_exports_kiosk_and_public_page_show_what_people_read(town: Town) -> None:
    """Test that the CSV export carries current and power beside the raw volts (view=raw: only the
    volts), the kiosk shows only power and current, and the public page lists them first."""
    _put(town, "energy", [{"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230}])
    url = f"/api/v1/export/deployments/{town.deployments['energy']}/readings"
    start = {"start": NOW - 4 * 3600}
    read = list(
        csv.DictReader(
            line for line in io.StringIO(town.client.get(url, params=start).text) if not line.startswith("#")
        )
    )
    raw = list(
        csv.DictReader(
            line
            for line in io.StringIO(town.client.get(url, params={**start, "view": "raw"}).text)
            if not line.startswith("#")
        )
    )
    volts = [r for r in town.records if r.device == "meter-1"]
    assert [float(r["value"]) for r in raw] == [r.value for r in volts]
    power = [r for r in read if r["quantity"] == "power_a0"]
    assert len(power) == len(volts) and {r["unit"] for r in power} == {"kW"}
    assert float(power[0]["value"]) == pytest.approx(volts[0].value * 30 * 230 / 1000)
    assert {r["quantity"] for r in read} == {"voltage_a0", "current_a0", "power_a0"}
    counting = town.client.get(
        f"/api/v1/export/deployments/{town.deployments['counting']}/readings", params=start
    ).text
    assert "passes_per_hour" in counting and "passes_per_day" in counting

    kiosk = town.client.get("/kiosk/data", headers=town.tokens["kiosk"]).json()
    slides = {d["name"]: d for d in kiosk["deployments"]}
    energy = slides["The energy"]
    assert [r["quantity"] for r in energy["latest"]] == ["power_a0", "current_a0"]
    assert [c["quantity"] for c in energy["charts"]] == ["power_a0", "current_a0"]
    assert [r["quantity"] for r in slides["The bin"]["latest"]] == ["distance"]  # no depth yet: raw

    public = town.client.get(f"/public/deployments/{town.deployments['energy']}").text
    first = public.index('data-quantity="power_a0"')
    assert first < public.index('data-quantity="voltage_a0"')
    assert public.index("<details", first) < public.index('data-quantity="voltage_a0"')


def _card(html: str, device: str) -> tuple[dict[str, str], dict[str, str]]:
    """The live page's card of ``device``: its values read first, and its raw ones."""
    card = re.search(rf'<article class="card" data-device="{device}".*?</article>', html, re.S)
    assert card is not None, device
    first, _, raw = card.group(0).partition('<details class="raw"')

    def values(block: str) -> dict[str, str]:
        return dict(
            re.findall(r'data-quantity="([a-z0-9_]+)".*?<span class="value">([^<]*)</span>', block, re.S)
        )

    return values(first), values(raw)


def test_live_page_and_device_api_read_what_people_read(town: Town) -> None:
    """Test that the live page `/` and the device routes it polls show each device's derived
    quantities as the deployment pages do (one computation, ``server.derived``): the fill level,
    power and counts per hour read first, the raw readings a click away; ``view=raw`` reads only
    what the sensors sent; a derived quantity without its parameters leaves the raw values shown."""
    html = town.client.get("/").text
    first, raw = _card(html, "meter-1")  # no clamp ratio yet: the volts are read first
    assert "voltage_a0" in first and not any(q.startswith("power") for q in first)
    _put(town, "bin", [{"kind": "fill_level", "depth_mm": 1000}])
    _put(town, "energy", [{"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230}])
    html = town.client.get("/").text
    newest = max((r for r in town.records if r.device == "bin-1"), key=lambda r: r.time)
    first, raw = _card(html, "bin-1")
    assert list(first) == ["fill_level"] and list(raw) == ["distance"]
    assert float(first["fill_level"]) == pytest.approx(fill_level(newest.value, 1000), abs=0.05)
    first, raw = _card(html, "meter-1")
    assert list(first) == ["power_a0", "current_a0"] and list(raw) == ["voltage_a0"]
    first, raw = _card(html, "count-1")
    assert list(first) == ["passes_per_hour", "passes_per_day"] and "passes" in raw
    first, raw = _card(html, "flat-1")  # the newest temperature has no humidity of its time
    assert list(first) == ["humidity", "temperature"] and raw == {}

    viewer = town.tokens["viewer"]
    latest = town.client.get("/api/v1/devices/bin-1/latest", headers=viewer).json()
    assert latest["headline"] == ["fill_level"]
    assert [r["quantity"] for r in latest["readings"]] == ["fill_level", "distance"]
    raw_latest = town.client.get("/api/v1/devices/bin-1/latest", params={"view": "raw"}, headers=viewer)
    assert [r["quantity"] for r in raw_latest.json()["readings"]] == ["distance"]
    assert raw_latest.json()["headline"] is None
    counted = town.client.get("/api/v1/devices/count-1/latest", headers=viewer).json()
    assert [r["quantity"] for r in counted["readings"]][:2] == ["passes_per_hour", "passes_per_day"]
    span = {"start": NOW - 4 * 3600, "quantity": "fill_level"}
    fills = town.client.get("/api/v1/devices/bin-1/readings", params=span, headers=viewer).json()
    distances = [r for r in town.records if r.device == "bin-1"]
    assert [r["value"] for r in fills["readings"]] == pytest.approx(
        [fill_level(r.value, 1000) for r in distances]
    )
    refused = town.client.get(
        "/api/v1/devices/bin-1/readings", params={**span, "view": "raw"}, headers=viewer
    )
    assert refused.status_code == 422 and "fill_level" in refused.text
