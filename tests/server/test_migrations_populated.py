"""Tests of the Alembic migrations (server/migrations) on a populated registry.

A registry in use has rows in every table, most of them referencing organisations, kits and
devices; a migration that rebuilds a referenced table (SQLite's batch "move and copy") with
foreign keys enforced fails, or loses rows. Each test fills every table the schema has at one
revision, with every column set and every reference pointing at a real row, migrates to the
newest revision (and back, and forward again) and checks that every row is still there, as it
was, with its references intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from kits.errors import ConfigError
from server.db import (
    MIGRATIONS_DIR,
    create_registry_engine,
    current_revision,
    downgrade,
    head_revision,
    migrate,
)

ROWS = 3  # rows per table: enough for every reference to pick a row of its own
# calibration_deliveries (0002) becomes device commands in 0007: its states as they were sent.
_DELIVERY_STATES = ("ok", "error", "pending")

_CONVERTED = frozenset({"calibration_deliveries"})

Key = tuple[Any, ...]
Snapshot = dict[str, dict[Key, dict[str, Any]]]


def _revisions() -> list[str]:
    """Every revision but the newest, oldest first."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    revisions = [r.revision for r in script.walk_revisions()]
    return list(reversed(revisions))[:-1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    """A registry database, empty: SQLite (foreign keys on, as the server opens it) or PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db")
    else:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = create_registry_engine(url)
    yield registry
    registry.dispose()


def _value(table: sa.Table, column: sa.Column[Any], i: int, devices: list[str]) -> Any:
    """A value of ``column`` for row ``i``, distinct per row (unique columns stay unique)."""
    if table.name == "calibration_deliveries" and column.name == "state":
        return _DELIVERY_STATES[i % len(_DELIVERY_STATES)]
    if column.name == "device_id" and devices:  # a device's id where no foreign key says so
        return devices[i]
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return i % 2 == 1
    if isinstance(kind, sa.Integer):
        return i + 1
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1_700_000_000.5 + i
    if isinstance(kind, sa.JSON):
        return {"row": i, "table": table.name}
    if isinstance(kind, sa.LargeBinary):
        return f"{table.name}-{i}".encode()
    if isinstance(kind, sa.String):
        text = f"{i}-{table.name}.{column.name}"
        return text[: kind.length] if kind.length else text
    raise AssertionError(f"no test value for {table.name}.{column.name} of type {kind!r}")


def _names_a_device(table: sa.Table) -> bool:
    return "device_id" in table.c and not table.c.device_id.foreign_keys


def _populate(engine: sa.Engine, first: int = 0) -> Snapshot:
    """Insert ROWS rows (numbered from ``first``) into every table, parents first, each reference
    to the parent's row of the same number; return them by primary key."""
    meta = sa.MetaData()
    meta.reflect(bind=engine)
    inserted: Snapshot = {}
    existing = (
        {n: list(rows.values()) for n, rows in _read(engine, set(meta.tables)).items()} if first else {}
    )
    with engine.begin() as conn:
        # Tables naming a device without a foreign key (nothing references them) go last.
        order = sorted(meta.sorted_tables, key=lambda t: _names_a_device(t) and "devices" in meta.tables)
        for table in order:
            if table.name == "alembic_version":
                continue
            devices = [d["id"] for d in existing.get("devices", [])] + [
                k[0] for k in inserted.get("devices", {})
            ]
            pk = list(table.primary_key.columns)
            generated = len(pk) == 1 and isinstance(pk[0].type, sa.Integer) and not pk[0].foreign_keys
            rows = inserted.setdefault(table.name, {})
            for i in range(first, first + ROWS):
                values: dict[str, Any] = {}
                for column in table.columns:
                    if generated and column is pk[0]:
                        continue  # the database numbers it, as in use (PostgreSQL's sequence stays right)
                    fks = list(column.foreign_keys)
                    if fks:
                        parent = fks[0].column
                        parents = existing.get(parent.table.name, []) + list(
                            inserted[parent.table.name].values()
                        )
                        values[column.name] = parents[i % len(parents)][parent.name]
                    else:
                        values[column.name] = _value(table, column, i, devices)
                returned = conn.execute(table.insert().values(values).returning(*pk)).one()
                values.update(zip((c.name for c in pk), returned, strict=True))
                rows[tuple(returned)] = values
    return inserted


def _read(engine: sa.Engine, tables: set[str]) -> Snapshot:
    """Every row of ``tables`` (those the database still has), by primary key."""
    meta = sa.MetaData()
    meta.reflect(bind=engine)
    snapshot: Snapshot = {}
    with engine.connect() as conn:
        for name in tables & set(meta.tables):
            table = meta.tables[name]
            pk = [c.name for c in table.primary_key.columns]
            snapshot[name] = {
                tuple(row[c] for c in pk): dict(row) for row in conn.execute(sa.select(table)).mappings()
            }
    return snapshot


def _normal(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _assert_survived(before: Snapshot, after: Snapshot, gone: frozenset[str] = frozenset()) -> None:
    """Every row of ``before`` is in ``after``, each column it had with the value it had (0007 adds
    the calibration deliveries to the device commands)."""
    for name, rows in before.items():
        if name in gone:
            continue
        assert name in after, f"table {name} is gone"
        lost = set(rows) - set(after[name])
        assert not lost, f"{name}: rows {sorted(lost)} lost"
        for key, values in rows.items():
            now = after[name][key]
            changed = {c: (v, now[c]) for c, v in values.items() if c in now and _normal(now[c]) != v}
            assert not changed, f"{name} row {key} changed: {changed}"


def _assert_references_hold(engine: sa.Engine) -> None:
    """Every foreign key of the models exists in the database, and every value it holds points at a row."""
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
        assert diff == [], f"the migrated schema differs from the models: {diff}"
        for table in SQLModel.metadata.sorted_tables:
            for fk in table.foreign_key_constraints:
                parent = fk.referred_table
                child = table.alias("child")
                on = sa.and_(*(parent.c[e.column.name] == child.c[e.parent.name] for e in fk.elements))
                dangling = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(child.outerjoin(parent, on))
                    .where(child.c[fk.elements[0].parent.name].is_not(None))
                    .where(parent.c[fk.elements[0].column.name].is_(None))
                ).scalar_one()
                assert dangling == 0, f"{table.name}.{fk.column_keys} points at missing {parent.name} rows"
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


@pytest.mark.parametrize("revision", _revisions())
def test_a_populated_registry_migrates_to_the_newest(engine: sa.Engine, revision: str) -> None:
    """Test that a registry with rows in every table, referencing each other, keeps every row and
    every reference when upgraded from ``revision`` to the newest migration."""
    migrate(engine, revision)
    populated = _populate(engine)

    before, after = migrate(engine)
    assert (before, after) == (revision, head_revision())
    upgraded = _read(engine, set(populated))
    # 0007 turns the calibration deliveries into config commands: checked below, not kept as rows.
    _assert_survived(populated, upgraded, gone=_CONVERTED)
    _assert_references_hold(engine)
    if "updates_opt_out" not in next(iter(populated["devices"].values())):
        assert all(d["updates_opt_out"] is False for d in upgraded["devices"].values())  # 0005's default
    if "calibration_deliveries" in populated:
        commands = _read(engine, {"device_commands"})["device_commands"].values()
        delivered = {c["command_id"]: c for c in commands if c["name"] == "config"}
        for delivery in populated["calibration_deliveries"].values():
            command = delivered[delivery["command_id"]]
            assert command["device_id"] == delivery["device_id"]
            assert _normal(command["args"]) == {"calibration": delivery["calibration"]}


def test_a_populated_registry_downgrades_to_the_first_and_upgrades_again(engine: sa.Engine) -> None:
    """Test that a registry populated at the first migration and again at the newest (every table
    full) keeps every row of the first migration's tables, and their references, when downgraded
    through every migration to the first and upgraded again."""
    first = _revisions()[0]
    migrate(engine, first)
    populated = _populate(engine)
    migrate(engine)
    later = _populate(engine, first=ROWS)
    for name, rows in later.items():
        if name in populated:  # the columns the first migration made (later ones are downgraded away)
            columns = next(iter(populated[name].values())).keys()
            populated[name].update({k: {c: v[c] for c in columns} for k, v in rows.items()})
    tables = set(populated)

    assert downgrade(engine, first) == first
    _assert_survived(populated, _read(engine, tables))
    assert _read(engine, set(later)).keys() == tables  # the later tables are gone

    migrate(engine)
    assert current_revision(engine) == head_revision()
    _assert_survived(populated, _read(engine, tables))
    _assert_references_hold(engine)


def test_a_migration_leaving_dangling_references_changes_nothing(tmp_path: Any) -> None:
    """Test that on SQLite (foreign keys off while migrating) a registry whose rows would point at
    missing rows after the migration is refused with the table named, and left as it was."""
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    migrate(engine, "0004")
    _populate(engine)
    with engine.connect() as conn:  # a device of an organisation that is gone (made with checks off)
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.exec_driver_sql("UPDATE devices SET org_id = 999 WHERE org_id = 1")
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    with pytest.raises(
        ConfigError, match=r"pointing at rows that do not exist \(e.g. \w+ row \d+ -> organisations\)"
    ):
        migrate(engine)
    assert current_revision(engine) == "0004"
    assert "updates_opt_out" not in {c["name"] for c in sa.inspect(engine).get_columns("devices")}
    assert {"agent_releases", "leases"}.isdisjoint(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1  # the pool's connection
    engine.dispose()


def test_0007_keeps_the_deliveries_of_a_deleted_device_in_the_audit_log(engine: sa.Engine) -> None:
    """Test that a calibration delivery whose device is no longer in the registry (deleted by
    hand), which cannot become a command, is kept in the audit log with every column it had and
    its kit's organisation, beside the deliveries that became commands; a downgrade keeps it."""
    migrate(engine, "0006")
    populated = _populate(engine)
    kit = next(iter(populated["kits"].values()))
    orphan = {
        "command_id": "cmd-of-a-deleted-device", "device_id": "deleted-device", "kit_id": kit["id"],
        "pi_index": 2, "version": 7, "calibration": {"bme280.temperature": {"offset": -0.4}},
        "state": "ok", "created_at": 1_700_000_100.0, "sent_at": 1_700_000_101.0,
        "replied_at": 1_700_000_102.5, "error": None,
    }  # fmt: skip
    meta = sa.MetaData()
    deliveries = sa.Table("calibration_deliveries", meta, autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(deliveries.insert().values(orphan))

    migrate(engine)
    audit = sa.Table("audit_log", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(audit).where(audit.c.action == "calibration_delivery")).mappings().all()
    assert len(kept) == 1
    assert (kept[0]["entity"], kept[0]["entity_id"], kept[0]["org_id"], kept[0]["at"]) == (
        "device", "deleted-device", kit["org_id"], orphan["created_at"]
    )  # fmt: skip
    assert _normal(kept[0]["detail"]) == _normal(orphan)
    commands = _read(engine, {"device_commands"})["device_commands"].values()
    configs = {c["command_id"] for c in commands if c["name"] == "config"}
    assert configs == {d["command_id"] for d in populated["calibration_deliveries"].values()}
    _assert_references_hold(engine)

    assert downgrade(engine, "0006") == "0006"
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(audit).where(audit.c.action == "calibration_delivery")
            ).scalar_one()
            == 1
        )
