"""Tests of the Alembic migrations (server/migrations) and the registry commands of ``suitcase server``."""

from __future__ import annotations

import json
from typing import Any

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


def test_calibration_deliveries_become_config_commands(registry_url: str) -> None:
    """Test that migration 0007 keeps each calibration delivery as a ``config`` command in its
    device's history, with its state mapped and what it carried, and drops the old table."""
    import sqlalchemy as sa

    engine = create_registry_engine(registry_url)
    migrate(engine, "0006")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO organisations (id, slug, name, kind, created_at) "
                "VALUES (1, 'city-a', 'City A', 'municipality', 1.0)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO kits (id, org_id, inventory_code, profile_id, condition, status, "
                "contents_check, notes, created_at) "
                "VALUES (1, 1, 'K-1', 'starter', 'good', 'deployed', '{}', '', 1.0)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO devices (id, org_id, kit_id, pi_index, registered_at, online, sensors, missing, "
                "unexpected, diagnostics) VALUES ('city-a-pi-1', 1, 1, 1, 1.0, false, '[]', '[]', '[]', '{}')"
            )
        )
        for n, state in enumerate(("ok", "error", "pending", "superseded")):
            conn.execute(
                sa.text(
                    "INSERT INTO calibration_deliveries (command_id, device_id, kit_id, pi_index, version, "
                    "calibration, state, created_at, sent_at, replied_at, error) VALUES "
                    "(:id, 'city-a-pi-1', 1, 1, :n, :cal, :state, 10.0, 11.0, 12.0, :error)"
                ),
                {
                    "id": f"cmd-{n}",
                    "n": n + 1,
                    "cal": '[{"sensor": "bme280", "quantity": "temperature", "offset": 0.5}]',
                    "state": state,
                    "error": "refused" if state == "error" else None,
                },
            )
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT command_id, name, state, args, error, org_id FROM device_commands ORDER BY command_id"
            )
        ).all()
        tables = sa.inspect(conn).get_table_names()
    engine.dispose()
    assert [(r.command_id, r.name, r.state, r.error, r.org_id) for r in rows] == [
        ("cmd-0", "config", "answered", None, 1),
        ("cmd-1", "config", "failed", "refused", 1),
        ("cmd-2", "config", "queued", None, 1),
        ("cmd-3", "config", "expired", None, 1),
    ]
    args = rows[0].args if isinstance(rows[0].args, dict) else json.loads(rows[0].args)
    assert args == {"calibration": [{"sensor": "bme280", "quantity": "temperature", "offset": 0.5}]}
    assert "calibration_deliveries" not in tables


def test_cli_downgrade_asks_first_and_refuses_bad_revisions(registry_url: str, tmp_path: Any) -> None:
    """Test `suitcase server downgrade REV`: it names the migrations it would undo and asks, does
    nothing on no; on yes the registry is at REV (and `migrate` brings it back); a revision that
    does not exist, a newer one than the registry's, and a registry never migrated are refused
    with what to do; the revision it is at already changes nothing."""
    runner = CliRunner()
    never = runner.invoke(app, ["downgrade", "0006", "--registry-url", f"sqlite:///{tmp_path / 'new.db'}"])
    assert never.exit_code == 2 and "never migrated" in never.output
    assert runner.invoke(app, ["migrate", "--registry-url", registry_url]).exit_code == 0
    head = head_revision()

    unknown = runner.invoke(app, ["downgrade", "6", "--registry-url", registry_url])
    assert unknown.exit_code == 2 and "no migration '6'" in unknown.output and "0001, 0002" in unknown.output
    declined = runner.invoke(app, ["downgrade", "0006", "--registry-url", registry_url], input="n\n")
    assert declined.exit_code == 1 and f"{head}  calibration deliveries become config" in declined.output
    engine = create_registry_engine(registry_url)
    assert current_revision(engine) == head

    done = runner.invoke(app, ["downgrade", "0006", "--registry-url", registry_url], input="y\n")
    assert done.exit_code == 0 and f"registry downgraded: {head} -> 0006" in done.output, done.output
    assert current_revision(engine) == "0006"
    again = runner.invoke(app, ["downgrade", "0006", "--registry-url", registry_url, "--yes"])
    assert again.exit_code == 0 and "already" in again.output
    upward = runner.invoke(app, ["downgrade", head, "--registry-url", registry_url, "--yes"])
    assert upward.exit_code == 2 and "suitcase server migrate" in upward.output
    assert current_revision(engine) == "0006"
    assert runner.invoke(app, ["migrate", "--registry-url", registry_url]).exit_code == 0
    assert current_revision(engine) == head
    engine.dispose()
