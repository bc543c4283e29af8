"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from gateway.store import Reader
from kits.catalog import Catalog
from server.resources import Clock, Resources
from server.settings import ServerSettings

__all__ = [
    "CatalogDep",
    "ClockDep",
    "ResourcesDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "get_resources",
]


def get_resources(request: Request) -> Resources:
    """Return the resources the app's lifespan opened."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_session(resources: ResourcesDep) -> Iterator[Session]:
    """Yield a registry session for one request."""
    # Not expiring on commit: routes return what they just wrote without reloading it.
    with Session(resources.engine, expire_on_commit=False) as session:
        yield session


def get_store(resources: ResourcesDep) -> Reader:
    """Return the time-series store (read side)."""
    return resources.store


def get_settings(resources: ResourcesDep) -> ServerSettings:
    """Return the server settings."""
    return resources.settings


def get_clock(resources: ResourcesDep) -> Clock:
    """Return the clock (UTC epoch seconds), injectable for tests."""
    return resources.clock


def get_catalog(resources: ResourcesDep) -> Catalog:
    """Return the catalogue loaded at startup."""
    return resources.catalog


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[Reader, Depends(get_store)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
