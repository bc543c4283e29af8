"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState
from sqlmodel import Session

from gateway.store import Reader
from kits.catalog import Catalog
from server.resources import Clock, Resources
from server.settings import ServerSettings
from server.tables import (
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitRow,
    LoanRow,
    MembershipRow,
    OrganisationRow,
)

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
        _forget_fleet_index_on_change(session, resources)
        yield session


# What the fleet page's index reads from the registry (server.web.views.fleet_index), besides the
# devices' status, which the listener writes and which ages out of the index within its lifetime.
_FLEET_ROWS = (
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitRow,
    LoanRow,
    MembershipRow,
    OrganisationRow,
)


def _forget_fleet_index_on_change(session: Session, resources: Resources) -> None:
    """Clear the fleet page's index once ``session`` commits a change to what it holds.

    A request that enrols a device or changes a kit, its deployment, loan or calibration is shown
    its change on this replica's next fleet page; other replicas show it within the index's
    lifetime (``fleet_cache_s``). Cleared after the commit too, so that a page built between the
    flush and the commit does not keep the old registry.
    """
    changed = False

    def flushed(session: Session, _context: object) -> None:
        nonlocal changed
        if any(isinstance(row, _FLEET_ROWS) for row in (*session.new, *session.dirty, *session.deleted)):
            changed = True
            resources.fleet_index.clear()

    def committed(_session: Session) -> None:
        nonlocal changed
        if changed:
            changed = False
            resources.fleet_index.clear()

    def executed(state: ORMExecuteState) -> None:
        nonlocal changed
        if state.is_insert or state.is_update or state.is_delete:  # a bulk statement: any table
            changed = True
            resources.fleet_index.clear()

    event.listen(session, "after_flush", flushed)
    event.listen(session, "do_orm_execute", executed)
    event.listen(session, "after_commit", committed)


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
