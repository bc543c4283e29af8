"""``python -m benchmarks`` (``make bench``): run every benchmark, print ratios to baselines."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

BENCHMARKS = [
    "benchmarks.bench_wire",
    "benchmarks.bench_store",
    "benchmarks.bench_gateway",
    "benchmarks.bench_mqtt_tls",
    "benchmarks.bench_edge",
    "benchmarks.bench_server",
    "benchmarks.bench_gateways",
    "benchmarks.bench_fleetpage",  # the fleet list, page and alert rounds at 10,000, direct
    "benchmarks.bench_accounts",  # device accounts: dynamic security against the files, to 10,000
    "benchmarks.bench_fleet",  # the longest: 100, 1,000 and 10,000 simulated devices
]


def main() -> int:
    console = Console()
    figures = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarks", total=len(BENCHMARKS))
        for name in BENCHMARKS:
            progress.update(task, description=name)
            figures.extend(importlib.import_module(name).run())
            progress.advance(task)
    table = Table(title="IoT Suitcase benchmarks (ratio = time / baseline time, same run)")
    for column in ("what", "rate", "baseline", "ratio"):
        table.add_column(column, justify="right" if column != "what" else "left")
    for f in figures:
        table.add_row(f.name, f"{f.rate:,.0f} {f.unit}/s", f.baseline, f"{f.ratio:.2f}x")
    console.print(table)
    out = Path(".suitcase/bench.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            [
                {"name": f.name, "rate": f.rate, "unit": f.unit, "baseline": f.baseline, "ratio": f.ratio}
                for f in figures
            ],
            indent=2,
        )
    )
    return 0


sys.exit(main())
