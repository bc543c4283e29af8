"""``GET /health``: is the server up, and does its store answer."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from server.api.deps import SettingsDep, StoreDep

__all__ = ["Health", "router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The server's health: ``store`` names the backend (its URL scheme), never its secrets."""

    status: Literal["ok"]
    store: str


@router.get("/health", responses={503: {"description": "the store does not answer; the body says why"}})
def health(store: StoreDep, settings: SettingsDep) -> Health:
    """Return ``ok`` once the store answers a cheap probe (a 503 with the reason when it does not)."""
    store.health()
    scheme = settings.store.partition("://")[0] if "://" in settings.store else "sqlite"
    return Health(status="ok", store=scheme)
