"""Timing helpers shared by the benchmarks: best-of-N wall time and peak memory."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Figure", "best_of", "peak_memory"]


@dataclass(frozen=True)
class Figure:
    name: str
    seconds: float
    baseline: str
    baseline_seconds: float
    items: int
    unit: str

    @property
    def ratio(self) -> float:
        """How many times the baseline's time this takes (1.0 = as fast as the baseline)."""
        return self.seconds / self.baseline_seconds

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Return the best wall time of ``repeat`` calls (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def peak_memory(fn: Callable[[], object]) -> int:
    """Return the peak bytes Python allocated while ``fn`` ran."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
