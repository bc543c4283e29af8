"""One simulation from enrollment to summary, and what it measured.

``simulate`` enrolls the fleet through the server, starts it (a connect storm unless a rate is
set), watches the server's fleet view until every device shows online, runs for the duration
with the outages asked for, and returns a :class:`Summary`. With a local stack it also checks the
store: every reading a ``good`` device had acknowledged is there exactly once, and the malformed
packs became dead letters.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kits.errors import SuitcaseError
from suitcase.simulate.device import Behaviour, Counters
from suitcase.simulate.enroll import enroll_fleet, pick_behaviours
from suitcase.simulate.fleet import FleetPlan, run_fleet
from suitcase.simulate.http import Api

__all__ = ["Options", "Summary", "simulate"]


@dataclass(frozen=True)
class Options:
    count: int = 100
    interval_s: float = 10.0
    duration_s: float = 60.0
    mix: dict[Behaviour, float] = field(
        default_factory=lambda: {"stale": 0.01, "stuck": 0.01, "malformed": 0.01}
    )
    processes: int = 2
    connect_rate: float = 0.0
    outage_share: float = 0.0
    outage_after_s: float = 20.0
    outage_s: float = 10.0
    profile: str = "starter"
    seed: int = 1
    run: str = ""


@dataclass
class Summary:
    options: Options
    counters: Counters = field(default_factory=Counters)
    behaviours: dict[str, int] = field(default_factory=dict)
    seconds_import: float = 0.0
    seconds_registry: float = 0.0
    seconds_broker: float = 0.0
    seconds_polls: float = 0.0
    storm_all_connected_s: float | None = None
    fleet_all_online_s: float | None = None
    seconds_running: float = 0.0
    store_good_readings: int | None = None
    store_dead_letters: int | None = None

    @property
    def readings_per_s(self) -> float:
        return self.counters.readings_acked / self.seconds_running if self.seconds_running else 0.0

    def lines(self) -> list[str]:
        c = self.counters
        mix = ", ".join(f"{k} {v}" for k, v in self.behaviours.items())
        out = [
            f"devices: {c.enrolled} enrolled through the server ({mix})",
            f"bulk import: {self.seconds_import:.1f} s (registry {self.seconds_registry:.1f} s, "
            f"broker accounts {self.seconds_broker:.1f} s); claim polls: {self.seconds_polls:.1f} s",
            f"connect storm: all {c.connected} connected after {_s(self.storm_all_connected_s)}; "
            f"fleet view all online after {_s(self.fleet_all_online_s)}"
            f"; {c.connect_failures} connect retries",
            f"telemetry: {c.packs_acked} packs, {c.readings_acked} readings acknowledged "
            f"({self.readings_per_s:.0f}/s); {c.malformed_acked} malformed packs sent; "
            f"{c.reconnects} reconnects after outages; "
            f"{c.publish_failures} publishes to retry; {c.backlog} packs still held",
        ]
        if c.last_connect_error:
            out.append(f"last connect error: {c.last_connect_error}")
        if self.store_good_readings is not None:
            out.append(
                f"store: {self.store_good_readings} readings of good devices "
                f"(acknowledged: {c.good_readings_acked}); {self.store_dead_letters} dead letters"
            )
        return out


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _watch_online(
    server: str, token: str, expected: int, start_at: float, stop: threading.Event, summary: Summary
) -> None:
    """Poll the fleet API until it counts ``expected`` devices online; note when."""
    api = Api(server, token, timeout=30)
    while not stop.is_set():
        try:
            answer = api.call(
                "GET",
                "/devices",
                "the fleet list",
                params={"online": "true", "registered": "true", "limit": 1},
            )
            if answer.get("count", 0) >= expected:
                summary.fleet_all_online_s = time.time() - start_at
                return
        except SuitcaseError:
            pass
        stop.wait(0.25)


def simulate(
    options: Options,
    server: str,
    token: str,
    *,
    org_id: int | None = None,
    store: Path | None = None,
    on_phase: Callable[[str, int, int], None] = lambda _p, _d, _t: None,
    on_progress: Callable[[Counters, float], None] = lambda _c, _t: None,
) -> Summary:
    """Run one simulation against ``server`` (an operator's API ``token``); see the module docstring."""
    rng = random.Random(options.seed)
    run = options.run or f"{int(time.time()) % 10**6:06d}"
    behaviours = pick_behaviours(options.count, options.mix, rng)
    summary = Summary(options, behaviours={b: behaviours.count(b) for b in sorted(set(behaviours))})
    report = enroll_fleet(
        server,
        token,
        options.count,
        behaviours=behaviours,
        interval_s=options.interval_s,
        profile=options.profile,
        org_id=org_id,
        run=run,
        progress=on_phase,
    )
    summary.seconds_import, summary.seconds_polls = report.seconds_import, report.seconds_polls
    summary.seconds_registry, summary.seconds_broker = report.seconds_registry, report.seconds_broker
    start_at = time.time() + 2.0  # the workers' spawn
    plan = FleetPlan(
        start_at=start_at,
        end_at=start_at + options.duration_s,
        connect_rate=options.connect_rate,
        outage_share=options.outage_share,
        outage_at=start_at + options.outage_after_s,
        outage_s=options.outage_s,
        seed=options.seed,
    )
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_online, args=(server, token, len(report.devices), start_at, stop, summary), daemon=True
    )
    watcher.start()
    try:
        summary.counters = run_fleet(
            report.devices, plan, options.processes, lambda c: on_progress(c, time.time() - start_at)
        )
    finally:
        stop.set()
        watcher.join(10)
    summary.seconds_running = max(0.001, time.time() - start_at)
    summary.storm_all_connected_s = summary.counters.all_connected_s
    if store is not None:
        good = {d.device for d in report.devices if d.behaviour == "good"}
        summary.store_good_readings, summary.store_dead_letters = _store_counts(
            store, good, summary.counters.good_readings_acked, summary.counters.malformed_acked
        )
    return summary


def _store_counts(
    store: Path, good: set[str], expected: int, letters: int, timeout: float = 60.0
) -> tuple[int, int]:
    """Wait (bounded) until the store holds the good devices' acknowledged readings; return the
    readings of good devices and the dead letters it holds."""
    from gateway.store import SqliteStore

    deadline = time.monotonic() + timeout
    with SqliteStore(str(store)) as reader:
        while True:
            found = sum(d.readings for d in reader.devices() if d.device in good)
            dead = reader.count_dead_letters()
            if (found >= expected and dead >= letters) or time.monotonic() > deadline:
                return found, dead
            time.sleep(0.5)
