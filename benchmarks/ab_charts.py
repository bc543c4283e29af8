"""A/B of the deployment chart on SQLite: this tree against another commit's, in the same run.

Issue 12 asks the SQLite chart figures of ``bench_server`` to stay within 10 % of what they were
before the store work (commit 9620f82). This runs both trees' servers on the same data sets,
interleaved, so a busy machine slows both alike::

    mkdir -p /tmp/old && git archive 9620f82 | tar -x -C /tmp/old
    .venv/bin/python -m benchmarks.ab_charts /tmp/old --rounds 6

``--same-files`` compares against a tree that reads the current schema (main before a change).

Each tree runs in its own process (``PYTHONPATH`` = that tree, this venv), serving
``GET /api/v1/deployments/{id}/chart`` (10 quantities, ``points=1000``) through FastAPI's
TestClient as ``bench_server`` does. The data sets are ``bench_server``'s: 7 days at 1 Hz and one
year at 1/min, 10 quantities (``SUITCASE_BENCH_SCALE`` shrinks them); made once with this tree's
store (rollups refreshed), kept in ``--data`` for the next run; the old tree reads a copy marked
schema version 1 (it refuses version 2, whose extra rollups it would never read). Per range and
round, each side (old, new and ``bench_server``'s baseline, the bare scan of 10 x 1,000 rows)
runs ``--calls`` charts, a few calls at a time in a shuffled order; the table gives the medians
over rounds of each round's p50 and p99, and the p50 and p99 of all calls. ``make bench`` runs a
short one (``bench_server``) when git can extract 9620f82.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BEFORE_STORE_WORK",
    "RANGES",
    "Comparison",
    "bench_viewer",
    "chart_deployment",
    "compare",
    "extract",
    "fill",
    "main",
]

BEFORE_STORE_WORK = "9620f82"
NOW = 1_790_000_000.0
DEVICE = "bench-chart"
RANGES = {"7d": (7 * 86_400, 1), "1y": (365 * 86_400, 60)}
"""name -> (span, step) in seconds at scale 1: bench_server's two chart data sets."""


def bench_viewer(session: Any, now: float) -> tuple[int, str]:
    """Add the organisation ``bench`` and a viewer token of it to ``session`` (flushed, not
    committed); return its id and the token.

    The registry of the tree on ``sys.path`` (this one, or the old tree a worker runs): what
    ``bench_server`` and both sides of the A/B set up, in one place.
    """
    from server.security import hash_secret, new_token
    from server.tables import ApiTokenRow, OrganisationRow

    org = OrganisationRow(slug="bench", name="Bench", created_at=now)
    session.add(org)
    session.flush()
    assert org.id is not None
    raw = new_token()
    token = ApiTokenRow(
        name="bench",
        token_hash=hash_secret(raw),
        prefix=raw[:10],
        org_id=org.id,
        role="viewer",
        created_at=now,
    )
    session.add(token)
    return org.id, raw


def chart_deployment(
    session: Any, device: str, span: float, now: float, org_id: int | None = None
) -> tuple[int, str]:
    """Add a deployment of ``device`` over the ``span`` seconds before ``now`` (and the
    organisation ``bench`` with a viewer token, unless ``org_id`` is given) and commit; return the
    deployment's id and the token ("" with ``org_id``)."""
    from server.tables import DeploymentDeviceRow, DeploymentRow, DeviceRow

    raw = ""
    if org_id is None:
        org_id, raw = bench_viewer(session, now)
    dep = DeploymentRow(org_id=org_id, name="bench", starts_at=now - span, created_at=now)
    session.add(dep)
    session.add(DeviceRow(id=device, org_id=org_id, registered_at=now))
    session.flush()
    assert dep.id is not None
    session.add(DeploymentDeviceRow(deployment_id=dep.id, device_id=device, from_t=now - span))
    session.commit()
    return dep.id, raw


