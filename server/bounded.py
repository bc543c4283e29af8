"""Bounds on work a client can cause: a per-client rate limit and a small cache with expiry.

Both are in-process and bounded in memory (least recently used keys go first). A running server
counts exports across its replicas with ``server.shared.SharedRateLimiter`` instead (same
contract); the cache stays per replica: a cached figure may differ by up to its age between them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["RateLimiter", "TtlCache"]

V = TypeVar("V")


class RateLimiter:
    """At most ``limit`` starts per key in any ``window_s``; at most ``max_keys`` keys remembered.

    Args:
        limit: starts allowed per window.
        clock: UTC epoch seconds now (injected).
        window_s: the sliding window.
        max_keys: keys kept; the least recently seen are forgotten first.
    """

    def __init__(
        self, limit: int, clock: Callable[[], float], window_s: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._clock = clock
        self._starts: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Count a start of ``key`` and return 0, or return the seconds to wait (nothing counted)."""
        now = self._clock()
        with self._lock:
            starts = self._starts.pop(key, None) or deque()
            while starts and starts[0] <= now - self.window_s:
                starts.popleft()
            wait = 0.0
            if len(starts) >= self.limit:
                wait = max(1.0, starts[0] + self.window_s - now)
            else:
                starts.append(now)
            self._starts[key] = starts
            while len(self._starts) > self.max_keys:
                self._starts.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._starts)


class TtlCache(Generic[V]):
    """Values computed once per key and reused for ``ttl_s``; at most ``max_entries`` kept.

    ``ttl_s`` 0 turns the cache off (every call computes).
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_entries: int = 512) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value of ``key``, or ``compute()`` stored for next time."""
        if self.ttl_s <= 0:
            return compute()
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] > now:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        value = compute()  # outside the lock: a slow figure does not hold up the others
        with self._lock:
            self._entries[key] = (now + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every value: the next ``get`` of any key computes."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
