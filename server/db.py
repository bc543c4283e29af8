"""The registry database: engine, tables and loading the catalogue into them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine, select

from kits.catalog import Catalog
from kits.errors import ConfigError
from server.models import KitProfileRow, UseCaseRow

__all__ = ["CatalogSync", "create_registry_engine", "init_registry", "sync_catalog"]

log = logging.getLogger(__name__)


def create_registry_engine(url: str) -> Engine:
    """Create the engine of the registry database at ``url``.

    Raises:
        ConfigError: the URL is malformed or names a driver that is not installed.
    """
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # FastAPI runs sync routes in a thread pool; each Session still stays on one thread.
        connect_args["check_same_thread"] = False
    try:
        return create_engine(url, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(
            f"registry URL {url!r} is not usable ({exc}): use e.g. sqlite:///suitcase-registry.db "
            "or postgresql+psycopg://user:password@host/suitcase"
        ) from exc


@dataclass(frozen=True, slots=True)
class CatalogSync:
    """What loading the catalogue changed in the registry, by id."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0


def init_registry(engine: Engine, catalog: Catalog) -> CatalogSync:
    """Create the registry tables if missing and load ``catalog`` into them.

    Raises:
        ConfigError: the database cannot be reached or written.
    """
    try:
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            result = sync_catalog(session, catalog)
            session.commit()
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"registry database {engine.url.render_as_string(hide_password=True)} is not usable "
            f"({exc.__class__.__name__}: {exc.args[0] if exc.args else exc}): check that it exists, "
            "is reachable and writable, or set SUITCASE_SERVER_REGISTRY_URL"
        ) from exc
    log.info(
        "catalogue loaded",
        extra={"added": result.added, "updated": result.updated, "removed": result.removed},
    )
    return result


def sync_catalog(session: Session, catalog: Catalog) -> CatalogSync:
    """Upsert every kit profile and use-case of ``catalog``; delete rows no longer in it.

    Idempotent: loading the same catalogue twice changes nothing the second time. The caller
    commits.
    """
    added: list[str] = []
    updated: list[str] = []
    removed: list[str] = []
    unchanged = 0

    profiles = {row.id: row for row in session.exec(select(KitProfileRow))}
    for profile in catalog.kit_profiles.values():
        spec = profile.model_dump(mode="json")
        row = profiles.pop(profile.id, None)
        if row is None:
            session.add(KitProfileRow(id=profile.id, name=profile.name, pis=profile.pis, spec=spec))
            added.append(f"kit-profile:{profile.id}")
        elif row.spec != spec:
            row.name, row.pis, row.spec = profile.name, profile.pis, spec
            session.add(row)
            updated.append(f"kit-profile:{profile.id}")
        else:
            unchanged += 1

    cases = {row.id: row for row in session.exec(select(UseCaseRow))}
    for case in catalog.use_cases.values():
        spec = case.model_dump(mode="json")
        case_row = cases.pop(case.id, None)
        if case_row is None:
            session.add(
                UseCaseRow(
                    id=case.id,
                    title=case.title,
                    kit_profile=case.kit_profile,
                    dashboard=case.dashboard,
                    spec=spec,
                )
            )
            added.append(f"use-case:{case.id}")
        elif case_row.spec != spec:
            case_row.title, case_row.kit_profile = case.title, case.kit_profile
            case_row.dashboard, case_row.spec = case.dashboard, spec
            session.add(case_row)
            updated.append(f"use-case:{case.id}")
        else:
            unchanged += 1

    for stale_profile in profiles.values():
        session.delete(stale_profile)
        removed.append(f"kit-profile:{stale_profile.id}")
    for stale_case in cases.values():
        session.delete(stale_case)
        removed.append(f"use-case:{stale_case.id}")
    return CatalogSync(tuple(added), tuple(updated), tuple(removed), unchanged)
