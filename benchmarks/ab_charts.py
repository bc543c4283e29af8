"""A/B of the deployment chart on SQLite: this tree against another commit's, in the same run.

Issue 12 asks the SQLite chart figures of ``bench_server`` to stay within 10 % of what they were
before the store work (commit 9620f82). This runs both trees' servers on the very same store
files, interleaved, so a busy machine slows both alike::

    mkdir -p /tmp/old && git archive 9620f82 | tar -x -C /tmp/old
    .venv/bin/python -m benchmarks.ab_charts /tmp/old --rounds 7

Each tree runs in its own process (``PYTHONPATH`` = that tree, this venv), serving
``GET /api/v1/deployments/{id}/chart`` (10 quantities, ``points=1000``) through FastAPI's
TestClient as ``bench_server`` does. The data sets are ``bench_server``'s: 7 days at 1 Hz and one
year at 1/min, 10 quantities (``SUITCASE_BENCH_SCALE`` shrinks them); made once with this tree's
store (rollups refreshed), kept in ``--data`` for the next run. Per range and round, each side
(old, new and the bare scan of ``bench_server``'s baseline: 10 x 1,000 rows) runs ``--calls``
charts, call by call in a shuffled order; the table gives the medians over rounds of each round's
p50 and p99, and the p50 and p99 of all calls.
Not part of ``make bench`` (it needs a second tree).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

NOW = 1_790_000_000.0
DEVICE = "bench-chart"
RANGES = {"7d": (7 * 86_400, 1), "1y": (365 * 86_400, 60)}


def _worker(store_dir: Path, scale: float, suffix: str) -> None:
    """Serve chart timings on stdin/stdout for the tree on ``sys.path`` (one JSON line each)."""
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from server.app import create_app
    from server.security import hash_secret, new_token
    from server.settings import ServerSettings
    from server.tables import ApiTokenRow, DeploymentDeviceRow, DeploymentRow, DeviceRow, OrganisationRow

    charts: dict[str, Any] = {}
    stack = []
    tmp = Path(tempfile.mkdtemp(prefix="ab-charts-"))
    for name, (span, _step) in RANGES.items():
        span = int(span * scale)
        settings = ServerSettings(
            registry_url=f"sqlite:///{tmp / f'{name}.registry.db'}",
            store=str(store_dir / f"{name}{suffix}.db"),
            alert_interval_s=0,
            open_reads=False,
        )
        client = TestClient(create_app(settings, clock=lambda: NOW))
        client.__enter__()
        stack.append(client)
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            org = OrganisationRow(slug="bench", name="Bench", created_at=NOW)
            session.add(org)
            session.flush()
            assert org.id is not None
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
            dep = DeploymentRow(org_id=org.id, name="bench", starts_at=NOW - span, created_at=NOW)
            session.add(dep)
            session.add(DeviceRow(id=DEVICE, org_id=org.id, registered_at=NOW))
            session.flush()
            assert dep.id is not None
            session.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=DEVICE, from_t=NOW - span))
            session.commit()
            url = f"/api/v1/deployments/{dep.id}/chart"
        headers = {"Authorization": f"Bearer {raw}"}
        params = {"start": NOW - span, "end": NOW, "points": 1000}

        def chart(client: TestClient = client, url: str = url, params: Any = params, h: Any = headers) -> int:
            body = client.get(url, params=params, headers=h).json()
            series = body["series"]
            assert len(series) == 10 and all(0 < len(s["times"]) <= 1000 for s in series), body
            return sum(len(s["times"]) for s in series)

        charts[name] = chart
    points = {name: chart() for name, chart in charts.items()}  # warm-up
    print(json.dumps({"ready": points}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        chart = charts[request["range"]]
        times = []
        for _ in range(request["calls"]):
            started = time.perf_counter()
            chart()
            times.append(time.perf_counter() - started)
        print(json.dumps(times), flush=True)
    for client in stack:
        client.__exit__(None, None, None)


def _fill(store_dir: Path, scale: float) -> None:
    """Make the data sets with this tree's store (setup, not measured), unless already there."""
    from benchmarks.bench_server import _fill_store

    store_dir.mkdir(parents=True, exist_ok=True)
    for name, (span, step) in RANGES.items():
        path = store_dir / f"{name}.db"
        if not path.exists():
            print(f"  filling {path} ...", file=sys.stderr, flush=True)
            partial = path.with_suffix(".partial")
            _fill_store(partial, DEVICE, int(span * scale), step)
            for suffix in ("-wal", "-shm"):
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
            partial.rename(path)
        # The same file for a tree whose store knows schema version 1 only (the extra rollups of
        # version 2 are rows it never reads).
        old = store_dir / f"{name}.v1.db"
        if not old.exists():
            shutil.copyfile(path, old.with_suffix(".partial"))
            with contextlib.closing(sqlite3.connect(old.with_suffix(".partial"))) as conn:
                conn.execute("PRAGMA user_version = 1")
            old.with_suffix(".partial").rename(old)


