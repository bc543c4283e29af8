"""Tests of the Alembic migrations (server/migrations) and the registry commands of ``suitcase server``."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel
from typer.testing import CliRunner

from server.cli import app
from server.db import create_registry_engine, current_revision, head_revision, migrate


def test_migrations_build_exactly_the_models(registry_url: str) -> None:
    """Test that upgrading an empty database to head gives the schema of the models, no diff."""
    engine = create_registry_engine(registry_url)
    before, after = migrate(engine)
    assert before is None and after == head_revision() == current_revision(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    engine.dispose()
    assert diff == []


def test_cli_migrate_create_admin_import_catalog(registry_url: str) -> None:
    """Test the three registry commands, then that the admin can log in."""
    runner = CliRunner()
    migrated = runner.invoke(app, ["migrate", "--registry-url", registry_url])
    assert migrated.exit_code == 0 and "-> " in migrated.output
    admin = runner.invoke(
        app,
        ["create-admin", "--email", "Root@Example.org", "--registry-url", registry_url],
        env={"SUITCASE_ADMIN_PASSWORD": "a long enough password"},
    )
    assert admin.exit_code == 0, admin.output
    imported = runner.invoke(app, ["import-catalog", "--registry-url", registry_url])
    assert imported.exit_code == 0 and "unchanged" in imported.output
    short = runner.invoke(
        app,
        ["create-admin", "--email", "x@y.z", "--registry-url", registry_url],
        env={"SUITCASE_ADMIN_PASSWORD": "short"},
    )
    assert short.exit_code == 2 and "12 characters" in short.output
