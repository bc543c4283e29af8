"""The route registry: a new route is one module here plus one line in :data:`ROUTES`.

Each module exports ``router: fastapi.APIRouter``; modules are imported lazily.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

__all__ = ["ROUTES", "build_api_router"]

ROUTES: tuple[str, ...] = (
    "health",
    "catalog",
    "devices",
    "commands",
    "device_configs",
    "readings",
    "dead_letters",
    "auth",
    "orgs",
    "tokens",
    "kit_import",
    "kits",
    "deployments",
    "derived",
    "enrollment",
    "alerts",
    "export",
    "reports",
    "rollouts",
)


def build_api_router(names: tuple[str, ...] = ROUTES) -> APIRouter:
    """Return one router that includes the router of every module in ``names``."""
    api = APIRouter()
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        api.include_router(module.router)
    return api
