"""Every page under the Content-Security-Policy in headless Chromium: no violation is reported, and
a deployment named like an HTML attack shows as text on the map (stored XSS, issue 13).

The pages are taken from the app's route table, so a new page without an entry here fails.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from playwright.sync_api import expect
from sqlmodel import Session

from gateway.store import SqliteStore
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings
from server.tables import DeploymentRow
from tests.server.data import NOW
from tests.server.web_world import PASSWORD, Clock, WebWorld, build_web_world, catalog_with_air

pytestmark = pytest.mark.browser

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGN48vI+AAVhAq1eGR7AAAAAAElFTkSuQmCC"
)
ATTACK = '<img src=x onerror="window.__xss=1">Market <b>square</b>'
# Collects what the browser reports; an init script runs before the page's own and is not itself
# subject to the page's policy.
COLLECT = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile,
   line: e.lineNumber}));
"""


class Site:
    def __init__(self, server: ServerThread, world: WebWorld, attack_id: int) -> None:
        self.server, self.world, self.attack_id = server, world, attack_id
        self.url = server.url


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("csp")
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp / 'registry.db'}",
        store=str(tmp / "store.db"),
        catalog_dir=catalog_with_air(tmp),
        alert_interval_s=0,
    )
    with (
        SqliteStore(settings.store) as store,
        ServerThread(create_app(settings, clock=Clock(NOW)), "127.0.0.1", 0) as server,
    ):
        engine = server.app.state.resources.engine
        world = build_web_world(engine, store, NOW)
        with Session(engine) as s:
            row = DeploymentRow(
                org_id=world.orgs["aarhus"],
                name=ATTACK,
                use_case_id="street-air-quality",
                lat=55.86,
                lon=9.85,
                public=True,
                starts_at=NOW - 86400,
                created_at=NOW,
            )
            s.add(row)
            s.commit()
            assert row.id is not None
            attack_id = row.id
        yield Site(server, world, attack_id)


def pages(site: Site) -> dict[str, str]:
    """Every HTML page of the route table, as a URL with this world's ids filled in."""
    w = site.world
    kit = 1  # GT-001, the first kit the world adds
    fill = {
        "/deployments/{deployment_id}": f"/deployments/{w.deployments['school']}",
        "/use-cases/{use_case_id}": "/use-cases/street-air-quality",
        "/use-cases/{use_case_id}/deploy": "/use-cases/street-air-quality/deploy",
        "/public/deployments/{deployment_id}": f"/public/deployments/{site.attack_id}",
        "/public/use-cases/{use_case_id}": "/public/use-cases/street-air-quality",
        "/kits/{kit_id}/unboxing": f"/kits/{kit}/unboxing",
        "/kiosk": f"/kiosk#token={w.kiosk_token}",
        "/claim": "/claim#code=not-a-code",
    }
    return {path: fill.get(path, path) for path in html_routes(site.server.app.routes)}


def html_routes(routes: list[Any], prefix: str = "") -> list[str]:
    """The paths of the GET routes answering HTML, through FastAPI's lazily included routers."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += html_routes(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute) and "GET" in route.methods and route.response_class is HTMLResponse:
            found.append(prefix + route.path)
    return found


@pytest.fixture
def context(browser: Any, site: Site) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.route(
        "https://tile.openstreetmap.org/**", lambda r: r.fulfill(body=PNG_1X1, content_type="image/png")
    )
    ctx.add_init_script(COLLECT)
    yield ctx
    ctx.close()


def test_no_page_reports_a_csp_violation(context: Any, site: Site) -> None:
    """Test that every page (and the not-found page), logged in as a global admin, loads and runs its
    scripts with no Content-Security-Policy violation and no console error."""
    response = context.request.post(
        f"{site.url}/api/v1/auth/login", data={"email": "admin@govtech.dk", "password": PASSWORD}
    )
    assert response.ok
    urls = pages(site)
    assert {"/", "/fleet", "/public", "/kiosk", "/login"} <= set(urls), urls
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    seen: dict[str, list[Any]] = {}
    for path, url in [*urls.items(), ("not found", "/no/such/page")]:
        reply = page.goto(site.url + url)
        assert reply is not None and "content-security-policy" in reply.headers, path
        page.wait_for_timeout(300)  # let maps, charts and polls run
        seen[path] = page.evaluate("window.__csp")
    assert {p: v for p, v in seen.items() if v} == {}
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == []


def test_a_deployment_name_is_text_on_the_map(context: Any, site: Site, screenshot_dir: Path) -> None:
    """Test that a deployment named with HTML shows that text in the map's tooltip and runs nothing."""
    page = context.new_page()
    page.goto(f"{site.url}/public")
    expect(page.locator("#map path.leaflet-interactive")).to_have_count(3)
    tip = page.locator(".leaflet-tooltip", has_text="Market")
    for i in range(3):  # the markers are close together: hover each until the attack's tooltip opens
        page.locator("#map path.leaflet-interactive").nth(i).dispatch_event("mouseover")
        if tip.count():
            break
    expect(tip).to_have_text(ATTACK)
    assert tip.locator("img, b").count() == 0
    page.screenshot(path=str(screenshot_dir / "web-map-tooltip-text.png"))
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("window.__csp") == []
    assert re.search("Market", page.locator("#stations").text_content() or "")
