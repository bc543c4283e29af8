"""Enrolling a simulated fleet through the server, as a GovTech centre would enroll real Pis:
one bulk CSV import binds every Pi (each gets its own broker account), then each device polls
with its claim code and receives its config once (``POST /api/v1/claims/poll``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kits.errors import SuitcaseError
from server.security import new_claim_code
from suitcase.simulate.device import BEHAVIOURS, Behaviour, Enrolled
from suitcase.simulate.http import Api

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


def enroll_fleet(
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
    api = Api(server, token)
    body: dict[str, Any] = {"name": f"simulation {run}"}
    if org_id is not None:
        body["org_id"] = org_id
    deployment = api.call("POST", "/deployments", "creating the simulation's deployment", body=body)
    codes = [new_claim_code() for _ in range(count)]
    rows = [
        f"SIM-{run}-{i // pis_per_kit:05d},{profile},{i % pis_per_kit + 1},{code},"
        f"{deployment['id']},{interval_s:g}"
        for i, code in enumerate(codes)
    ]
    started = time.monotonic()
    registry = broker = 0.0
    chunk_rows = IMPORT_ROWS - IMPORT_ROWS % pis_per_kit  # a chunk never splits a kit
    for start in range(0, count, chunk_rows):
        text = (
            "kit,profile,pi,claim_code,deployment,interval_s\n"
            + "\n".join(rows[start : start + chunk_rows])
            + "\n"
        )
        payload: dict[str, Any] = {"csv": text}
        if org_id is not None:
            payload["org_id"] = org_id
        done = api.call("POST", "/kits/import", f"importing rows {start + 2}..", body=payload)
        registry += done["seconds_registry"]
        broker += done["seconds_broker"]
        progress("import", min(count, start + chunk_rows), count)
    seconds_import = time.monotonic() - started
    started = time.monotonic()
    devices = Api(server)  # a Pi polls with its claim code only

    def poll(index: int) -> Enrolled:
        answer = devices.call(
            "POST", "/claims/poll", f"device {index}'s claim poll", body={"code": codes[index]}
        )
        if answer.get("status") != "ready" or not answer.get("device"):
            raise SuitcaseError(
                f"device {index}'s claim poll answered {answer.get('status')}: {answer.get('message')}"
            )
        return Enrolled.from_poll(answer["device"], behaviours[index], part_quantities)

    enrolled: list[Enrolled] = []
    with ThreadPoolExecutor(concurrency, thread_name_prefix="claim-poll") as pool:
        for one in pool.map(poll, range(count)):
            enrolled.append(one)
            if len(enrolled) % 100 == 0 or len(enrolled) == count:
                progress("enroll", len(enrolled), count)
    return EnrollmentReport(
        enrolled, deployment["id"], seconds_import, registry, broker, time.monotonic() - started
    )
