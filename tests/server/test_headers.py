"""Security headers on every response (``server/headers.py``) and the request body limit
(``server/body_limit.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.headers import content_security_policy
from server.settings import ServerSettings
from tests.server.data import NOW

PATHS = ["/", "/public", "/login", "/static/app.js", "/api/v1/health", "/api/v1/kits", "/no/such/page"]


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        max_body_bytes=64 * 1024,
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        yield client


@pytest.mark.parametrize("path", PATHS)
def test_every_response_has_the_security_headers(app_client: TestClient, path: str) -> None:
    """Test that pages, static files, API answers and errors all carry CSP and the other headers."""
    headers = app_client.get(path).headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in headers["permissions-policy"]
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert "strict-transport-security" not in headers  # development is plain HTTP


def test_policy_lets_in_the_map_tiles_only_from_their_server() -> None:
    """Test that images may come from the tile server's origin (not its path template) only."""
    csp = content_security_policy("https://tiles.example.org:8443/{z}/{x}/{y}.png")
    assert "img-src 'self' data: https://tiles.example.org:8443;" in csp
    assert "img-src 'self' data:;" in content_security_policy("")


def test_production_adds_hsts(tmp_path: Path) -> None:
    """Test that a production server (behind TLS) tells browsers to stay on HTTPS."""
    # A production server also needs a secure broker (tests/test_production_refusals.py); these
    # headers do not depend on it, so the settings are copied into production unchecked.
    settings = ServerSettings(
        secret_key="a-long-random-secret-for-this-test",
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
    ).model_copy(update={"environment": "production"})
    from kits.catalog import load_catalog
    from server.db import create_registry_engine, init_registry

    engine = create_registry_engine(settings.registry_url)
    init_registry(engine, load_catalog(settings.catalog_dir), upgrade=True)
    engine.dispose()
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        assert client.get("/api/v1/health").headers["strict-transport-security"].startswith("max-age=")


def test_a_body_over_the_limit_is_refused_with_413(app_client: TestClient) -> None:
    """Test that a declared body over the limit gets 413 with a message naming the limit and the fix."""
    response = app_client.post("/api/v1/auth/login", content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    body = response.json()
    assert body["status"] == 413 and "65536 bytes" in body["detail"]
    assert "SUITCASE_SERVER_MAX_BODY_BYTES" in body["detail"]


def test_a_chunked_body_is_counted_as_it_arrives(app_client: TestClient) -> None:
    """Test that a body sent without Content-Length is refused once it passes the limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"y" * 4096

    response = app_client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and "65536 bytes" in response.json()["detail"]


def test_a_body_under_the_limit_is_read(app_client: TestClient) -> None:
    """Test that an ordinary request still gets its ordinary answer."""
    response = app_client.post("/api/v1/auth/login", json={"email": "a@b.dk", "password": "x" * 1000})
    assert response.status_code == 401
