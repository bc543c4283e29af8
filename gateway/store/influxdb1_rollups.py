"""Retention and downsampling on InfluxDB 1.x: retention policies and continuous queries.

Per org database (``suitcase_{org}``) the tool makes:

- the database's default retention policy (``autogen``, where the gateway writes the raw
  readings) keep ``raw_days``;
- one rollup policy per tier of :data:`TIERS`, the widths the embedded store keeps and the charts
  draw (``gateway.store.ROLLUP_WIDTHS``): ``rollup_1m``, ``rollup_5m`` and ``rollup_15m`` keep
  ``minute_days``, ``rollup_1h``, ``rollup_3h``, ``rollup_12h`` and ``rollup_1d`` keep
  ``hour_days``. Each holds per series and window the fields ``sum``, ``count``, ``min``, ``max``
  (the mean is ``sum / count``, so wider windows combine exactly), with the readings' tags;
- one continuous query per tier (``suitcase_rollup_1m`` ...). The minute tier is computed from the
  raw readings (``RESAMPLE EVERY 1m FOR 10m``); every other tier from the tier below it (sum of
  counts and sums, min of mins, max of maxes), which is what makes the coarse tiers cheap: a run
  of the day query reads 4 half-day points per series, where computing it from raw readings at
  1 Hz would read 172,800 (and the hour query 8 quarter-hour points instead of 7,200 readings).
  A tier's windows are complete :func:`settle_s` seconds after they end (its source's delay plus
  its own ``EVERY``); each query's ``FOR`` covers its width and that delay, so it recomputes a
  window until its source is complete.

Late readings. A continuous query only recomputes the windows of its ``FOR`` span; a reading
that arrives later (an outbox draining hours of backlog) would never reach the rollups. So the
``influxdb1`` sink folds late readings in itself: after writing a batch, for each device with
readings older than :data:`LATE_AFTER_S` it recomputes that device's windows of every tier they
fall in, finest first (:func:`fold_statements`: the continuous queries' ``SELECT ... INTO``
restricted to the device and the range), before the batch is acknowledged. A recomputed window
overwrites its point (same measurement, tags and time), so folding twice never counts twice.
``apply --backfill-days N`` recomputes every tier over the last N days (after creating rollups on
a database that already holds data).

Older databases. Databases set up before the tiers were added hold only ``rollup_1m`` and
``rollup_1h``. They still count as having rollups (:func:`has_rollups`); the reader and the fold
use the tiers that exist (:func:`tiers_of`: an hour window is then computed from the minute
ones). ``apply`` upgrades them: it creates the missing policies, computes each new tier's history
from the tier below (5 and 15 min from the minute windows, 3 h, 12 h and 1 d from the hour ones,
as far back as those are kept), then replaces or creates the continuous queries.

Reads. :func:`plan_windows` reads windows of ``every`` seconds from the coarsest tier whose width
divides ``every`` (a chart's 15-minute or 12-hour windows are that tier's points, read as they are,
with no ``GROUP BY time()``: influxd spends far more per grouped window than per point; so are
windows of up to :data:`POINTS_ADDED_BY_READER` points, which the reader adds up), for the
part of the range that tier has completed; the newer part from the minute tier, and the last
:data:`FRESH_S` from the raw readings. So a chart of a year reads one point per window and stays
drawn after the raw readings expire.
"""

from __future__ import annotations

import base64
import json
import math
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.influx.influxql import quote_ident, quote_literal
from gateway.store.base import ROLLUP_WIDTHS, StoreError
from gateway.store.retention import Applied, Retention, RetentionSettings

__all__ = [
    "BASE_TIERS",
    "CQ_NAMES",
    "FRESH_S",
    "LATE_AFTER_S",
    "POINTS_ADDED_BY_READER",
    "ROLLUP_POLICIES",
    "TIERS",
    "InfluxDB1Rollups",
    "Tier",
    "aggregate_select",
    "fold_statements",
    "from_url",
    "has_rollups",
    "plan_windows",
    "policies_from",
    "settle_s",
    "show_policies",
    "tiers_of",
    "window_statement",
]

