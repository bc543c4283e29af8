"""The read side of InfluxDB in InfluxQL on ``/query``: readings, latest, windows, devices, dead letters.

InfluxQL on ``/query`` is the one read language InfluxDB 1.x, 2.x (its v1 compatibility API, with a
database/retention-policy mapping per bucket) and 3.x all serve; Flux is in maintenance mode and
InfluxDB 3 does not run it. Open it with the very URL of the ``influxdb1`` sink
(``influxdb1://host:8086?database=suitcase_{org}&username=&password=&meta=suitcase``); for 2.x/3.x
add ``token=...`` (sent as ``Authorization: Token``).

The schema is gateway/sinks/README.md's: measurement = quantity, tags org/device/sensor, field
``value``, one database per org (``database`` template, ``{org}`` = org slug with '-' -> '_').
Every read names its (org, device), so it asks that org's database only. What is not a reading
lives in the ``meta`` database, which the sink writes beside the readings (no file is shared
between gateway and server, and no retention policy of an org's readings removes it):

- ``devices_seen``: one point per (org, device, gateway) at time 0, fields ``first``, ``last``
  (epoch seconds of the oldest and newest reading that gateway wrote) and ``readings`` (how many
  it wrote; a redelivery counts again). Overwritten on every batch, so listing 10,000 devices
  reads 10,000 series; the reader does so every few minutes and in between reads only the points
  of the devices that changed, from ``devices_seen_log`` (retention policy ``seen_log``), where
  the sink writes each batch's changed points again at the time it writes them
  (``gateway/store/influxdb1_seen.py``).
- ``dead_letters``: one point per dead letter at its ``received_at``, tag ``code``, fields
  ``topic``, ``payload`` (base64) and ``reason``.

Times come back at the microsecond resolution the sink writes (``Record.time`` rounded to 1 us).
"""

from __future__ import annotations

import base64
import logging
import operator
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from itertools import pairwise, repeat
from operator import truediv
from typing import Any, NamedTuple

from gateway.influx.http import HttpClient
from gateway.influx.influxql import quote_ident, quote_literal
from gateway.influx.lines import DEFAULT_DATABASE, DEFAULT_META_DATABASE, database_name
from gateway.influx.query import post_query
from gateway.influx.urls import ServiceUrl
from gateway.store.base import (
    DeadLetter,
    DeviceKey,
    DeviceSeen,
    SeriesWindows,
    StoreError,
    Window,
    check_keys,
    check_window_width,
    windows_of,
)
from gateway.store.influxdb1_rollups import (
    has_rollups,
    plan_windows,
    policies_from,
    show_policies,
    tiers_of,
)
from gateway.store.influxdb1_seen import SeenReads
from kits.errors import SuitcaseError
from kits.wire import Record

__all__ = ["InfluxQLReader", "from_url", "from_v2_url"]

_log = logging.getLogger(__name__)

_Series = tuple[str, dict[str, str], list[list[Any]]]  # measurement, tags, rows
_INT = {int}
_TIME = operator.itemgetter(0)  # an InfluxQL row's time

# Devices per statement of latest(): a regex alternation, kept well below the URL/body limits.
_KEYS_PER_STATEMENT = 500


def _regex_any(values: Collection[str]) -> str:
    """An InfluxQL regex literal matching exactly one of ``values``."""
    escaped = (re.sub(r"([^A-Za-z0-9_-])", r"\\\1", v).replace("/", "\\/") for v in sorted(values))
    return "/^(" + "|".join(escaped) + ")$/"


