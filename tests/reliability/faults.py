"""The fault suite's bookkeeping: readings sent (with their ids), compared with what the store holds.

A reading's identity is the store's: (device, sensor, quantity, time to the millisecond). The
suite records every reading a device sent (the agent's own record of what it sampled, or the
packs a test published), reads the store back through the server's read interface
(:class:`gateway.store.base.Reader`) and counts:

- landed: readings sent that the store holds with their value;
- lost: readings sent that the store does not hold;
- doubled: rows beyond the first for one identity, plus rows the store holds for the device that
  were never sent (a reading stored twice under two times is such a row).

Each case then records its :class:`Tally` (with the recovery time it measured) in the results
file, from which ``python -m tests.reliability.table`` writes the README's guarantees table.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.store.base import Reader
from kits.wire import Record

__all__ = [
    "RESULTS",
    "SCALE",
    "Clock",
    "Key",
    "Ledger",
    "Tally",
    "key",
    "read_results",
    "record",
    "stored_rows",
    "tally",
    "wait_landed",
]

ROOT = Path(__file__).resolve().parents[2]
#: Where each case's tally goes; the table script reads it.
RESULTS = Path(os.environ.get("SUITCASE_FAULTS_RESULTS", ROOT / ".suitcase" / "faults" / "results.json"))
#: `make soak` raises this: longer outages, more kills, more hours offline.
SCALE = max(1.0, float(os.environ.get("SUITCASE_SOAK_SCALE", "1")))

Key = tuple[str, str, str, int]
PAGE = 200_000


def key(device: str, sensor: str, quantity: str, t: float) -> Key:
    """A reading's identity in the store (time to the millisecond, as the wire carries it)."""
    return (device, sensor, quantity, round(t * 1000))


class Ledger:
    """The readings sent, by identity, with their values (thread-safe enough: list appends)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, records: Iterable[Record]) -> None:
        self.records.extend(records)

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> dict[Key, float]:
        return {key(r.device, r.sensor, r.quantity, r.time): r.value for r in self.records}

    def devices(self) -> set[tuple[str, str]]:
        return {(r.org, r.device) for r in self.records}


@dataclass
class Tally:
    """One case's figures, as the README's table shows them."""

    fault: str
    sent: int
    landed: int
    lost: int
    doubled: int
    recovery_s: float | None = None
    conditions: str = ""  # how long, how many, how fast: what the figures were measured under
    admitted: str = ""  # the loss the README admits for this fault, measured (empty: none)
    detail: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # the row's place in the table

    def summary(self) -> str:
        return (
            f"{self.fault}: sent {self.sent}, landed {self.landed}, lost {self.lost}, "
            f"doubled {self.doubled}, recovery {self.recovery_s} s {self.detail}"
        )


def stored_rows(reader: Reader, devices: Iterable[tuple[str, str]], start: float, end: float) -> list[Record]:
    """Every row the store holds for ``devices`` in ``[start, end)``, through the read interface.

    Read in pages of :data:`PAGE` rows; a page ends before its last instant (that instant may
    hold more rows than the page had room for), which starts the next page.
    """
    rows: list[Record] = []
    for org, device in sorted(devices):
        after = start
        while True:
            page = reader.readings(org, device, after, end, limit=PAGE)
            if len(page) < PAGE:
                rows.extend(page)
                break
            last = page[-1].time
            head = [r for r in page if r.time < last]
            assert head, f"more than {PAGE} rows of {device} at one instant"
            rows.extend(head)
            after = last
    return rows


def tally(
    fault: str,
    sent: Ledger | Iterable[Record],
    stored: Iterable[Record],
    *,
    recovery_s: float | None = None,
    conditions: str = "",
    admitted: str = "",
    order: int = 0,
    **detail: Any,
) -> Tally:
    """Compare the readings ``sent`` with the rows ``stored`` for the same devices."""
    records = sent.records if isinstance(sent, Ledger) else list(sent)
    wanted = {key(r.device, r.sensor, r.quantity, r.time): r.value for r in records}
    counts: Counter[Key] = Counter()
    wrong_value = 0
    for r in stored:
        k = key(r.device, r.sensor, r.quantity, r.time)
        counts[k] += 1
        if k in wanted and abs(wanted[k] - r.value) > 1e-6 * max(1.0, abs(r.value)):
            wrong_value += 1
    # The store keeps nanoseconds and gives back float seconds: a time within a fraction of a
    # microsecond of a half millisecond can come back on the other side of it. Readings of one
    # series are at least 10 ms apart here, so a stored row 1 ms off a missing one is that reading.
    for k in wanted:
        if counts[k]:
            continue
        for near in ((*k[:3], k[3] - 1), (*k[:3], k[3] + 1)):
            if counts.get(near) and near not in wanted:
                counts[k], counts[near] = counts[near], 0
                break
    counts = Counter({k: n for k, n in counts.items() if n})
    landed = sum(1 for k in wanted if counts[k])
    doubled = sum(n - 1 for n in counts.values()) + sum(n for k, n in counts.items() if k not in wanted)
    if wrong_value:
        detail["wrong_value"] = wrong_value
    lost_keys = sorted(k for k in wanted if not counts[k])
    if lost_keys:
        detail["lost_examples"] = [list(k) for k in lost_keys[:3]]
    return Tally(
        fault,
        sent=len(wanted),
        landed=landed,
        lost=len(wanted) - landed,
        doubled=doubled,
        recovery_s=None if recovery_s is None else round(recovery_s, 2),
        conditions=conditions,
        admitted=admitted,
        detail=detail,
        order=order,
    )


def wait_landed(
    reader: Reader,
    ledger: Ledger,
    *,
    since: float,
    timeout: float,
    start: float,
    end: float,
    count: Callable[[], int] | None = None,
) -> float | None:
    """Poll the store until every reading of ``ledger`` is there; return the seconds since ``since``
    (the moment the fault ended), or None when ``timeout`` passed first.

    ``count``, a cheap count of the rows stored for the ledger's devices, is polled first, so a
    large ledger is read back whole only once that count has been reached.
    """
    wanted = ledger.keys()
    deadline = time.monotonic() + timeout
    while True:
        if count is None or count() >= len(wanted):
            rows = stored_rows(reader, ledger.devices(), start, end)
            have = {key(r.device, r.sensor, r.quantity, r.time) for r in rows}
            if all(_present(k, have) for k in wanted):
                return time.monotonic() - since
        if time.monotonic() > deadline:
            return None
        time.sleep(0.25)


def _present(k: Key, have: set[Key]) -> bool:
    """Whether reading ``k`` is among ``have``, allowing the 1 ms of :func:`tally`."""
    return k in have or (*k[:3], k[3] - 1) in have or (*k[:3], k[3] + 1) in have


def read_results(path: Path = RESULTS) -> dict[str, Tally]:
    """The tallies recorded so far, by fault."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: Tally(**value) for name, value in raw.items()}


def record(result: Tally, path: Path = RESULTS) -> Tally:
    """Add (or replace) this case's row in the results file; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {name: asdict(t) for name, t in read_results(path).items()}
    results[result.fault] = asdict(result)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    tmp.replace(path)
    return result


class Clock:
    """An edge clock: the real time plus an offset the test moves (a clock that jumps), or a
    stepped fake time (a compressed clock)."""

    def __init__(self, offset: float = 0.0, *, fixed: float | None = None) -> None:
        self.offset = offset
        self.fixed = fixed

    def __call__(self) -> float:
        return self.fixed if self.fixed is not None else time.time() + self.offset

    def step(self, seconds: float) -> None:
        assert self.fixed is not None
        self.fixed += seconds
