"""Tests of server/api/routes/catalog.py: kit profiles and use-cases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kits.catalog import load_catalog
from kits.models import KitProfile, UseCase


def test_kit_profiles_list_the_catalogue(client: TestClient) -> None:
    """Test that every kit profile of the catalogue is listed, with the use-cases recommending it."""
    body = client.get("/api/v1/kit-profiles").json()
    catalog = load_catalog()
    assert body["count"] == len(catalog.kit_profiles)
    starter = next(p for p in body["data"] if p["id"] == "starter")
    assert starter["use_cases"] == sorted(
        u.id for u in catalog.use_cases.values() if u.kit_profile == "starter"
    )
    assert "indoor-climate" in starter["use_cases"]
    assert starter["sensors"][0]["part"] == "bme280"


def test_kit_profile_round_trips_to_the_contract_model(client: TestClient) -> None:
    """Test that one kit profile is returned whole: it validates as kits.models.KitProfile."""
    body = client.get("/api/v1/kit-profiles/starter").json()
    body.pop("use_cases")
    assert KitProfile.model_validate(body) == load_catalog().kit_profiles["starter"]


def test_use_cases_list_and_get(client: TestClient) -> None:
    """Test that use-cases are listed and one is returned whole."""
    listing = client.get("/api/v1/use-cases").json()
    assert [u["id"] for u in listing["data"]] == sorted(load_catalog().use_cases)
    body = client.get("/api/v1/use-cases/indoor-climate").json()
    assert body.pop("read_only") is True and body.pop("org_id") is None
    assert UseCase.model_validate(body) == load_catalog().use_cases["indoor-climate"]


def test_unknown_ids_are_404_listing_known_ids(client: TestClient) -> None:
    """Test that an unknown kit profile or use-case is a 404 whose detail names the known ids."""
    profile = client.get("/api/v1/kit-profiles/deluxe")
    assert profile.status_code == 404
    assert "'deluxe'" in profile.json()["detail"] and "starter" in profile.json()["detail"]
    case = client.get("/api/v1/use-cases/bin-fill")
    assert case.status_code == 404
    assert "indoor-climate" in case.json()["detail"]
