"""The JSON API under ``/api/v1``."""

from server.api.routes import build_api_router

__all__ = ["API_PREFIX", "build_api_router"]

API_PREFIX = "/api/v1"
