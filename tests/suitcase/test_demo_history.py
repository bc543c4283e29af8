"""``suitcase.demo_history``: the demo's organisation, public deployments, kiosk token and
simulated history, so every page has data the moment the demo starts."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.store import SqliteStore
from kits.catalog import load_catalog
from kits.derived import fill_level
from server.app import create_app
from server.db import create_registry_engine
from server.security import hash_secret
from server.settings import ServerSettings
from server.tables import ApiTokenRow, DeploymentRow, OrganisationRow
from suitcase.demo import DEFAULT_DEVICES, DEMO_ORG, DEMO_SCENARIOS, _agent_config
from suitcase.demo_history import (
    BIN_DEPTH_MM,
    CLAMP,
    DEMO_KIND,
    HISTORY_DAYS,
    backfill_history,
    seed_registry,
)


def _setup(tmp_path: Path) -> tuple[str, SqliteStore, list, float]:
    configs = [_agent_config(i, "127.0.0.1", 1883, 1.0) for i in range(2)]
    return (
        f"sqlite:///{tmp_path / 'registry.sqlite'}",
        SqliteStore(tmp_path / "store.sqlite"),
        configs,
        time.time(),
    )


def test_first_start_backfills_days_of_history(tmp_path: Path) -> None:
    """Test that seeding and backfilling two Pis writes several days of history, with PM for the
    street Pi, and that a second start writes no history again (its speed is measured in
    benchmarks/bench_store.py, against a bare insert of the same rows)."""
    url, store, configs, now = _setup(tmp_path)
    access = seed_registry(url, load_catalog(), DEMO_ORG, configs, since=now - HISTORY_DAYS * 86400, now=now)
    written = backfill_history(store, configs, DEMO_ORG, now)
    assert access.first_start and len(access.deployments) == 2
    assert written > 2 * HISTORY_DAYS * 24 * 12 * 3  # 5-minute steps, 3+ quantities per Pi
    seen = {d.device: d for d in store.devices()}
    assert set(seen) == {"demo-pi-1", "demo-pi-2"}
    assert all(d.first_seen <= now - (HISTORY_DAYS - 0.01) * 86400 for d in seen.values())
    pm = store.readings(DEMO_ORG, "demo-pi-2", now - 86400, now, quantity="pm2_5")
    assert len(pm) >= 24 * 12 - 1 and all(math.isfinite(r.value) and r.value >= 0 for r in pm)
    assert backfill_history(store, configs, DEMO_ORG, now + 60) == 0
    store.close()


def test_demo_data_is_marked_simulated_public_and_has_a_kiosk_token(tmp_path: Path) -> None:
    """Test that the demo organisation is of kind demo, its deployments are public and say
    "simulated", and each start issues a new kiosk token (revoking the previous one)."""
    url, store, configs, now = _setup(tmp_path)
    first = seed_registry(url, load_catalog(), DEMO_ORG, configs, since=now - 86400, now=now)
    second = seed_registry(url, load_catalog(), DEMO_ORG, configs, since=now - 86400, now=now + 10)
    assert not second.first_start and second.deployments == first.deployments
    engine = create_registry_engine(url)
    with Session(engine) as s:
        org = s.exec(select(OrganisationRow).where(OrganisationRow.slug == DEMO_ORG)).one()
        assert org.kind == DEMO_KIND
        deps = s.exec(select(DeploymentRow)).all()
        assert len(deps) == 2 and all(d.public and "simulated" in d.notes for d in deps)
        assert {d.use_case_id for d in deps} >= {"indoor-climate"}
        old = s.exec(
            select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_secret(first.kiosk_token))
        ).one()
        new = s.exec(
            select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_secret(second.kiosk_token))
        ).one()
        assert old.revoked_at is not None and new.revoked_at is None
        assert new.kind == "kiosk" and sorted(new.deployment_ids) == sorted(second.deployments)
    engine.dispose()
    store.close()


def test_pages_have_data_at_once(tmp_path: Path) -> None:
    """Test that right after the backfill the public page shows a rolling 24 h mean labelled
    simulated, and the kiosk data has charts for every deployment."""
    url, store, configs, now = _setup(tmp_path)
    access = seed_registry(url, load_catalog(), DEMO_ORG, configs, since=now - HISTORY_DAYS * 86400, now=now)
    backfill_history(store, configs, DEMO_ORG, now)
    settings = ServerSettings(registry_url=url, store=str(tmp_path / "store.sqlite"), alert_interval_s=0)
    with TestClient(create_app(settings)) as client:
        page = client.get(f"/public/deployments/{access.deployments[1]}")
        assert page.status_code == 200
        assert 'class="rolling" data-value="' in page.text and "Simulated" in page.text
        kiosk = client.get("/kiosk/data", headers={"Authorization": f"Bearer {access.kiosk_token}"}).json()
        assert len(kiosk["deployments"]) == 2
        assert all(d["charts"] and d["simulated"] for d in kiosk["deployments"])
    store.close()


def test_default_demo_shows_every_use_case_as_people_read_it(tmp_path: Path) -> None:
    """Test that the default demo's Pis show every use-case it ships, each read as a person reads
    it on the kiosk: the office a dew point beside temperature and humidity, the street air its
    particulate matter, the bin a fill level (from its history's newest distance and the depth in
    its device config, not the raw distance), the footpath passes per hour and per day (sums of its
    history's counts), the distribution board power and current (from the clamp's RMS volts)."""
    url, store, _, now = _setup(tmp_path)
    configs = [_agent_config(i, "127.0.0.1", 1883, 1.0) for i in range(DEFAULT_DEVICES)]
    assert [c.scenario for c in configs] == list(DEMO_SCENARIOS)
    access = seed_registry(url, load_catalog(), DEMO_ORG, configs, since=now - 86400, now=now)
    backfill_history(store, configs, DEMO_ORG, now, days=1)
    newest = {r.quantity: r.value for r in store.latest([(DEMO_ORG, "demo-pi-3"), (DEMO_ORG, "demo-pi-5")])}
    hour = store.readings(DEMO_ORG, "demo-pi-4", now - 3600, now, quantity="passes")
    settings = ServerSettings(registry_url=url, store=str(tmp_path / "store.sqlite"), alert_interval_s=0)
    # The server's "now" is the test's: a minute boundary crossed before the request moves the
    # hour's window by a minute's count (CI: 410 against 446).
    with TestClient(create_app(settings, clock=lambda: now)) as client:
        kiosk = client.get("/kiosk/data", headers={"Authorization": f"Bearer {access.kiosk_token}"}).json()
        slides = {d["name"]: d for d in kiosk["deployments"]}
        assert sorted(slides) == [
            "Footpath counter, demo Pi 4",
            "Office climate, demo Pi 1",
            "Office power, demo Pi 5",
            "Street air, demo Pi 2",
            "Waste bin, demo Pi 3",
        ]
        shown = {name: [r["quantity"] for r in d["latest"]] for name, d in slides.items()}
        bin_slide = slides["Waste bin, demo Pi 3"]
        assert bin_slide["use_case"] == "Waste-bin fill level"
        assert shown["Waste bin, demo Pi 3"] == ["fill_level"]
        assert bin_slide["latest"][0]["value"] == pytest.approx(fill_level(newest["distance"], BIN_DEPTH_MM))
        assert [c["quantity"] for c in bin_slide["charts"]] == ["fill_level"]
        assert shown["Office climate, demo Pi 1"] == ["temperature", "humidity", "dew_point"]
        assert "pm2_5" in shown["Street air, demo Pi 2"]
        counter = slides["Footpath counter, demo Pi 4"]
        assert shown["Footpath counter, demo Pi 4"] == ["passes_per_hour", "passes_per_day"]
        per_hour = counter["latest"][0]["value"]
        assert per_hour > 0 and per_hour == pytest.approx(
            sum(r.value for r in hour if r.time >= math.ceil((now - 3600) / 60) * 60)
        )
        power = slides["Office power, demo Pi 5"]
        assert shown["Office power, demo Pi 5"] == ["power_a0", "current_a0"]
        amps = newest["voltage_a0"] * CLAMP["ratio_a_per_v"]
        assert power["latest"][1]["value"] == pytest.approx(amps)
        assert power["latest"][0]["value"] == pytest.approx(amps * CLAMP["mains_v"] / 1000)
    store.close()
