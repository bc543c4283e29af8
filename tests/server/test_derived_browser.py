"""Derived quantities in a real browser: the deployment page reads the fill level first with the
raw distance one click away, the counting page draws sums, the kiosk and the public page show what
a person reads; axe finds nothing serious; screenshots are kept for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from gateway.store import SqliteStore
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.test_derived import PASSWORD, Town, seed_town
from tests.server.test_web_pages import axe, watch
from tests.server.web_world import Clock

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Town]]:
    tmp = tmp_path_factory.mktemp("derived-web")
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp / 'r.db'}",
        store=str(tmp / "s.db"),
        alert_interval_s=0,
        map_tiles_url="",
    )
    with (
        SqliteStore(settings.store) as store,
        ServerThread(create_app(settings, clock=Clock(NOW)), "127.0.0.1", 0) as server,
    ):
        url = f"http://127.0.0.1:{server.port}"
        town = Town(client=None)
        seed_town(server.app.state.resources.engine, town)
        store.write(town.records)
        for key, rules in (
            ("bin", [{"kind": "fill_level", "depth_mm": 1000}]),
            ("energy", [{"kind": "clamp", "channel": "a0", "ratio_a_per_v": 30, "mains_v": 230}]),
        ):
            response = httpx.put(
                f"{url}/api/v1/deployments/{town.deployments[key]}/derived",
                json={"derivations": rules},
                headers=town.tokens["operator"],
            )
            assert response.status_code == 200, response.text
        yield url, town


def _x_span(plot: Any) -> float:
    """Seconds the chart's x axis spans, as the chart says on its element."""
    expect(plot).to_have_attribute("data-x-max", re.compile(r"^\d"))
    return float(plot.get_attribute("data-x-max") or "nan") - float(plot.get_attribute("data-x-min") or "nan")


def _context(browser: Any, url: str, *, login: bool = True) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    if login:
        response = ctx.request.post(
            f"{url}/api/v1/auth/login", data={"email": "operator@derived.example", "password": PASSWORD}
        )
        assert response.ok, response.text()
    return ctx


