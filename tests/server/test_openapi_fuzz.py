"""schemathesis against the OpenAPI spec: no input gives a server error (5xx)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from server.app import create_app
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.world import World


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    root = tmp_path_factory.mktemp("fuzz")
    app_settings = ServerSettings(
        registry_url=f"sqlite:///{root / 'registry.db'}",
        store=str(root / "store.db"),
        alert_interval_s=0,
        open_reads=False,
        guess_limit_per_min=100_000,
    )
    with TestClient(create_app(app_settings, clock=lambda: NOW)) as client:
        world = World.build(client)
        world.ok("a-admin", "POST", "/kits", 201, json={"inventory_code": "F-1", "profile_id": "starter"})
        world.ok("a-operator", "POST", "/deployments", 201, json={"name": "fuzzed"})
        yield client, world.as_("a-admin")


def test_no_server_errors(fuzz_app: tuple[TestClient, dict[str, str]]) -> None:
    """Test that no generated request to any operation, authenticated as an org admin, gets a 5xx."""
    client, headers = fuzz_app
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE" and operation.path == "/api/v1/me":
            continue  # would delete the fuzzing account itself
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        run()
    assert operations >= 50
    assert failures == []
