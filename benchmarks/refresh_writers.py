"""Store-only A/B of the rollup refresh with n writers of one SQLite file (not part of ``make bench``).

``python -m benchmarks.refresh_writers [--rounds 3]``: n = 1, 2, 4 stores (one connection each,
as n gateways' writer processes) on one file take batches in turn, and refresh the rollups on a
5 s period each: "old" each on its own period (``refresh_rollups``, what every writer did before),
"new" once per period per file (``refresh_rollups_if_due``). In one process, so the CPU is the
store's alone. Two workloads over 1,000 series: "stream" (a reading per series every 2 s, batches
of 2 s closing as the data arrives; 5 minutes on a simulated clock) and "drain" (15 minutes' backlog
at the same rate in batches of 5,000, on the real clock). Every run ends with a refresh of what is
left marked, so each run pays for all its rollups. Prints CPU s per 1,000 readings and the ratio
of each against the 1 writer of the same policy, round and workload.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.store import SqliteStore
from kits.wire import Record

PERIOD_S = 5.0
SERIES = 1000
T0 = 1_790_000_000.0


def _batches(workload: str) -> list[tuple[float, list[Record]]]:
    """(simulated arrival time, batch), in arrival order."""
    seconds, per = (300, 1000) if workload == "stream" else (900, 5000)
    recs = [
        Record("o", f"d{s // 10}", "s", f"q{s % 10}", float(t % 97), T0 + t + s / SERIES)
        for t in range(0, seconds, 2)
        for s in range(SERIES)
    ]
    return [(recs[i].time + 2.0, recs[i : i + per]) for i in range(0, len(recs), per)]


def _run(policy: str, writers: int, batches: list[tuple[float, list[Record]]], simulated: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="refresh-mb-") as folder:
        path = Path(folder) / "s.db"
        stores = [SqliteStore(path) for _ in range(writers)]
        try:
            for store in stores:  # warm each connection's series cache as a running gateway has
                store.write(
                    [Record("o", f"d{s // 10}", "s", f"q{s % 10}", 0.0, T0 - 86_400) for s in range(SERIES)]
                )
            stores[0].refresh_rollups()
            rng = random.Random(writers)
            started = time.monotonic()
            first = batches[0][0]
            clock: Callable[[float], float] = (
                (lambda at: at) if simulated else (lambda at: first + time.monotonic() - started)
            )
            # Each writer's own period starts when it did: at some point of the first period.
            next_due = [clock(first) + PERIOD_S * rng.random() for _ in stores]
            cpu = time.process_time()
            for i, (at, batch) in enumerate(batches):
                w = i % writers
                stores[w].write(batch)
                now = clock(at)
                if now >= next_due[w]:
                    next_due[w] = now + PERIOD_S
                    if policy == "old":
                        stores[w].refresh_rollups()
                    else:
                        stores[w].refresh_rollups_if_due(now, PERIOD_S)
            stores[0].refresh_rollups()
            cpu = time.process_time() - cpu
        finally:
            for store in stores:
                store.close()
    readings = sum(len(b) for _, b in batches)
    return cpu / readings * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, str, int], list[float]] = {}
    for workload in ("stream", "drain"):
        batches = _batches(workload)
        for round_ in range(args.rounds):
            order = [(p, n) for p in ("old", "new") for n in (1, 2, 4)]
            random.Random(round_).shuffle(order)
            got = {(p, n): _run(p, n, batches, workload == "stream") for p, n in order}
            for (p, n), v in got.items():
                results.setdefault((workload, p, n), []).append(v / got[p, 1])
                print(
                    f"{workload} round {round_} {p} {n} writers: {v:.4f} CPU s/1000, {v / got[p, 1]:.2f}x",
                    flush=True,
                )
    for (workload, p, n), ratios in sorted(results.items()):
        each = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"{workload:6} {p} {n}: median {statistics.median(ratios):.2f}x ({each})")


if __name__ == "__main__":
    main()