def _worker(spec: dict[str, Any]) -> None:
    """Serve chart timings on stdin/stdout for the tree on ``sys.path`` (one JSON line each)."""
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from server.app import create_app
    from server.settings import ServerSettings

    charts: dict[str, Callable[[], int]] = {}
    stack = []
    tmp = Path(tempfile.mkdtemp(prefix="ab-charts-"))
    for name, (store, span) in spec.items():
        settings = ServerSettings(
            registry_url=f"sqlite:///{tmp / f'{name}.registry.db'}",
            store=store,
            alert_interval_s=0,
            open_reads=False,
        )
        client = TestClient(create_app(settings, clock=lambda: NOW))
        client.__enter__()
        stack.append(client)
        engine = client.app.state.resources.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            dep_id, raw = chart_deployment(session, DEVICE, span, NOW)
            url = f"/api/v1/deployments/{dep_id}/chart"
        headers = {"Authorization": f"Bearer {raw}"}
        params = {"start": NOW - span, "end": NOW, "points": 1000}

        def chart(client: TestClient = client, url: str = url, params: Any = params, h: Any = headers) -> int:
            body = client.get(url, params=params, headers=h).json()
            series = body["series"]
            assert len(series) == 10 and all(0 < len(s["times"]) <= 1000 for s in series), body
            return sum(len(s["times"]) for s in series)

        charts[name] = chart
    points = {name: draw() for name, draw in charts.items()}  # warm-up
    # As `suitcase server run` of that tree does once its app is built (9620f82 does not).
    freeze = getattr(importlib.import_module("server.app"), "freeze_startup_heap", None)
    if freeze is not None:
        freeze()
    print(json.dumps({"ready": points}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        draw = charts[request["range"]]
        wall, cpu = [], []
        for _ in range(request["calls"]):
            started, used = time.perf_counter(), time.process_time()
            draw()
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)
        print(json.dumps([wall, cpu]), flush=True)
    for client in stack:
        client.__exit__(None, None, None)
    shutil.rmtree(tmp, ignore_errors=True)


def fill(store_dir: Path, scale: float) -> dict[str, tuple[Path, Path, int]]:
    """Make the data sets with this tree's store (setup, not measured), unless already there.

    Returns:
        name -> (store file, its copy for a tree that knows schema version 1, span in seconds).
    """
    from benchmarks.bench_server import _fill_store

    store_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (span, step) in RANGES.items():
        path = store_dir / f"{name}.db"
        if not path.exists():
            print(f"  filling {path} ...", file=sys.stderr, flush=True)
            partial = path.with_suffix(".partial")
            _fill_store(partial, DEVICE, int(span * scale), step)
            for suffix in ("-wal", "-shm"):
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
            partial.rename(path)
        old = store_dir / f"{name}.v1.db"
        if not old.exists():
            shutil.copyfile(path, old.with_suffix(".partial"))
            with contextlib.closing(sqlite3.connect(old.with_suffix(".partial"))) as conn:
                conn.execute("PRAGMA user_version = 1")
            old.with_suffix(".partial").rename(old)
        out[name] = (path, old, int(span * scale))
    return out


def extract(commit: str, into: Path) -> str | None:
    """Extract ``commit`` of this repository into ``into``; return why not, or None."""
    repo = Path(__file__).resolve().parents[1]
    into.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", commit], capture_output=True, check=False, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git could not run ({exc})"
    if archive.returncode != 0:
        return f"git archive {commit} failed: {archive.stderr.decode(errors='replace').strip()}"
    untar = subprocess.run(
        ["tar", "-x", "-C", str(into)], input=archive.stdout, capture_output=True, check=False
    )
    return None if untar.returncode == 0 else f"tar failed: {untar.stderr.decode(errors='replace').strip()}"


class _Side:
    def __init__(self, tree: Path, spec: dict[str, tuple[str, int]]) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the chart server of {tree} did not start (see its error above)")
        self.ready: dict[str, int] = json.loads(line)["ready"]

    def run(self, range_name: str, calls: int) -> tuple[list[float], list[float]]:
        """Wall and CPU seconds (of the whole server process: GC and threads included) per call."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"range": range_name, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        wall, cpu = json.loads(self.proc.stdout.readline())
        return wall, cpu

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _bare(path: Path, span: int) -> Callable[[int], tuple[list[float], list[float]]]:
    """``bench_server``'s baseline: one bare indexed scan of 1,000 rows per series."""
    conn = sqlite3.connect(path)
    ids = [row[0] for row in conn.execute("SELECT id FROM series WHERE device = ?", (DEVICE,))]

    def bare(calls: int) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for _ in range(calls):
            started, used = time.perf_counter(), time.process_time()
            for sid in ids:
                conn.execute(
                    "SELECT time, value FROM readings WHERE series_id = ? AND time >= ? LIMIT 1000",
                    (sid, NOW - span),
                ).fetchall()
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)
        return wall, cpu

    return bare


def _p(times: list[float], q: int) -> float:
    return statistics.quantiles(times, n=100)[q - 1] if len(times) >= 2 else times[0]


SIDES = ("old", "new", "bare")


@dataclass
class Comparison:
    """Chart timings (seconds) per range and side (old, new, bare), per round and of all calls:
    wall time in ``rounds``, CPU time of the side's process in ``cpu`` (which other programs'
    load on a shared machine hardly changes)."""

    points: dict[str, dict[str, int]]
    rounds: dict[tuple[str, str], list[list[float]]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[list[float]]] = field(default_factory=dict)

    def of(self, clock: str) -> Comparison:
        """This comparison with CPU times as its times (``clock`` "cpu"), or as is ("wall")."""
        return self if clock == "wall" else Comparison(self.points, self.cpu)

    def pooled(self, name: str, side: str, q: int) -> float:
        """The ``q``-th percentile of every call of ``side`` on range ``name``."""
        return _p([t for r in self.rounds[(name, side)] for t in r], q)

    def median_of_rounds(self, name: str, side: str, q: int) -> float:
        """The median over rounds of each round's ``q``-th percentile."""
        return statistics.median(_p(r, q) for r in self.rounds[(name, side)])

    def round_ratios(self, name: str, q: int = 99) -> list[float]:
        """Each round's new/old ratio of the ``q``-th percentile."""
        old, new = self.rounds[(name, "old")], self.rounds[(name, "new")]
        return [_p(n, q) / _p(o, q) for o, n in zip(old, new, strict=True)]


