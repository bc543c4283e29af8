"""The fleet view at 10,000 devices, direct (no simulator): API page, HTML page and an alert round.

A registry holds 10,000 enrolled devices (2,500 kits of 4 Pis, each kit in a deployment, one
calibration per kit, status and meta as the listener leaves them) and the store holds readings of
every device for the last 30 minutes (3 quantities every 2 minutes, 1 % of the devices stuck), so
its "devices seen" and latest readings are those of 10,000 devices. Measured, on the embedded
SQLite store and on a real influxd (when installed), with the registry on SQLite:

- ``GET /api/v1/devices?limit=50&offset=...`` (registered only, and the whole fleet) p50/p99;
- ``GET /fleet?page=...`` (the HTML fleet page, a page of 50) p50/p99, and one filtered page, cold
  (the fleet index read for the page), warm (the index reused, ``fleet_cache_s``) and as production
  keeps it (10 s, shown 10 s more while the next is read in the background), with the startup heap
  frozen as ``suitcase server run`` does;
- alert rounds (``server.alerts.evaluate``) with an offline, a stuck and a threshold rule: the first
  after a start (nothing known about the series) and the ones after it (median);
- the read of every device's last-seen time after a reader's first, with the fleet reporting
  between reads (on InfluxDB: the sinks' log of changes since the last read).

Baselines in the same run (the machine is shared and noisy: read the ratios): the bare registry
``SELECT * FROM devices ORDER BY id LIMIT 50 OFFSET ...`` p99 (pages), and the read of every
device's last-seen time from the store in full (one ``devices()`` call, every device's point on
InfluxDB: the alert round's floor).
``SUITCASE_BENCH_FLEET_DEVICES`` (default 10,000) changes the fleet size;
``SUITCASE_BENCH_FLEET_STORES=sqlite`` skips influxd, ``SUITCASE_BENCH_FLEET_ALERTS=0`` the alert rounds.
"""

from __future__ import annotations

import gc
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from benchmarks._timing import Figure
from kits.wire import Record
from server.app import create_app, freeze_startup_heap
from server.settings import ServerSettings
from server.tables import (
    AlertRuleRow,
    CalibrationRow,
    DeploymentDeviceRow,
    DeploymentRow,
    DeviceRow,
    KitRow,
    OrganisationRow,
)

__all__ = ["Timings", "run"]

NOW = 1_790_000_000.0
PASSWORD = "correct horse battery"
QUANTITIES = ("temperature", "humidity", "pressure")
WINDOW_S = 1800
STEP_S = 120
PAGE = 50


@dataclass
class Timings:
    p50: float
    p99: float
    runs: int
    cpu_p50: float = 0.0  # this process's CPU time during a call (all its threads)
    cpu_p99: float = 0.0
    full_collections: int = 0  # the garbage collector's full passes during the runs


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def timings(fn: Callable[[], object], budget_s: float = 20.0, most: int = 200) -> Timings:
    """Time ``fn`` (after one warm-up) as often as ``budget_s`` allows, 5 to ``most`` times: wall
    time, and this process's CPU time (on a loaded machine the wall time's tail is mostly the
    wait for a core; the CPU time is what the call costs)."""
    started = time.perf_counter()
    fn()
    first = time.perf_counter() - started
    runs = max(5, min(most, int(budget_s / max(first, 1e-4))))
    times, cpu = [], []
    full = gc.get_stats()[2]["collections"]
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    full = gc.get_stats()[2]["collections"] - full
    return Timings(statistics.median(times), _p99(times), runs, statistics.median(cpu), _p99(cpu), full)


