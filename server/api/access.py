"""Who may call which route: deny by default, per kind of caller.

Every route that resolves the caller (:func:`server.api.auth.get_principal`) is checked here
first, before its own organisation and role checks:

- an anonymous caller may use the :data:`PUBLIC` routes, and the :data:`OPEN_READS` routes on a
  server whose reads are open (the demo); anything else is 401 (a page: a redirect to the login);
- a person (browser session) or a person's ``api`` token may use every route, within their role;
- a ``kiosk`` or ``device`` token may use only the routes its kind names in
  :data:`KIND_ROUTES`; anything else is 403. A kiosk's URL sits on a public screen, a device's
  token on an SD card: neither is a person.

A new route is therefore closed to anonymous callers, kiosks and devices until it is listed here,
and ``tests/server/test_authz_matrix.py`` fails until its expected statuses are written down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request

__all__ = [
    "KIND_ROUTES",
    "LOGIN_PAGES",
    "OPEN_READS",
    "PUBLIC",
    "RouteKey",
    "iter_routes",
    "route_key",
]

RouteKey = tuple[str, str]

# Open to everyone: the catalogue, health, logging in and out, the agent's enrollment calls and its
# update's wheel (checked by the agent against the SHA-256 sent over its MQTT session), open
# data (each route serves public deployments only to those who are not members), the public pages,
# the API docs, and the page shells whose secret travels in the URL fragment (kiosk, claim).
PUBLIC: frozenset[RouteKey] = frozenset(
    {
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/static"),
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/kit-profiles"),
        ("GET", "/api/v1/kit-profiles/{profile_id}"),
        ("GET", "/api/v1/use-cases"),
        ("GET", "/api/v1/use-cases/{use_case_id}"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/claims/poll"),
        ("POST", "/api/v1/enroll"),
        ("GET", "/api/v1/agent-releases/{version}/{filename}"),
        ("GET", "/api/v1/export/deployments/{deployment_id}/readings"),
        ("GET", "/api/v1/export/use-cases/{use_case_id}/readings"),
        ("GET", "/api/v1/export/deployments.geojson"),
        ("GET", "/login"),
        ("GET", "/use-cases"),
        ("GET", "/use-cases/{use_case_id}"),
        ("GET", "/public"),
        ("GET", "/public/deployments/{deployment_id}"),
        ("GET", "/public/use-cases/{use_case_id}"),
        ("GET", "/public/deployments/{deployment_id}/series"),
        ("GET", "/kiosk"),
        ("GET", "/claim"),
    }
)

# Open to anonymous callers only where the settings open reads (``open_reads``; on by default in
# development: the demo's live page).
OPEN_READS: frozenset[RouteKey] = frozenset(
    {
        ("GET", "/"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/devices/{device}"),
        ("GET", "/api/v1/devices/{device}/latest"),
        ("GET", "/api/v1/devices/{device}/readings"),
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/deployments/{deployment_id}/readings"),
        ("GET", "/api/v1/deployments/{deployment_id}/chart"),
    }
)

# Pages that send an anonymous visitor to the login page (and back) instead of answering 401.
LOGIN_PAGES: frozenset[RouteKey] = frozenset(
    {
        ("GET", "/"),
        ("GET", "/fleet"),
        ("GET", "/fleet/devices/{device}"),
        ("GET", "/kits"),
        ("GET", "/kits/import"),
        ("GET", "/deployments/{deployment_id}"),
        ("GET", "/use-cases/{use_case_id}/deploy"),
        ("GET", "/kits/{kit_id}/unboxing"),
    }
)

# The only routes a token of each kind may use (``api`` tokens act for their person: all routes).
# Within these, the routes still scope by organisation and, for kiosks, by deployment; a device
# token reads only its own device. Neither may ask who it is (``/auth/me`` names the person who
# made a kiosk token, with their e-mail and organisations).
KIND_ROUTES: dict[str, frozenset[RouteKey]] = {
    "kiosk": frozenset(
        {
            ("GET", "/kiosk/data"),
            ("GET", "/api/v1/deployments"),
            ("GET", "/api/v1/deployments/{deployment_id}"),
            ("GET", "/api/v1/deployments/{deployment_id}/readings"),
            ("GET", "/api/v1/deployments/{deployment_id}/chart"),
            ("GET", "/api/v1/export/deployments/{deployment_id}/readings"),
        }
    ),
    "device": frozenset(
        {
            ("GET", "/api/v1/devices/{device}"),
            ("GET", "/api/v1/devices/{device}/latest"),
            ("GET", "/api/v1/devices/{device}/readings"),
        }
    ),
}


def iter_routes(app: FastAPI) -> Iterator[tuple[str, str, Callable[..., Any] | None]]:
    """Yield ``(method, path, endpoint)`` of every route of ``app``, included routers flattened.

    A mount (``/static``) is one ``GET`` route with no endpoint.
    """

    def walk(routes: list[Any]) -> Iterator[tuple[str, str, Callable[..., Any] | None]]:
        for route in routes:
            effective = getattr(route, "effective_route_contexts", None)
            if effective is not None:  # an included router (FastAPI keeps it unflattened)
                yield from walk(list(effective()))
                continue
            methods = getattr(route, "methods", None)
            endpoint = getattr(route, "endpoint", None)
            for method in sorted(methods or {"GET"}):
                if method != "HEAD":
                    yield method, str(route.path), endpoint

    yield from walk(list(app.routes))


def _paths(app: FastAPI) -> dict[tuple[str, Any], str]:
    cached: dict[tuple[str, Any], str] | None = getattr(app.state, "route_paths", None)
    if cached is None:
        cached = {(m, e): p for m, p, e in iter_routes(app) if e is not None}
        app.state.route_paths = cached
    return cached


def route_key(request: Request) -> RouteKey | None:
    """Return ``(method, path template)`` of the route serving ``request`` (None outside one)."""
    endpoint = request.scope.get("endpoint")
    method = "GET" if request.method == "HEAD" else request.method
    path = _paths(request.app).get((method, endpoint))
    return None if path is None else (method, path)
