"""Error pages for people (``server/web/errors.py``): a browser gets HTML in the site's layout and
language; the API and JSON clients keep the JSON bodies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
    )
    app = create_app(settings, clock=lambda: NOW)

    # Routes that fail as a page of a later feature might: the handlers must not care which page.
    @app.get("/test/forbidden")
    def forbidden() -> None:
        raise HTTPException(status_code=403, detail="you are a viewer of aarhus: ask an admin for operator")

    @app.get("/test/login")
    def login() -> None:
        raise HTTPException(status_code=401, detail="log in first", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/test/bug")
    def bug() -> None:
        raise RuntimeError("secret internals of the bug")

    @app.get("/api/v1/test-bug")
    def api_bug() -> None:
        raise RuntimeError("secret internals of the bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _page(response: object) -> str:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.headers["content-type"].startswith("text/html"), response.text
    text = response.text
    assert '<header class="site">' in text and '<a class="skip" href="#main">' in text  # the layout
    assert "<script>" not in text and " onclick=" not in text  # the CSP allows no inline script
    return text


def test_an_unknown_page_answers_a_browser_with_a_page_in_its_language(client: TestClient) -> None:
    """Test that a browser asking for /no/such/page gets a 404 page naming the path, in English or,
    by ?lang= or Accept-Language, in Danish."""
    response = client.get("/no/such/page", headers={"Accept": BROWSER})
    assert response.status_code == 404
    text = _page(response)
    assert '<html lang="en">' in text and "<h1>Page not found</h1>" in text and "/no/such/page" in text
    danish = client.get("/no/such/page", headers={"Accept": BROWSER, "Accept-Language": "da,en;q=0.5"})
    assert danish.status_code == 404 and '<html lang="da">' in _page(danish)
    assert "<h1>Siden findes ikke</h1>" in danish.text
    assert "<h1>Siden findes ikke</h1>" in _page(client.get("/nope?lang=da", headers={"Accept": BROWSER}))


def test_the_api_and_json_clients_keep_json_bodies(client: TestClient) -> None:
    """Test that the API answers even a browser with JSON, and non-API paths answer fetch() and
    API clients (Accept */* or application/json) with JSON too."""
    for path, accept in [
        ("/api/v1/no-such-route", BROWSER),
        ("/no/such/page", "*/*"),
        ("/no/such/page", "application/json"),
        ("/no/such/page", "application/json, text/html"),
    ]:
        response = client.get(path, headers={"Accept": accept})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found", "error": "not_found", "status": 404}


def test_forbidden_and_login_pages_say_what_to_do(client: TestClient) -> None:
    """Test that 403 shows "Not allowed" with the API's detail under Details, and 401 links to the
    login page with the way back, keeping the WWW-Authenticate header."""
    forbidden = client.get("/test/forbidden", headers={"Accept": BROWSER})
    assert forbidden.status_code == 403
    text = _page(forbidden)
    assert "<h1>Not allowed</h1>" in text and "ask an admin for operator" in text and "<details" in text
    login = client.get("/test/login", headers={"Accept": BROWSER})
    assert login.status_code == 401 and login.headers["www-authenticate"] == "Bearer"
    assert 'href="/login?next=/test/login"' in _page(login)
    assert client.get("/test/forbidden").json()["error"] == "forbidden"


def test_a_server_error_gives_nothing_away(client: TestClient) -> None:
    """Test that a bug answers a browser with a 500 page and the API with a JSON body, neither
    showing the exception, both with the security headers."""
    page = client.get("/test/bug", headers={"Accept": BROWSER})
    assert page.status_code == 500
    text = _page(page)
    assert "<h1>Something went wrong</h1>" in text and "secret internals" not in text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    api = client.get("/api/v1/test-bug", headers={"Accept": BROWSER})
    assert api.status_code == 500 and "secret internals" not in api.text
    assert api.json()["error"] == "internal_server_error"
    assert api.headers["x-frame-options"] == "DENY"
