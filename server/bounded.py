"""Bounds on work a client can cause: a per-client rate limit and a small cache with expiry.

Both are in-process and bounded in memory (least recently used keys go first). A running server
counts exports across its replicas with ``server.shared.SharedRateLimiter`` instead (same
contract); the cache stays per replica: a cached figure may differ by up to its age between them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["RateLimiter", "TtlCache"]

V = TypeVar("V")

log = logging.getLogger(__name__)


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

    ``ttl_s`` 0 turns the cache off (every call computes). With ``stale_s`` and a ``refresh`` given
    to :meth:`get`, a value past ``ttl_s`` but younger than ``ttl_s + stale_s`` is still returned
    while ``refresh`` computes its successor in the background (one at a time per key), so a value
    read often is never computed while someone waits for it. ``clear(rebuild=True)`` forgets every
    value and computes anew, in the background, those of the keys read within ``ttl_s +
    stale_s`` (with their last ``refresh``); a ``get`` of such a key waits for its rebuild (at
    most ``rebuild_wait_s``) instead of computing it a second time. :meth:`warm` starts one.

    Args:
        ttl_s: how long a value is fresh.
        clock: seconds now (monotonic, or injected).
        max_entries: values kept; the least recently used go first.
        stale_s: how long past ``ttl_s`` a value may be returned while its successor is computed.
        background: runs a refresh (default: one worker thread of this cache's, so a store that
            keeps a connection per thread keeps one for it); tests may run it where they like.
        rebuild_wait_s: how long a ``get`` waits for a rebuild under way before it computes.
    """

    def __init__(
        self,
        ttl_s: float,
        clock: Callable[[], float],
        max_entries: int = 512,
        *,
        stale_s: float = 0.0,
        background: Callable[[Callable[[], None]], object] | None = None,
        rebuild_wait_s: float = 30.0,
    ) -> None:
        self.ttl_s, self.max_entries, self.stale_s = ttl_s, max_entries, stale_s
        self.rebuild_wait_s = rebuild_wait_s
        self._clock = clock
        self._worker: ThreadPoolExecutor | None = None
        self._background = background or self._in_worker
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._rebuilt = threading.Condition(self._lock)
        self._refreshing: set[Hashable] = set()
        self._generation = 0  # bumped by clear(): a value computed before it is not kept
        # key -> (when last read, its refresh): what clear(rebuild=True) computes anew.
        self._recent: OrderedDict[Hashable, tuple[float, Callable[[], V]]] = OrderedDict()
        self._rebuilding: dict[Hashable, int] = {}  # key -> the generation its rebuild is for
        self.hits = self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], V], refresh: Callable[[], V] | None = None) -> V:
        """The cached value of ``key``, or ``compute()`` stored for next time.

        ``refresh`` computes a successor in the background (it must not use what ``compute``
        borrows from the caller, such as its database session).
        """
        if self.ttl_s <= 0:
            return compute()
        now = self._clock()
        start = False
        with self._lock:
            if refresh is not None:
                self._recent[key] = (now, refresh)
                self._recent.move_to_end(key)
                while len(self._recent) > self.max_entries:
                    self._recent.popitem(last=False)
            if key not in self._entries and self._rebuilding.get(key) == self._generation:
                # Rebuilt after a clear, in the background: wait for it rather than read it twice.
                self._rebuilt.wait_for(
                    lambda: self._rebuilding.get(key) != self._generation, timeout=self.rebuild_wait_s
                )
            found = self._entries.get(key)
            generation = self._generation
            fresh = found is not None and found[0] > now
            stale_ok = found is not None and refresh is not None and found[0] + self.stale_s > now
            if found is not None and (fresh or stale_ok):
                self._entries.move_to_end(key)
                self.hits += 1
                if not fresh and key not in self._refreshing:
                    self._refreshing.add(key)
                    start = True
            else:
                self.misses += 1
                found = None
        if found is not None:
            if start and refresh is not None:
                self._background(lambda: self._refresh(key, refresh, generation))
            return found[1]
        value = compute()  # outside the lock: a slow figure does not hold up the others
        self._keep(key, value, now, generation)
        return value

    def _refresh(self, key: Hashable, refresh: Callable[[], V], generation: int) -> None:
        try:
            started = self._clock()
            self._keep(key, refresh(), started, generation)
        except Exception:  # the stale value stays until it is too old, then a caller computes
            log.exception("cache refresh failed", extra={"key": repr(key)})
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _keep(self, key: Hashable, value: V, computed_at: float, generation: int) -> None:
        with self._lock:
            if generation != self._generation:  # cleared while it was computed: maybe out of date
                return
            self._entries[key] = (computed_at + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self, *, rebuild: bool = False) -> None:
        """Forget every value, and any being computed: the next ``get`` of any key computes.

        Args:
            rebuild: compute anew, in the background, the keys read within ``ttl_s + stale_s``;
                until each is, a ``get`` of it waits for it (``rebuild_wait_s`` at most).
        """
        with self._lock:
            self._entries.clear()
            self._generation += 1
            if not rebuild or self.ttl_s <= 0:
                return
            recent = self._clock() - self.ttl_s - self.stale_s
            again = [(key, refresh) for key, (used, refresh) in self._recent.items() if used > recent]
            for key, _ in again:
                self._rebuilding[key] = self._generation
            generation = self._generation
        for key, refresh in again:
            self._background(functools.partial(self._rebuild, key, refresh, generation))

    def warm(self, key: Hashable, refresh: Callable[[], V]) -> None:
        """Compute ``key`` in the background now, as a rebuild (a ``get`` meanwhile waits for it)."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._recent[key] = (self._clock(), refresh)
            self._rebuilding[key] = generation = self._generation
        self._background(functools.partial(self._rebuild, key, refresh, generation))

    def _rebuild(self, key: Hashable, refresh: Callable[[], V], generation: int) -> None:
        try:
            with self._lock:
                if generation != self._generation:  # cleared again: that clear's rebuild follows
                    return
            started = self._clock()
            self._keep(key, refresh(), started, generation)
        except Exception:  # a get waiting for it computes the value itself
            log.exception("cache rebuild failed", extra={"key": repr(key)})
        finally:
            with self._lock:
                if self._rebuilding.get(key) == generation:
                    del self._rebuilding[key]
                self._rebuilt.notify_all()

    def __len__(self) -> int:
        return len(self._entries)

    def _in_worker(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="cache-refresh")
            self._worker.submit(work)

    def close(self) -> None:
        """Stop the refresh worker (a refresh under way finishes first; those not begun never do)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)
