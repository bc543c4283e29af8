"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kits import __version__
from server.api import API_PREFIX, build_api_router
from server.resources import Clock, open_resources
from server.settings import ServerSettings
from server.web import mount_web

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings | None = None, *, clock: Clock = time.time) -> FastAPI:
    """Build the server app.

    Nothing is opened until the app starts: its lifespan loads the catalogue into the registry
    (creating the tables), opens the store, and closes both on shutdown.

    Args:
        settings: where the registry and the store are; by default from ``SUITCASE_SERVER_*``.
        clock: UTC epoch seconds now; injected so tests control "now".
    """
    settings = settings if settings is not None else ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = open_resources(settings, clock)
        app.state.resources = resources
        log.info("server started", extra={"store": settings.store, "registry": settings.registry_url})
        try:
            yield
        finally:
            resources.close()

    app = FastAPI(
        title="IoT Suitcase",
        summary="Registry of kits and devices, catalogue of use-cases, readings and dead letters.",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.include_router(build_api_router(), prefix=API_PREFIX)
    mount_web(app)
    return app
