"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session as OrmSession
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
    "RequestSession",
    "ResourcesDep",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "get_resources",
    "request_session",
]


# The dependencies that only hand out what the app opened are ``async``: FastAPI runs a plain
# ``def`` dependency on a worker thread, and each such hop cost CPU and, on a busy machine, a
# wait for a core on every request. What reads the registry (the caller, the routes) stays
# ``def`` and runs on a worker thread.


async def get_resources(request: Request) -> Resources:
    """Return the resources the app's lifespan opened."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


class RequestSession(Session):
    """A request's registry session: committing what the fleet page's index holds clears it
    (the listeners are the class's, registered once, not once per request)."""


def request_session(resources: Resources) -> Session:
    """A registry session for one request (close it when done)."""
    # Not expiring on commit: routes return what they just wrote without reloading it.
    session = RequestSession(resources.engine, expire_on_commit=False)
    session.info["fleet_index"] = resources.fleet_index
    return session


async def get_session(resources: ResourcesDep) -> AsyncIterator[Session]:
    """Yield a registry session for one request.

    Opening it connects to nothing (the first statement does, on the route's worker thread);
    closing it hands its connection back to the pool.
    """
    with request_session(resources) as session:
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


# A request that enrols a device or changes a kit, its deployment, loan or calibration is shown its
# change on this replica's next fleet page; other replicas show it within the index's lifetime
# (``fleet_cache_s``). Cleared after the commit too, so that a page built between the flush and
# the commit does not keep the old registry, and read anew from then (``TtlCache.clear``).


def _forget_fleet_index(session: OrmSession) -> None:
    session.info["fleet_changed"] = True
    session.info["fleet_index"].clear()


@event.listens_for(RequestSession, "after_flush")
def _flushed(session: Session, _context: object) -> None:
    if any(isinstance(row, _FLEET_ROWS) for row in (*session.new, *session.dirty, *session.deleted)):
        _forget_fleet_index(session)


@event.listens_for(RequestSession, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:  # a bulk statement: any table
        _forget_fleet_index(state.session)


@event.listens_for(RequestSession, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop("fleet_changed", False):
        # Read anew at once in the background: the next page waits for that read, if it is still
        # under way, rather than starting its own.
        session.info["fleet_index"].clear(rebuild=True)


async def get_store(resources: ResourcesDep) -> Reader:
    """Return the time-series store (read side)."""
    return resources.store


async def get_settings(resources: ResourcesDep) -> ServerSettings:
    """Return the server settings."""
    return resources.settings


async def get_clock(resources: ResourcesDep) -> Clock:
    """Return the clock (UTC epoch seconds), injectable for tests."""
    return resources.clock


async def get_catalog(resources: ResourcesDep) -> Catalog:
    """Return the catalogue loaded at startup."""
    return resources.catalog


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[Reader, Depends(get_store)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
