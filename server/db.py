"""The registry database: engine, tables and loading the catalogue into them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine, select

import server.tables  # noqa: F401  (registers the registry tables on SQLModel.metadata)
from kits.catalog import Catalog
from kits.errors import ConfigError
from server.models import KitProfileRow, UseCaseRow

__all__ = [
    "MIGRATIONS_DIR",
    "CatalogSync",
    "create_registry_engine",
    "current_revision",
    "downgrade",
    "downgrade_steps",
    "ensure_schema",
    "head_revision",
    "init_registry",
    "migrate",
    "sync_catalog",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Tables whose rows are only a copy of the YAML catalogue: safe to rebuild from it.
_DERIVED_TABLES = ("kit_profiles", "use_cases")
_SCHEMA_LOCK = 0x5C_0E_5C_4E  # advisory lock key of the registry's schema and catalogue
_SCHEMA_LOCK_WAIT_S = 120

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
        # A server (PostgreSQL) that restarted leaves dead connections in the pool: each is
        # tested before use, so the first request after the restart does not fail on one.
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not url.startswith("sqlite"))
        if url.startswith("sqlite"):
            from sqlalchemy import event

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

        return engine
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


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def head_revision() -> str:
    """Return the newest migration's revision id."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(create_engine("sqlite://"))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise ConfigError(f"no migrations in {MIGRATIONS_DIR}: the installation is broken, reinstall")
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the registry's migration revision, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the registry to ``revision``; return (before, after).

    A registry made by the foundation (catalogue tables only, no revision) has its catalogue copy
    rebuilt first: those rows come from the YAML and are loaded again at start.
    """
    from alembic import command

    before = current_revision(engine)
    if before is None:
        _drop_legacy(engine)
    config = _alembic_config(engine)
    with _migrating(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return before, current_revision(engine)


def downgrade_steps(engine: Engine, revision: str) -> list[tuple[str, str]]:
    """The migrations a downgrade to ``revision`` undoes, newest first: (revision, what it did).

    Empty when the registry is at ``revision`` already.

    Raises:
        ConfigError: ``revision`` is not one of the migrations, the registry was never migrated,
            or it is older than ``revision`` (that is an upgrade: ``suitcase server migrate``).
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(engine))
    known = [r.revision for r in reversed(list(script.walk_revisions()))]  # oldest first
    if revision not in known:
        raise ConfigError(
            f"no migration {revision!r}: the registry's revisions are {', '.join(known)} "
            "(`suitcase server migrate` moves it to the newest)"
        )
    current = current_revision(engine)
    if current is None:
        raise ConfigError("the registry was never migrated: nothing to downgrade (`suitcase server migrate`)")
    if current not in known:
        raise ConfigError(
            f"the registry is at {current!r}, a revision this version does not know (a newer "
            "version migrated it): downgrade it with that version"
        )
    if known.index(revision) > known.index(current):
        raise ConfigError(
            f"the registry is at {current}, older than {revision}: that is an upgrade, "
            f"`suitcase server migrate`"
        )
    undone = known[known.index(revision) + 1 : known.index(current) + 1]
    return [(r, (script.get_revision(r).doc or "").split("\n")[0]) for r in reversed(undone)]


def downgrade(engine: Engine, revision: str) -> str | None:
    """Downgrade the registry to ``revision``; return the revision it is at.

    What a later migration added is dropped (tables, columns): back the registry up first.

    Raises:
        ConfigError: ``revision`` is not one to downgrade to (see :func:`downgrade_steps`).
    """
    from alembic import command

    downgrade_steps(engine, revision)

    config = _alembic_config(engine)
    with _migrating(engine) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    return current_revision(engine)


@contextlib.contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for Alembic; on SQLite with foreign keys not enforced.

    SQLite alters most of a table by copying it into a new one, dropping it and renaming the
    copy (Alembic's batch mode). With foreign keys enforced, dropping a table other rows
    reference fails (or would cascade), so a populated registry could not be migrated. As SQLite
    and Alembic document, enforcement is turned off outside the transaction, every reference is
    checked before the commit, and enforcement is turned on again.

    Raises:
        ConfigError: the migration left rows pointing at rows that do not exist (rolled back).
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: before it
        enforced = conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
        conn.commit()
        try:
            if enforced != 0:
                raise ConfigError("could not turn SQLite's foreign keys off to migrate the registry")
            with conn.begin():
                # pysqlite begins a transaction before DML only: begun here, the DDL is in it too,
                # so a failed migration leaves the registry as it was.
                conn.exec_driver_sql("BEGIN")
                yield conn
                dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if dangling:
                    table, rowid, parent, _ = dangling[0]
                    raise ConfigError(
                        f"migrating the registry would leave {len(dangling)} rows pointing at rows "
                        f"that do not exist (e.g. {table} row {rowid} -> {parent}): nothing was "
                        "changed; restore those rows (or delete the dangling ones) and migrate again"
                    )
        finally:
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _drop_legacy(engine: Engine) -> None:
    existing = set(inspect(engine).get_table_names())
    if existing and existing <= set(_DERIVED_TABLES):
        SQLModel.metadata.drop_all(engine, tables=[SQLModel.metadata.tables[t] for t in existing])


def ensure_schema(engine: Engine, *, upgrade: bool) -> None:
    """Make the registry's schema current.

    An empty database gets every table at once and is stamped at the newest migration (fast,
    for tests and the demo). A migrated database behind the newest migration is upgraded when
    ``upgrade`` (development), else refused with the command to run.

    Raises:
        ConfigError: the registry is behind and ``upgrade`` is false.
    """
    from alembic import command

    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    existing = set(inspect(engine).get_table_names()) - set(_DERIVED_TABLES)
    if current is None and not existing:
        _drop_legacy(engine)
        SQLModel.metadata.create_all(engine)
        config = _alembic_config(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.stamp(config, head)
        return
    if not upgrade:
        raise ConfigError(
            f"the registry database is at migration {current or 'none'}, this server needs {head}: "
            "run `suitcase server migrate` (back up the database first)"
        )
    migrate(engine)


@contextlib.contextmanager
def _one_replica_at_a_time(engine: Engine) -> Iterator[None]:
    """Hold the registry's schema lock (PostgreSQL): replicas starting together take turns.

    Without it, two servers started at once on a fresh registry both create the tables (or load
    the catalogue) and one fails with a unique violation. A session-level advisory lock on a
    connection of its own, waited for at most ``_SCHEMA_LOCK_WAIT_S``. SQLite serialises writers
    itself.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text(f"SET lock_timeout = '{_SCHEMA_LOCK_WAIT_S}s'"))
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK})
            conn.commit()


def init_registry(engine: Engine, catalog: Catalog, *, upgrade: bool = True) -> CatalogSync:
    """Bring the registry schema up to date and load ``catalog`` into it.

    Replicas that start together do this one after the other (:func:`_one_replica_at_a_time`).

    Raises:
        ConfigError: the database cannot be reached or written, or needs a migration.
    """
    try:
        with _one_replica_at_a_time(engine):
            ensure_schema(engine, upgrade=upgrade)
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

    profiles = {row.id: row for row in session.exec(select(KitProfileRow)) if row.org_id is None}
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

    cases = {row.id: row for row in session.exec(select(UseCaseRow)) if row.org_id is None}
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
