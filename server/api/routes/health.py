"""``GET /health``: is the server up, and how many readings does the store hold."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from server.api.deps import StoreDep

__all__ = ["Health", "router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The server's health."""

    status: Literal["ok"]
    readings: int


@router.get("/health")
def health(store: StoreDep) -> Health:
    """Return ``ok`` and the number of readings in the store."""
    return Health(status="ok", readings=store.count_readings())
