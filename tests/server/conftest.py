"""Fixtures of the server tests: a registry and a store in tmp_path, and a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.world import World
from tests.services.influxdb import InfluxD
from tests.stores import InfluxStore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's SUITCASE_SERVER_* variables out of the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("SUITCASE_SERVER_"):
            monkeypatch.delenv(name)


# The suites that run on both stores (the embedded SQLite store and a real influxd), with the
# registry on SQLite; the registry runs on PostgreSQL with the SQLite store everywhere, and with
# influxd in STORE_AND_POSTGRES only (so CI grows by the store suites, not by their square).
STORE_SUITES = {
    "test_pages",
    "test_routes_readings",
    "test_routes_devices",
    "test_routes_dead_letters",
    "test_routes_health",
    "test_features",
    "test_store_parity",
    "test_derived",
    "test_fleet_page",
    "test_alerts",
}
STORE_AND_POSTGRES = {"test_routes_devices"}
# Suites about the store's side only (their registry rows are ones other suites run on PostgreSQL).
STORE_ONLY = {"test_derived", "test_alerts"}  # the registry joined with the store's readings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` (registry+store) per suite: see STORE_SUITES."""
    if "backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    params: list[Any] = ["sqlite"]
    if module not in STORE_ONLY:
        params.append(pytest.param("postgres", marks=pytest.mark.postgres))
    if module in STORE_SUITES:
        params.append(pytest.param("influxdb", marks=pytest.mark.influxdb))
    if module in STORE_AND_POSTGRES:
        params.append(pytest.param("postgres+influxdb", marks=[pytest.mark.postgres, pytest.mark.influxdb]))
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which registry database and store a test runs on: sqlite, postgres, influxdb, postgres+influxdb."""
    name: str = request.param
    return name


@pytest.fixture
def registry_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The registry database: an SQLite file, or a fresh database on a real PostgreSQL."""
    if "postgres" in backend:
        url: str = request.getfixturevalue("postgres_db")
        return url
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the server reads: an SQLite file, or a real influxd (emptied for the test)."""
    if "influxdb" in backend:
        influxd: InfluxD = request.getfixturevalue("influxd")
        return influxd.sink_url
    return str(tmp_path / "store.db")


@pytest.fixture
def settings(registry_url: str, store_url: str) -> ServerSettings:
    return ServerSettings(registry_url=registry_url, store=store_url, alert_interval_s=0)


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
def store(settings: ServerSettings) -> Iterator[SqliteStore | InfluxStore]:
    """The store as the gateway writes it: a separate handle on the server's file, or the gateway's
    InfluxDB sink (which also creates the database the server's startup probe looks for)."""
    opened: SqliteStore | InfluxStore
    if settings.store.startswith("influxdb1://"):
        opened = InfluxStore(settings.store)
    else:
        opened = SqliteStore(settings.store)
    with opened as handle:
        yield handle


@pytest.fixture
def client(settings: ServerSettings, store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        yield test_client