def _registry(engine: Any, devices: int) -> None:
    from server.cli import add_global_admin

    with Session(engine) as session:
        add_global_admin(session, "bench@example.org", PASSWORD, now=1.0)
        org = OrganisationRow(slug="bench", name="Bench", created_at=NOW)
        session.add(org)
        session.flush()
        assert org.id is not None
        kits = [
            KitRow(org_id=org.id, inventory_code=f"KIT-{k:05d}", profile_id="starter", created_at=NOW)
            for k in range(devices // 4)
        ]
        session.add_all(kits)
        session.flush()
        deployments = [
            DeploymentRow(
                org_id=org.id, kit_id=kit.id, name=f"site {k}", starts_at=NOW - 86_400, created_at=NOW
            )
            for k, kit in enumerate(kits)
        ]
        session.add_all(deployments)
        session.flush()
        session.add_all(
            CalibrationRow(
                kit_id=kit.id or 0,
                pi_index=1,
                sensor="bme280",
                quantity="temperature",
                calibrated_at=NOW - 86_400,
                due_at=NOW + (k % 60) * 86_400,
                version=1,
            )
            for k, kit in enumerate(kits)
        )
        for i in range(devices):
            kit = kits[i // 4] if i // 4 < len(kits) else None
            session.add(
                DeviceRow(
                    id=f"bench-dev-{i:05d}",
                    org_id=org.id,
                    kit_id=kit.id if kit else None,
                    pi_index=i % 4 + 1,
                    registered_at=NOW - 86_400,
                    online=i % 10 != 0,
                    status_since=NOW - 3_600,
                    last_seen=NOW - 60 - (i % 900),
                    agent_version="0.1.0" if i % 2 else "0.2.0",
                    backlog=i % 7,
                    meta_at=NOW - 120,
                    sensors=[{"name": "bme280", "part": "bme280", "state": "ok" if i % 50 else "error"}],
                )
            )
        session.flush()
        session.add_all(
            DeploymentDeviceRow(
                deployment_id=deployments[i // 4].id or 0, device_id=f"bench-dev-{i:05d}", from_t=NOW - 86_400
            )
            for i in range(min(devices, len(deployments) * 4))
        )
        session.add_all(
            AlertRuleRow(org_id=org.id, name=kind, kind=kind, params=params, created_at=NOW)
            for kind, params in (
                ("offline", {}),
                ("stuck", {}),
                ("threshold", {"quantity": "temperature", "op": ">", "value": 30.0, "window_s": 600}),
            )
        )
        session.commit()


def _records(devices: int) -> Iterator[list[Record]]:
    """Readings of the last 30 min for every device, a device's worth of series at a time."""
    rng = random.Random(7)
    for i in range(devices):
        device = f"bench-dev-{i:05d}"
        if i % 20 == 19:
            continue  # 5 % never sent a reading (seen by the registry only)
        stuck = i % 100 == 3
        yield [
            Record(
                "bench",
                device,
                "bme280",
                q,
                20.0 if stuck else 20.0 + rng.random() * 5 + (15 if i % 200 == 7 else 0),
                NOW - WINDOW_S + t + (i % STEP_S),
            )
            for t in range(0, WINDOW_S, STEP_S)
            for q in QUANTITIES
        ]


def _fill(store: Any, devices: int) -> None:
    batch: list[Record] = []
    for records in _records(devices):
        batch.extend(records)
        if len(batch) >= 20_000:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)


@contextmanager
def _stores(folder: Path, devices: int) -> Iterator[Iterator[tuple[str, str]]]:
    """Yield (name, store URL) of each store, filled; influxd only when installed (and not
    ``SUITCASE_BENCH_FLEET_STORES=sqlite``)."""
    import shutil

    from gateway.store import SqliteStore

    def each() -> Iterator[tuple[str, str]]:
        path = folder / "store.db"
        store = SqliteStore(path)
        _fill(store, devices)
        store.close()
        yield "SQLite", str(path)
        if os.environ.get("SUITCASE_BENCH_FLEET_STORES", "") == "sqlite":
            return
        if shutil.which("influxd") is None:
            print("  influxd is not installed: no InfluxDB figures (apt-get install influxdb)")
            return
        from tests.services.influxdb import InfluxD
        from tests.stores import InfluxStore

        server = InfluxD(folder / "influxd")
        server.start()
        try:
            sink = InfluxStore(server.sink_url)
            _fill(sink, devices)
            sink.close()
            yield "InfluxDB 1.x", server.sink_url
        finally:
            server.stop()

    yield each()


def _measure(name: str, store_url: str, folder: Path, devices: int) -> list[Figure]:
    from server.alerts import evaluate
    from server.resources import open_resources

    registry = folder / f"registry-{name.split()[0].lower()}.db"
    settings = ServerSettings(
        registry_url=f"sqlite:///{registry}", store=store_url, alert_interval_s=0, open_reads=False
    )
    rng = random.Random(11)
    pages = max(1, devices // PAGE)
    figures: list[Figure] = []
    with TestClient(create_app(settings, clock=lambda: NOW)) as client:
        # As `suitcase server run` does once its app is built: what lives as long as the process
        # is kept out of the full garbage collections (here: this process's earlier apps too).
        freeze_startup_heap()
        _registry(client.app.state.resources.engine, devices)  # type: ignore[attr-defined]
        login = client.post("/api/v1/auth/login", json={"email": "bench@example.org", "password": PASSWORD})
        login.raise_for_status()
        csrf = {"X-CSRF-Token": login.json()["csrf"]}

        def api(params: dict[str, Any]) -> Callable[[], None]:
            def call() -> None:
                offset = rng.randrange(0, pages) * PAGE
                response = client.get("/api/v1/devices", params={"limit": PAGE, "offset": offset, **params})
                assert response.status_code == 200 and len(response.json()["data"]) == PAGE, response.text

            return call

        def html(params: dict[str, Any]) -> Callable[[], None]:
            def call() -> None:
                page = rng.randrange(0, pages) + 1
                response = client.get("/fleet", params={"page": page, **params})
                assert response.status_code == 200 and "fleet-table" in response.text, response.status_code

            return call

        measured = {
            "fleet API page of 50 (registered)": timings(api({"registered": "true"})),
            "fleet API page of 50 (whole fleet)": timings(api({})),
        }
        # The fleet page's index (fleet_cache_s): read on every page (cold: as each first view after
        # it expires), then reused (warm: the pages a person turns and the polls inside its lifetime),
        # then as production keeps it (10 s, shown 10 s more while the next is read in the
        # background; pages for 30 s, so the index is read anew about three times among them).
        index = client.app.state.resources.fleet_index  # type: ignore[attr-defined]
        for label, ttl, stale, budget in (
            ("cold", 0.0, 0.0, 20.0),
            ("warm", 3600.0, 0.0, 20.0),
            ("production: 10 s, 10 s stale", 10.0, 10.0, 30.0),
        ):
            index.ttl_s, index.stale_s = ttl, stale
            index.clear()
            client.get("/fleet").raise_for_status()  # warm: the index built, outside the timings
            measured[f"fleet HTML page of 50 ({label})"] = timings(html({}), budget_s=budget, most=300)
            measured[f"fleet HTML page of 50, online ({label})"] = timings(
                lambda: client.get("/fleet", params={"state": "online", "page": 3}).raise_for_status(),
                most=100,
            )
        # A person changes something of the fleet here (a deployment's name: this replica's index
        # is cleared), then opens the fleet page a second later: what that page costs.
        renamed = iter(range(1_000_000))

        def after_a_change() -> None:
            body = {"name": f"site {next(renamed)}"}
            changed = client.patch("/api/v1/deployments/1", json=body, headers=csrf)
            changed.raise_for_status()
            time.sleep(1.0)
            started, used = time.perf_counter(), time.process_time()
            html({})()
            changes.append((time.perf_counter() - started, time.process_time() - used))

        changes: list[tuple[float, float]] = []
        for _ in range(12):
            after_a_change()
        walls, cpus = [w for w, _ in changes], [c for _, c in changes]
        measured["fleet HTML page of 50, 1 s after this replica changed the registry (production)"] = Timings(
            statistics.median(walls), max(walls), len(changes), statistics.median(cpus), max(cpus)
        )
    conn = sqlite3.connect(registry)
    base = timings(
        lambda: conn.execute(
            "SELECT * FROM devices ORDER BY id LIMIT ? OFFSET ?", (PAGE, rng.randrange(0, pages) * PAGE)
        ).fetchall()
    )
    conn.close()
    print(
        f"  {name}, {devices:,} devices: bare registry page of 50 p99 {base.p99 * 1000:.2f} ms "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    for what, t in measured.items():
        print(
            f"    {what}: p50 {t.p50 * 1000:.1f} ms, p99 {t.p99 * 1000:.1f} ms ({t.runs} runs), "
            f"{t.p99 / base.p99:.0f}x the bare page; CPU p50 {t.cpu_p50 * 1000:.1f} ms, "
            f"p99 {t.cpu_p99 * 1000:.1f} ms; full garbage collections {t.full_collections}"
        )
        figures.append(
            Figure(
                f"{what} p99 ({name}, {devices:,})", t.p99, "bare registry page", base.p99, PAGE, "devices"
            )
        )
    goal = measured["fleet HTML page of 50 (production: 10 s, 10 s stale)"]
    print(
        f"  ISSUE #12 FIGURE ({name}): HTML fleet page of 50 among {devices:,} devices, as production "
        f"keeps its index (10 s, 10 s stale, read anew in the background): p99 {goal.p99 * 1000:.0f} ms "
        f"wall, {goal.cpu_p99 * 1000:.0f} ms CPU, p50 {goal.p50 * 1000:.0f} ms ({goal.runs} pages in 30 s; "
        f"goal p99 <= 100 ms: {'met' if goal.p99 <= 0.1 else 'NOT met'} on this machine at load "
        f"{os.getloadavg()[0]:.1f})"
    )
    # The read of every device's last-seen time, in full: a reader's first (and every 5 min on
    # InfluxDB); the alert rounds' baseline.
    seen = _seen_full(store_url)
    if os.environ.get("SUITCASE_BENCH_FLEET_ALERTS", "1") != "0":
        resources = open_resources(settings, clock=lambda: NOW)
        try:
            started = time.perf_counter()
            evaluate(resources)  # the first round after a start: nothing is known about the series yet
            first_round = time.perf_counter() - started
            alert = timings(lambda: evaluate(resources), budget_s=30, most=5)
        finally:
            resources.close()
        print(
            f"    alert round (offline, stuck, threshold): first {first_round:.3f} s, then median "
            f"{alert.p50:.3f} s ({alert.runs} runs); bare devices seen of all {seen.p50 * 1000:.1f} ms: "
            f"{first_round / seen.p50:.1f}x and {alert.p50 / seen.p50:.1f}x"
        )
        for what, seconds in (("first alert round", first_round), ("alert round after", alert.p50)):
            figures.append(
                Figure(f"{what} ({name}, {devices:,})", seconds, "devices seen", seen.p50, devices, "devices")
            )
    # Last: it writes (the fleet reporting), which the figures above must not see.
    since = _seen_changing(store_url, devices)
    print(
        f"    devices seen of all: in full p50 {seen.p50 * 1000:.1f} ms; after a first read, with the "
        f"fleet reporting between reads, p50 {since.p50 * 1000:.1f} ms, max {since.p99 * 1000:.1f} ms "
        f"({since.runs} runs): {seen.p50 / since.p50:.1f}x less at the median"
    )
    figures.append(
        Figure(
            f"devices seen after a first read, p50 ({name}, {devices:,})",
            since.p50,
            "the read in full",
            seen.p50,
            devices,
            "devices",
        )
    )
    return figures


def _seen_full(store_url: str) -> Timings:
    """The read of every device's last-seen time in full (on InfluxDB every device's point)."""
    from gateway.store import open_reader
    from gateway.store.influxdb1 import InfluxQLReader

    reader = open_reader(store_url)
    if isinstance(reader, InfluxQLReader):
        reader.seen.full_s = 0.0  # every read a full one
    try:
        return timings(lambda: reader.devices("bench"), budget_s=5, most=30)
    finally:
        reader.close()


def _seen_changing(store_url: str, devices: int) -> Timings:
    """The read of every device's last-seen time after a first, with the fleet reporting between
    reads (a read a second, each after a second of the fleet's packs: every device once per 2 min);
    on InfluxDB the read asks the sinks' log for what changed since its last read, less 15 s."""
    from gateway.store import open_reader

    if store_url.startswith("influxdb1://"):
        from tests.stores import InfluxStore

        writer: Any = InfluxStore(store_url)
    else:
        from gateway.store import SqliteStore

        writer = SqliteStore(store_url)
    reader = open_reader(store_url)
    reader.devices("bench")
    per_second = max(1, devices // STEP_S)
    times = []
    for step in range(30):  # a read a second for 30 s: each asks the log for the last 15 s and more
        tick = time.perf_counter()
        first = step * per_second
        writer.write(
            [
                Record("bench", f"bench-dev-{i % devices:05d}", "bme280", q, 21.0, NOW + step)
                for i in range(first, first + per_second)
                for q in QUANTITIES
            ]
        )
        started = time.perf_counter()
        reader.devices("bench")
        times.append(time.perf_counter() - started)
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    reader.close()
    writer.close()
    times.sort()
    return Timings(statistics.median(times), times[-1], len(times))


def run() -> list[Figure]:
    devices = int(os.environ.get("SUITCASE_BENCH_FLEET_DEVICES", "10000"))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp, _stores(Path(tmp), devices) as stores:
        for name, url in stores:
            figures.extend(_measure(name, url, Path(tmp), devices))
    return figures


if __name__ == "__main__":
    for figure in run():
        print(f"{figure.name}: {figure.ratio:.1f}x {figure.baseline}")
