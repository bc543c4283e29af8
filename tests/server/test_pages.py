"""Tests of server/web/pages.py: the live readings page as the server renders it."""

from __future__ import annotations

from html.parser import HTMLParser

from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from tests.server.data import NOW, climate


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_empty_page_says_how_to_get_readings(client: TestClient) -> None:
    """Test that with no device the page shows the empty state, title, count and language."""
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<title>IoT Suitcase — live readings</title>" in html
    assert "No readings yet: start an edge agent with <code>suitcase edge run</code>" in html
    assert "0 devices" in html and "Last update" in html
    tags = _tags(html)
    assert ("html", {"lang": "en"}) in tags
    empty = next(attrs for tag, attrs in tags if attrs.get("id") == "empty")
    assert "hidden" not in empty


def test_page_shows_a_card_per_device_with_latest_values(client: TestClient, store: SqliteStore) -> None:
    """Test that each device gets a card with its latest values, units and age; no empty state."""
    store.write(climate("dev-a", NOW - 4, temperature=23.25))
    store.write(climate("dev-b", NOW - 600, org="odense"))
    html = client.get("/").text
    tags = _tags(html)
    cards = [attrs["data-device"] for tag, attrs in tags if tag == "article"]
    assert cards == ["dev-a", "dev-b"]
    assert "2 devices" in html
    assert "23.2" in html or "23.3" in html
    assert "°C" in html and "% RH" in html and "hPa" in html
    assert "4 s ago" in html and "10 min ago" in html
    assert "Stale" in html and "Reporting" in html
    empty = next(attrs for tag, attrs in tags if attrs.get("id") == "empty")
    assert "hidden" in empty


def test_page_assets_are_served_locally(client: TestClient) -> None:
    """Test that the page's scripts and styles come from /static (vendored uPlot, no CDN)."""
    tags = _tags(client.get("/").text)
    assets = [
        a.get("src") or a.get("href")
        for t, a in tags
        if t in ("script", "link") and (a.get("src") or a.get("href"))
    ]
    assert "/static/vendor/uPlot.iife.min.js" in assets and "/static/live.js" in assets
    for asset in assets:
        assert asset is not None
        if asset.startswith("data:"):  # inline (the empty favicon): nothing fetched at all
            continue
        assert asset.startswith("/static/")
        assert client.get(asset).status_code == 200
