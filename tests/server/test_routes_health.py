"""Tests of server/api/routes/health.py, and of what the server answers when its store goes down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import PUBLIC_STORE_REASON, create_app
from server.settings import ServerSettings
from tests.server.data import NOW, climate
from tests.server.world import World
from tests.services.influxdb import InfluxD
from tests.stores import InfluxStore


def test_health_probes_the_store(client: TestClient, store: Any, settings: ServerSettings) -> None:
    """Test that health is ok and names the store's backend once the store answers, before and after
    the gateway wrote readings."""
    scheme = "influxdb1" if settings.store.startswith("influxdb1://") else "sqlite"
    assert client.get("/api/v1/health").json() == {"status": "ok", "store": scheme}
    store.write(climate("dev-a", NOW - 5))
    assert client.get("/api/v1/health").json() == {"status": "ok", "store": scheme}


@pytest.mark.influxdb
def test_store_down_at_runtime_is_a_503_and_a_page_that_says_so(
    influxd_factory: Callable[..., InfluxD], tmp_path: Path
) -> None:
    """Test that once InfluxDB stops, the API answers 503 with the reason and the pages say the store
    is unreachable (never a 500, never an empty page that pretends there is no data), and that it
    recovers when InfluxDB is back."""
    private = influxd_factory()
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=f"{private.sink_url}?timeout=3",
        alert_interval_s=0,
    )
    with InfluxStore(private.sink_url) as gateway:
        gateway.write(climate("dev-a", NOW - 5))
        with TestClient(create_app(settings, clock=lambda: NOW), raise_server_exceptions=False) as client:
            assert client.get("/api/v1/devices/dev-a/latest").status_code == 200
            assert "dev-a" in client.get("/").text
            world = World.build(client)
            private.stop()
            address = private.sink_url.split("//", 1)[1].split("/", 1)[0]
            for path in (
                "/api/v1/health",
                "/api/v1/devices",
                "/api/v1/devices/dev-a/latest",
                "/api/v1/dead-letters",
            ):
                answer = client.get(path)
                assert answer.status_code == 503, (path, answer.status_code, answer.text)
                body = answer.json()
                # The public learns that the store is down, not where it lives.
                assert body == {"detail": PUBLIC_STORE_REASON, "error": "store_unavailable", "status": 503}
                assert answer.headers["Retry-After"] == "10"
            staff = world.call("root", "GET", "/devices")
            assert staff.status_code == 503
            assert "cannot reach InfluxDB" in staff.json()["detail"], staff.json()
            page = client.get("/")
            assert page.status_code == 503
            assert "The data store is unreachable" in page.text and "No readings yet" not in page.text
            assert "cannot reach InfluxDB" not in page.text and address not in page.text
            private.start()
            assert client.get("/api/v1/health").status_code == 200
            assert client.get("/api/v1/devices/dev-a/latest").json()["readings"]


@pytest.mark.browser
@pytest.mark.influxdb
def test_store_down_page_in_a_browser(
    influxd_factory: Callable[..., InfluxD], browser: Any, tmp_path: Path, screenshot_dir: Path
) -> None:
    """Test that the page a person sees while the store is down says so plainly, in both languages,
    with no console error and no serious axe violation."""
    from server.runner import ServerThread
    from tests.server.test_web_pages import axe

    private = influxd_factory()
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=f"{private.sink_url}?timeout=3",
        alert_interval_s=0,
    )
    with InfluxStore(private.sink_url) as gateway:
        gateway.write(climate("dev-a", NOW - 5))
    with ServerThread(create_app(settings, clock=lambda: NOW), "127.0.0.1", 0) as server:
        private.stop()
        for lang, title in (("en", "The data store is unreachable"), ("da", "Datalageret kan ikke nås")):
            context = browser.new_context(extra_http_headers={"Accept-Language": lang})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            answer = page.goto(f"{server.url}/")
            assert answer is not None and answer.status == 503
            assert page.locator("h1").inner_text() == title
            assert page.locator(".reason").count() == 0  # the store's address is for its operators
            page.screenshot(path=str(screenshot_dir / f"store-unreachable-{lang}.png"), full_page=True)
            assert axe(page) == []
            assert errors == []
            context.close()