def _combined(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    """One window's row of two of its parts, each (time, count, sum, min, max) or, read
    ``means_only``, (time, count, sum): counts and sums add up, the min of mins, the max of maxes."""
    if len(a) == 3:
        return [a[0], a[1] + b[1], a[2] + b[2]]
    return [a[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), max(a[4], b[4])]


def _in_windows(rows: list[list[Any]], step: int) -> list[list[Any]]:
    """``rows`` (time, count, sum[, min, max]) of one series as one row per window of ``step`` (in
    the rows' time unit, epoch-aligned as influxd's GROUP BY time()), each the sum of its rows:
    rollup points read as they are for windows a few points wide. Rows already one per window are
    returned as they are."""
    if not any(map(operator.mod, map(_TIME, rows), repeat(step))):
        return rows
    return _added(rows, step)


def _added(rows: Iterable[Sequence[Any]], step: int | None = None) -> list[list[Any]]:
    """``rows`` (time, count, sum[, min, max]) as one row per window, oldest first, those without
    readings left out: the rows of one window (starting at ``time - time % step``, or at the row's
    time where ``step`` is None) added up."""
    added: list[list[Any]] = []
    for row in sorted((row for row in rows if row[1]), key=_TIME):
        start = row[0] - row[0] % step if step else row[0]
        if added and added[-1][0] == start:
            added[-1] = _combined(added[-1], row)
        else:
            added.append([start, *row[1:]])
    return added


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1000


class InfluxQLReader:
    """Answers the store's read interface from InfluxDB with InfluxQL.

    Args:
        http: a client of the server.
        database: the database template of the sink (``{org}`` = org slug, '-' -> '_').
        meta: the database of devices seen and dead letters.
        clock: now (epoch s) as the server's domain sees it.
        recheck_s: how often to ask again whether an org's database has rollup policies.
        wall: this host's wall clock (epoch s), compared with the times the sinks stamp on their
            log of devices seen (``gateway/store/influxdb1_seen.py``).
    """

    def __init__(
        self,
        http: HttpClient,
        database: str = DEFAULT_DATABASE,
        meta: str = DEFAULT_META_DATABASE,
        *,
        clock: Callable[[], float] = time.time,
        recheck_s: float = 300.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.database = database
        self.meta = meta
        self.clock = clock
        self.recheck_s = recheck_s
        self._rollups: dict[str, tuple[tuple[int, ...], float]] = {}  # db -> (its tiers, when asked)
        self.seen = SeenReads(self._query, meta, wall=wall)

    def _tiers(self, db: str) -> tuple[int, ...]:
        """The rollup tiers ``db`` holds (``suitcase gateway retention apply``; none if it has not
        run), asked again every ``recheck_s``."""
        now = self.clock()
        known = self._rollups.get(db)
        if known is None or now - known[1] >= self.recheck_s:
            _, durations = policies_from(self._query([show_policies(db)])[0])
            known = (tiers_of(durations) if has_rollups(durations) else (), now)
            self._rollups[db] = known
        return known[0]

    # ------------------------------------------------------------------ plumbing

    def _query(
        self,
        statements: list[str],
        *,
        missing_ok: bool = True,
        epoch: str = "ns",
        each_series_rows: Callable[[list[list[Any]]], Any] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Run ``statements`` in one request; return each statement's series, times in ``epoch``
        units (``ns``, or ``s`` where every time is a whole second), each series' rows replaced by
        what ``each_series_rows`` makes of them as they arrive (``gateway.influx.query``).

        A statement on a database that does not exist (an org that never sent a reading) answers
        no series when ``missing_ok``.
        """
        _log.debug("InfluxQL to %s: %s", self.http.base, ";".join(statements))
        try:
            answer = post_query(
                self.http, statements, epoch=epoch, chunked=True, each_series_rows=each_series_rows
            )
        except SuitcaseError as exc:
            raise StoreError(str(exc)) from exc
        status, body, results = answer.status, answer.body, answer.results
        if status in (401, 403):
            raise StoreError(
                f"InfluxDB at {self.http.base} refused the credentials (HTTP {status}): set username= "
                "and password= (1.x) or token= (2.x/3.x) in the store URL to a user that may read"
            )
        if status != 200:
            raise StoreError(
                f"InfluxDB at {self.http.base} answered HTTP {status} to a query: {body[:300]!r}"
            )
        if results is None:
            raise StoreError(f"InfluxDB at {self.http.base} answered a query with no JSON: {body[:200]!r}")
        out: list[list[dict[str, Any]]] = []
        for i, result in enumerate(results):
            error = result.get("error")
            if error is not None:
                if missing_ok and str(error).startswith("database not found"):
                    out.append([])
                    later = results[i + 1 :]
                    if later and all(r.get("error") == "not executed" for r in later):
                        # influxd 1.x runs no statement after a failed one: the rest once more
                        rest = statements[i + 1 :]
                        return out + self._query(rest, epoch=epoch, each_series_rows=each_series_rows)
                    continue
                raise StoreError(f"InfluxDB at {self.http.base}: query failed: {error}")
            out.append(result.get("series", []))
        if len(out) < len(statements) and len(statements) > 1:
            # A server that runs only the first of several statements (InfluxDB 3's v1 API,
            # influxdata/influxdb#24771): the rest one by one.
            for statement in statements[len(out) :]:
                out += self._query(
                    [statement], missing_ok=missing_ok, epoch=epoch, each_series_rows=each_series_rows
                )
        if len(out) != len(statements):
            raise StoreError(
                f"InfluxDB at {self.http.base} answered {len(out)} results to {len(statements)} statements"
            )
        return out

    def _db(self, org: str) -> str:
        return database_name(self.database, org)

    def _org_databases(self) -> dict[str, str]:
        """Every org database on the server: database -> org slug (as the template spells it).

        A template without ``{org}`` is one database for every org (the org tag tells them apart).
        """
        prefix, _, suffix = self.database.partition("{org}")
        names = [row[0] for s in self._query(["SHOW DATABASES"])[0] for row in s.get("values", [])]
        if "{org}" not in self.database:
            return {self.database: ""} if self.database in names else {}
        return {
            n: n[len(prefix) : len(n) - len(suffix) if suffix else None]
            for n in names
            if n.startswith(prefix)
            and n.endswith(suffix)
            and n != self.meta
            and len(n) > len(prefix + suffix)
        }

    @staticmethod
    def _rows(
        series_lists: list[list[dict[str, Any]]],
    ) -> Iterator[tuple[str, dict[str, str], list[list[Any]]]]:
        for series_list in series_lists:
            for s in series_list:
                yield s["name"], s.get("tags", {}), s["values"]

    # ------------------------------------------------------------------ reads

    def readings(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        limit: int = 100_000,
    ) -> list[Record]:
        """Return up to ``limit`` readings of (``org``, ``device``) in ``[start, end)``, oldest first."""
        # The org too: a database template without {org} holds every org's readings.
        where = f'"org" = {quote_literal(org)} AND "device" = {quote_literal(device)}'
        where += f" AND time >= {_ns(start)} AND time < {_ns(end)}"
        if sensor:
            where += f' AND "sensor" = {quote_literal(sensor)}'
        source = f"{quote_ident(self._db(org))}..{quote_ident(quantity) if quantity else '/.*/'}"
        # LIMIT is per series: the first `limit` overall are among the first `limit` of each.
        statement = f'SELECT "value" FROM {source} WHERE {where} GROUP BY "sensor" LIMIT {int(limit)}'
        out = [
            Record(org, device, tags["sensor"], name, float(row[1]), row[0] / 1e9)
            for name, tags, rows in self._rows(self._query([statement]))
            for row in rows
        ]
        out.sort(key=lambda r: (r.time, r.sensor, r.quantity))
        return out[:limit]

    def latest(
        self, devices: Collection[DeviceKey] | None = None, *, since: float | None = None
    ) -> list[Record]:
        """Return the newest reading of each (device, sensor, quantity) of ``devices`` (None: all),
        leaving out series whose newest reading is older than ``since``.

        One request: one statement per org (and per 500 devices of an org). With ``since`` influxd
        reads only the shards and points from then on (no upper bound: a reading stamped ahead of
        the server's clock is still the newest, as on SQLite).
        """
        statements: list[str] = []
        orgs: list[str] = []
        bound = f"time >= {_ns(since)}" if since is not None else ""
        template = 'SELECT last("value") FROM {db}../.*/{where} GROUP BY "org", "device", "sensor"'
        if devices is None:
            where = f" WHERE {bound}" if bound else ""
            for db, org in sorted(self._org_databases().items()):
                statements.append(template.format(db=quote_ident(db), where=where))
                orgs.append(org)
        else:
            by_org: dict[str, set[str]] = {}
            for org, device in check_keys(devices):
                by_org.setdefault(org, set()).add(device)
            for org, names in sorted(by_org.items()):
                ordered = sorted(names)
                for i in range(0, len(ordered), _KEYS_PER_STATEMENT):
                    regex = _regex_any(ordered[i : i + _KEYS_PER_STATEMENT])
                    where = f' WHERE "org" = {quote_literal(org)} AND "device" =~ {regex}'
                    where += f" AND {bound}" if bound else ""
                    statements.append(template.format(db=quote_ident(self._db(org)), where=where))
                    orgs.append(org)
        if not statements:
            return []
        out: list[Record] = []
        for org, series_list in zip(orgs, self._query(statements), strict=True):
            for s in series_list:
                tags, row = s.get("tags", {}), s["values"][0]
                out.append(
                    # The org tag, not the database's name, where a slug's '-' is '_'.
                    Record(
                        tags.get("org", org),
                        tags["device"],
                        tags["sensor"],
                        s["name"],
                        float(row[1]),
                        row[0] / 1e9,
                    )
                )
        out.sort(key=lambda r: (r.device, r.sensor, r.quantity))
        return out

    def devices(
        self, org: str | None = None, *, keys: Collection[DeviceKey] | None = None
    ) -> list[DeviceSeen]:
        """Return every device with readings (of ``org``, or of all; only ``keys`` if given),
        ordered by org and device.

        Read from the ``devices_seen`` points the sink keeps (one point per device and gateway),
        never from the readings themselves; ``keys`` reads only theirs. Without ``keys`` the
        answer is kept and brought up to date from the sink's log of changes
        (``gateway/store/influxdb1_seen.py``): every device's point is read again every few
        minutes, in between only those of devices that changed.
        """
        if keys is None:
            return self.seen.devices(org)
        base = (
            'SELECT "first", "last", "readings", "org", "device" '
            f'FROM {quote_ident(self.meta)}.."devices_seen"'
        )
        by_org: dict[str, set[str]] = {}
        for key_org, device in check_keys(keys):
            if org is None or key_org == org:
                by_org.setdefault(key_org, set()).add(device)
        statements: list[str] = []
        for key_org, names in sorted(by_org.items()):
            ordered = sorted(names)
            for i in range(0, len(ordered), _KEYS_PER_STATEMENT):
                regex = _regex_any(ordered[i : i + _KEYS_PER_STATEMENT])
                statements.append(f'{base} WHERE "org" = {quote_literal(key_org)} AND "device" =~ {regex}')
        if not statements:
            return []
        merged: dict[tuple[str, str], tuple[float, float, int]] = {}
        for _, _, rows in self._rows(self._query(statements)):
            for _, first, last, count, row_org, device in rows:
                known = merged.get((row_org, device))
                merged[row_org, device] = (
                    (float(first), float(last), int(count))
                    if known is None
                    else (min(known[0], float(first)), max(known[1], float(last)), known[2] + int(count))
                )
        return [DeviceSeen(o, d, f, la, n) for (o, d), (f, la, n) in sorted(merged.items())]

    def windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
    ) -> list[Window]:
        """Return :meth:`series_windows`' windows one by one, ordered by start, sensor and quantity."""
        return windows_of(
            self.series_windows(org, device, start, end, every, sensor=sensor, quantity=quantity)
        )

    def series_windows(
        self,
        org: str,
        device: str,
        start: float,
        end: float,
        every: float,
        *,
        sensor: str | None = None,
        quantity: str | None = None,
        means_only: bool = False,
    ) -> list[SeriesWindows]:
        """Return (``org``, ``device``)'s readings as epoch-aligned windows of ``every`` seconds,
        as columns per series in (sensor, quantity) order (``means_only``: influxd computes counts
        and sums only; mins and maxes are empty).

        Where the org's database has rollups (``suitcase gateway retention apply``) and a tier's
        width divides ``every``, the windows that tier has completed are read from it
        (``gateway.store.influxdb1_rollups.plan_windows``): a chart whose window is a tier's width
        reads one point per window, and stays drawn after the raw readings expire. A window that
        comes in parts from two statements (the edges of the tiers read) is added up.
        """
        check_window_width(every)
        db = self._db(org)
        conditions = f'"org" = {quote_literal(org)} AND "device" = {quote_literal(device)}'
        if sensor:
            conditions += f' AND "sensor" = {quote_literal(sensor)}'
        measurement = quote_ident(quantity) if quantity else "/.*/"
        statements = plan_windows(
            db,
            measurement,
            conditions,
            start,
            end,
            every,
            now=self.clock(),
            tiers=self._tiers(db),
            means_only=means_only,
        )
        if not statements:
            return []
        # Windows of whole seconds start on whole seconds: their times in seconds are exact, and
        # 10 digits instead of 19 per row (a chart's answer ~25 % shorter, to parse and to make).
        whole = float(every).is_integer()
        step = int(every) if whole else _ns(every)

        def as_part(rows: list[list[Any]]) -> _Part:
            # Each series' rows made its columns (rollup points read as they are, a few per window,
            # added up) as soon as it arrived, while influxd still answers the next series.
            try:
                return _part_of(rows, step, whole)
            except (TypeError, ValueError, IndexError) as exc:
                raise self._not_windows(exc) from exc

        answers = self._query(statements, epoch="s" if whole else "ns", each_series_rows=as_part)
        try:
            return _series_windows(org, device, answers)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise self._not_windows(exc) from exc

    def _not_windows(self, exc: Exception) -> StoreError:
        return StoreError(
            f"InfluxDB at {self.http.base} answered rows that are no (time, count, sum) windows "
            f"({exc!r}): is the store URL an InfluxDB written by the suitcase sinks?"
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters, newest first."""
        statement = (
            f'SELECT "topic", "payload", "reason", "code" FROM {quote_ident(self.meta)}.."dead_letters" '
            f"ORDER BY time DESC LIMIT {int(limit)}"
        )
        out = []
        for _, _, rows in self._rows(self._query([statement])):
            for t, topic, payload, reason, code in rows:
                # The nanoseconds hold a checksum (gateway/influx/lines.py): received_at is to the us.
                received_at = (t // 1000) / 1e6
                out.append(DeadLetter(received_at, topic, base64.b64decode(payload or ""), code, reason))
        return out

    def count_dead_letters(self) -> int:
        """Return how many dead letters the store holds."""
        statement = f'SELECT count("reason") FROM {quote_ident(self.meta)}.."dead_letters"'
        return sum(int(rows[0][1]) for _, _, rows in self._rows(self._query([statement])))

    def health(self) -> None:
        """Check that InfluxDB answers, takes the credentials and holds the meta database.

        One ``SHOW DATABASES``: cheap whatever the number of readings.
        """
        names = {row[0] for s in self._query(["SHOW DATABASES"])[0] for row in s.get("values", [])}
        if self.meta not in names:
            raise StoreError(
                f"InfluxDB at {self.http.base} has no database {self.meta!r} (the store's meta= setting): "
                "start a gateway writing to it (its sink creates it), or run "
                f'CREATE DATABASE "{self.meta}" there, or fix meta= in the store URL'
            )

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"InfluxQLReader({self.http.base!r}, database={self.database!r}, meta={self.meta!r})"


class _Part(NamedTuple):
    """One series' windows from one statement as columns, oldest first, none without readings
    (``lows`` and ``highs`` empty when read ``means_only``)."""

    times: list[float]
    counts: list[int]
    sums: list[float]
    lows: list[float]
    highs: list[float]


def _part_of(rows: list[list[Any]], step: int, whole: bool) -> _Part:
    """A series' rows (time, count, sum[, min, max]) of one statement as one window per row of
    ``step`` (:func:`_in_windows`), in columns made by map over the transposed rows: no Python
    per window. Times in s (``whole``) or ns."""
    rows = _in_windows(rows, step)
    if not rows:
        return _Part([], [], [], [], [])
    times, counts, sums, *bounds = zip(*rows, strict=True)
    # influxd answers oldest first and leaves out empty windows (fill(none)); do not rely on it:
    # a window without readings (count 0) is left out, the rows sorted by time.
    if not all(counts) or list(times) != sorted(times):
        rows = sorted((row for row in rows if row[1]), key=_TIME)
        if not rows:
            return _Part([], [], [], [], [])
        times, counts, sums, *bounds = zip(*rows, strict=True)
    lows, highs = bounds or ((), ())
    return _Part(
        list(map(float, times)) if whole else list(map(truediv, times, repeat(1e9))),
        list(counts) if set(map(type, counts)) == _INT else list(map(int, counts)),
        list(sums),
        list(map(float, lows)),  # a whole number comes back as an int
        list(map(float, highs)),
    )


def _series_windows(org: str, device: str, answers: list[list[dict[str, Any]]]) -> list[SeriesWindows]:
    """Each series' windows, in (sensor, quantity) order, from its parts (:class:`_Part`) in the
    statements' answers: the tiers read meet at a window that may come in parts from two."""
    parts: dict[tuple[str, str], list[_Part]] = {}
    for answer in answers:
        for s in answer:
            part: _Part = s["values"]
            if part.times:
                parts.setdefault((s.get("tags", {})["sensor"], s["name"]), []).append(part)
    out: list[SeriesWindows] = []
    for (sensor, name), these in sorted(parts.items()):
        part = these[0] if len(these) == 1 else _joined(these)
        means = list(map(truediv, part.sums, part.counts))
        out.append(
            SeriesWindows(org, device, sensor, name, part.times, part.counts, means, part.lows, part.highs)
        )
    return out


def _joined(parts: list[_Part]) -> _Part:
    """One series' windows from its parts in several statements, a window in two parts added up
    (counts and sums add up, the min of mins, the max of maxes)."""
    parts = sorted(parts, key=lambda p: p.times[0])
    if all(a.times[-1] <= b.times[0] for a, b in pairwise(parts)):
        # Tiers read one after another (influxd's answers): one window at most where two meet.
        out = _Part._make(list(column) for column in parts[0])
        for part in parts[1:]:
            shared = 1 if out.times[-1] == part.times[0] else 0  # the window where they meet
            if shared:
                out.counts[-1] += part.counts[0]
                out.sums[-1] += part.sums[0]
                if out.lows:
                    out.lows[-1] = min(out.lows[-1], part.lows[0])
                    out.highs[-1] = max(out.highs[-1], part.highs[0])
            out.times.extend(part.times[shared:])
            out.counts.extend(part.counts[shared:])
            out.sums.extend(part.sums[shared:])
            out.lows.extend(part.lows[shared:])
            out.highs.extend(part.highs[shared:])
        return out
    width = 5 if parts[0].lows else 3  # parts that interleave: added up window by window
    added = _added(row for p in parts for row in zip(*p[:width], strict=True))
    columns = [list(column) for column in zip(*added, strict=True)]
    return _Part._make(columns if width == 5 else [*columns, [], []])


def from_url(url: str) -> InfluxQLReader:
    """Open the reader of an ``influxdb1://`` URL (the sink's URL; write-only options are ignored).

    Raises:
        ConfigError: an option is misspelt or malformed.
    """
    u = ServiceUrl(url, what="store")
    http = HttpClient(
        u.host,
        u.port or 8086,
        tls=u.take_bool("tls", False),
        timeout=u.take_float("timeout", 30.0),
        username=u.take("username", ""),
        password=u.take("password", ""),
        token=u.take("token", ""),
        what="InfluxDB",
        error=StoreError,
    )
    reader = InfluxQLReader(http, u.take("database", DEFAULT_DATABASE), u.take("meta", DEFAULT_META_DATABASE))
    for write_only in ("required", "create_databases", "precision"):
        u.take(write_only, "")
    u.done()
    return reader


def from_v2_url(url: str) -> InfluxQLReader:
    """Open the InfluxQL reader of the 2.x sink's ``influxdb://`` URL (``token``, ``bucket``).

    InfluxDB 2.x answers InfluxQL on ``/query`` for buckets that have a database/retention-policy
    mapping (``influx v1 dbrp create --db suitcase_aarhus --rp autogen --bucket-id ...``, one per
    bucket, and one for the ``meta`` bucket); InfluxDB 3 maps databases itself. The token is sent
    as ``Authorization: Token``; the sink's ``org`` and ``precision`` are write-only.
    """
    u = ServiceUrl(url, what="store")
    http = HttpClient(
        u.host,
        u.port or 8086,
        tls=u.take_bool("tls", False),
        timeout=u.take_float("timeout", 30.0),
        token=u.take("token", ""),
        what="InfluxDB",
        error=StoreError,
    )
    reader = InfluxQLReader(http, u.take("bucket", DEFAULT_DATABASE), u.take("meta", DEFAULT_META_DATABASE))
    for write_only in ("org", "required", "precision"):
        u.take(write_only, "")
    u.done()
    return reader
