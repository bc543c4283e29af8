"""The dead-letter policy of the gateway, in one place: what is kept, how many, how long, what is logged.

Every message the gateway cannot write (it breaks the wire contract, its decoding failed in any
way, a sink refused its content, its device is over its series cap) becomes a dead letter with its
reason; none stops the others. Bounded, so a flood of bad messages cannot fill a disk or a log:

- the payload is kept up to :data:`PAYLOAD_LIMIT` bytes (48 KiB: base64-encoded it still fits an
  InfluxDB string field, 64 KiB), the full size written into the reason; the reason is cut to
  :data:`REASON_LIMIT` characters; untrusted text is made storable (a lone surrogate or a NUL in a
  reason made a store's write fail, and the gateway retried it forever);
- each device may store ``burst`` dead letters at once and ``per_s`` a second after that (a token
  bucket; bad topics share one bucket); what is over is still counted and acked, not stored
  (``suitcase_gateway_dead_letters_unstored_total``);
- the store drops dead letters older than ``retention_s`` (every hour, where it can);
- the log says the first ``log_detail`` dead letters of each ``log_interval_s`` one by one, then
  one summary line per interval, instead of one WARNING per message.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.metrics import Metrics
from gateway.store import DeadLetter

__all__ = [
    "PAYLOAD_LIMIT",
    "REASON_LIMIT",
    "DeadLetterPolicy",
    "DeadLetters",
    "PrunesDeadLetters",
    "letter",
    "storable",
]

log = logging.getLogger("gateway.dead_letters")

PAYLOAD_LIMIT = 48 * 1024
REASON_LIMIT = 2000
_BAD_TOPIC_KEY = ("", "(bad topic)")  # every unparseable topic shares one bucket
_MAX_BUCKETS = 100_000


def storable(text: str) -> str:
    """``text`` as every store can hold it: valid UTF-8, lone surrogates and NULs escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def letter(
    received_at: float,
    topic: str,
    payload: bytes,
    code: str,
    reason: str,
    *,
    payload_limit: int = PAYLOAD_LIMIT,
) -> DeadLetter:
    """Build the dead letter of one message: text storable, reason and payload cut to their limits."""
    reason = storable(reason)
    if len(reason) > REASON_LIMIT:
        reason = f"{reason[: REASON_LIMIT - 40]}... (reason cut, {len(reason)} characters)"
    if len(payload) > payload_limit:
        reason = f"{reason} [payload of {len(payload)} bytes, first {payload_limit} kept]"
        payload = payload[:payload_limit]
    return DeadLetter(received_at, storable(topic[:1024]), payload, code, reason)


@runtime_checkable
class PrunesDeadLetters(Protocol):
    """A store that can drop old dead letters (the SQLite store; InfluxDB uses a retention policy)."""

    def prune_dead_letters(self, before: float) -> int: ...


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """The bounds of dead letters (defaults: generous for a city, tight for a flood).

    Attributes:
        payload_limit: bytes of payload kept per dead letter.
        burst: dead letters a device may store at once.
        per_s: dead letters a device may store per second after its burst.
        retention_s: how long the store keeps a dead letter.
        log_interval_s: one summary log line per this many seconds.
        log_detail: dead letters logged one by one per interval before the summary takes over.
    """

    payload_limit: int = PAYLOAD_LIMIT
    burst: float = 100.0
    per_s: float = 1.0
    retention_s: float = 30 * 86_400.0
    log_interval_s: float = 10.0
    log_detail: int = 5


class DeadLetters:
    """Applies a :class:`DeadLetterPolicy`; shared by the gateway's decoder and flusher threads.

    Args:
        policy: the bounds.
        metrics: where stored-or-not counts go.
        monotonic: the clock of the rate limits and the log interval.
    """

    def __init__(
        self,
        policy: DeadLetterPolicy | None = None,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or DeadLetterPolicy()
        self.metrics = metrics or Metrics()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[tuple[str, str], tuple[float, float]] = (
            collections.OrderedDict()
        )
        self._interval_start = monotonic()
        self._seen: collections.Counter[str] = collections.Counter()
        self._unstored = 0
        self._pruned_at: float | None = None

    def make(
        self,
        key: tuple[str, str] | None,
        received_at: float,
        topic: str,
        payload: bytes,
        code: str,
        reason: str,
    ) -> DeadLetter | None:
        """Count one dead message of device ``key`` (org, device; None for a bad topic) and log it.

        Returns:
            Its bounded dead letter to store, or None when the device is over its rate limit
            (counted in ``suitcase_gateway_dead_letters_unstored_total``).
        """
        now = self._monotonic()
        with self._lock:
            self._summarise(now)
            stored = self._take(key or _BAD_TOPIC_KEY, now)
            self._seen[code] += 1
            detail = sum(self._seen.values()) <= self.policy.log_detail
            if not stored:
                self._unstored += 1
        if detail:
            log.warning(
                "dead letter on %s: %s: %s%s",
                storable(topic[:200]),
                code,
                storable(reason[:500]),
                "" if stored else " (not stored: the device is over its dead-letter rate limit)",
                extra={"topic": topic[:200], "code": code},
            )
        if not stored:
            self.metrics.unstored_letters.labels(code).inc()
            return None
        return letter(received_at, topic, payload, code, reason, payload_limit=self.policy.payload_limit)

    def tick(self) -> None:
        """Write the summary line of an interval that has ended (called from the decoder's loop)."""
        now = self._monotonic()
        if now - self._interval_start < self.policy.log_interval_s:
            return
        with self._lock:
            self._summarise(now)

    def prune(self, store: object, now: float) -> None:
        """Drop the store's dead letters older than the retention, at most once an hour."""
        monotonic = self._monotonic()
        if self._pruned_at is not None and monotonic - self._pruned_at < 3600:
            return
        self._pruned_at = monotonic
        if not isinstance(store, PrunesDeadLetters):
            return
        try:
            dropped = store.prune_dead_letters(now - self.policy.retention_s)
        except Exception as exc:  # pruning is housekeeping: a failure waits for the next hour
            log.error(
                "dropping dead letters older than %.0f days failed: %s", self.policy.retention_s / 86400, exc
            )
            return
        if dropped:
            log.info("dropped %d dead letters older than %.0f days", dropped, self.policy.retention_s / 86400)

    def _take(self, key: tuple[str, str], now: float) -> bool:
        """Take one token of ``key``'s bucket; False if it is empty."""
        policy = self.policy
        tokens, last = self._buckets.pop(key, (policy.burst, now))
        tokens = min(policy.burst, tokens + (now - last) * policy.per_s)
        taken = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if taken else tokens, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._buckets.popitem(last=False)  # the device seen longest ago starts afresh
        return taken

    def _summarise(self, now: float) -> None:
        """With the lock held: at the end of an interval, log what its detail lines left out."""
        elapsed = now - self._interval_start
        if elapsed < self.policy.log_interval_s:
            return
        total = sum(self._seen.values())
        if total > self.policy.log_detail:
            kinds = ", ".join(
                f"{c} {n}" for c, n in sorted(self._seen.items(), key=lambda cn: (-cn[1], cn[0]))
            )
            log.warning(
                "%d dead letters in the last %.0f s (%s)%s; `suitcase gateway dead-letters` lists them",
                total,
                elapsed,
                kinds,
                f", {self._unstored} over the per-device rate limit and not stored" if self._unstored else "",
            )
        self._seen.clear()
        self._unstored = 0
        self._interval_start = now