def test_pages_read_derived_first_and_raw_a_click_away(
    browser: Any, site: tuple[str, Town], screenshot_dir: Path
) -> None:
    """Test that the bin's page shows the fill level first, its chart in the main charts, the raw
    distance hidden until its details are opened; the counting page reads totals first and draws
    its counts as bars; no console error, axe 0 serious, on each page and the kiosk and public page."""
    url, town = site
    ctx = _context(browser, url)
    try:
        page = ctx.new_page()
        errors = watch(page)
        page.goto(f"{url}/deployments/{town.deployments['bin']}?range=6h")
        expect(page.locator('#latest [data-quantity="fill_level"] .value')).to_be_visible()
        expect(page.locator('#charts figure[data-quantity="fill_level"] canvas')).to_have_count(1)
        raw = page.locator('#latest-raw [data-quantity="distance"]')
        expect(raw).to_be_hidden()
        expect(page.locator("#raw-charts-box summary")).to_have_text("Charts of the raw readings (1)")
        page.locator("#raw-latest summary").click()
        page.locator("#raw-charts-box summary").click()
        expect(raw).to_be_visible()
        expect(page.locator('#raw-charts figure[data-quantity="distance"] canvas')).to_have_count(1)
        expect(page.locator("#export-raw")).to_have_attribute("href", re.compile("view=raw"))
        assert _x_span(page.locator('#charts figure[data-quantity="fill_level"] .plot')) >= 6 * 3600
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshot_dir / "derived-bin.png"), full_page=True)
        assert axe(page) == []

        page.goto(f"{url}/deployments/{town.deployments['counting']}?range=24h")
        expect(page.locator('#latest [data-quantity="passes_per_hour"] .value')).to_be_visible()
        expect(page.locator('#charts figure[data-quantity="passes_per_hour"] canvas')).to_have_count(1)
        expect(page.locator('#charts figure[data-quantity="passes_per_day"] canvas')).to_have_count(1)
        for quantity in ("passes_per_hour", "passes_per_day"):  # count bars stand on zero, no axis below
            plot = page.locator(f'#charts figure[data-quantity="{quantity}"] .plot')
            expect(plot).to_have_attribute("data-y-min", re.compile(r"^\d"))
            assert float(plot.get_attribute("data-y-min") or "nan") == 0.0
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshot_dir / "derived-counting.png"), full_page=True)
        assert axe(page) == []

        page.goto(f"{url}/deployments/{town.deployments['energy']}?range=6h")
        expect(page.locator('#latest [data-quantity="power_a0"] .value')).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "derived-energy.png"), full_page=True)
        assert axe(page) == []
        assert errors == []
    finally:
        ctx.close()

    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        page = ctx.new_page()
        errors = watch(page)
        page.goto(f"{url}/kiosk?rotate_ms=600000#token={town.kiosk}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        slide = page.locator("section.slide:visible")
        expect(slide.locator('.numbers [data-quantity="fill_level"]')).to_be_visible()
        expect(slide.locator('.numbers [data-quantity="distance"]')).to_have_count(0)
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshot_dir / "derived-kiosk.png"))
        assert axe(page) == []

        page.goto(f"{url}/public/deployments/{town.deployments['energy']}")
        expect(page.locator('table.others [data-quantity="power_a0"]').first).to_be_visible()
        expect(page.locator('table.raw-values [data-quantity="voltage_a0"]')).to_be_hidden()
        charts = page.locator(".station .charts").first
        expect(charts.locator('figure[data-quantity="power_a0"] canvas')).to_have_count(1)
        expect(page.locator('.raw-charts figure[data-quantity="voltage_a0"]')).to_be_hidden()
        # "Last 7 days" spans 7 days, however few hours have readings.
        assert _x_span(charts.locator('figure[data-quantity="power_a0"] .plot')) >= 7 * 86400
        page.screenshot(path=str(screenshot_dir / "derived-public.png"), full_page=True)
        assert axe(page) == []
        assert errors == []
    finally:
        ctx.close()


def test_live_page_reads_derived_first(browser: Any, site: tuple[str, Town], screenshot_dir: Path) -> None:
    """Test that the live page `/`, once its script has polled, reads each device's derived
    quantities first (fill level, power, counts per hour) and charts them, the raw readings behind
    a click; no console error, axe 0 serious."""
    url, _ = site
    ctx = _context(browser, url)
    try:
        page = ctx.new_page()
        errors = watch(page)
        page.goto(f"{url}/")
        bin_card = page.locator('article[data-device="bin-1"]')
        # Charts are drawn by the script only: once there, the cards are the polled ones.
        expect(bin_card.locator('figure[data-quantity="fill_level"] canvas')).to_have_count(1)
        expect(bin_card.locator(".latest .metric").first).to_have_attribute("data-quantity", "fill_level")
        distance = bin_card.locator('.raw [data-quantity="distance"]')
        expect(distance).to_be_hidden()
        bin_card.locator(".raw summary").click()
        expect(distance).to_be_visible()
        meter = page.locator('article[data-device="meter-1"]')
        expect(meter.locator(".latest .metric").first).to_have_attribute("data-quantity", "power_a0")
        expect(meter.locator('figure[data-quantity="power_a0"] canvas')).to_have_count(1)
        counter = page.locator('article[data-device="count-1"]')
        expect(counter.locator(".latest .metric").first).to_have_attribute("data-quantity", "passes_per_hour")
        expect(counter.locator('.raw [data-quantity="passes"]')).to_be_hidden()
        page.wait_for_timeout(300)  # let uPlot draw before the picture
        page.screenshot(path=str(screenshot_dir / "derived-live.png"), full_page=True)
        assert axe(page) == []
        assert errors == []
    finally:
        ctx.close()
