"""The pages in headless Chromium against a running server with data (issue 6).

One server for the module (``web``), over the registry and store of :mod:`tests.server.web_world`,
with a clock the tests move. Map tiles are answered locally (a 1x1 PNG) unless a test says the
network is down. Every page is checked for console errors and with axe-core (0 serious or
critical violations, WCAG 2.1 A/AA rules), and photographed into ``screenshot_dir``.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect

from gateway.store import SqliteStore
from kits.wire import Record
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.web_world import PASSWORD, Clock, WebWorld, build_web_world, catalog_with_air, pm_readings
from tests.waiting import wait_until

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PNG_1X1 = base64.b64decode(  # a 1x1 light-grey tile
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGN48vI+AAVhAq1eGR7AAAAAAElFTkSuQmCC"
)
TZ = ZoneInfo("Europe/Copenhagen")


class Web:
    def __init__(self, server: ServerThread, world: WebWorld, clock: Clock, store: SqliteStore) -> None:
        self.server, self.world, self.clock, self.store = server, world, clock, store
        self.url = server.url


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    tmp = tmp_path_factory.mktemp("web")
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp / 'registry.db'}",
        store=str(tmp / "store.db"),
        catalog_dir=catalog_with_air(tmp),
        alert_interval_s=0,
    )
    clock = Clock(NOW)
    with (
        SqliteStore(settings.store) as store,
        ServerThread(create_app(settings, clock=clock), "127.0.0.1", 0) as server,
    ):
        world = build_web_world(server.app.state.resources.engine, store, NOW)
        yield Web(server, world, clock, store)


@pytest.fixture
def context(browser: Any, web: Web) -> Iterator[Any]:
    """A browser context whose map tiles are served locally ("online" without the internet)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.route(
        "https://tile.openstreetmap.org/**",
        lambda route: route.fulfill(body=PNG_1X1, content_type="image/png"),
    )
    yield ctx
    ctx.close()


def login(context: Any, web: Web, email: str) -> None:
    response = context.request.post(
        f"{web.url}/api/v1/auth/login", data={"email": email, "password": PASSWORD}
    )
    assert response.ok, response.text()


def watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def axe(page: Any) -> list[dict[str, Any]]:
    """Run axe-core's WCAG 2.1 A and AA rules; return the serious and critical violations."""
    # Through the DevTools protocol: the pages' policy (rightly) refuses an injected <script> tag.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {runOnly: {type: 'tag',
             values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations
             .map(v => ({id: v.id, impact: v.impact,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def phone_width(page: Any, most: int = 400) -> int:
    """The page's width once laid out for a phone: charts take their new size on a later frame (was
    read after a fixed 300 ms, which a loaded renderer can miss); at most 30 s."""
    deadline = time.monotonic() + 30
    while (width := int(page.evaluate("document.documentElement.scrollWidth"))) > most:
        if time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    return width


def check(page: Any, errors: list[str], shots: Path, name: str, *, phone: bool = False) -> None:
    page.wait_for_timeout(250)  # let charts and maps draw
    page.screenshot(path=str(shots / f"web-{name}.png"), full_page=True)
    assert axe(page) == [], name
    if phone:
        page.set_viewport_size({"width": 390, "height": 844})
        width = phone_width(page)
        page.screenshot(path=str(shots / f"web-{name}-phone.png"), full_page=True)
        assert width <= 400, f"{name} scrolls sideways on a phone ({width} px)"
        page.set_viewport_size({"width": 1280, "height": 900})
    assert errors == [], (name, errors)


def test_staff_pages_load_clean_and_accessible(context: Any, web: Web, screenshot_dir: Path) -> None:
    """Test that the fleet, kits, deployment, catalogue and deploy pages load with data, no console
    errors and no serious or critical axe violations, on a desktop and a phone."""
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{web.url}/fleet")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    check(page, errors, screenshot_dir, "login")
    page.fill("#email", "admin@govtech.dk")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/fleet$"))
    expect(page.locator("#fleet-table tbody tr")).to_have_count(3)
    expect(page.locator("#count-total")).to_have_text("3")
    library = page.locator('tr[data-device="odense-library-m2x1"]')
    expect(library).to_contain_text("failing")
    school = page.locator('tr[data-device="aarhus-school7-k3f9"]')
    expect(school).to_contain_text("GT-001")
    expect(school.locator(".badge.err", has_text="Overdue")).to_have_count(1)
    expect(page.locator("#count-calibration")).to_have_text("1")
    check(page, errors, screenshot_dir, "fleet", phone=True)
    page.goto(f"{web.url}/fleet?size=2")  # pages of 2: the page links
    expect(page.locator("#fleet-table tbody tr")).to_have_count(2)
    check(page, errors, screenshot_dir, "fleet-pages", phone=True)
    page.click("#fleet-pager a[rel=next]")
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
    expect(page.locator("#fleet-pager [aria-current=page]")).to_have_text("Page 2 of 2")

    page.goto(f"{web.url}/fleet?state=offline")
    expect(page.locator("#fleet-empty")).to_be_visible()
    page.goto(f"{web.url}/kits")
    expect(page.locator("#overdue")).to_contain_text("GT-001")
    expect(page.locator('[data-kit="GT-001"]')).to_contain_text("1 missing")
    expect(page.locator('[data-kit="AAR-AIR-1"] .where')).to_contain_text("Harbour street air")
    check(page, errors, screenshot_dir, "kits", phone=True)

    page.goto(f"{web.url}/deployments/{web.world.deployments['school']}")
    for quantity in ("temperature", "humidity", "pressure"):
        expect(page.locator(f'figure[data-quantity="{quantity}"] canvas')).to_have_count(1)
    expect(page.locator("#alerts")).to_contain_text("Too warm")
    expect(page.locator("#map.leaflet-container")).to_have_attribute("data-tiles", "on")
    check(page, errors, screenshot_dir, "deployment", phone=True)

    page.goto(f"{web.url}/use-cases")
    total = page.locator("#usecases > li").count()
    assert total >= 2  # the catalogue's use-cases plus the test-only air-quality one
    expect(page.locator("#usecases > li:visible")).to_have_count(total)
    page.fill("#c-q", "street-air-quality")
    expect(page.locator("#usecases > li:visible")).to_have_count(1)
    page.select_option("#c-sensor", "pmsa003i")
    expect(page.locator('#usecases > li[data-id="street-air-quality"]')).to_be_visible()
    page.fill("#c-q", "")
    page.select_option("#c-sensor", "")
    check(page, errors, screenshot_dir, "catalogue", phone=True)
    page.goto(f"{web.url}/use-cases/street-air-quality")
    expect(page.locator('figure[data-quantity="pm2_5"] canvas')).to_have_count(1)
    check(page, errors, screenshot_dir, "use-case")
    page.click("#deploy")
    expect(page).to_have_url(re.compile(r"/use-cases/street-air-quality/deploy$"))
    check(page, errors, screenshot_dir, "deploy")


def test_deploy_this_creates_a_deployment_and_an_enrollment_code(
    context: Any, web: Web, screenshot_dir: Path
) -> None:
    """Test that "deploy this" creates the deployment through the API and makes an enrollment code."""
    login(context, web, "operator@aarhus.dk")
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{web.url}/use-cases/indoor-climate/deploy")
    page.fill("#d-name", "Town hall, meeting room 3")
    page.fill("#d-address", "Rådhuspladsen 2, Aarhus")
    page.click("#deploy-form button[type=submit]")
    expect(page.locator("#enroll")).to_be_visible()
    page.click("#make-code")
    expect(page.locator("#code-result")).to_contain_text("suitcase edge enroll")
    expect(page.locator("#code-result")).to_contain_text("EN-")
    page.screenshot(path=str(screenshot_dir / "web-deploy-enroll.png"), full_page=True)
    assert errors == []


def test_a_late_answer_for_the_old_range_does_not_replace_the_picked_one(
    context: Any, web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that when the range picker changes while polls of the old range are on their way, the
    old range's answers, arriving after the new one's, are not drawn: the store answers a day's
    windows slowly here, so 24-hour polls land after the year's answer (the page drew 24 hours
    again and kept them until its next slow poll, a minute later)."""
    windows = SqliteStore.series_windows

    def slow_short_ranges(
        self: SqliteStore, org: str, device: str, start: float, end: float, *a: Any, **k: Any
    ) -> Any:
        if end - start <= 2 * 86_400:
            time.sleep(0.8)
        return windows(self, org, device, start, end, *a, **k)

    login(context, web, "viewer@aarhus.dk")
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{web.url}/deployments/{web.world.deployments['school']}?poll_ms=200&range=24h")
    expect(page.locator("#charts")).to_have_attribute("data-range", "24h")
    monkeypatch.setattr(SqliteStore, "series_windows", slow_short_ranges)
    page.wait_for_timeout(500)  # 24-hour polls on their way, each answered in 0.8 s
    page.get_by_text("1 year", exact=True).click()
    expect(page.locator("#charts")).to_have_attribute("data-range", "1y")
    page.wait_for_timeout(2000)  # every 24-hour poll on its way lands meanwhile
    assert page.locator("#charts").get_attribute("data-range") == "1y"
    assert "range=1y" in page.url
    assert errors == []


def test_deployment_charts_range_and_live_update(context: Any, web: Web) -> None:
    """Test that the charts have data, the range picker reloads downsampled data, and a new reading
    shows up without a reload."""
    login(context, web, "viewer@aarhus.dk")
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{web.url}/deployments/{web.world.deployments['school']}?poll_ms=300")
    plot = page.locator('figure[data-quantity="temperature"] .plot')
    expect(plot).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    page.get_by_text("1 year", exact=True).click()
    expect(page.locator("#charts")).to_have_attribute("data-range", "1y")
    assert int(plot.get_attribute("data-points") or 0) <= 1000
    page.get_by_text("1 hour", exact=True).click()
    expect(page.locator("#charts")).to_have_attribute("data-range", "1h")
    assert "range=1h" in page.url
    web.store.write([Record("aarhus", web.world.devices["school"], "bme280", "temperature", 29.87, NOW - 1)])
    value = page.locator('#latest [data-quantity="temperature"] .value')
    expect(value).to_have_text("29.9", timeout=30_000)  # polled every 300 ms; generous under load
    assert errors == []


def test_series_have_at_most_1000_points_for_every_range(web: Web) -> None:
    """Test that every range from 1 h to 1 year is downsampled on the server to <= 1,000 points."""
    with httpx.Client(base_url=web.url) as client:
        client.post("/api/v1/auth/login", json={"email": "admin@govtech.dk", "password": PASSWORD})
        for key in ("1h", "6h", "24h", "7d", "30d", "1y"):
            body = client.get(
                f"/deployments/{web.world.deployments['school']}/series", params={"range": key}
            ).json()
            assert body["quantities"], key
            for block in body["quantities"]:
                for series in block["series"]:
                    assert 0 < len(series["times"]) <= 1000, (key, block["quantity"], len(series["times"]))
        assert (
            client.get(f"/deployments/{web.world.deployments['school']}/series?range=2d").status_code == 422
        )


def _independent(
    readings: list[Record], quantity: str, now: float
) -> tuple[float | None, dict[str, tuple[float | None, int]]]:
    """Rolling 24 h and local calendar-day means, computed from the raw readings from scratch."""
    hours: dict[int, list[float]] = {}
    for r in readings:
        if r.quantity == quantity:
            hours.setdefault(int(r.time // 3600), []).append(r.value)
    hourly = {h: sum(v) / len(v) for h, v in hours.items()}
    current = int(now // 3600)
    window = [hourly[h] for h in range(current - 24, current) if h in hourly]
    rolling = sum(window) / len(window) if len(window) >= 18 else None
    days: dict[str, list[float]] = {}
    for h, v in hourly.items():
        days.setdefault(datetime.fromtimestamp(h * 3600, UTC).astimezone(TZ).date().isoformat(), []).append(v)
    daily = {d: (sum(v) / len(v) if len(v) >= 18 else None, len(v)) for d, v in days.items()}
    return rolling, daily


def test_public_page_means_match_an_independent_computation(
    context: Any, web: Web, screenshot_dir: Path
) -> None:
    """Test that the public page's rolling 24 h and calendar-day means equal a from-scratch
    computation over the raw readings, that a day below 75 % coverage says "not enough data", and
    that the WHO and EEA references, the averaging period, the humidity caveat and a 7-day chart
    per pollutant are shown."""
    page = context.new_page()
    errors = watch(page)
    dep = web.world.deployments["harbour"]
    page.goto(f"{web.url}/public/deployments/{dep}")
    raw = pm_readings(web.world.devices["harbour"], NOW)
    for quantity in ("pm2_5", "pm10"):
        rolling, daily = _independent(raw, quantity, NOW)
        section = page.locator(f'section.pollutant[data-quantity="{quantity}"]')
        shown = float(section.locator(".rolling").get_attribute("data-value") or "nan")
        assert rolling is not None and math.isclose(shown, rolling, abs_tol=1e-5), (quantity, shown, rolling)
        rows = section.locator("tr.day")
        assert rows.count() == 7
        for i in range(rows.count()):
            row = rows.nth(i)
            day = row.get_attribute("data-day") or ""
            expected, hours = daily.get(day, (None, 0))
            assert int(row.get_attribute("data-hours") or -1) == hours, day
            if expected is None:
                assert row.get_attribute("data-value") is None
                expect(row).to_contain_text("not enough data")
            else:
                assert math.isclose(
                    float(row.get_attribute("data-value") or "nan"), expected, abs_tol=1e-5
                ), day
        assert daily["2025-06-12"] == (None, 12)  # the short day is really short
        expect(section.locator('tr.day[data-day="2025-06-12"]')).to_contain_text("not enough data")
    humid = [
        r.value
        for r in raw
        if r.quantity == "humidity" and NOW // 3600 * 3600 - 86400 <= r.time < NOW // 3600 * 3600
    ]
    hourly_humid: dict[int, list[float]] = {}
    for r in raw:
        if r.quantity == "humidity" and NOW // 3600 * 3600 - 86400 <= r.time < NOW // 3600 * 3600:
            hourly_humid.setdefault(int(r.time // 3600), []).append(r.value)
    caveat = any(sum(v) / len(v) > 85 for v in hourly_humid.values())
    assert humid
    expect(page.locator(".caveat")).to_have_count(1 if caveat else 0)
    expect(page.locator(".caveat-note")).to_contain_text("85 %")
    body = page.locator("main")
    expect(body).to_contain_text("European Air Quality Index (EEA), 2024 revision")
    expect(body).to_contain_text("WHO global air quality guidelines (2021)")
    expect(body).to_contain_text("Averaging period")
    expect(body).to_contain_text("location blurred to about 500 m")
    expect(body).not_to_contain_text("Havnegade")  # the private address
    expect(body).not_to_contain_text(web.world.devices["harbour"])  # no device ids
    expect(page.locator("#map")).to_have_attribute("data-markers", "1")
    for quantity in ("pm2_5", "pm10"):  # the 7-day chart, from the open series endpoint
        figure = page.locator(f'article.station figure.chart[data-quantity="{quantity}"]')
        expect(figure.locator("canvas")).to_have_count(1)
        assert int(figure.locator(".plot").get_attribute("data-points") or 0) > 24
    check(page, errors, screenshot_dir, "public-deployment", phone=True)

    page.goto(f"{web.url}/public")
    expect(page.locator("#stations li")).to_have_count(2)
    expect(page.locator("#map")).to_have_attribute("data-markers", "2")
    check(page, errors, screenshot_dir, "public", phone=True)
    page.goto(f"{web.url}/public/use-cases/street-air-quality")
    expect(page.locator("article.station")).to_have_count(1)
    check(page, errors, screenshot_dir, "public-use-case")
    page.goto(f"{web.url}/docs")  # the API reference: plain HTML, no script from outside
    expect(page.locator("article.operation").first).to_be_visible()
    check(page, errors, screenshot_dir, "api-docs", phone=True)

    web.clock.now = NOW + 3600  # an hour without data: every public sensor is stale
    try:
        page.goto(f"{web.url}/public/deployments/{dep}")
        station = page.locator("article.station")
        expect(station).to_have_attribute("data-stale", "true")
        assert "grayscale" in station.evaluate("e => getComputedStyle(e).filter")
        page.screenshot(path=str(screenshot_dir / "web-public-stale.png"), full_page=True)
    finally:
        web.clock.now = NOW


def test_map_falls_back_to_an_outline_when_offline(browser: Any, web: Web, screenshot_dir: Path) -> None:
    """Test that without tiles (the network is down) the map still shows its markers on a grid."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    ctx.route("https://tile.openstreetmap.org/**", lambda route: route.abort())
    try:
        page = ctx.new_page()
        page.goto(f"{web.url}/public")
        expect(page.locator("#map")).to_have_attribute("data-tiles", "off")
        expect(page.locator("#map")).to_have_class(re.compile("offline"))
        expect(page.locator("#map-note")).to_contain_text("Offline map")
        expect(page.locator("#map path.leaflet-interactive")).to_have_count(2)
        page.screenshot(path=str(screenshot_dir / "web-public-offline-map.png"))
    finally:
        ctx.close()


def test_fleet_shows_a_device_going_offline_within_its_stale_window(
    context: Any, web: Web, screenshot_dir: Path
) -> None:
    """Test that the live fleet page turns a device offline once its last reading is older than the
    stale window (120 s), and not before, as the server's clock moves."""
    login(context, web, "admin@govtech.dk")
    page = context.new_page()
    errors = watch(page)
    school = web.world.devices["school"]
    last = max(r.time for r in web.store.latest([("aarhus", school)]))
    try:
        web.clock.now = last + 60
        page.goto(f"{web.url}/fleet?poll_ms=200")
        row = page.locator(f'tr[data-device="{school}"]')
        expect(row).to_have_attribute("data-state", "online")
        web.clock.now = last + 110
        page.wait_for_timeout(600)
        expect(row).to_have_attribute("data-state", "online")
        web.clock.now = last + 125
        expect(row).to_have_attribute("data-state", "offline", timeout=30_000)
        expect(row.locator(".state")).to_have_text("Offline")
        page.screenshot(path=str(screenshot_dir / "web-fleet-offline.png"), full_page=True)
        web.clock.now = last + 30
        web.store.write([Record("aarhus", school, "bme280", "temperature", 22.0, last + 20)])
        expect(row).to_have_attribute("data-state", "online", timeout=30_000)
    finally:
        web.clock.now = NOW
    assert errors == []


def test_a_viewer_of_one_organisation_sees_nothing_of_another(context: Any, web: Web) -> None:
    """Test that an Odense viewer sees Odense's device and kit only, and gets 404 for Aarhus's."""
    login(context, web, "viewer@odense.dk")
    page = context.new_page()
    page.goto(f"{web.url}/fleet")
    expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
    expect(page.locator("main")).not_to_contain_text("aarhus")
    expect(page.locator("main")).not_to_contain_text("Aarhus")
    page.goto(f"{web.url}/kits")
    expect(page.locator("[data-kit]")).to_have_count(1)
    expect(page.locator("main")).not_to_contain_text("GT-001")
    response = page.goto(f"{web.url}/deployments/{web.world.deployments['school']}")
    assert response is not None and response.status == 404
    expect(page.locator("main")).not_to_contain_text("School 7")
    series = context.request.get(f"{web.url}/deployments/{web.world.deployments['school']}/series")
    assert series.status == 404
    kiosk = context.request.get(f"{web.url}/kiosk/data")  # a session, not a kiosk token
    assert kiosk.status == 401
    assert kiosk.json()["error"] == "unauthorized" and "kiosk token" in kiosk.json()["detail"]
    missing = context.request.get(f"{web.url}/public/deployments/999999/series")
    assert missing.status == 404
    assert missing.json() == {
        "detail": "public deployment 999999 does not exist",
        "error": "not_found",
        "status": 404,
    }


def test_both_languages_render(browser: Any, web: Web, screenshot_dir: Path) -> None:
    """Test that ?lang=da renders Danish (and sticks), and Accept-Language picks Danish by itself."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="da-DK")
    ctx.route(
        "https://tile.openstreetmap.org/**",
        lambda route: route.fulfill(body=PNG_1X1, content_type="image/png"),
    )
    try:
        page = ctx.new_page()
        errors = watch(page)
        page.goto(f"{web.url}/public/deployments/{web.world.deployments['harbour']}")
        expect(page.locator("html")).to_have_attribute("lang", "da")
        expect(page.locator("main")).to_contain_text("Løbende 24-timers gennemsnit")
        expect(page.locator("main")).to_contain_text("ikke nok data")
        check(page, errors, screenshot_dir, "public-deployment-da")
        page.goto(f"{web.url}/use-cases?lang=en")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.goto(f"{web.url}/use-cases")  # the cookie keeps English
        expect(page.locator("h1")).to_have_text("Use-case catalogue")
        login(ctx, web, "admin@govtech.dk")
        page.goto(f"{web.url}/fleet?lang=da")
        expect(page.locator("h1")).to_have_text("Flådeoverblik")
        expect(page.locator('tr[data-device="odense-library-m2x1"]')).to_contain_text("fejler")
        check(page, errors, screenshot_dir, "fleet-da")
        page.goto(f"{web.url}/kits")
        expect(page.locator("h1")).to_have_text("Kufferter og udlån")
        page.goto(f"{web.url}/deployments/{web.world.deployments['school']}")
        expect(page.locator("#charts-h")).to_have_text("Grafer")
        check(page, errors, screenshot_dir, "deployment-da")
    finally:
        ctx.close()


def test_keyboard_navigation_of_catalogue_and_public_page(context: Any, web: Web) -> None:
    """Test that the catalogue's search, filters and use-cases, and the public page's sensors, are
    reached and opened with the keyboard alone."""
    page = context.new_page()
    page.goto(f"{web.url}/use-cases")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#c-q")
    page.keyboard.type("street-air-quality")
    expect(page.locator("#cat-count")).to_contain_text(re.compile(r"^1 of \d+"))
    tab_to("#usecases a.title")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/use-cases/street-air-quality"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/use-cases/street-air-quality$"))

    page.goto(f"{web.url}/public")
    tab_to("#stations a")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/public/deployments/\d+$"))
    tab_to("a[href^='/use-cases/']")


def test_kiosk_says_when_it_updated_in_the_zone_of_its_clock(browser: Any, web: Web) -> None:
    """Test that the kiosk's "updated" time is in the deployment's zone, as its clock beside it: on a
    laptop set to another zone the footer read "10:37 · updated 09:37:00"."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="America/New_York")
    try:
        page = ctx.new_page()
        page.goto(f"{web.url}/kiosk?rotate_ms=600000#token={web.world.kiosk_token}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")

        def in_zone(selector: str) -> bool:  # within 2 minutes of the deployment's local time
            found = re.search(r"(\d\d):(\d\d)", page.locator(selector).inner_text())
            if found is None:
                return False
            local = datetime.now(TZ)
            apart = abs(int(found.group(1)) * 60 + int(found.group(2)) - (local.hour * 60 + local.minute))
            return min(apart, 1440 - apart) <= 2

        # the clock ticks each second, "updated" at each refresh
        wait_until(lambda: in_zone("#clock") and in_zone("#updated"), 30, "clock and 'updated' in Copenhagen")
    finally:
        ctx.close()


def test_kiosk_rotates_500_times_without_heap_growth(browser: Any, web: Web, screenshot_dir: Path) -> None:
    """Test that the kiosk shows its token's deployments full-screen, rotates, and that 500 rotations
    on a fast clock (rotate_ms=20) grow the JS heap by less than 10 %."""
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        page = ctx.new_page()
        errors = watch(page)
        page.goto(f"{web.url}/kiosk?rotate_ms=20000#token={web.world.kiosk_token}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        slide = page.locator("section.slide:visible")
        expect(slide.locator(".kchart canvas")).to_have_count(3)
        expect(slide.locator(".numbers dd .value").first).not_to_have_text("")
        page.screenshot(path=str(screenshot_dir / "web-kiosk.png"))
        assert axe(page) == []

        page.goto(f"{web.url}/kiosk?rotate_ms=20&refresh_ms=600000#token={web.world.kiosk_token}")
        # warm up; a function, not a string: the policy refuses eval, which a string predicate uses
        page.wait_for_function("() => window.kiosk && window.kiosk.rotations >= 100", timeout=30000)
        cdp = ctx.new_cdp_session(page)
        cdp.send("HeapProfiler.enable")

        def heap() -> float:
            samples = []
            for _ in range(3):
                cdp.send("HeapProfiler.collectGarbage")
                samples.append(float(cdp.send("Runtime.getHeapUsage")["usedSize"]))
            return min(samples)

        def rotations() -> int:
            return int(page.evaluate("window.kiosk.rotations"))

        # Wait without polling inside the page (wait_for_function would allocate in its heap).
        before, start = heap(), rotations()
        while rotations() < start + 500:
            page.wait_for_timeout(2000)
        after = heap()
        growth = (after - before) / before
        (screenshot_dir / "kiosk-heap.txt").write_text(
            f"rotations {rotations() - start}, "
            f"heap {before:.0f} -> {after:.0f} bytes, growth {growth * 100:.2f} %\n"
        )
        print(
            f"kiosk heap growth over 500 rotations: {growth * 100:.2f} % ({before:.0f} -> {after:.0f} bytes)"
        )
        assert growth < 0.10, (before, after)
        shown = page.evaluate("document.body.dataset.deployment")
        assert shown in {str(web.world.deployments["school"]), str(web.world.deployments["harbour"])}
        page.screenshot(path=str(screenshot_dir / "web-kiosk-after-rotations.png"))
        assert errors == []
        bad = ctx.new_page()
        bad.goto(f"{web.url}/kiosk#token=sct_wrong")
        expect(bad.locator("#kiosk-error")).to_contain_text("unknown, revoked or expired")
    finally:
        ctx.close()


def test_kit_import_page_shows_problems_by_row_then_imports(
    context: Any, web: Web, screenshot_dir: Path
) -> None:
    """Test that the import page checks a CSV, lists each problem with its row and column (nothing
    imported), then imports the fixed file and shows the claim codes it made; axe-clean throughout."""
    login(context, web, "operator@aarhus.dk")
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{web.url}/kits")
    page.click("a[href='/kits/import']")
    expect(page).to_have_url(re.compile(r"/kits/import$"))
    check(page, errors, screenshot_dir, "kit-import", phone=True)
    page.fill(
        "#i-text", "kit,profile,pi\nCSV-1,starter,1\nCSV-1,starter,1\nCSV-2,starter,x\nGT-001,starter,1\n"
    )
    page.click("#i-check")
    rows = page.locator("#import-problems tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("3")
    expect(rows.nth(0)).to_contain_text("also on row 2")
    expect(rows.nth(1)).to_contain_text("pi")
    expect(page.locator("#import-summary")).to_contain_text("nothing was imported")
    # The browser logs the refused request (422) itself; the page handled it.
    errors[:] = [e for e in errors if "status of 422" not in e]
    check(page, errors, screenshot_dir, "kit-import-problems")
    page.fill("#i-text", "kit,profile,pi\nCSV-1,starter,1\nGT-001,starter,1\n")
    page.click("#i-import")
    expect(page.locator("#import-problems tbody tr")).to_have_count(1)
    expect(page.locator("#import-problems")).to_contain_text("already exists")
    page.fill("#i-text", "kit,profile,pi\nCSV-1,starter,1\nCSV-1,starter,2\n")
    page.click("#i-check")
    expect(page.locator("#import-summary")).to_contain_text("1 kits with 2 Pis would be imported")
    page.click("#i-import")
    expect(page.locator("#import-summary")).to_contain_text("Imported 1 kits")
    expect(page.locator("#import-codes tbody tr")).to_have_count(3)
    expect(page.locator("#import-codes")).to_contain_text("SC-")
    errors[:] = [e for e in errors if "status of 422" not in e]
    check(page, errors, screenshot_dir, "kit-import-done")
