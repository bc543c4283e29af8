"""The fleet at 100, 1,000 and 10,000 devices: a real Mosquitto (dynamic security for the stack,
each device its own account in Mosquitto's password and ACL files), gateway and server, each a
process, driven by ``suitcase simulate``.

Per fleet size: the bulk import (registry and broker accounts), the connect storm until the fleet
API shows every device online, sustained readings/s, gateway CPU seconds per 1,000 readings/s,
the listener's lag (storm all connected -> fleet all online), the fleet list's p99 (API page of
50, and the HTML fleet page), one alert evaluation, and the memory (RSS) of broker, gateway and
server. Each figure is also given as a ratio to the smallest fleet of the same run, beside the
ratio of the fleet sizes: growth that is linear shows the two ratios alike. Writes
``benchmarks/results/fleet.json``, ``fleet.md`` and SVG growth curves.

``SUITCASE_BENCH_FLEET=100,1000,10000`` (default) picks the sizes; ``SUITCASE_BENCH_FLEET_INTERVAL``
(s between a device's packs, default 20) and ``SUITCASE_BENCH_FLEET_DURATION`` (s, default 60).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks._svg import line_chart
from benchmarks._timing import Figure
from suitcase.simulate.run import Options, simulate
from suitcase.simulate.stack import LocalStack

__all__ = ["FleetRun", "measure", "run"]

RESULTS = Path(__file__).parent / "results"


@dataclass
class FleetRun:
    devices: int
    interval_s: float
    dynsec: bool = True
    offline_applied_s: float | None = None
    import_s: float = 0.0
    registry_s: float = 0.0
    broker_accounts_s: float = 0.0
    polls_s: float = 0.0
    storm_connected_s: float | None = None
    fleet_online_s: float | None = None
    listener_lag_s: float | None = None
    readings_per_s: float = 0.0
    gateway_cpu_s: float = 0.0
    gateway_cpu_per_1000_rps: float = 0.0
    server_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    fleet_api_p99_ms: float = 0.0
    fleet_page_p99_ms: float = 0.0
    alert_eval_s: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    lost: int = 0
    dead_letters: int = 0
    malformed_sent: int = 0


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _rss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def _p99(http: httpx.Client, path: str, params: dict[str, Any], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        answer = http.get(path, params=params)
        answer.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


def _alert_eval(stack: LocalStack) -> float:
    from server.alerts import evaluate
    from server.resources import open_resources
    from server.settings import ServerSettings

    settings = ServerSettings(
        registry_url=f"sqlite:///{stack.workdir / 'registry.db'}", store=str(stack.store_path)
    )
    resources = open_resources(settings)
    try:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            evaluate(resources)
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        resources.close()


def _wait_quiet(http: httpx.Client, timeout: float) -> float | None:
    """Wait until the fleet API shows no device online (the stop's offline statuses all applied);
    return how long that took, or None past ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answer = http.get("/api/v1/devices", params={"online": "true", "registered": "true", "limit": 1})
        if answer.status_code == 200 and answer.json().get("count", 1) == 0:
            return time.monotonic() - started
        time.sleep(1.0)
    return None


def measure(
    devices: int, interval_s: float, duration_s: float, workdir: Path, *, dynsec: bool = True
) -> FleetRun:
    """Run one fleet size on a fresh stack and measure it."""
    result = FleetRun(devices, interval_s, dynsec=dynsec)
    with LocalStack(workdir, dynsec=dynsec) as stack:
        stack.wait_ready()
        headers = {"Authorization": f"Bearer {stack.token}"}
        with httpx.Client(base_url=stack.server_url, headers=headers, timeout=120) as http:
            for kind, params in (("offline", {}), ("stuck", {})):
                http.post(
                    "/api/v1/alert-rules",
                    json={"name": kind, "kind": kind, "org_id": stack.org_id, "params": params},
                ).raise_for_status()
        pids = stack.pids()
        before = {name: _cpu(pid) for name, pid in pids.items()}
        options = Options(
            count=devices,
            interval_s=interval_s,
            duration_s=duration_s,
            mix={"stale": 0.01, "stuck": 0.01, "malformed": 0.01},
            processes=2,
            run=f"b{devices}",
        )
        started = time.time()
        summary = simulate(
            options, stack.server_url, stack.token, org_id=stack.org_id, store=stack.store_path
        )
        wall = time.time() - started - (summary.seconds_import + summary.seconds_polls)
        after = {name: _cpu(pid) for name, pid in pids.items()}
        c = summary.counters
        result.import_s, result.polls_s = summary.seconds_import, summary.seconds_polls
        result.registry_s, result.broker_accounts_s = summary.seconds_registry, summary.seconds_broker
        result.storm_connected_s, result.fleet_online_s = (
            summary.storm_all_connected_s,
            summary.fleet_all_online_s,
        )
        if result.storm_connected_s is not None and result.fleet_online_s is not None:
            result.listener_lag_s = max(0.0, result.fleet_online_s - result.storm_connected_s)
        result.readings_per_s = c.readings_acked / max(wall, 1e-3)
        gateway = sum(after[n] - before.get(n, 0.0) for n in after if n.startswith("gateway"))
        result.gateway_cpu_s = gateway
        result.gateway_cpu_per_1000_rps = (gateway / max(wall, 1e-3)) / max(
            result.readings_per_s / 1000, 1e-9
        )
        result.server_cpu_s = after.get("server", 0.0) - before.get("server", 0.0)
        result.broker_cpu_s = after.get("broker", 0.0) - before.get("broker", 0.0)
        result.rss_mb = {name: round(_rss_mb(pid), 1) for name, pid in pids.items()}
        result.lost = c.good_readings_acked - (summary.store_good_readings or 0)
        result.dead_letters, result.malformed_sent = summary.store_dead_letters or 0, c.malformed_acked
        with httpx.Client(base_url=stack.server_url, headers=headers, timeout=120) as http:
            # The fleet list is timed once the listener has applied the stop's offline statuses.
            result.offline_applied_s = _wait_quiet(http, timeout=max(120.0, devices * 0.1))
            result.fleet_api_p99_ms = _p99(http, "/api/v1/devices", {"limit": 50, "registered": "true"}, 100)
            login = http.post(
                "/api/v1/auth/login",
                json={"email": "simulate@example.org", "password": stack.web_password},
            )
            login.raise_for_status()
            http.headers.pop("Authorization")
            result.fleet_page_p99_ms = _p99(http, "/fleet", {}, 20)
        result.alert_eval_s = _alert_eval(stack)
    return result


def _table(runs: list[FleetRun]) -> str:
    base = runs[0]
    lines = [
        "| figure | " + " | ".join(f"{r.devices:,} devices" for r in runs) + " | ratio largest/smallest |",
        "|---|" + "---|" * (len(runs) + 1),
        "| fleet size ratio | " + " | ".join(f"{r.devices / base.devices:g}x" for r in runs) + " | |",
        "| broker accounts (files) | "
        + " | ".join("yes" if r.dynsec else "no (anonymous)" for r in runs)
        + " | |",
    ]

    def row(name: str, values: list[float | None], fmt: str) -> None:
        shown = ["n/a" if v is None else format(v, fmt) for v in values]
        first, last = values[0], values[-1]
        ratio = f"{last / first:.2f}x" if first and last is not None else ""
        lines.append(f"| {name} | " + " | ".join(shown) + f" | {ratio} |")

    row("bulk import, registry (s)", [r.registry_s for r in runs], ".2f")
    row("bulk import, broker accounts (s)", [r.broker_accounts_s for r in runs], ".2f")
    row("claim polls (s)", [r.polls_s for r in runs], ".1f")
    row("storm: all connected (s)", [r.storm_connected_s for r in runs], ".1f")
    row("storm: fleet view all online (s)", [r.fleet_online_s for r in runs], ".1f")
    row("listener lag (s)", [r.listener_lag_s for r in runs], ".1f")
    row("stop: all offline applied (s)", [r.offline_applied_s for r in runs], ".1f")
    row("readings/s sustained", [r.readings_per_s for r in runs], ",.0f")
    row("gateway CPU s per 1,000 readings/s", [r.gateway_cpu_per_1000_rps for r in runs], ".3f")
    row("fleet API p99 (ms, page of 50)", [r.fleet_api_p99_ms for r in runs], ".0f")
    row("fleet page p99 (ms, HTML)", [r.fleet_page_p99_ms for r in runs], ".0f")
    row("alert evaluation (s)", [r.alert_eval_s for r in runs], ".3f")
    for part in ("broker", "gateway-0", "server"):
        row(f"RSS {part} (MB)", [r.rss_mb.get(part) for r in runs], ".0f")
    row("readings lost (good devices)", [float(r.lost) for r in runs], ".0f")
    return "\n".join(lines) + "\n"


def _plots(runs: list[FleetRun]) -> list[Path]:
    n = [float(r.devices) for r in runs]

    def curve(values: list[float | None]) -> list[tuple[float, float]]:
        return [(x, float("nan") if v is None else v) for x, v in zip(n, values, strict=True)]

    return [
        line_chart(RESULTS / "fleet-time.svg", "Enrollment and connect storm", "devices", "seconds", {
            "import (registry)": curve([r.registry_s for r in runs]),
            "broker accounts": curve([r.broker_accounts_s for r in runs]),
            "claim polls": curve([r.polls_s for r in runs]),
            "fleet all online": curve([r.fleet_online_s for r in runs]),
            "listener lag": curve([r.listener_lag_s for r in runs]),
        }),
        line_chart(RESULTS / "fleet-memory.svg", "Memory (RSS)", "devices", "MB", {
            part: curve([r.rss_mb.get(part) for r in runs]) for part in ("broker", "gateway-0", "server")
        }),
        line_chart(RESULTS / "fleet-latency.svg", "Fleet list p99", "devices", "ms", {
            "API page of 50": curve([r.fleet_api_p99_ms for r in runs]),
            "HTML fleet page": curve([r.fleet_page_p99_ms for r in runs]),
        }),
        line_chart(RESULTS / "fleet-cpu.svg", "Throughput and cost", "devices", "value", {
            "readings/s / 100": curve([r.readings_per_s / 100 for r in runs]),
            "gateway CPU s per 1k readings/s": curve([r.gateway_cpu_per_1000_rps for r in runs]),
            "alert evaluation (s)": curve([r.alert_eval_s for r in runs]),
        }),
    ]  # fmt: skip


def run() -> list[Figure]:
    """Run every fleet size, write the results, and return ratio figures for ``make bench``."""
    sizes = [int(s) for s in os.environ.get("SUITCASE_BENCH_FLEET", "100,1000,10000").split(",") if s]
    interval = float(os.environ.get("SUITCASE_BENCH_FLEET_INTERVAL", "20"))
    duration = float(os.environ.get("SUITCASE_BENCH_FLEET_DURATION", "60"))
    # Every size has broker accounts (Mosquitto's files: one reload per import; README, "Sizing");
    # above this size the fleet would log in anonymously.
    dynsec_max = int(os.environ.get("SUITCASE_BENCH_FLEET_DYNSEC_MAX", "100000"))
    runs = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{size}-") as folder:
            runs.append(measure(size, interval, duration, Path(folder), dynsec=size <= dynsec_max))
        (RESULTS / "fleet.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    (RESULTS / "fleet.md").write_text(
        f"Fleet benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; one run per size, "
        f"{interval:g} s between a device's packs, {duration:g} s of telemetry, a shared 2-core machine: "
        "absolute figures are noisy, read the ratios)\n\n" + _table(runs)
    )
    _plots(runs)
    base, top = runs[0], runs[-1]
    scale = top.devices / base.devices
    return [
        Figure(f"fleet {top.devices:,}: fleet view all online", top.fleet_online_s or float("nan"),
               f"{base.devices:,} devices x {scale:g}", (base.fleet_online_s or 1.0) * scale,
               top.devices, "devices"),
        Figure(f"fleet {top.devices:,}: gateway CPU per reading", top.gateway_cpu_per_1000_rps,
               f"{base.devices:,} devices", base.gateway_cpu_per_1000_rps or 1.0, 1000, "readings"),
        Figure(f"fleet {top.devices:,}: fleet API p99", top.fleet_api_p99_ms / 1000,
               f"{base.devices:,} devices", max(base.fleet_api_p99_ms, 1e-3) / 1000, 50, "devices"),
        Figure(f"fleet {top.devices:,}: alert evaluation", top.alert_eval_s,
               f"{base.devices:,} devices x {scale:g}", max(base.alert_eval_s, 1e-6) * scale,
               top.devices, "devices"),
    ]  # fmt: skip


if __name__ == "__main__":
    for figure in run():
        print(
            f"{figure.name}: {figure.seconds:.3f} vs {figure.baseline} "
            f"{figure.baseline_seconds:.3f} ({figure.ratio:.2f}x)"
        )
    print((RESULTS / "fleet.md").read_text())
