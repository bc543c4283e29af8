"""InfluxDB charts as a city meets them: ``suitcase server run`` over HTTP against the bare InfluxQL.

Issue 12 asks a deployment chart on InfluxDB to cost at most 1.5x the bare InfluxQL aggregation
it needs. ``ab_influx_tiers`` times the route in its own process through FastAPI's TestClient,
which adds its own request handling and a thread hand-off that a served request does not have.
This times what a user meets: the server started as a city starts it (``python -m suitcase
server run --store influxdb1://...``, in a child process, its registry prepared first), asked for
each chart over one keep-alive HTTP connection, against exactly the statements that server's
reader sends for that chart (recorded from the route), posted to influxd's ``/query`` over one
keep-alive connection. Interleaved in shuffled rounds; both timed up to the body's bytes. Also
reports the server's CPU per chart (its ``/proc`` times around each call).

``--against TREE`` starts a second server from another checkout (``git archive COMMIT | tar -x
-C TREE``) on a copy of the registry and interleaves it too: an A/B in the same run. The
variants must answer the same bytes. The cases are ``ab_influx_tiers``' (a year, 90 and 30 days of
the year at 1/min, 7 days at 1 Hz) and shorter ranges (4 days and 24 hours of the year, 24, 6
and 1 hour of the week at 1 Hz). Needs the data sets of ``ab_influx_tiers --fill``::

    python -m benchmarks.ab_chart_server http://127.0.0.1:8086 --rounds 50 [--against /tmp/old]
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from fastapi.testclient import TestClient
from sqlmodel import Session

from benchmarks.ab_influx_tiers import CASES as LONG_RANGES
from benchmarks.ab_influx_tiers import recorded_queries
from benchmarks.bench_server import NOW, _fleet
from server.app import create_app
from server.charts import bucket_width
from server.settings import ServerSettings
from server.tables import DeploymentDeviceRow, DeploymentRow, DeviceRow

__all__ = ["CASES", "main", "prepare"]

HERE = Path(__file__).resolve().parent.parent
_DAY, _WEEK, _YEAR = 86_400, 7 * 86_400, 365 * 86_400
# name, data set (span of the device's readings), chart range: ab_influx_tiers' long ranges and the
# short ones (a tier's points added up by the reader at 24 h and 4 d; raw readings at 6 h and 1 h).
CASES = (
    *LONG_RANGES,
    ("1y/4d", _YEAR, 4 * _DAY),
    ("1y/24h", _YEAR, _DAY),
    ("7d/24h", _WEEK, _DAY),
    ("7d/6h", _WEEK, 6 * 3600),
    ("7d/1h", _WEEK, 3600),
)
TICK = os.sysconf("SC_CLK_TCK")


def prepare(store: str, registry: Path) -> tuple[dict[str, str], dict[int, int], dict[str, tuple[str, str]]]:
    """Make the registry (a viewer, a deployment per data set) and record the InfluxQL the reader
    sends for each case: (headers, deployment per span, case -> (statements, epoch))."""
    settings = ServerSettings(
        registry_url=f"sqlite:///{registry}", store=store, alert_interval_s=0, open_reads=False
    )
    with recorded_queries() as sent, TestClient(create_app(settings, clock=lambda: NOW)) as client:
        headers, org_id = _fleet(client, 0)
        deployments: dict[int, int] = {}
        with Session(client.app.state.resources.engine) as session:  # type: ignore[attr-defined]
            for span in sorted({span for _, span, _ in CASES}):
                device = f"bench-chart-{span}"
                dep = DeploymentRow(org_id=org_id, name=f"bench-{span}", starts_at=NOW - span, created_at=NOW)
                session.add(dep)
                session.add(DeviceRow(id=device, org_id=org_id, registered_at=NOW))
                session.flush()
                assert dep.id is not None
                session.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=device, from_t=NOW - span))
                deployments[span] = dep.id
            session.commit()
        statements: dict[str, tuple[str, str]] = {}
        for name, span, chart_range in CASES:
            sent.clear()
            response = client.get(
                f"/api/v1/deployments/{deployments[span]}/chart",
                params={"start": NOW - chart_range, "end": NOW, "points": 1000},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            chart = [s for s in sent if any("GROUP BY" in q for q in s[0])]
            assert len(chart) == 1, sent
            statements[name] = (";".join(chart[0][0]), chart[0][1])
    return headers, deployments, statements


def raw_aggregation(name: str) -> str:
    """The InfluxQL a chart of ``name`` needs without rollups: the counts and sums of the raw
    readings grouped in the chart's windows (what a dashboard over InfluxDB alone would send)."""
    span, chart_range = next((s, r) for n, s, r in CASES if n == name)
    every = bucket_width(chart_range, 1000)
    start = math.floor((NOW - chart_range) / every) * every
    return (
        f'SELECT count("value"), sum("value") FROM "suitcase_bench"../.*/ WHERE "org" = \'bench\' '
        f"AND \"device\" = 'bench-chart-{span}' AND time >= {int(start)}s AND time < {int(NOW)}s "
        f'GROUP BY time({int(every)}s), "sensor" fill(none)'
    )


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    tree: Path, store: str, registry: Path, folder: Path, label: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUITCASE_")} | {"PYTHONPATH": str(tree)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "suitcase", "server", "run", "--store", store,
         "--registry-url", f"sqlite:///{registry}", "--port", str(port)],
        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=(folder / f"{label}.log").open("wb"),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the {label} server exited: {(folder / f'{label}.log').read_text()[-2000:]}")
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            probe.request("GET", "/api/v1/health")
            if probe.getresponse().status == 200:
                probe.close()
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the {label} server did not answer /health within 120 s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run(influx: str, rounds: int, against: Path | None, only: list[str] | None = None) -> None:
    store = influx.replace("http://", "influxdb1://")
    folder = Path(tempfile.mkdtemp(prefix="ab-chart-server-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        headers, deployments, statements = prepare(store, folder / "registry.db")
        trees = {"this tree": HERE} | ({"against": against} if against else {})
        conns: dict[str, http.client.HTTPConnection] = {}
        for i, (label, tree) in enumerate(trees.items()):
            registry = folder / f"registry-{i}.db"
            shutil.copy(folder / "registry.db", registry)
            procs[label], port = _start(tree, store, registry, folder, f"server-{i}")
            conns[label] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        target = urlsplit(influx)
        influxd = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 8086, timeout=120)

        def route(label: str, name: str) -> bytes:
            span, chart_range = next((s, r) for n, s, r in CASES if n == name)
            params = urlencode({"start": NOW - chart_range, "end": NOW, "points": 1000})
            conns[label].request(
                "GET", f"/api/v1/deployments/{deployments[span]}/chart?{params}", headers=headers
            )
            answer = conns[label].getresponse()
            body = answer.read()
            assert answer.status == 200 and body.count(b'"times"') == 10, body[:300]
            return body

        def bare(name: str, raw: bool = False) -> bytes:
            query, epoch = (raw_aggregation(name), "s") if raw else statements[name]
            influxd.request("POST", "/query?" + urlencode({"q": query, "epoch": epoch}))
            answer = influxd.getresponse()
            body = answer.read()
            assert answer.status == 200 and b'"error"' not in body, body[:300]
            return body

        names = [name for name, _, _ in CASES if not only or name in only]
        for name in names:  # the variants draw the same chart, to the byte
            bodies = {route(label, name) for label in conns}
            assert len(bodies) == 1, f"{name}: the servers answer different bodies"
            for _ in range(5):  # warm: the first requests import and cache
                for label in conns:
                    route(label, name)
                bare(name)
                bare(name, raw=True)
        calls = [(label, name) for name in names for label in [*conns, "bare", "raw"]]
        times: dict[tuple[str, str], list[float]] = {call: [] for call in calls}
        cpu: dict[tuple[str, str], float] = dict.fromkeys(calls, 0.0)
        rng = random.Random(12)
        for _ in range(rounds):
            rng.shuffle(calls)
            for label, name in calls:
                pid = procs[label].pid if label in procs else 0
                before = _cpu(pid) if pid else 0.0
                started = time.perf_counter()
                route(label, name) if pid else bare(name, raw=label == "raw")
                times[label, name].append(time.perf_counter() - started)
                cpu[label, name] += (_cpu(pid) - before) if pid else 0.0
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} / {_percentile(values, 0.99) * 1000:.0f}"

    print(f"{rounds} rounds, load {os.getloadavg()[0]:.2f}")
    print(
        "case | server | statements | route p50 / p99 ms | bare p50 / p99 ms | route/bare p50 | p99"
        " | server CPU ms per chart"
    )
    for name in names:
        bare_ = times["bare", name]
        for label in conns:
            route_ = times[label, name]
            print(
                f"{name} | {label} | {statements[name][0].count(';') + 1} | {ms(route_)} | {ms(bare_)}"
                f" | {statistics.median(route_) / statistics.median(bare_):.2f}x"
                f" | {_percentile(route_, 0.99) / _percentile(bare_, 0.99):.2f}x"
                f" | {cpu[label, name] / rounds * 1000:.1f}"
            )
    print("case | InfluxQL over the raw readings p50 / p99 ms | route / that p50, p99")
    for name in names:
        route_, raw_ = times["this tree", name], times["raw", name]
        print(
            f"{name} | {ms(raw_)} | {statistics.median(route_) / statistics.median(raw_):.2f}x"
            f", {_percentile(route_, 0.99) / _percentile(raw_, 0.99):.2f}x"
        )
    if against:
        for name in names:
            a, b = cpu["this tree", name], cpu["against", name]
            p50 = statistics.median(times["this tree", name]) / statistics.median(times["against", name])
            print(f"{name}: this tree / against: server CPU {a / b:.2f}x, route p50 {p50:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url", help="the influxd's HTTP URL, holding ab_influx_tiers' data sets")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--against", type=Path, help="another checkout whose server to time in the same run")
    parser.add_argument("--cases", help="comma-separated case names (default: all), e.g. 7d/7d,1y/24h")
    args = parser.parse_args()
    run(args.url, args.rounds, args.against, args.cases.split(",") if args.cases else None)


if __name__ == "__main__":
    main()
