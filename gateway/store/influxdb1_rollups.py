"""Retention and downsampling on InfluxDB 1.x: retention policies and continuous queries.

Per org database (``suitcase_{org}``) the tool makes:

- the database's default retention policy (``autogen``, where the gateway writes the raw
  readings) keep ``raw_days``;
- ``rollup_1m`` and ``rollup_1h`` keep ``minute_days`` and ``hour_days``, holding per series and
  window the fields ``sum``, ``count``, ``min``, ``max`` (the mean is ``sum / count``, so wider
  windows combine exactly), with the same tags as the readings;
- two continuous queries filling them from the raw readings: ``suitcase_rollup_1m``
  (``RESAMPLE EVERY 1m FOR 10m``) and ``suitcase_rollup_1h`` (``RESAMPLE EVERY 10m FOR 2h``).

Late readings. A continuous query only recomputes the windows of its ``FOR`` span; a reading
that arrives later (an outbox draining hours of backlog) would never reach the rollups. So the
``influxdb1`` sink folds late readings in itself: after writing a batch, for each device with
readings older than :data:`LATE_AFTER_S` it recomputes that device's minutes and hours they fall
in (:func:`fold_statements`, the continuous queries' ``SELECT ... INTO`` restricted to the device
and the range), before the batch is acknowledged. A recomputed window overwrites its point (same
measurement, tags and time), so folding twice never counts twice. ``apply --backfill-days N``
recomputes the last N days of every database (after creating rollups on a database that already
holds data).

Reads. :func:`plan_windows` reads windows of a whole number of minutes (hours) from
``rollup_1m`` (``rollup_1h``) for the part of a range older than :data:`FRESH_S`, and the raw
readings for the rest, so a chart of a year reads one point per hour and stays drawn after the
raw readings expire.
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
from typing import Any

from gateway.store.base import StoreError
from gateway.store.retention import Applied, Retention, RetentionSettings

__all__ = [
    "CQ_NAMES",
    "FRESH_S",
    "LATE_AFTER_S",
    "ROLLUP_POLICIES",
    "InfluxDB1Rollups",
    "aggregate_select",
    "fold_statements",
    "from_url",
    "has_rollups",
    "plan_windows",
    "policies_from",
    "rollup_width",
    "show_policies",
    "window_statement",
]

DEFAULT_DATABASE = "suitcase_{org}"

# Window width (s) -> its retention policy, GROUP BY interval, continuous query and resampling.
ROLLUP_POLICIES: dict[int, str] = {60: "rollup_1m", 3600: "rollup_1h"}
_INTERVALS: dict[int, str] = {60: "1m", 3600: "1h"}
CQ_NAMES: dict[int, str] = {60: "suitcase_rollup_1m", 3600: "suitcase_rollup_1h"}
_RESAMPLE: dict[int, str] = {60: "RESAMPLE EVERY 1m FOR 10m", 3600: "RESAMPLE EVERY 10m FOR 2h"}

# A reading older than this when written is folded into the rollups by the sink: the minute
# query's FOR span (10 min) less its EVERY (1 min) and a margin for clock skew between hosts.
LATE_AFTER_S = 300.0

# Windows ending within this of now are read from the raw readings: the continuous queries may
# not have run for them yet.
FRESH_S = 900.0

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1000


def database_name(template: str, org: str) -> str:
    """Return the database of ``org``: ``template`` with ``{org}`` = the slug, '-' -> '_'."""
    return template.replace("{org}", org.replace("-", "_"))


def rollup_width(every: float) -> int | None:
    """Return the rollup (60 or 3600 s) that windows of ``every`` seconds combine, or None."""
    for width in (3600, 60):
        if every >= width and every % width == 0:
            return width
    return None


def aggregate_select(db: str, raw_policy: str, width: int, where: str = "") -> str:
    """The ``SELECT ... INTO`` that computes the ``width`` rollup of ``db`` from its raw readings."""
    return (
        'SELECT sum("value") AS "sum", count("value") AS "count", min("value") AS "min", '
        f'max("value") AS "max" INTO {_ident(db)}.{_ident(ROLLUP_POLICIES[width])}.:MEASUREMENT '
        f"FROM {_ident(db)}.{_ident(raw_policy)}./.*/{where} GROUP BY time({_INTERVALS[width]}), *"
    )


def cq_statement(db: str, raw_policy: str, width: int) -> str:
    """The ``CREATE CONTINUOUS QUERY`` of the ``width`` rollup of ``db``."""
    return (
        f"CREATE CONTINUOUS QUERY {_ident(CQ_NAMES[width])} ON {_ident(db)} {_RESAMPLE[width]} "
        f"BEGIN {aggregate_select(db, raw_policy, width)} END"
    )


def fold_statements(db: str, raw_policy: str, device: str, first: float, last: float) -> list[str]:
    """Recompute ``device``'s rollup windows holding ``first`` .. ``last`` (late readings)."""
    out = []
    for width in ROLLUP_POLICIES:
        lo = math.floor(first / width) * width
        hi = math.floor(last / width) * width + width
        where = f' WHERE "device" = {_literal(device)} AND time >= {_ns(lo)} AND time < {_ns(hi)}'
        out.append(aggregate_select(db, raw_policy, width, where))
    return out


