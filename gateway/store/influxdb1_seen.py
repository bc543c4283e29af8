"""Devices seen on InfluxDB, read as what changed since the last read rather than every device.

The ``influxdb1`` sink keeps one ``devices_seen`` point per (org, device, writer) at time 0,
overwritten on every batch (``gateway/sinks/influxdb1.py``). Reading them all is one series per
device: about 0.15 s for 10,000 devices on an idle influxd 1.6, and about 1 s on a loaded one, on
every fleet page and alert round. The sink also writes each batch's changed points again at the
time it writes them, in ``devices_seen_log`` (one series per org and writer, the device a field,
retention policy ``seen_log``: an hour). So a reader keeps its last answer per organisation and
asks only for the log's points since its last read: a few series, as many points as devices
changed.

It stays correct with gateways writing concurrently and across server replicas, each of which
keeps its own answer and asks influxd (nothing is shared between hosts):

- each writer's values only grow (``first`` down, ``last`` and ``readings`` up), so merging a
  point, twice or out of order, with ``min``/``max`` gives what ``devices_seen`` holds;
- a read asks for points stamped after its previous read started, less ``margin_s`` (15 s): the
  time between a sink stamping a point and influxd holding it (the sink's write timeout, 10 s by
  default) and the clocks of the gateway and server hosts apart (NTP keeps them within
  milliseconds);
- every ``full_s`` (5 min) a read reads every ``devices_seen`` point again, and at first, so a
  gateway whose clock is far behind, a gateway of a version that writes no log, or a meta
  database made without the ``seen_log`` policy (then every read is a full one, as before) is
  at most that late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.influx.influxql import quote_ident, quote_literal
from gateway.influx.lines import SEEN_LOG, SEEN_LOG_POLICY
from gateway.store.base import DeviceKey, DeviceSeen, StoreError

__all__ = ["SeenReads"]

Query = Callable[[list[str]], list[list[dict[str, Any]]]]
_Values = tuple[float, float, int]  # first, last, readings of one writer


class _Scope:
    """One reader's answer for one organisation (or for all): each device's writers' values."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writers: dict[DeviceKey, dict[str, _Values]] = {}
        self.seen: dict[DeviceKey, DeviceSeen] = {}
        self.ordered: list[DeviceSeen] | None = None  # seen, sorted; None after a new device
        self.index: dict[DeviceKey, int] = {}
        self.read_at: float | None = None  # when the last read started (wall clock)
        self.full_at: float | None = None

    def replace(self, rows: list[tuple[str, str, str, float, float, int]]) -> None:
        self.writers = {}
        for org, device, writer, first, last, count in rows:
            self.writers.setdefault((org, device), {})[writer] = (first, last, count)
        self.seen = {key: _sum(key, w) for key, w in self.writers.items()}
        self.ordered = None

    def merge(self, rows: list[tuple[str, str, str, float, float, int]]) -> None:
        for org, device, writer, first, last, count in rows:
            key = (org, device)
            writers = self.writers.setdefault(key, {})
            known = writers.get(writer)
            values = (
                (first, last, count)
                if known is None
                else (min(known[0], first), max(known[1], last), max(known[2], count))
            )
            if values == known:
                continue
            writers[writer] = values
            seen = self.seen[key] = _sum(key, writers)
            if self.ordered is not None:
                at = self.index.get(key)
                if at is None:
                    self.ordered = None
                else:
                    self.ordered[at] = seen

    def answer(self) -> list[DeviceSeen]:
        if self.ordered is None:
            self.ordered = [self.seen[key] for key in sorted(self.seen)]
            self.index = {key: i for i, key in enumerate(sorted(self.seen))}
        return list(self.ordered)


def _sum(key: DeviceKey, writers: dict[str, _Values]) -> DeviceSeen:
    values = writers.values()
    return DeviceSeen(
        key[0],
        key[1],
        min(v[0] for v in values),
        max(v[1] for v in values),
        sum(v[2] for v in values),
    )


class SeenReads:
    """The devices-seen reads of :class:`gateway.store.influxdb1.InfluxQLReader`.

    Args:
        query: runs InfluxQL statements in one request, answering each statement's series.
        meta: the meta database (``devices_seen``, ``devices_seen_log``).
        wall: this host's wall clock (epoch s), compared with the sinks' (the log's times).
        full_s: how often a read reads every device's ``devices_seen`` point again.
        margin_s: how far before its previous read a read asks the log from.
        scopes: answers kept (one per organisation read, and one for all).
    """

    def __init__(
        self,
        query: Query,
        meta: str,
        *,
        wall: Callable[[], float] = time.time,
        full_s: float = 300.0,
        margin_s: float = 15.0,
        scopes: int = 256,
    ) -> None:
        self.query = query
        self.meta = meta
        self.wall = wall
        self.full_s = full_s
        self.margin_s = margin_s
        self.max_scopes = scopes
        self._scopes: dict[str | None, _Scope] = {}
        self._lock = threading.Lock()

    def devices(self, org: str | None = None) -> list[DeviceSeen]:
        """Every device seen (of ``org``, or of all), ordered by org and device."""
        with self._lock:
            scope = self._scopes.get(org)
            if scope is None:
                if len(self._scopes) >= self.max_scopes:
                    self._scopes.pop(next(iter(self._scopes)))
                scope = self._scopes[org] = _Scope()
        with scope.lock:
            now = self.wall()
            if scope.read_at is None or scope.full_at is None or now - scope.full_at >= self.full_s:
                self._full(scope, org, now)
            else:
                since = min(scope.read_at, now) - self.margin_s
                changed = self._changed(org, since)
                if changed is None:  # no log to read: every read is a full one
                    self._full(scope, org, now)
                else:
                    scope.merge(changed)
                    scope.read_at = now
            return scope.answer()

    def _full(self, scope: _Scope, org: str | None, now: float) -> None:
        statement = (
            f'SELECT "first", "last", "readings", "org", "device", "writer" FROM {quote_ident(self.meta)}..'
            f'"devices_seen"' + (f' WHERE "org" = {quote_literal(org)}' if org is not None else "")
        )
        # No GROUP BY: one series of rows (tags as columns) is a third of the JSON of 10,000 series.
        scope.replace(
            [
                (row_org, device, writer or "", float(first), float(last), int(count))
                for series in self.query([statement])[0]
                for _, first, last, count, row_org, device, writer in series["values"]
            ]
        )
        scope.read_at = scope.full_at = now

    def _changed(self, org: str | None, since: float) -> list[tuple[str, str, str, float, float, int]] | None:
        """The log's points stamped after ``since``; None when the meta database has no log."""
        where = f'"org" = {quote_literal(org)} AND ' if org is not None else ""
        statement = (
            f'SELECT "device", "first", "last", "readings", "org", "writer" FROM {quote_ident(self.meta)}.'
            f"{quote_ident(SEEN_LOG_POLICY)}.{quote_ident(SEEN_LOG)} "
            f"WHERE {where}time > {round(since * 1e6) * 1000}"
        )
        try:
            answer = self.query([statement])[0]
        except StoreError as exc:
            if "retention policy not found" in str(exc):
                return None
            raise
        return [
            (row_org, device, writer, float(first), float(last), int(count))
            for series in answer
            for _, device, first, last, count, row_org, writer in series["values"]
        ]