def compare(
    old: Path, data: dict[str, tuple[Path, Path, int]], *, rounds: int, calls: int, chunk: int = 5
) -> Comparison:
    """Time the chart of each data set on the ``old`` tree and this one, interleaved.

    Args:
        old: the other tree.
        data: what :func:`fill` returns.
        rounds: rounds per range; each runs ``calls`` charts per side, ``chunk`` at a time.
    """
    new = Path(__file__).resolve().parents[1]
    sides = {
        "old": _Side(old, {n: (str(v1), span) for n, (_, v1, span) in data.items()}),
        "new": _Side(new, {n: (str(path), span) for n, (path, _, span) in data.items()}),
    }
    bare = {n: _bare(path, span) for n, (path, _, span) in data.items()}
    result = Comparison({side: s.ready for side, s in sides.items()})
    rng = random.Random(12)
    try:
        for r in range(rounds):
            for name in data:
                wall: dict[str, list[float]] = {side: [] for side in SIDES}
                cpu: dict[str, list[float]] = {side: [] for side in SIDES}
                # A few calls at a time, in a shuffled order: a burst of load from elsewhere hits
                # every side alike.
                for _ in range(0, calls, chunk):
                    order = list(SIDES)
                    rng.shuffle(order)
                    for side in order:
                        w, c = bare[name](chunk) if side == "bare" else sides[side].run(name, chunk)
                        wall[side] += w
                        cpu[side] += c
                for side in SIDES:
                    result.rounds.setdefault((name, side), []).append(wall[side])
                    result.cpu.setdefault((name, side), []).append(cpu[side])
            print(f"  A/B round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for s in sides.values():
            s.close()
    return result


def report(result: Comparison) -> str:
    """The table of a comparison: ms, and ratios of p99."""
    lines = [
        f"points per chart: old {result.points['old']}, new {result.points['new']}",
        "chart  how      old p50  new p50  old p99  new p99  new/old  bare p99  old/bare  new/bare",
    ]
    names = list(dict.fromkeys(name for name, _ in result.rounds))
    for name in names:
        for how, figure in (("rounds", result.median_of_rounds), ("pooled", result.pooled)):
            fig = {side: (figure(name, side, 50), figure(name, side, 99)) for side in SIDES}
            lines.append(
                f"{name:6s} {how:7s} {fig['old'][0] * 1e3:7.1f}  {fig['new'][0] * 1e3:7.1f}  "
                f"{fig['old'][1] * 1e3:7.1f}  {fig['new'][1] * 1e3:7.1f}  "
                f"{fig['new'][1] / fig['old'][1]:6.2f}x  {fig['bare'][1] * 1e3:7.2f}  "
                f"{fig['old'][1] / fig['bare'][1]:7.1f}x  {fig['new'][1] / fig['bare'][1]:7.1f}x"
            )
        ratios = " ".join(f"{x:.2f}" for x in result.round_ratios(name))
        lines.append(f"       per-round new/old p99: {ratios}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("old", type=Path, nargs="?", help=f"the other tree (git archive {BEFORE_STORE_WORK})")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ab-charts-data")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--chunk", type=int, default=5, help="calls per side in a row")
    parser.add_argument(
        "--spans",
        default="",
        help="more chart ranges on the data sets, e.g. '7d=1h,6h,24h;1y=24h,3d,90d' (h or d)",
    )
    parser.add_argument(
        "--same-files",
        action="store_true",
        help="the old tree reads the same files as this one (a tree of this schema version, e.g. main "
        "before a change), not the copies marked version 1 that 9620f82 reads",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=float(os.environ.get("SUITCASE_BENCH_SCALE", "1")))
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker(json.loads(args.worker))
        return 0
    if args.old is None:
        parser.error(f"name the other tree: git archive {BEFORE_STORE_WORK} | tar -x -C /tmp/old")
    data = fill(args.data / f"scale-{args.scale:g}", args.scale)
    if args.same_files:
        data = {name: (path, path, span) for name, (path, _, span) in data.items()}
    for group in filter(None, args.spans.split(";")):
        of, _, labels = group.partition("=")
        for label in labels.split(","):
            seconds = float(label[:-1]) * {"h": 3600, "d": 86_400}[label[-1]]
            data[f"{of}:{label}"] = (data[of][0], data[of][1], int(seconds * args.scale))
    result = compare(args.old, data, rounds=args.rounds, calls=args.calls, chunk=args.chunk)
    for clock in ("wall", "cpu"):
        print(f"{clock} time, {args.rounds} rounds x {args.calls} calls per side, ms")
        print(report(result.of(clock)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
