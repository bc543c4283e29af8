"""InfluxDB 1.x charts with and without the rollup tiers, against the bare InfluxQL, in one run.

On an influxd holding ``bench_server``'s data sets (``--fill`` writes them and runs ``retention
apply --backfill-days 367``: ~2 min of writes and ~11 min of rollups on the 2-core reference
machine), times in one process, interleaved in shuffled rounds: the deployment chart through the
API (``store=influxdb1://``), the bare InfluxQL the reader sends for it, and both again with the
reader given only the minute and hour rollups (``before``: what a database of the version before
the tiers has). Checks that both draw the same series. Prints p50 / p99 (ms) and the ratios::

    python -m benchmarks.ab_influx_tiers http://127.0.0.1:8086 --fill --rounds 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from benchmarks.bench_server import NOW, _fleet, _influx_fill, _influx_post
from gateway.store.influxdb1 import InfluxQLReader
from gateway.store.influxdb1_rollups import InfluxDB1Rollups
from gateway.store.retention import RetentionSettings
from server.app import create_app, freeze_startup_heap
from server.charts import bucket_width
from server.settings import ServerSettings
from server.tables import DeploymentDeviceRow, DeploymentRow, DeviceRow

YEAR, WEEK, DAY = 365 * 86_400, 7 * 86_400, 86_400
# name, data set (span of the device's readings), chart range
CASES = (("1y/1y", YEAR, YEAR), ("1y/90d", YEAR, 90 * DAY), ("1y/30d", YEAR, 30 * DAY), ("7d/7d", WEEK, WEEK))
BEFORE = (60, 3600)  # the tiers of a database made before the others existed


def fill(base: str) -> None:
    """Write bench_server's two data sets and compute every rollup tier of them."""
    _influx_post(base, "/query", {"q": 'CREATE DATABASE "suitcase"'})  # the store's meta database
    for span, step in ((YEAR, 60), (WEEK, 1)):
        print(f"{span} s: {_influx_fill(base, f'bench-chart-{span}', span, step):,} readings", flush=True)
    started = time.perf_counter()
    InfluxDB1Rollups(base, timeout=600).apply(RetentionSettings(), NOW, backfill_days=367)
    print(f"rollups computed in {time.perf_counter() - started:.0f} s", flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _points(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (s["quantity"], t, v) for s in body["series"] for t, v in zip(s["times"], s["values"], strict=True)
    ]


@contextlib.contextmanager
def recorded_queries() -> Iterator[list[tuple[list[str], str]]]:
    """Within the block, every ``InfluxQLReader`` query's statements and epoch, as sent (the bare
    query a chart needs is exactly what its reader sent)."""
    sent: list[tuple[list[str], str]] = []
    send = InfluxQLReader._query

    def recording(self: InfluxQLReader, statements: list[str], **kwargs: Any) -> Any:
        sent.append((list(statements), kwargs.get("epoch", "ns")))
        return send(self, statements, **kwargs)

    InfluxQLReader._query = recording  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        InfluxQLReader._query = send  # type: ignore[method-assign]


def run(base: str, rounds: int) -> None:
    before = {"on": False}
    tiers = InfluxQLReader._tiers
    InfluxQLReader._tiers = lambda self, db: BEFORE if before["on"] else tiers(self, db)  # type: ignore[method-assign]
    folder = Path(tempfile.mkdtemp())
    settings = ServerSettings(
        registry_url=f"sqlite:///{folder / 'registry.db'}",
        store=base.replace("http://", "influxdb1://"),
        alert_interval_s=0,
        open_reads=False,
    )
    calls: list[tuple[str, str, Callable[[], object]]] = []
    with recorded_queries() as sent, TestClient(create_app(settings, clock=lambda: NOW)) as client:
        headers, org_id = _fleet(client, 0)
        deployments: dict[int, int] = {}
        with Session(client.app.state.resources.engine) as session:  # type: ignore[attr-defined]
            for span in (YEAR, WEEK):
                dep = DeploymentRow(org_id=org_id, name=f"bench-{span}", starts_at=NOW - span, created_at=NOW)
                session.add(dep)
                session.add(DeviceRow(id=f"bench-chart-{span}", org_id=org_id, registered_at=NOW))
                session.flush()
                assert dep.id is not None
                session.add(
                    DeploymentDeviceRow(
                        deployment_id=dep.id, device_id=f"bench-chart-{span}", from_t=NOW - span
                    )
                )
                deployments[span] = dep.id
            session.commit()
        freeze_startup_heap()
        for name, span, chart_range in CASES:
            every = bucket_width(chart_range, 1000)
            drawn = []
            for label in ("after", "before"):

                def chart(
                    span: int = span, chart_range: int = chart_range, old: bool = label == "before"
                ) -> bytes:
                    before["on"] = old
                    response = client.get(
                        f"/api/v1/deployments/{deployments[span]}/chart",
                        params={"start": NOW - chart_range, "end": NOW, "points": 1000},
                        headers=headers,
                    )
                    # Timed up to the body's bytes, as the bare query is (a client's parse of
                    # it, ~3 ms, is not the route's); the series are checked before the rounds.
                    assert response.status_code == 200 and response.content.count(b'"times"') == 10
                    return response.content

                sent.clear()
                body = json.loads(chart())
                # The bare aggregation the chart needs: the statements its reader sent, as it sent
                # them (a range not on a window's edge reads its partial first window too).
                query, epoch = next((";".join(q), e) for q, e in sent if any("GROUP BY" in x for x in q))

                def bare(query: str = query, epoch: str = epoch) -> object:
                    return _influx_post(base, "/query", {"q": query, "epoch": epoch})

                assert len(body["series"]) == 10, body
                drawn.append(_points(body))
                bare()
                calls += [(name, f"route {label}", chart), (name, f"bare {label}", bare)]
            same = len(drawn[0]) == len(drawn[1]) and all(
                a[:2] == b[:2] and math.isclose(a[2], b[2], rel_tol=1e-9, abs_tol=1e-9)
                for a, b in zip(drawn[0], drawn[1], strict=True)
            )
            print(f"{name}: {every:g} s windows, both layouts draw the same series: {same}", flush=True)
        times: dict[tuple[str, str], list[float]] = {(n, k): [] for n, k, _ in calls}
        rng = random.Random(12)
        for _ in range(rounds):
            rng.shuffle(calls)
            for name, kind, fn in calls:
                started = time.perf_counter()
                fn()
                times[name, kind].append(time.perf_counter() - started)
    shutil.rmtree(folder, ignore_errors=True)  # the registry of this run

    def shown(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} / {_percentile(values, 0.99) * 1000:.0f}"

    print("case | route p50/p99 | bare p50/p99 | route/bare p50 | before: route, bare | after/before p50")
    for name, *_ in CASES:
        route, bare_ = times[name, "route after"], times[name, "bare after"]
        old_route, old_bare = times[name, "route before"], times[name, "bare before"]
        p50 = statistics.median
        print(
            f"{name} | {shown(route)} | {shown(bare_)} | {p50(route) / p50(bare_):.2f}x"
            f" | {shown(old_route)}, {shown(old_bare)} | {p50(route) / p50(old_route):.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="the influxd's HTTP URL, e.g. http://127.0.0.1:8086")
    parser.add_argument("--fill", action="store_true", help="write the data sets and their rollups first")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    if args.fill:
        fill(args.url)
    run(args.url, args.rounds)


if __name__ == "__main__":
    main()
