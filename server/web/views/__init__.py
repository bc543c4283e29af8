"""The page registry: a new page is one module here plus one line in :data:`VIEWS`.

Each module exports ``router: fastapi.APIRouter``; modules are imported lazily.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

__all__ = ["VIEWS", "build_views_router"]

VIEWS: tuple[str, ...] = (
    "login",
    "fleet",
    "kit_import",
    "device",
    "kits",
    "deployment",
    "catalogue",
    "public",
    "kiosk",
    "claim",
    "unboxing",
    "api_docs",
)


def build_views_router(names: tuple[str, ...] = VIEWS) -> APIRouter:
    """Return one router that includes the router of every page module in ``names``."""
    pages = APIRouter(include_in_schema=False)
    for name in names:
        pages.include_router(importlib.import_module(f"{__name__}.{name}").router)
    return pages
