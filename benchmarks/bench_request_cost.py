"""The fixed cost of a request, in-process: the app driven through ``httpx.ASGITransport`` in this
process (no sockets, no test client thread), with the server's own threadpool, so the CPU time
measured is the server's (and the small in-process client's), not a loaded network's.

A registry of ``SUITCASE_BENCH_FLEET_DEVICES`` devices (default 10,000, as ``bench_fleetpage``)
on SQLite and the embedded store, the fleet page's index built once (warm) and the startup heap
frozen as ``suitcase server run`` does. Measured, CPU and wall p50/p99 of 200 calls each:
``/api/v1/health`` (no caller), ``/api/v1/auth/me`` by session cookie and by API token (the
caller resolved), the warm HTML fleet page of 50. Baseline in the same run: the bare registry
``SELECT * FROM devices ORDER BY id LIMIT 50`` (CPU p50). Run it on two trees one after the other
(``PYTHONPATH=<tree>``) for an A/B.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from benchmarks.bench_fleetpage import NOW, PASSWORD, _fill, _registry
from gateway.store import SqliteStore
from server.app import create_app, freeze_startup_heap
from server.settings import ServerSettings

__all__ = ["run"]

CALLS = 200


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def _time(call: Callable[[int], Awaitable[None]]) -> tuple[float, float, float, float]:
    """CPU p50, CPU p99, wall p50, wall p99 (ms) of ``CALLS`` calls after 5 to warm up."""
    for i in range(5):
        await call(i)
    cpu, wall = [], []
    for i in range(CALLS):
        started, used = time.perf_counter(), time.process_time()
        await call(i)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return (
        statistics.median(cpu) * 1000,
        _p99(cpu) * 1000,
        statistics.median(wall) * 1000,
        _p99(wall) * 1000,
    )


def run() -> dict[str, tuple[float, float, float, float]]:
    """Print and return each call's (CPU p50, CPU p99, wall p50, wall p99) in ms."""
    devices = int(os.environ.get("SUITCASE_BENCH_FLEET_DEVICES", "10000"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = SqliteStore(folder / "store.db")
        _fill(store, devices)
        store.close()
        registry = folder / "registry.db"
        settings = ServerSettings(
            registry_url=f"sqlite:///{registry}",
            store=str(folder / "store.db"),
            alert_interval_s=0,
            open_reads=False,
            fleet_cache_s=3600.0,
        )
        with TestClient(create_app(settings, clock=lambda: NOW)) as client:
            app: Any = client.app
            _registry(app.state.resources.engine, devices)
            login = client.post(
                "/api/v1/auth/login", json={"email": "bench@example.org", "password": PASSWORD}
            )
            login.raise_for_status()
            made = client.post(
                "/api/v1/tokens",
                json={"name": "bench", "org_id": 1, "role": "viewer"},
                headers={"X-CSRF-Token": login.json()["csrf"]},
            )
            made.raise_for_status()
            token = {"Authorization": f"Bearer {made.json()['token']}"}
            client.get("/fleet").raise_for_status()  # the index, built once
            freeze_startup_heap()
            conn = sqlite3.connect(registry)

            async def measure() -> dict[str, tuple[float, float, float, float]]:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench", cookies=dict(login.cookies)
                ) as http:

                    async def get(path: str, **kwargs: Any) -> None:
                        response = await http.get(path, **kwargs)
                        assert response.status_code == 200, (path, response.status_code)

                    async def bare(_: int) -> None:
                        conn.execute("SELECT * FROM devices ORDER BY id LIMIT 50").fetchall()

                    calls: dict[str, Callable[[int], Awaitable[None]]] = {
                        "bare registry page of 50 (baseline)": bare,
                        "GET /api/v1/health (no caller)": lambda i: get("/api/v1/health"),
                        "GET /api/v1/auth/me (session cookie)": lambda i: get("/api/v1/auth/me"),
                        "GET /api/v1/auth/me (API token)": lambda i: get("/api/v1/auth/me", headers=token),
                        "GET /fleet page of 50 (warm index)": lambda i: get(
                            "/fleet", params={"page": i % max(1, devices // 50) + 1}
                        ),
                    }
                    return {name: await _time(call) for name, call in calls.items()}

            results = asyncio.run(measure())
            conn.close()
    base = results["bare registry page of 50 (baseline)"][0]
    print(f"  request cost in-process, {devices:,} devices (load average {os.getloadavg()[0]:.1f}):")
    for name, (cpu50, cpu99, wall50, wall99) in results.items():
        print(
            f"    {name}: CPU p50 {cpu50:.2f} ms ({cpu50 / base:.0f}x the bare page), p99 {cpu99:.2f} ms; "
            f"wall p50 {wall50:.2f} ms, p99 {wall99:.2f} ms"
        )
    return results


if __name__ == "__main__":
    run()
