"""Tests of server/db.py: the registry tables and loading the catalogue into them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from kits.catalog import Catalog, load_catalog
from kits.errors import ConfigError
from server.db import create_registry_engine, current_revision, head_revision, init_registry
from server.models import KitProfileRow, UseCaseRow


def test_loading_the_catalogue_twice_changes_nothing(tmp_path: Path) -> None:
    """Test that the catalogue upsert is idempotent."""
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'r.db'}")
    catalog = load_catalog()
    first = init_registry(engine, catalog)
    second = init_registry(engine, catalog)
    assert "kit-profile:starter" in first.added and "use-case:indoor-climate" in first.added
    assert (second.added, second.updated, second.removed) == ((), (), ())
    assert second.unchanged == len(catalog.kit_profiles) + len(catalog.use_cases)
    with Session(engine) as session:
        row = session.get(KitProfileRow, "starter")
        assert row is not None and row.profile() == catalog.kit_profiles["starter"]


def test_changed_and_removed_entries_are_synced(tmp_path: Path) -> None:
    """Test that a changed profile is updated and a use-case gone from the catalogue is removed."""
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'r.db'}")
    catalog = load_catalog()
    init_registry(engine, catalog)
    starter = catalog.kit_profiles["starter"].model_copy(update={"name": "Renamed suitcase"})
    result = init_registry(engine, Catalog(kit_profiles={"starter": starter}, use_cases={}))
    assert result.updated == ("kit-profile:starter",)
    assert "use-case:indoor-climate" in result.removed
    assert set(result.removed) == {f"use-case:{u}" for u in catalog.use_cases} | {
        f"kit-profile:{p}" for p in catalog.kit_profiles if p != "starter"
    }
    with Session(engine) as session:
        row = session.get(KitProfileRow, "starter")
        assert row is not None and row.name == "Renamed suitcase"
        assert session.get(UseCaseRow, "indoor-climate") is None


def test_bad_registry_url_says_what_to_use() -> None:
    """Test that a malformed URL is a ConfigError showing a valid example."""
    with pytest.raises(ConfigError, match="sqlite:///"):
        create_registry_engine("not a url")


def test_unreachable_registry_is_a_config_error(tmp_path: Path) -> None:
    """Test that a SQLite file in a missing folder fails with the variable to set."""
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'missing' / 'r.db'}")
    with pytest.raises(ConfigError, match="SUITCASE_SERVER_REGISTRY_URL"):
        init_registry(engine, load_catalog())


@pytest.mark.postgres
def test_replicas_starting_together_on_an_empty_registry_all_start(postgres_db: str) -> None:
    """Test that server replicas initialising one fresh PostgreSQL registry at the same moment all
    succeed: they take turns (an advisory lock), instead of racing to create the same tables."""
    catalog = load_catalog()
    engines = [create_registry_engine(postgres_db) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def start(engine: Engine) -> None:
        barrier.wait(30)
        try:
            init_registry(engine, catalog)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert current_revision(engines[0]) == head_revision()
    for engine in engines:
        engine.dispose()