class _Side:
    def __init__(self, tree: Path, store_dir: Path, scale: float, suffix: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(store_dir), "--scale", str(scale), "--suffix", suffix],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ready = json.loads(self.proc.stdout.readline())["ready"]

    def run(self, range_name: str, calls: int) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"range": range_name, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        times: list[float] = json.loads(self.proc.stdout.readline())
        return times

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _bare(store_dir: Path, scale: float) -> dict[str, Any]:
    """``bench_server``'s baseline: one bare indexed scan of 1,000 rows per series."""
    out = {}
    for name, (span, _step) in RANGES.items():
        conn = sqlite3.connect(store_dir / f"{name}.db")
        ids = [row[0] for row in conn.execute("SELECT id FROM series WHERE device = ?", (DEVICE,))]
        lo = NOW - int(span * scale)

        def bare(
            calls: int, conn: sqlite3.Connection = conn, ids: list[int] = ids, lo: float = lo
        ) -> list[float]:
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                for sid in ids:
                    conn.execute(
                        "SELECT time, value FROM readings WHERE series_id = ? AND time >= ? LIMIT 1000",
                        (sid, lo),
                    ).fetchall()
                times.append(time.perf_counter() - started)
            return times

        out[name] = bare
    return out


def _p(times: list[float], q: int) -> float:
    return statistics.quantiles(times, n=100)[q - 1] if len(times) >= 2 else times[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "old", type=Path, nargs="?", help="the other tree (e.g. git archive 9620f82 | tar -x -C /tmp/old)"
    )
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ab-charts-data")
    parser.add_argument(
        "--old-suffix", default=".v1", help="the old tree's copy of the data sets ('': the same files)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--suffix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SUITCASE_BENCH_SCALE", "1")))
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker(args.worker, args.scale, args.suffix)
        return 0
    if args.old is None:
        parser.error("name the other tree: git archive 9620f82 | tar -x -C /tmp/old")
    store_dir = args.data / f"scale-{args.scale:g}"
    _fill(store_dir, args.scale)
    sides = {
        "old": _Side(args.old, store_dir, args.scale, args.old_suffix),
        "new": _Side(args.new, store_dir, args.scale, ""),
    }
    bare = _bare(store_dir, args.scale)
    rng = random.Random(12)
    per_round: dict[tuple[str, str], list[tuple[float, float]]] = {}
    pooled: dict[tuple[str, str], list[float]] = {}
    pooled_sides = ("old", "new", "bare")
    try:
        for r in range(args.rounds):
            for name in RANGES:
                times: dict[str, list[float]] = {"old": [], "new": [], "bare": []}
                # Call by call, in a shuffled order: a burst of load from elsewhere hits all sides.
                for _ in range(args.calls):
                    order = ["old", "new", "bare"]
                    rng.shuffle(order)
                    for side in order:
                        times[side] += bare[name](1) if side == "bare" else sides[side].run(name, 1)
                for side, got in times.items():
                    per_round.setdefault((name, side), []).append((_p(got, 50), _p(got, 99)))
                    pooled.setdefault((name, side), []).extend(got)
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for s in sides.values():
            s.close()
    print(f"points per chart: old {sides['old'].ready}, new {sides['new'].ready}")
    print(f"{args.rounds} rounds x {args.calls} calls per side; ms; ratios of p99")
    print("range  how      old p50  new p50  old p99  new p99  new/old  bare p99  old/bare  new/bare")
    for name in RANGES:
        rows: dict[str, dict[str, tuple[float, ...]]] = {
            # The median over rounds of each round's figure, and the figure of all calls at once.
            "rounds": {
                side: tuple(statistics.median(x[i] for x in per_round[(name, side)]) for i in (0, 1))
                for side in ("old", "new", "bare")
            },
            "pooled": {
                side: (_p(pooled[(name, side)], 50), _p(pooled[(name, side)], 99)) for side in pooled_sides
            },
        }
        for how, fig in rows.items():
            print(
                f"{name:5s}  {how:7s} {fig['old'][0] * 1e3:7.1f}  {fig['new'][0] * 1e3:7.1f}  "
                f"{fig['old'][1] * 1e3:7.1f}  {fig['new'][1] * 1e3:7.1f}  "
                f"{fig['new'][1] / fig['old'][1]:6.2f}x  {fig['bare'][1] * 1e3:7.2f}  "
                f"{fig['old'][1] / fig['bare'][1]:7.1f}x  {fig['new'][1] / fig['bare'][1]:7.1f}x"
            )
        ratios = [
            n[1] / o[1] for o, n in zip(per_round[(name, "old")], per_round[(name, "new")], strict=True)
        ]
        print(f"       per-round new/old p99: {' '.join(f'{x:.2f}' for x in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
