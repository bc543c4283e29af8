"""Late readings into InfluxDB 1.x rollups: the ``influxdb1`` sink's part of downsampling.

The rollup continuous queries (``gateway.store.influxdb1_rollups``) only recompute recent windows.
After the sink writes a batch, every device with readings older than ``LATE_AFTER_S`` (an
outbox draining a long outage) gets the windows of every rollup tier those readings fall in
recomputed, finest first (the minutes from the raw readings, each coarser tier from the one below),
in the same request, before the batch is acknowledged. Only databases that
hold the rollup policies (``suitcase gateway retention apply`` made them) are folded; which do is
asked once per database and again every ``recheck_s`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.influx.query import Requester, post_query
from gateway.sinks import SinkError
from gateway.store.influxdb1_rollups import (
    LATE_AFTER_S,
    fold_statements,
    has_rollups,
    policies_from,
    show_policies,
    tiers_of,
)
from kits.wire import Record

__all__ = ["LateFolder"]


class LateFolder:
    """Recomputes the rollup windows of late readings just written to InfluxDB 1.x."""

    def __init__(
        self, http: Requester, *, clock: Callable[[], float] = time.time, recheck_s: float = 300.0
    ) -> None:
        self.http = http
        self.clock = clock
        self.recheck_s = recheck_s
        # db -> (raw policy and rollup tiers, or None without rollups; when asked)
        self._raw: dict[str, tuple[tuple[str, tuple[int, ...]] | None, float]] = {}
        self.folded = 0

    def _query(self, statements: list[str]) -> list[list[dict[str, Any]]]:
        answer = post_query(self.http, statements)
        errors = answer.errors()
        if answer.results is None or errors or len(answer.results) != len(statements):
            why = errors[0] if errors else answer.body[:200].decode(errors="replace")
            raise SinkError(
                f"InfluxDB 1.x at {self.http.base} refused to fold late readings into the rollups "
                f"(HTTP {answer.status}: {why!r}): give the gateway's user write rights on the rollup_* "
                "policies"
            )
        return answer.series()

    def _layout(self, db: str, now: float) -> tuple[str, tuple[int, ...]] | None:
        known = self._raw.get(db)
        if known is None or now - known[1] >= self.recheck_s:
            default, durations = policies_from(self._query([show_policies(db)])[0])
            known = ((default, tiers_of(durations)) if has_rollups(durations) else None, now)
            self._raw[db] = known
        return known[0]

    def fold(self, db: str, records: Sequence[Record]) -> None:
        """Recompute the rollup windows of ``records`` (just written to ``db``) that are late.

        Raises:
            SinkError: the recomputation failed; the batch is retried (rewriting overwrites).
        """
        now = self.clock()
        cutoff = now - LATE_AFTER_S
        spans: dict[str, tuple[float, float]] = {}
        for rec in records:
            if rec.time < cutoff:
                lo, hi = spans.get(rec.device, (rec.time, rec.time))
                spans[rec.device] = (min(lo, rec.time), max(hi, rec.time))
        if not spans:
            return
        layout = self._layout(db, now)
        if layout is None:
            return
        raw, tiers = layout
        statements = [
            s for dev, (lo, hi) in sorted(spans.items()) for s in fold_statements(db, raw, dev, lo, hi, tiers)
        ]
        self._query(statements)
        self.folded += len(spans)
