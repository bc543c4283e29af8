"""Enrolling a simulated fleet through the server, as a GovTech centre would enroll real Pis:
one bulk CSV import binds every Pi (each gets its own broker account), then each device polls
with its claim code and receives its config once (``POST /api/v1/claims/poll``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kits.errors import SuitcaseError
from server.security import new_claim_code
from suitcase.simulate.device import BEHAVIOURS, Behaviour, Enrolled

__all__ = ["EnrollmentReport", "enroll_fleet", "part_quantities", "pick_behaviours"]

IMPORT_ROWS = 3000  # rows per import request: well under the server's 1 MB body limit


@dataclass
class EnrollmentReport:
    devices: list[Enrolled]
    deployment_id: int
    seconds_import: float
    seconds_registry: float
    seconds_broker: float
    seconds_polls: float


def part_quantities(part: str) -> list[str]:
    """The quantities a part reports (from its facts)."""
    from edge.parts import facts_of

    return list(facts_of(part).quantities)


def pick_behaviours(count: int, mix: dict[Behaviour, float], rng: random.Random) -> list[Behaviour]:
    """Return ``count`` behaviours in the proportions of ``mix`` (the rest ``good``), shuffled."""
    out: list[Behaviour] = []
    for behaviour in BEHAVIOURS:
        if behaviour != "good":
            out.extend([behaviour] * round(count * mix.get(behaviour, 0.0)))
    out = out[:count] + ["good"] * max(0, count - len(out))
    rng.shuffle(out)
    return out


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("msg", d)) for d in detail[:5])
        raise SuitcaseError(f"{what} failed ({response.status_code}): {detail}")
    return response.json()


async def enroll_fleet(
    server: str,
    token: str,
    count: int,
    *,
    behaviours: list[Behaviour],
    interval_s: float,
    profile: str = "starter",
    pis_per_kit: int = 3,
    org_id: int | None = None,
    run: str = "sim",
    concurrency: int = 16,
    progress: Callable[[str, int, int], None] = lambda _what, _done, _total: None,
) -> EnrollmentReport:
    """Create a deployment, import ``count`` Pis bound to it, and collect every device's config.

    Raises:
        SuitcaseError: the server refused a step (its reason is in the message).
    """
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.rstrip("/") + "/api/v1", headers=headers, timeout=600, limits=limits
    ) as http:
        body: dict[str, Any] = {"name": f"simulation {run}"}
        if org_id is not None:
            body["org_id"] = org_id
        deployment = _check(
            await http.post("/deployments", json=body), "creating the simulation's deployment"
        )
        codes = [new_claim_code() for _ in range(count)]
        rows = [
            f"SIM-{run}-{i // pis_per_kit:05d},{profile},{i % pis_per_kit + 1},{code},"
            f"{deployment['id']},{interval_s:g}"
            for i, code in enumerate(codes)
        ]
        started = loop.time()
        registry = broker = 0.0
        for start in range(0, count, IMPORT_ROWS):
            chunk = rows[start : start + IMPORT_ROWS]
            # A chunk never splits a kit: IMPORT_ROWS is a multiple of the Pis per kit.
            text = "kit,profile,pi,claim_code,deployment,interval_s\n" + "\n".join(chunk) + "\n"
            payload: dict[str, Any] = {"csv": text}
            if org_id is not None:
                payload["org_id"] = org_id
            done = _check(await http.post("/kits/import", json=payload), f"importing rows {start + 2}..")
            registry += done["seconds_registry"]
            broker += done["seconds_broker"]
            progress("import", min(count, start + IMPORT_ROWS), count)
        seconds_import = loop.time() - started
        started = loop.time()
        results: list[Enrolled | None] = [None] * count
        gate = asyncio.Semaphore(concurrency)
        finished = 0

        async def poll(index: int) -> None:
            nonlocal finished
            async with gate:
                answer = _check(
                    await http.post("/claims/poll", json={"code": codes[index], "agent": "sim"}),
                    f"device {index}'s claim poll",
                )
            if answer.get("status") != "ready" or not answer.get("device"):
                raise SuitcaseError(
                    f"device {index}'s claim poll answered {answer.get('status')}: {answer.get('message')}"
                )
            results[index] = Enrolled.from_poll(answer["device"], behaviours[index], part_quantities)
            finished += 1
            if finished % 100 == 0 or finished == count:
                progress("enroll", finished, count)

        await asyncio.gather(*(poll(i) for i in range(count)))
        devices = [r for r in results if r is not None]
        return EnrollmentReport(
            devices, deployment["id"], seconds_import, registry, broker, loop.time() - started
        )
