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


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's SUITCASE_SERVER_* variables out of the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("SUITCASE_SERVER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}", store=str(tmp_path / "store.db")
    )


@pytest.fixture
def store(settings: ServerSettings) -> Iterator[SqliteStore]:
    """The store as the gateway sees it (a separate handle on the server's file)."""
    with SqliteStore(settings.store) as handle:
        yield handle


@pytest.fixture
def client(settings: ServerSettings, store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        yield test_client
