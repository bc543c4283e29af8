"""Running a simulated fleet: devices split over a few processes, one asyncio loop each.

Each worker raises its open-file limit (one socket per device), connects its devices (a storm:
all at once unless a connect rate is set; a refused or dropped connect is retried with jittered
backoff), runs them until the end time with the outages it was given, stops them cleanly, and
reports its counters to the parent every half second through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from suitcase.simulate.device import Counters, Enrolled, SimDevice
from suitcase.simulate.limits import raise_open_files
from suitcase.simulate.mqtt import MqttError

__all__ = ["FleetPlan", "run_fleet"]


@dataclass(frozen=True)
class FleetPlan:
    """When and how the fleet runs (wall-clock times, so every process agrees)."""

    start_at: float
    end_at: float
    connect_rate: float = 0.0  # devices per second per fleet; 0: all at once (a storm)
    outage_share: float = 0.0
    outage_at: float = 0.0
    outage_s: float = 0.0
    seed: int = 1


async def _connect(device: SimDevice, not_before: float, deadline: float, rng: random.Random) -> bool:
    await asyncio.sleep(max(0.0, not_before - time.time()))
    wait = 0.5
    while time.time() < deadline:
        try:
            await device.connect()
            return True
        except MqttError as exc:
            device.counters.connect_failures += 1
            device.counters.last_connect_error = str(exc)[:200]
            await asyncio.sleep(wait * rng.uniform(0.5, 1.5))
            wait = min(wait * 2, 10.0)
    return False


async def _run_share(
    devices: list[Enrolled], plan: FleetPlan, index: int, processes: int, report: Callable[[Counters], None]
) -> Counters:
    rng = random.Random(plan.seed * 1000 + index)
    counters = Counters(enrolled=len(devices))
    sims = [
        SimDevice(e, counters, time.time, random.Random(rng.random()), started=plan.start_at) for e in devices
    ]
    per_process_rate = plan.connect_rate / processes if plan.connect_rate else 0.0
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))

    async def one(position: int, sim: SimDevice) -> None:
        not_before = plan.start_at + (position / per_process_rate if per_process_rate else 0.0)
        if not await _connect(sim, not_before, plan.end_at, rng):
            return
        counters.connected += 1
        if counters.connected == len(sims):
            counters.all_connected_s = time.time() - plan.start_at
        outage = None
        if plan.outage_share and rng.random() < plan.outage_share:
            outage = (plan.outage_at, plan.outage_at + plan.outage_s)
        await sim.run(plan.end_at, outage)
        await sim.close()

    async def reporter() -> None:
        while True:
            report(counters)
            await asyncio.sleep(0.5)

    ticker = asyncio.create_task(reporter())
    try:
        await asyncio.gather(*(one(i, s) for i, s in enumerate(sims)))
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    report(counters)
    return counters


def _worker(
    devices: list[Enrolled],
    plan: FleetPlan,
    index: int,
    processes: int,
    out: multiprocessing.Queue[tuple[int, dict[str, object], bool]],
) -> None:
    raise_open_files(len(devices) + 256)

    def report(counters: Counters) -> None:
        out.put((index, asdict(counters), False))

    counters = asyncio.run(_run_share(devices, plan, index, processes, report))
    out.put((index, asdict(counters), True))


def run_fleet(
    devices: list[Enrolled],
    plan: FleetPlan,
    processes: int,
    on_progress: Callable[[Counters], None] = lambda _c: None,
) -> Counters:
    """Run ``devices`` split over ``processes`` workers; call ``on_progress`` with the summed
    counters about twice a second; return the final sum.

    Raises:
        RuntimeError: a worker died without reporting its end.
    """
    processes = max(1, min(processes, len(devices) or 1))
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[int, dict[str, object], bool]] = context.Queue()
    shares = [devices[i::processes] for i in range(processes)]
    workers = [
        context.Process(
            target=_worker, args=(share, plan, i, processes, out), name=f"simulate-{i}", daemon=True
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    latest: dict[int, Counters] = {}
    finished: set[int] = set()
    deadline = plan.end_at + 120.0
    try:
        while len(finished) < processes:
            try:
                index, data, done = out.get(timeout=0.5)
            except queue.Empty:
                dead = [w for i, w in enumerate(workers) if i not in finished and not w.is_alive()]
                if dead or time.time() > deadline:
                    names = ", ".join(f"{w.name} (exit {w.exitcode})" for w in dead) or "workers past the end"
                    raise RuntimeError(f"simulation worker stopped without its summary: {names}") from None
                continue
            latest[index] = Counters(**data)  # type: ignore[arg-type]
            if done:
                finished.add(index)
            total = Counters()
            for counters in latest.values():
                total.add(counters)
            on_progress(total)
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    total = Counters()
    for counters in latest.values():
        total.add(counters)
    return total
