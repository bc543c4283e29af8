"""Tests of server/app.py and the route registry (server/api/routes/__init__.py)."""

from __future__ import annotations

import importlib

from fastapi import APIRouter
from fastapi.testclient import TestClient

from server.api.routes import ROUTES


def test_every_registered_route_module_has_a_router() -> None:
    """Test that each name in ROUTES is a module exporting an APIRouter."""
    for name in ROUTES:
        module = importlib.import_module(f"server.api.routes.{name}")
        assert isinstance(module.router, APIRouter), name


def test_openapi_lists_the_api_under_v1(client: TestClient) -> None:
    """Test that the OpenAPI schema builds and every route is under /api/v1."""
    paths = set(client.get("/api/v1/openapi.json").json()["paths"])
    assert all(path.startswith("/api/v1/") for path in paths)
    assert paths >= {
        "/api/v1/health",
        "/api/v1/kit-profiles",
        "/api/v1/kit-profiles/{profile_id}",
        "/api/v1/use-cases",
        "/api/v1/use-cases/{use_case_id}",
        "/api/v1/devices",
        "/api/v1/devices/{device}/latest",
        "/api/v1/devices/{device}/readings",
        "/api/v1/dead-letters",
    }
    assert client.get("/docs").status_code == 200
