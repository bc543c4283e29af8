"""Fixtures of the server tests: a registry and a store in tmp_path, and a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.world import World


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's SUITCASE_SERVER_* variables out of the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("SUITCASE_SERVER_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry database: an SQLite file, and a fresh database on a real PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db")
        return url
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def settings(tmp_path: Path, registry_url: str) -> ServerSettings:
    return ServerSettings(registry_url=registry_url, store=str(tmp_path / "store.db"), alert_interval_s=0)


@pytest.fixture
def closed_settings(settings: ServerSettings) -> ServerSettings:
    """Settings of a server that lets no anonymous reader in (as in production)."""
    return settings.model_copy(update={"open_reads": False})


@pytest.fixture
def closed_client(closed_settings: ServerSettings, store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(create_app(closed_settings, clock=lambda: NOW)) as test_client:
        yield test_client


@pytest.fixture
def world(closed_client: TestClient) -> World:
    """Two organisations with an admin, an operator and a viewer each, and a global admin."""
    return World.build(closed_client)


@pytest.fixture
def store(settings: ServerSettings) -> Iterator[SqliteStore]:
    """The store as the gateway sees it (a separate handle on the server's file)."""
    with SqliteStore(settings.store) as handle:
        yield handle


@pytest.fixture
def client(settings: ServerSettings, store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        yield test_client
