"""The server's two latency targets (issue 5), as p99 through the API, against bare SQL baselines.

- Fleet list: 10,000 enrolled devices in the registry, one page of 50 with status
  (``GET /api/v1/devices?registered=true&limit=50&offset=...``), target p99 <= 100 ms. Baseline:
  the bare ``SELECT ... ORDER BY id LIMIT 50 OFFSET ...`` of the same rows on the same file.
- Chart: one deployment, 10 quantities downsampled to <= 1,000 points each
  (``GET /api/v1/deployments/{id}/chart``), for 7 days at 1 Hz (6.05 M readings) and for 1 year at
  1/min (5.26 M readings), target p99 <= 300 ms. Baseline: reading the same 10 x 1,000 points as
  one bare indexed range scan per series (the least any chart query must return).

The registry is SQLite; set ``SUITCASE_BENCH_PG_URL`` (an empty PostgreSQL database) to also run
the fleet list on PostgreSQL. The store is filled with bulk SQL (the setup is not measured).
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from benchmarks._timing import Figure
from gateway.store import SqliteStore
from kits.wire import Record
from server.app import create_app
from server.security import hash_secret, new_token
from server.settings import ServerSettings
from server.tables import ApiTokenRow, DeploymentDeviceRow, DeploymentRow, DeviceRow, OrganisationRow

__all__ = ["run"]

NOW = 1_790_000_000.0
QUANTITIES = (
    "temperature",
    "humidity",
    "pressure",
    "co2",
    "voc_index",
    "pm1_0",
    "pm2_5",
    "pm10",
    "illuminance",
    "distance",
)


def p99(fn: Callable[[], object], runs: int) -> float:
    """Return the 99th-percentile wall time of ``runs`` calls (after two warm-up calls)."""
    fn()
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.quantiles(times, n=100)[98] if len(times) >= 100 else max(times)


def _fleet(client: TestClient, devices: int) -> tuple[dict[str, str], int]:
    engine = client.app.state.resources.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        org = OrganisationRow(slug="bench", name="Bench", created_at=NOW)
        session.add(org)
        session.flush()
        assert org.id is not None
        session.add_all(
            DeviceRow(
                id=f"bench-dev-{i:05d}",
                org_id=org.id,
                registered_at=NOW,
                online=i % 3 != 0,
                last_seen=NOW - i,
                agent_version="0.1.0",
                sensors=[{"name": "bme280", "state": "ok"}],
            )
            for i in range(devices)
        )
        raw = new_token()
        session.add(
            ApiTokenRow(
                name="bench",
                token_hash=hash_secret(raw),
                prefix=raw[:10],
                org_id=org.id,
                role="viewer",
                created_at=NOW,
            )
        )
        session.commit()
        return {"Authorization": f"Bearer {raw}"}, org.id


def _fleet_figure(
    name: str, registry_url: str, folder: Path, baseline: Callable[[int], object] | None
) -> Figure:
    settings = ServerSettings(
        registry_url=registry_url, store=str(folder / "fleet-store.db"), alert_interval_s=0, open_reads=False
    )
    rng = random.Random(7)
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        headers, _ = _fleet(client, 10_000)

        def page() -> None:
            offset = rng.randrange(0, 10_000 - 50)
            response = client.get(
                "/api/v1/devices",
                params={"registered": "true", "limit": 50, "offset": offset},
                headers=headers,
            )
            assert response.status_code == 200 and len(response.json()["data"]) == 50

        api = p99(page, 300)
    if baseline is None:
        path = registry_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)

        def bare(offset: int) -> object:
            return conn.execute("SELECT * FROM devices ORDER BY id LIMIT 50 OFFSET ?", (offset,)).fetchall()

        baseline = bare
    assert baseline is not None
    base = p99(lambda: baseline(rng.randrange(0, 9_950)), 300)
    print(f"  {name}: p99 {api * 1000:.1f} ms (target <= 100 ms), bare SQL p99 {base * 1000:.2f} ms")
    return Figure(name, api, "bare SELECT of 50 rows", base, 50, "devices")


def _fill_store(path: Path, device: str, span_s: int, step_s: int) -> int:
    store = SqliteStore(path)
    store.write([Record("bench", device, "s", q, 0.0, NOW - span_s) for q in QUANTITIES])
    store.close()
    conn = sqlite3.connect(path)
    ids = dict(conn.execute("SELECT quantity, id FROM series WHERE device = ?", (device,)).fetchall())
    total = 0
    with conn:
        for q in QUANTITIES:
            rows = ((ids[q], NOW - span_s + t, 20.0 + (t % 600) / 60) for t in range(0, span_s, step_s))
            conn.executemany(
                "INSERT OR REPLACE INTO readings (series_id, time, value) VALUES (?, ?, ?)", rows
            )
            total += span_s // step_s
    conn.close()
    return total


def _chart_figure(name: str, folder: Path, span_s: int, step_s: int) -> Figure:
    store_path = folder / f"chart-{span_s}.db"
    device = "bench-chart"
    readings = _fill_store(store_path, device, span_s, step_s)
    settings = ServerSettings(
        registry_url=f"sqlite:///{folder / f'chart-{span_s}.registry.db'}",
        store=str(store_path),
        alert_interval_s=0,
        open_reads=False,
    )
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        headers, org_id = _fleet(client, 0)
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            dep = DeploymentRow(org_id=org_id, name="bench", starts_at=NOW - span_s, created_at=NOW)
            session.add(dep)
            session.add(DeviceRow(id=device, org_id=org_id, registered_at=NOW))
            session.flush()
            assert dep.id is not None
            session.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=device, from_t=NOW - span_s))
            session.commit()
            dep_id = dep.id

        def chart() -> None:
            body = client.get(
                f"/api/v1/deployments/{dep_id}/chart",
                params={"start": NOW - span_s, "end": NOW, "points": 1000},
                headers=headers,
            ).json()
            assert len(body["series"]) == 10 and all(0 < len(s["times"]) <= 1000 for s in body["series"])

        api = p99(chart, 40)
    conn = sqlite3.connect(store_path)
    ids = [row[0] for row in conn.execute("SELECT id FROM series WHERE device = ?", (device,))]

    def bare() -> None:
        for sid in ids:
            conn.execute(
                "SELECT time, value FROM readings WHERE series_id = ? AND time >= ? LIMIT 1000",
                (sid, NOW - span_s),
            ).fetchall()

    base = p99(bare, 40)
    print(
        f"  {name}: {readings:,} readings, p99 {api * 1000:.1f} ms (target <= 300 ms), "
        f"bare 10 x 1,000 rows p99 {base * 1000:.2f} ms"
    )
    return Figure(name, api, "bare scan of 10 x 1,000 rows", base, 10_000, "points")


def run() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        figures.append(
            _fleet_figure(
                "server fleet page p99 (SQLite, 10k devices)",
                f"sqlite:///{folder / 'fleet.db'}",
                folder,
                None,
            )
        )
        pg = os.environ.get("SUITCASE_BENCH_PG_URL")
        if pg:
            import psycopg

            conn = psycopg.connect(pg.replace("postgresql+psycopg", "postgresql"))

            def bare_pg(offset: int) -> object:
                return conn.execute(
                    "SELECT * FROM devices ORDER BY id LIMIT 50 OFFSET %s", (offset,)
                ).fetchall()

            figures.append(
                _fleet_figure("server fleet page p99 (PostgreSQL, 10k devices)", pg, folder, bare_pg)
            )
        figures.append(_chart_figure("server chart p99, 7 d at 1 Hz x 10", folder, 7 * 86_400, 1))
        figures.append(_chart_figure("server chart p99, 1 y at 1/min x 10", folder, 365 * 86_400, 60))
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.ratio:.1f}x baseline")