def window_statement(
    source: str, width: int | None, every: float, where: str, group_by: str = '"sensor"'
) -> str:
    """The statement reading windows of ``every`` s from ``source`` (a raw or rollup measurement).

    Columns: time, count, sum, min, max (the mean is sum / count, divided by the reader). ``width``
    None reads raw readings, else a rollup.
    """
    # The sum, not the mean: a plain read of rollup points (below) has no mean to answer.
    if width is None:
        fields = 'count("value"), sum("value"), min("value"), max("value")'
    elif every == width:
        # One rollup point per window and series: read the points as they are. influxd 1.x spends
        # far more per window of a GROUP BY time() than per point (measured: 730 windows x 10
        # series cost ~10x a plain SELECT of the same points).
        return f'SELECT "count", "sum", "min", "max" FROM {source}{where} GROUP BY {group_by}'
    else:
        fields = 'sum("count"), sum("sum"), min("min"), max("max")'
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
    rollups: bool,
    group_by: str = '"sensor"',
) -> list[str]:
    """The statements reading windows of ``every`` s of ``db`` in ``[start, end)``.

    ``measurement`` is an InfluxQL source (``"temperature"`` or ``/.*/``), ``conditions`` the
    tag conditions (no time). Where ``db`` has ``rollups`` and ``every`` is a whole number of
    minutes (hours), the windows ending :data:`FRESH_S` or more before ``now`` are read from
    ``rollup_1m`` (``rollup_1h``), the rest from the raw readings (the continuous queries may not
    have run for them yet). The split falls on a window boundary, so no window is read twice, and
    each statement answers time, count, sum, min, max. As on the embedded store, a window read
    from rollups includes the whole minute or hour ``start`` falls in.
    """
    width = rollup_width(every) if rollups else None
    statements: list[str] = []
    if width is not None:
        split = max(start, min(end, math.floor((now - FRESH_S) / every) * every))
        if split > start:
            lo = math.floor(start / width) * width
            where = f" WHERE {conditions} AND time >= {_ns(lo)} AND time < {_ns(split)}"
            source = f"{_ident(db)}.{_ident(ROLLUP_POLICIES[width])}.{measurement}"
            statements.append(window_statement(source, width, every, where, group_by))
        start = split
    if start < end:
        where = f" WHERE {conditions} AND time >= {_ns(start)} AND time < {_ns(end)}"
        statements.append(window_statement(f"{_ident(db)}..{measurement}", None, every, where, group_by))
    return statements


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


def show_policies(db: str) -> str:
    """The statement listing ``db``'s retention policies (read by :func:`policies_from`)."""
    return f"SHOW RETENTION POLICIES ON {_ident(db)}"


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
    """Whether a database holds both rollup policies (the tool has been applied to it)."""
    return all(policy in durations for policy in ROLLUP_POLICIES.values())


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
            self.query([f"CREATE DATABASE {_ident(db)}"])
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
        want = {
            raw: _hours(retention.raw_days),
            ROLLUP_POLICIES[60]: _hours(retention.minute_days),
            ROLLUP_POLICIES[3600]: _hours(retention.hour_days),
        }
        for policy, hours in want.items():
            if policy not in durations:
                statements.append(
                    f"CREATE RETENTION POLICY {_ident(policy)} ON {_ident(db)} "
                    f"DURATION {_duration(hours)} REPLICATION 1 SHARD DURATION {_shard(hours)}"
                )
                actions.append(f"retention policy {policy} created, keeps {_duration(hours)}")
            elif durations[policy] != hours:
                statements.append(
                    f"ALTER RETENTION POLICY {_ident(policy)} ON {_ident(db)} "
                    f"DURATION {_duration(hours)} SHARD DURATION {_shard(hours)}"
                )
                actions.append(f"retention policy {policy} now keeps {_duration(hours)}")
        if statements:
            self.query(statements)
        queries = self.continuous_queries(db)
        for width, name in CQ_NAMES.items():
            text = cq_statement(db, raw, width)
            if queries.get(name, "").replace('"', "") == text.replace('"', ""):  # influxd drops quotes
                continue
            change = []
            if name in queries:
                change.append(f"DROP CONTINUOUS QUERY {_ident(name)} ON {_ident(db)}")
            self.query([*change, text])
            actions.append(f"continuous query {name} {'replaced' if change else 'created'}")
        return actions

    def backfill(self, db: str, start: float, end: float) -> None:
        """Recompute ``db``'s rollups from its raw readings between ``start`` and ``end``, a day at a time."""
        raw, _ = self.policies(db)
        day = 86_400
        lo = math.floor(start / 3600) * 3600
        while lo < end:
            hi = min(lo + day, math.floor(end / 3600) * 3600 + 3600)
            where = f" WHERE time >= {_ns(lo)} AND time < {_ns(hi)}"
            self.query([aggregate_select(db, raw, width, where) for width in ROLLUP_POLICIES])
            lo = hi

    def show(self) -> dict[str, Retention]:
        """Return per org database the retention its policies have now (rollups: none if missing)."""
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
