"""Tests of server/app.py and the route registry (server/api/routes/__init__.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

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


def test_api_reference_lists_every_operation_without_scripts(client: TestClient) -> None:
    """Test that /docs and /redoc show every operation of the OpenAPI description (method, path,
    parameters, answers) as plain HTML that loads nothing from outside the server (FastAPI's own
    pages were blank: their scripts come from a CDN the pages' policy blocks)."""
    import re

    spec = client.get("/api/v1/openapi.json").json()
    wanted = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    for url in ("/docs", "/redoc"):
        answer = client.get(url)
        assert answer.status_code == 200 and "text/html" in answer.headers["content-type"], url
        html = answer.text
        shown = set(re.findall(r'data-method="([A-Z]+)" data-path="([^"]+)"', html))
        assert shown == wanted, url
        scripts = re.findall(r"<script([^>]*)>", html)
        assert all(re.search(r'src="/static/', attrs) for attrs in scripts), (url, scripts)
        assert not re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(?:https?:)?//', html), url
        assert 'href="/api/v1/openapi.json"' in html
        ids = re.findall(r'\sid="([^"]*)"', html)
        assert all(" " not in i for i in ids) and len(ids) == len(set(ids)), url
        for target in re.findall(r'href="#([^"]+)"', html):  # every contents link has its section
            assert target in ids, (url, target)
    # A path parameter is listed with where it goes and that it is required.
    html = client.get("/docs").text
    readings = html.split('data-path="/api/v1/devices/{device}/readings"', 1)[1].split("</article>", 1)[0]
    assert "<code>device</code>" in readings and "<td>path</td>" in readings


def test_the_live_page_links_only_to_pages_its_policy_lets_load(client: TestClient) -> None:
    """Test that every page the live page links to loads its scripts and styles from the server
    itself, as the Content-Security-Policy (`'self'`) requires: its "JSON API" link went to /docs,
    whose Swagger UI comes from a CDN the policy blocks, so it was a blank page (offline too)."""
    import re

    html = client.get("/").text
    links = {href for href in re.findall(r'href="(/[^"#]*)"', html) if not href.startswith("/static/")}
    assert links, html
    for href in links:
        answer = client.get(href)
        assert answer.status_code == 200, href
        if "html" not in answer.headers.get("content-type", ""):
            continue
        assets = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+)"', answer.text)
        outside = [a for a in assets if re.match(r"^(https?:)?//", a)]
        assert not outside, f"{href} loads {outside}, which the page's policy blocks"


def test_a_serving_app_freezes_what_its_startup_loaded(tmp_path: Path) -> None:
    """``create_app(freeze_heap=True)`` (``suitcase server run``) freezes the heap once its startup
    has run (the registry's migrations and the catalogue are loaded then, not when the app is
    built) and collects young objects less often; a test app does neither. In a child process:
    a frozen heap is never collected, so this process's own collector is left alone."""
    script = f"""
import gc
from fastapi.testclient import TestClient
from server.app import YOUNG_COLLECTION_EVERY, create_app
from server.settings import ServerSettings

default = gc.get_threshold()
for freeze in (False, True):
    settings = ServerSettings(
        registry_url="sqlite:///{tmp_path}/registry-" + str(freeze) + ".db",
        store="{tmp_path}/store.db",
        alert_interval_s=0,
    )
    app = create_app(settings, freeze_heap=freeze)
    built = gc.get_freeze_count()
    with TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 200
        started = gc.get_freeze_count()
    print(freeze, built, started, gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *default[1:]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines[0] == ["False", "0", "0", "False"]
    frozen, built, started, tuned = lines[1]
    assert (frozen, built, tuned) == ("True", "0", "True")
    assert int(started) > 50_000  # the modules, the app and what its startup loaded
