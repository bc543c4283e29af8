"""Bounds on the work a client can cause (``server/bounded.py``, ``server/api/throttle.py``):
exports and reports rate-limited per client, public figures cached, both bounded in memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.store import SqliteStore
from kits.wire import Record
from server.app import create_app
from server.bounded import RateLimiter, TtlCache
from server.settings import ServerSettings
from tests.server.data import NOW
from tests.server.web_world import Clock
from tests.server.world import World


def test_rate_limiter_counts_per_key_in_a_sliding_window() -> None:
    """Test that a key gets ``limit`` starts a window, others are unaffected, and the window slides."""
    clock = Clock(0.0)
    limiter = RateLimiter(3, clock, window_s=60.0)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 60.0 and limiter.take("b") == 0.0
    clock.now = 30.0
    assert limiter.take("a") == 30.0
    clock.now = 60.5
    assert limiter.take("a") == 0.0


def test_rate_limiter_and_cache_stay_bounded() -> None:
    """Test that a flood of distinct keys (addresses) keeps at most max_keys / max_entries."""
    clock = Clock(0.0)
    limiter = RateLimiter(1, clock, max_keys=100)
    cache: TtlCache[int] = TtlCache(60.0, clock, max_entries=50)
    for i in range(10_000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
        cache.get(i, lambda i=i: i)  # type: ignore[misc]
    assert len(limiter) == 100 and len(cache) == 50


def test_cache_reuses_a_value_until_it_expires() -> None:
    """Test that a value is computed once per TTL, and a TTL of 0 turns the cache off."""
    clock = Clock(0.0)
    calls: list[int] = []
    cache: TtlCache[int] = TtlCache(300.0, clock)
    assert [cache.get("k", lambda: calls.append(1) or len(calls)) for _ in range(3)] == [1, 1, 1]
    clock.now = 301.0
    assert cache.get("k", lambda: calls.append(1) or len(calls)) == 2
    off: TtlCache[int] = TtlCache(0.0, clock)
    assert [off.get("k", lambda: calls.append(1) or len(calls)) for _ in range(2)] == [3, 4]


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def timed(tmp_path: Path, clock: Clock) -> Iterator[tuple[World, SqliteStore]]:
    settings = ServerSettings(
        registry_url=f"sqlite:///{tmp_path / 'registry.db'}",
        store=str(tmp_path / "store.db"),
        alert_interval_s=0,
        open_reads=False,
    )
    with SqliteStore(settings.store) as store, TestClient(create_app(settings, clock=clock)) as client:
        yield World.build(client), store


def _public_deployment(world: World, store: SqliteStore) -> int:
    dep = world.ok(
        "a-operator",
        "POST",
        "/deployments",
        201,
        json={"name": "square", "public": True, "lat": 56.1, "lon": 10.2, "starts_at": NOW - 7 * 86400},
    )
    code = world.ok("a-operator", "POST", "/enrollment-codes", 201, json={"deployment_id": dep["id"]})["code"]
    device = world.client.post("/api/v1/enroll", json={"code": code}).json()["config"]["device"]
    store.write([Record("city-a", device, "bme280", "temperature", 20.0, NOW - 600 + i) for i in range(3)])
    return int(dep["id"])


def test_exports_are_rate_limited_per_client(timed: tuple[World, SqliteStore], clock: Clock) -> None:
    """Test that an anonymous client gets 6 exports a minute, then 429 with Retry-After and a
    message; a logged-in user counts apart; a minute later the client may export again."""
    world, store = timed
    dep = _public_deployment(world, store)
    url = f"/api/v1/export/deployments/{dep}/readings"
    start = {"start": "2000-01-01T00:00:00Z"}  # an uncapped span: allowed, streamed
    statuses = [world.client.get(url, params=start).status_code for _ in range(7)]
    assert statuses == [200] * 6 + [429]
    refused = world.client.get(url)
    assert refused.headers["retry-after"] == "61" and "6 a minute" in refused.json()["detail"]
    assert world.call("a-viewer", "GET", f"/export/deployments/{dep}/readings").status_code == 200
    assert world.call("a-viewer", "GET", f"/deployments/{dep}/report").status_code == 200  # counts too
    clock.now = NOW + 61
    assert world.client.get(url).status_code == 200


def test_public_figures_are_computed_once_per_ttl(timed: tuple[World, SqliteStore], clock: Clock) -> None:
    """Test that the public page's 7-day means and the open series are computed once and reused by
    every visitor until public_cache_s (300 s) has passed."""
    world, store = timed
    dep = _public_deployment(world, store)
    figures: Any = world.client.app.state.resources.figures  # type: ignore[attr-defined]
    for _ in range(5):
        assert world.client.get(f"/public/deployments/{dep}").status_code == 200
        assert (
            world.client.get(f"/public/deployments/{dep}/series", params={"range": "1y"}).status_code == 200
        )
    assert (figures.misses, figures.hits) == (2, 8)
    clock.now = NOW + 301
    world.client.get(f"/public/deployments/{dep}/series", params={"range": "1y"})
    assert figures.misses == 3


def test_cache_clear_forgets_every_value() -> None:
    """Test that after ``clear`` every key is computed again, before its TTL ends."""
    clock = Clock(0.0)
    calls: list[int] = []
    cache: TtlCache[int] = TtlCache(300.0, clock)
    assert [cache.get(k, lambda: calls.append(1) or len(calls)) for k in "ab"] == [1, 2]
    cache.clear()
    assert len(cache) == 0
    assert [cache.get(k, lambda: calls.append(1) or len(calls)) for k in "ab"] == [3, 4]


def test_cache_shows_a_stale_value_while_its_successor_is_computed() -> None:
    """Test that with ``stale_s``, a value past its TTL is still returned while one refresh at a
    time computes its successor in the background, that past ``ttl_s + stale_s`` the caller
    computes, that without a ``refresh`` nothing stale is returned, and that a refresh started
    before a ``clear`` is not kept (it may predate the change that cleared the cache)."""
    clock = Clock(0.0)
    jobs: list[Any] = []
    cache: TtlCache[str] = TtlCache(10.0, clock, stale_s=10.0, background=jobs.append)
    assert cache.get("k", lambda: "first", lambda: "refreshed") == "first"
    clock.now = 15.0
    assert cache.get("k", lambda: "computed", lambda: "refreshed") == "first"
    assert cache.get("k", lambda: "computed", lambda: "refreshed") == "first"
    assert len(jobs) == 1  # one refresh at a time
    assert cache.get("k", lambda: "computed") == "computed"  # no refresh given: never stale
    clock.now = 30.0  # "computed" was kept at 15: shown until 35, the refresh still under way
    assert cache.get("k", lambda: "x", lambda: "refreshed") == "computed" and len(jobs) == 1
    jobs.pop(0)()  # it ends: kept as of when it started (30)
    assert cache.get("k", lambda: "x", lambda: "y") == "refreshed"
    clock.now = 41.0
    assert cache.get("k", lambda: "x", lambda: "late") == "refreshed"
    cache.clear()
    jobs.pop(0)()  # started before the clear: dropped
    assert cache.get("k", lambda: "after the clear", lambda: "y") == "after the clear"
    clock.now = 1000.0  # too old to show: computed while the caller waits
    assert cache.get("k", lambda: "waited", lambda: "y") == "waited" and jobs == []


def test_cache_rebuilds_after_a_clear_in_the_background() -> None:
    """Test that ``clear(rebuild=True)`` computes anew, in the background, the keys read within
    ``ttl_s + stale_s`` (with their last refresh), that a get then returns the rebuilt value
    without computing, that a rebuild cleared again before it starts is skipped for the next
    one, and that a key not read lately is only forgotten."""
    clock = Clock(0.0)
    jobs: list[Any] = []
    cache: TtlCache[str] = TtlCache(10.0, clock, stale_s=10.0, background=jobs.append)
    assert cache.get("k", lambda: "first", lambda: "rebuilt 1") == "first"
    assert cache.get("no refresh", lambda: "plain") == "plain"
    cache.clear(rebuild=True)
    assert len(jobs) == 1 and len(cache) == 0
    jobs.pop(0)()
    misses = cache.misses
    assert cache.get("k", lambda: "computed", lambda: "rebuilt 2") == "rebuilt 1"
    assert cache.misses == misses
    cache.clear(rebuild=True)
    cache.clear(rebuild=True)  # a second change before the first rebuild began
    assert len(jobs) == 2
    jobs.pop(0)()  # for the first clear: skipped, the second's follows
    assert len(cache) == 0
    jobs.pop(0)()
    assert cache.get("k", lambda: "computed", lambda: "rebuilt 3") == "rebuilt 2"
    clock.now = 25.0  # last read at 0: older than ttl_s + stale_s
    cache.clear(rebuild=True)
    assert jobs == []
    assert cache.get("k", lambda: "computed", lambda: "rebuilt 4") == "computed"


def test_a_get_waits_for_the_rebuild_under_way() -> None:
    """Test that a get of a key being rebuilt after a clear waits for that rebuild rather than
    computing it a second time, and computes it itself when the rebuild fails."""
    clock = Clock(0.0)
    cache: TtlCache[str] = TtlCache(10.0, clock, rebuild_wait_s=30.0)
    go = threading.Event()
    computed: list[str] = []

    def slow() -> str:
        assert go.wait(30.0)
        return "rebuilt"

    def compute() -> str:
        computed.append("k")
        return "computed"

    try:
        assert cache.get("k", lambda: "first", slow) == "first"
        cache.clear(rebuild=True)
        with ThreadPoolExecutor(1) as pool:
            page = pool.submit(cache.get, "k", compute, slow)
            go.set()
            assert page.result(timeout=60.0) == "rebuilt" and computed == []

        def broken() -> str:
            raise RuntimeError("the store is down")

        assert cache.get("j", lambda: "first", broken) == "first"
        cache.clear(rebuild=True)
        assert cache.get("j", lambda: "computed", broken) == "computed"
    finally:
        cache.close()
