"""Faults of the databases behind the gateway and the server: the store (influxd) unreachable for
longer than the gateway's retry backoff, and the registry (PostgreSQL) unreachable under a
running server and its listener.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from gateway.consumer import _RETRY_MAX_S
from server.tables import DeviceRow
from tests.reliability.conftest import Stack, drained, ledger_of, make_agent, running
from tests.reliability.faults import SCALE
from tests.reliability.postgres import PrivatePostgres
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.influxdb]

AGENTS = 3


def test_store_unreachable_past_the_gateway_backoff_loses_and_doubles_nothing(
    ready: Stack, tmp_path: Path
) -> None:
    """Test that influxd down for longer than it takes the gateway's retry delay to reach its
    maximum loses nothing and doubles nothing: nothing is acknowledged meanwhile (the broker and
    the agents hold it), and everything lands once influxd is back, within one maximum delay."""
    stack = ready
    outage = (_RETRY_MAX_S + 4.0) * SCALE  # 0.05 s doubling reaches the 5 s cap after ~6 s
    begin = time.time() - 5
    agents = [make_agent(stack, f"store-{i}", tmp_path / f"a{i}") for i in range(AGENTS)]
    with running(agents):
        time.sleep(1.0)
        failures = stack.gateway.stats.store_failures
        stack.influxd.stop()
        down = time.monotonic()
        time.sleep(0.5)  # a batch written just before the stop may still be acked now
        acked = stack.gateway.stats.acked
        time.sleep(max(outage - (time.monotonic() - down), 0))
        acked_while_down = stack.gateway.stats.acked - acked
        retries = stack.gateway.stats.store_failures - failures
        stack.influxd.start()
        back = time.monotonic()
        time.sleep(1.0)
        drained(agents)
    result = stack.outcome(
        "Store (influxd) unreachable past the gateway's retry backoff",
        ledger_of(agents),
        begin=begin,
        back=back,
        conditions=f"{AGENTS} agents at 6 readings/s; {outage:.0f} s down (retry delay capped at "
        f"{_RETRY_MAX_S:.0f} s); {retries} failed writes",
        order=40,
        retries=retries,
    )
    recovery = result.recovery_s
    assert acked_while_down == 0, f"{acked_while_down} messages acknowledged while the store was down"
    assert retries >= 6, f"only {retries} retries in {outage:.0f} s: the backoff was not exercised"
    assert (result.lost, result.doubled) == (0, 0), result.summary()
    assert recovery is not None and recovery < _RETRY_MAX_S + 15, result.summary()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this module alone, stopped and started by its case."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.destroy()


def _api_status(client: TestClient, path: str) -> int:
    return client.get(path).status_code


@pytest.mark.postgres
def test_registry_unreachable_answers_503_and_the_listener_catches_up(
    ready: Stack, registry: PrivatePostgres, tmp_path: Path
) -> None:
    """Test that with the registry's PostgreSQL stopped under a running server, the API answers
    503 (never a 500, never a wrong empty answer), readings go on landing in the store, and once
    PostgreSQL is back the listener applies the status and meta the devices sent meanwhile (an
    agent that went offline shows offline, one that came online shows online), without waiting
    for the devices to send them again."""
    stack = ready
    begin = time.time() - 5
    stays, leaves, arrives = "stays", "leaves", "arrives"
    agents = {d: make_agent(stack, d, tmp_path / d) for d in (stays, leaves, arrives)}
    with stack.server(registry.url, agents) as client:
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]

        def online(device: str) -> bool | None:
            with Session(engine) as session:
                row = session.get(DeviceRow, device)
                return None if row is None else row.online

        path = f"/api/v1/devices/{stays}"
        assert _api_status(client, path) in (200, 401, 403)
        with running([agents[stays], agents[leaves]]):
            wait_until(lambda: online(stays) and online(leaves), 30, "both devices online")
            registry.stop()
            down = time.monotonic()
            statuses = {_api_status(client, path) for _ in range(3)}
            drained([agents[leaves]])
            agents[leaves].stop()  # its retained `offline` status meets a registry that is down
            with running([agents[arrives]]):
                time.sleep(2.0 * SCALE)
                registry.start()
                back = time.monotonic()
                caught_up = wait_until(
                    lambda: online(leaves) is False and online(arrives) is True,
                    30,
                    "the registry to catch up with the status sent while it was down",
                    every=0.2,
                )
                recovery = time.monotonic() - back
                assert caught_up
                assert _api_status(client, path) != 503
                drained([agents[stays], agents[arrives]])
            drained([agents[stays]])
        outage = back - down
    result = stack.outcome(
        "Registry (PostgreSQL) unreachable under the server",
        ledger_of(list(agents.values())),
        begin=begin,
        back=back,
        recovery_s=recovery,
        conditions=f"{outage:.0f} s down; API answered {sorted(statuses)}; one agent left, one "
        "came meanwhile; recovery = registry shows both",
        order=50,
        api_statuses=sorted(statuses),
    )
    assert statuses == {503}, f"the API answered {statuses} with the registry down"
    assert (result.lost, result.doubled) == (0, 0), result.summary()