DEFAULT_DATABASE = "suitcase_{org}"

_DAY = 86_400


@dataclass(frozen=True, slots=True)
class Tier:
    """One rollup tier: windows of ``width`` s, computed from the tier of width ``source`` (None:
    the raw readings) by a continuous query run every ``every`` s over the last ``span`` s."""

    width: int
    source: int | None
    every: int
    span: int

    @property
    def hours(self) -> bool:
        """Whether ``hour_days`` keeps it (else ``minute_days``), as on the embedded store."""
        return self.width >= 3600


# Finest first: a fold or backfill computes them in this order, each from the one before.
TIERS: tuple[Tier, ...] = (
    Tier(60, None, 60, 600),
    Tier(300, 60, 300, 1800),
    Tier(900, 300, 300, 3600),
    Tier(3600, 900, 900, 7200),
    Tier(10800, 3600, 3600, 21600),
    Tier(43200, 10800, 3600, 64800),
    Tier(86400, 43200, 3600, 172800),
)
assert tuple(t.width for t in TIERS) == ROLLUP_WIDTHS
_TIER = {t.width: t for t in TIERS}

# The tiers of databases made before the others existed: with these, a database has rollups.
BASE_TIERS = (60, 3600)


def _duration_text(seconds: int) -> str:
    """An InfluxQL duration literal: 86400 -> 1d, 10800 -> 3h, 300 -> 5m."""
    for unit, size in (("d", _DAY), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# Window width (s) -> its retention policy and continuous query.
ROLLUP_POLICIES: dict[int, str] = {t.width: f"rollup_{_duration_text(t.width)}" for t in TIERS}
CQ_NAMES: dict[int, str] = {t.width: f"suitcase_rollup_{_duration_text(t.width)}" for t in TIERS}

# A reading older than this when written is folded into the rollups by the sink: the minute
# query's FOR span (10 min) less its EVERY (1 min) and a margin for clock skew between hosts.
LATE_AFTER_S = 300.0

# Windows ending within this of now are not read from the minute tier but from the raw readings:
# its continuous query may not have run for them yet (a reading may arrive LATE_AFTER_S late,
# the query runs every minute, and a margin).
FRESH_S = 900.0

# Windows of up to this many rollup points are read as the points, which the reader adds up
# (window_statement); wider ones are grouped by influxd.
POINTS_ADDED_BY_READER = 4


def settle_s(width: int) -> float:
    """Seconds after a window of tier ``width`` ends until the tier holds it complete.

    The minute tier's is :data:`FRESH_S`; each coarser tier adds its query's ``EVERY`` to its
    source's (the query that runs first after the source is complete computes it).
    """
    tier = _TIER[width]
    return FRESH_S if tier.source is None else settle_s(tier.source) + tier.every


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1000


def database_name(template: str, org: str) -> str:
    """Return the database of ``org``: ``template`` with ``{org}`` = the slug, '-' -> '_'."""
    return template.replace("{org}", org.replace("-", "_"))


def _source_of(width: int, tiers: Collection[int]) -> int | None:
    """The tier ``width`` is computed from among ``tiers``: its designed source if present, else
    the coarsest present tier below it that divides it, else None (the raw readings)."""
    wanted = _TIER[width].source
    if wanted is None or wanted in tiers:
        return wanted
    below = [t for t in tiers if t < width and width % t == 0]
    return max(below) if below else None


def aggregate_select(db: str, raw_policy: str, width: int, where: str = "", source: int | None = None) -> str:
    """The ``SELECT ... INTO`` that computes the ``width`` tier of ``db`` from its raw readings
    (``source`` None) or from the ``source`` tier's windows."""
    if source is None:
        fields = (
            'sum("value") AS "sum", count("value") AS "count", min("value") AS "min", max("value") AS "max"'
        )
        origin = f"{quote_ident(db)}.{quote_ident(raw_policy)}./.*/"
    else:
        fields = 'sum("sum") AS "sum", sum("count") AS "count", min("min") AS "min", max("max") AS "max"'
        origin = f"{quote_ident(db)}.{quote_ident(ROLLUP_POLICIES[source])}./.*/"
    return (
        f"SELECT {fields} INTO {quote_ident(db)}.{quote_ident(ROLLUP_POLICIES[width])}.:MEASUREMENT "
        f"FROM {origin}{where} GROUP BY time({_duration_text(width)}), *"
    )


def cq_statement(db: str, raw_policy: str, width: int) -> str:
    """The ``CREATE CONTINUOUS QUERY`` of the ``width`` tier of ``db``."""
    tier = _TIER[width]
    resample = f"RESAMPLE EVERY {_duration_text(tier.every)} FOR {_duration_text(tier.span)}"
    return (
        f"CREATE CONTINUOUS QUERY {quote_ident(CQ_NAMES[width])} ON {quote_ident(db)} {resample} "
        f"BEGIN {aggregate_select(db, raw_policy, width, source=tier.source)} END"
    )


def recompute_statements(
    db: str, raw_policy: str, tiers: Collection[int], start: float, end: float, condition: str = ""
) -> list[str]:
    """Recompute the windows of ``tiers`` (finest first) that hold ``start`` .. ``end``.

    Each tier is computed from the one below among ``tiers`` (:func:`_source_of`), over its whole
    windows, after that one: a window is never written from a part of its source.
    """
    out = []
    for width in sorted(tiers):
        lo = math.floor(start / width) * width
        hi = math.floor(end / width) * width + width
        where = f" WHERE {condition}{' AND ' if condition else ''}time >= {_ns(lo)} AND time < {_ns(hi)}"
        out.append(aggregate_select(db, raw_policy, width, where, _source_of(width, tiers)))
    return out


def fold_statements(
    db: str,
    raw_policy: str,
    device: str,
    first: float,
    last: float,
    tiers: Collection[int] = ROLLUP_WIDTHS,
) -> list[str]:
    """Recompute ``device``'s windows of every tier in ``tiers`` holding ``first`` .. ``last``
    (late readings), finest first."""
    return recompute_statements(db, raw_policy, tiers, first, last, f'"device" = {quote_literal(device)}')


def window_statement(
    source: str,
    width: int | None,
    every: float,
    where: str,
    group_by: str = '"sensor"',
    *,
    means_only: bool = False,
) -> str:
    """The statement reading windows of ``every`` s from ``source`` (a raw or rollup measurement).

    Columns: time, count, sum, min, max (the mean is sum / count, divided by the reader); time,
    count, sum with ``means_only`` (influxd then computes half the aggregates: a short chart's
    grouping of raw readings costs about half). ``width`` None reads raw readings, else a rollup.
    """
    # The sum, not the mean: a plain read of rollup points (below) has no mean to answer.
    if width is None:
        fields = 'count("value"), sum("value")' + ("" if means_only else ', min("value"), max("value")')
    elif every <= width * POINTS_ADDED_BY_READER:
        # A few rollup points per window and series: read the points as they are (the reader adds
        # up those of one window). influxd 1.x spends far more per window of a GROUP BY time()
        # than per point (measured: 730 windows x 10 series cost ~10x a plain SELECT of the same
        # points; a day's 1,440 minute points x 10 as 720 windows ~2x reading them).
        fields = '"count", "sum"' + ("" if means_only else ', "min", "max"')
        return f"SELECT {fields} FROM {source}{where} GROUP BY {group_by}"
    else:
        fields = 'sum("count"), sum("sum")' + ("" if means_only else ', min("min"), max("max")')
    return (
        f"SELECT {fields} FROM {source}{where} GROUP BY time({round(every * 1000)}ms), {group_by} fill(none)"
    )


def plan_windows(
    db: str,
    measurement: str,
    conditions: str,
    start: float,
    end: float,
    every: float,
    *,
    now: float,
    tiers: Collection[int] = (),
    group_by: str = '"sensor"',
    means_only: bool = False,
) -> list[str]:
    """The statements reading windows of ``every`` s of ``db`` in ``[start, end)``.

    ``measurement`` is an InfluxQL source (``"temperature"`` or ``/.*/``), ``conditions`` the
    tag conditions (no time), ``tiers`` the rollup widths ``db`` holds. Each statement answers
    time, count, sum, min, max (time, count, sum: ``means_only``); a window may come in parts
    from two statements (the reader adds them up). As on the embedded store (``SqliteStore.windows``):

    - windows of whole hours (else whole minutes) widen to the whole hour (minute) ``start`` and
      ``end`` fall in, and are read from the hour (minute) tier up to the first boundary of the
      coarsest tier whose width divides ``every``, from that tier up to its last boundary, and
      from the hour (minute) tier again for the rest;
    - a tier is read only for windows it has completed (:func:`settle_s`): the newer part comes
      from the minute tier, and the last :data:`FRESH_S` from the raw readings;
    - ``every`` that no tier divides is read from the raw readings.
    """
    statements: list[str] = []
    if end <= start:
        return statements
    usable = sorted(w for w in tiers if w in _TIER and every % w == 0)

    def read(width: int | None, lo: float, hi: float) -> None:
        where = f" WHERE {conditions} AND time >= {_ns(lo)} AND time < {_ns(hi)}"
        source = f"{quote_ident(db)}.{quote_ident(ROLLUP_POLICIES[width]) if width else ''}.{measurement}"
        statements.append(window_statement(source, width, every, where, group_by, means_only=means_only))

    cursor = start
    if usable:
        fine, coarse = usable[0], usable[-1]
        edge = 3600 if 3600 in usable else fine
        lo, hi = math.floor(start / edge) * edge, math.ceil(end / edge) * edge
        a = min(math.ceil(lo / coarse) * coarse, hi)
        b = max(a, math.floor(hi / coarse) * coarse)
        cursor = lo
        for width, until in ((edge, a), (coarse, b), (edge, hi)):
            ready = math.floor((now - settle_s(width)) / width) * width
            stop = min(until, ready)
            if stop > cursor:
                read(width, cursor, stop)
                cursor = stop
            if cursor < until:  # not complete in that tier yet: the rest from finer data
                ready = math.floor((now - settle_s(fine)) / fine) * fine
                if fine != width and min(end, ready) > cursor:
                    read(fine, cursor, min(end, ready))
                    cursor = min(end, ready)
                break
    if cursor < end:
        read(None, cursor, end)
    return statements


def tiers_of(durations: dict[str, int | None]) -> tuple[int, ...]:
    """The rollup widths a database holds, of its policies' names (:func:`policies_from`)."""
    return tuple(w for w, policy in ROLLUP_POLICIES.items() if policy in durations)


def _hours(days: float | None) -> int | None:
    return None if days is None else max(1, round(days * 24))


def _duration(hours: int | None) -> str:
    return "INF" if hours is None else f"{hours}h"


def _shard(hours: int | None) -> str:
    """InfluxDB's own default shard group duration for a policy of ``hours`` (1h, 1d or 7d).

    Given explicitly because ALTER keeps the old shard duration, and a policy may not be
    shorter than its shards.
    """
    if hours is not None and hours < 48:
        return "1h"
    if hours is not None and hours <= 24 * 183:
        return "1d"
    return "7d"


def _parse_duration(text: str) -> int | None:
    """Hours of an InfluxDB duration as SHOW RETENTION POLICIES prints it (``0s``: infinite)."""
    match = _DURATION.match(text)
    if not match or text in ("0s", "0"):
        return None
    h, m, s = (int(g or 0) for g in match.groups())
    return h + (m * 60 + s) // 3600


def _parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time as SHOW SHARDS prints it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _day_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def show_policies(db: str) -> str:
    """The statement listing ``db``'s retention policies (read by :func:`policies_from`)."""
    return f"SHOW RETENTION POLICIES ON {quote_ident(db)}"


def policies_from(series: list[dict[str, Any]]) -> tuple[str, dict[str, int | None]]:
    """Return the default policy and every policy's hours (None: forever) of a SHOW answer."""
    default = "autogen"
    durations: dict[str, int | None] = {}
    for s in series:
        columns = s["columns"]
        for row in s.get("values", []):
            item = dict(zip(columns, row, strict=True))
            durations[item["name"]] = _parse_duration(item["duration"])
            if item.get("default"):
                default = item["name"]
    return default, durations


def has_rollups(durations: dict[str, int | None]) -> bool:
    """Whether a database holds rollups: the minute and hour policies (the tool has been applied
    to it, by this version or by one that made only those two)."""
    return all(ROLLUP_POLICIES[w] in durations for w in BASE_TIERS)


class InfluxDB1Rollups:
    """Applies retention settings to an InfluxDB 1.x server, per org database.

    Args:
        url: the server's base URL (``http://host:8086``).
        database: the database template of the sink (``{org}`` = org slug, '-' -> '_').
        username: a user with admin rights (retention policies and continuous queries need them).
        password: its password.
        timeout: seconds to wait for an answer.
        meta: the store's database of dead letters and devices seen, which gets no retention.
    """

    def __init__(
        self,
        url: str,
        database: str = DEFAULT_DATABASE,
        *,
        username: str = "",
        password: str = "",
        timeout: float = 60.0,
        meta: str = "suitcase",
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.meta = meta
        self.timeout = timeout
        self._headers: dict[str, str] = {}
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._prefix, _, self._suffix = database.partition("{org}")

    # ------------------------------------------------------------------ HTTP

    def query(self, statements: list[str]) -> list[list[dict[str, Any]]]:
        """Run InfluxQL ``statements`` in one request; return each one's series.

        Raises:
            StoreError: InfluxDB is unreachable, refuses the credentials or a statement failed.
        """
        data = urllib.parse.urlencode({"q": ";".join(statements), "epoch": "ns"}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=data, headers=self._headers)
        context = ssl.create_default_context() if self.url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            hint = ": check the username and password (an admin user)" if exc.code in (401, 403) else ""
            raise StoreError(f"InfluxDB 1.x at {self.url} answered HTTP {exc.code}: {detail}{hint}") from exc
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"InfluxDB 1.x at {self.url} cannot be reached ({exc}): check the host and port"
            ) from exc
        out: list[list[dict[str, Any]]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise StoreError(f"InfluxDB 1.x at {self.url}: {result['error']}")
            out.append(result.get("series", []))
        return out

    # ------------------------------------------------------------------ what is there

    def databases(self) -> list[str]:
        """The org databases on the server (those matching the template)."""
        names = [row[0] for s in self.query(["SHOW DATABASES"])[0] for row in s.get("values", [])]
        return sorted(
            n
            for n in names
            if n.startswith(self._prefix)
            and n.endswith(self._suffix)
            and len(n) > len(self._prefix + self._suffix)
            and n != self.meta  # dead letters and devices seen: never shortened by a reading retention
            and not n.startswith("_")  # _internal
        )

    def policies(self, db: str) -> tuple[str, dict[str, int | None]]:
        """Return ``db``'s default retention policy and every policy's duration in hours."""
        return policies_from(self.query([show_policies(db)])[0])

    def continuous_queries(self, db: str) -> dict[str, str]:
        """Return ``db``'s continuous queries, name -> statement."""
        out: dict[str, str] = {}
        for s in self.query(["SHOW CONTINUOUS QUERIES"])[0]:
            if s.get("name") == db:
                out.update({name: text for name, text in s.get("values", [])})
        return out

    def _org_of(self, db: str, settings: RetentionSettings) -> str:
        for org in settings.orgs:
            if database_name(self.database, org) == db:
                return org
        return db[len(self._prefix) : len(db) - len(self._suffix)]

    # ------------------------------------------------------------------ the tool

    def apply(self, settings: RetentionSettings, now: float, *, backfill_days: float = 0.0) -> Applied:
        """Create or alter each org database's retention policies and continuous queries.

        Databases of orgs the settings name are created if missing (``CREATE DATABASE`` leaves an
        existing one's policies alone). Idempotent: what already matches is not touched.
        """
        actions: list[str] = []
        existing = set(self.databases())
        wanted = {database_name(self.database, org) for org in settings.orgs}
        for db in sorted(wanted - existing):
            self.query([f"CREATE DATABASE {quote_ident(db)}"])
            actions.append(f"{db}: created")
        orgs: dict[str, Retention] = {}
        for db in sorted(existing | wanted):
            org = self._org_of(db, settings)
            retention = settings.for_org(org)
            orgs[org] = retention
            actions.extend(f"{db}: {a}" for a in self._apply_db(db, retention))
            if backfill_days > 0:
                self.backfill(db, now - backfill_days * 86_400, now)
                actions.append(f"{db}: rollups recomputed for the last {backfill_days:g} days")
        return Applied(self.url, orgs, tuple(actions))

    def _apply_db(self, db: str, retention: Retention) -> list[str]:
        actions: list[str] = []
        raw, durations = self.policies(db)
        statements: list[str] = []
        want = {raw: _hours(retention.raw_days)}
        for tier in TIERS:
            want[ROLLUP_POLICIES[tier.width]] = _hours(
                retention.hour_days if tier.hours else retention.minute_days
            )
        for policy, hours in want.items():
            if policy not in durations:
                statements.append(
                    f"CREATE RETENTION POLICY {quote_ident(policy)} ON {quote_ident(db)} "
                    f"DURATION {_duration(hours)} REPLICATION 1 SHARD DURATION {_shard(hours)}"
                )
                actions.append(f"retention policy {policy} created, keeps {_duration(hours)}")
            elif durations[policy] != hours:
                statements.append(
                    f"ALTER RETENTION POLICY {quote_ident(policy)} ON {quote_ident(db)} "
                    f"DURATION {_duration(hours)} SHARD DURATION {_shard(hours)}"
                )
                actions.append(f"retention policy {policy} now keeps {_duration(hours)}")
        if statements:
            self.query(statements)
        actions.extend(self._upgrade(db, raw, tiers_of(durations)))
        queries = self.continuous_queries(db)
        for width, name in CQ_NAMES.items():  # finest first: in a run, influxd runs them in this order
            text = cq_statement(db, raw, width)
            if queries.get(name, "").replace('"', "") == text.replace('"', ""):  # influxd drops quotes
                continue
            change = []
            if name in queries:
                change.append(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(db)}")
            self.query([*change, text])
            actions.append(f"continuous query {name} {'replaced' if change else 'created'}")
        return actions

    def _upgrade(self, db: str, raw: str, had: tuple[int, ...]) -> list[str]:
        """Compute the history of the tiers ``db`` lacked (it had only ``had``) from those it had.

        A database made by an older version holds minute and hour windows only: its new tiers
        are computed from them (5, 15 min from the minutes, 3 h, 12 h, 1 d from the hours) over
        the time the older tier's shards span, a week at a time, finest first.
        """
        if not had or len(had) == len(TIERS):
            # A new database: nothing to compute from (--backfill-days reads raw readings); or
            # an up-to-date one: nothing to compute.
            return []
        shards = self._shard_spans(db)
        # Per tier, the time its history spans: a new tier's is that of the tier it is computed from.
        spans = {w: shards.get(ROLLUP_POLICIES[w]) for w in had}
        actions = []
        have = list(had)
        for tier in TIERS:
            if tier.width in had:
                continue
            have.append(tier.width)
            source = _source_of(tier.width, have)
            span = spans[tier.width] = None if source is None else spans[source]
            if span is None:
                continue
            lo = math.floor(span[0] / _DAY) * _DAY
            while lo < span[1]:
                hi = min(lo + 7 * _DAY, math.ceil(span[1] / _DAY) * _DAY)
                where = f" WHERE time >= {_ns(lo)} AND time < {_ns(hi)}"
                self.query([aggregate_select(db, raw, tier.width, where, source)])
                lo = hi
            assert source is not None
            actions.append(
                f"{ROLLUP_POLICIES[tier.width]} computed from {ROLLUP_POLICIES[source]} "
                f"({_day_text(span[0])} to {_day_text(span[1])})"
            )
        return actions

    def _shard_spans(self, db: str) -> dict[str, tuple[float, float]]:
        """Per retention policy of ``db``, the start of its oldest shard and end of its newest."""
        out: dict[str, tuple[float, float]] = {}
        for s in self.query(["SHOW SHARDS"])[0]:
            if s.get("name") != db:
                continue
            columns = s["columns"]
            for row in s.get("values", []):
                item = dict(zip(columns, row, strict=True))
                start = _parse_time(item["start_time"])
                end = _parse_time(item["end_time"])
                known = out.get(item["retention_policy"])
                out[item["retention_policy"]] = (
                    (start, end) if known is None else (min(known[0], start), max(known[1], end))
                )
        return out

    def backfill(self, db: str, start: float, end: float) -> None:
        """Recompute every tier of ``db`` between ``start`` and ``end`` from its raw readings.

        A day at a time (day-aligned: every tier's windows are whole in a day), each tier from the
        one below, finest first.
        """
        raw, durations = self.policies(db)
        tiers = tiers_of(durations)
        lo = math.floor(start / _DAY) * _DAY
        while lo < end:
            hi = lo + _DAY
            self.query(recompute_statements(db, raw, tiers, lo, hi - 1e-3))
            lo = hi

    def show(self) -> dict[str, Retention]:
        """Return per org database the retention its policies have now (rollups: none if missing).

        The minute (hour) days are those of ``rollup_1m`` (``rollup_1h``); ``apply`` keeps the
        other minute (hour) tiers as long.
        """
        out: dict[str, Retention] = {}
        for db in self.databases():
            raw, durations = self.policies(db)
            org = db[len(self._prefix) : len(db) - len(self._suffix)]
            days = {p: None if h is None else h / 24 for p, h in durations.items()}
            out[org] = Retention(
                raw_days=days.get(raw),
                minute_days=days.get(ROLLUP_POLICIES[60]),
                hour_days=days.get(ROLLUP_POLICIES[3600]),
            )
        return out

    def without_rollups(self) -> list[str]:
        """The org databases that hold no rollup policies yet (``apply`` has not run on them)."""
        return [db for db in self.databases() if not has_rollups(self.policies(db)[1])]

    def missing_tiers(self) -> dict[str, list[str]]:
        """Per org database that has rollups, the tier policies it lacks (made by an older version;
        ``apply`` creates them and computes their history)."""
        out: dict[str, list[str]] = {}
        for db in self.databases():
            durations = self.policies(db)[1]
            if has_rollups(durations):
                missing = [p for p in ROLLUP_POLICIES.values() if p not in durations]
                if missing:
                    out[db] = missing
        return out

    def close(self) -> None:
        """Nothing held open: every request has its own connection."""


def from_url(url: str) -> InfluxDB1Rollups:
    """Open the retention side of an ``influxdb1://host:port?database=&username=&password=&tls=`` URL."""
    parts = urllib.parse.urlsplit(url)
    options = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    scheme = "https" if options.get("tls", "false").lower() in ("true", "1", "yes") else "http"
    host = parts.hostname or "127.0.0.1"
    return InfluxDB1Rollups(
        f"{scheme}://{host}:{parts.port or 8086}",
        options.get("database", DEFAULT_DATABASE),
        username=options.get("username", ""),
        password=options.get("password", ""),
        meta=options.get("meta", "suitcase"),
    )
