"""InfluxDB line protocol of readings, in the fixed schema of gateway/sinks/README.md.

One measurement per quantity, tags ``device``, ``org``, ``sensor`` (sorted by key, as InfluxDB
prefers), one float field ``value``, the reading's time as the timestamp.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence

from gateway.influx.influxql import quote_ident
from kits.wire import Record

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_META_DATABASE",
    "SEEN_LOG",
    "SEEN_LOG_POLICY",
    "database_name",
    "encode_dead_letters",
    "encode_lines",
    "encode_seen",
    "encode_seen_log",
    "group_by_org",
    "seen_log_policy",
    "timestamp",
]

# The per-org database (1.x) / bucket (2.x); '{org}' is replaced by the org slug with '-' -> '_'.
DEFAULT_DATABASE = "suitcase_{org}"
# Devices seen and dead letters (gateway/store/influxdb1.py): not an org's data, never expired.
DEFAULT_META_DATABASE = "suitcase"
# The devices_seen points each batch changed, again at the time they were written, in a retention
# policy of the meta database that keeps an hour: a reader asks only for what changed since it
# last read (gateway/store/influxdb1.py), never for every device's point.
SEEN_LOG = "devices_seen_log"
SEEN_LOG_POLICY = "seen_log"

_PLAIN = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_PRECISION = {"ns": 1_000_000_000, "us": 1_000_000, "ms": 1_000, "s": 1}


def database_name(template: str, org: str) -> str:
    """Return the database or bucket of ``org``: ``template`` with ``{org}`` filled in."""
    return template.replace("{org}", org.replace("-", "_"))


def _escape(text: str) -> str:
    # Slugs never need it; anything else is escaped rather than trusted.
    if _PLAIN.match(text):
        return text
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def timestamp(time: float, precision: str) -> int:
    """Return ``time`` (epoch seconds) as an integer timestamp of ``precision``.

    Readings are rounded to the microsecond first, the resolution a float epoch time holds, so
    the same reading always gets the same key (a redelivery overwrites its twin).
    """
    micros = round(time * 1_000_000)
    if precision == "ns":
        return micros * 1000
    if precision == "us":
        return micros
    return round(micros / (1_000_000 // _PRECISION[precision]))


def encode_lines(records: Iterable[Record], precision: str = "ns") -> bytes:
    """Encode ``records`` as line protocol, one point per reading."""
    prefixes: dict[tuple[str, str, str, str], str] = {}
    out: list[str] = []
    append = out.append
    for rec in records:
        key = (rec.quantity, rec.device, rec.org, rec.sensor)
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = (
                f"{_escape(rec.quantity)},device={_escape(rec.device)},org={_escape(rec.org)},"
                f"sensor={_escape(rec.sensor)} value="
            )
            prefixes[key] = prefix
        append(f"{prefix}{rec.value!r} {timestamp(rec.time, precision)}")
    return "\n".join(out).encode()


def group_by_org(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Split ``records`` by organisation (each goes to its own database or bucket)."""
    groups: dict[str, list[Record]] = {}
    for rec in records:
        groups.setdefault(rec.org, []).append(rec)
    return groups


def _field_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_seen(seen: Mapping[tuple[str, str], tuple[float, float, int]], writer: str) -> bytes:
    """Encode the ``devices_seen`` points of one writer: (org, device) -> (first, last, readings).

    Each point sits at time 0, so the next batch's point of the same (org, device, writer)
    overwrites it: one point per device and writer, however long it runs.
    """
    return "\n".join(
        f"devices_seen,device={_escape(device)},org={_escape(org)},writer={_escape(writer)} "
        f"first={first!r},last={last!r},readings={count}i 0"
        for (org, device), (first, last, count) in sorted(seen.items())
    ).encode()


def encode_seen_log(
    seen: Mapping[tuple[str, str], tuple[float, float, int]], writer: str, first_ns: int
) -> bytes:
    """Encode the ``devices_seen_log`` points of one writer's batch, at ``first_ns``, ``first_ns``
    + 1 ns, ...: one series per (org, writer), a point per device (its ``device`` a field), so a
    read of what changed since a time scans a few series, not one per device.

    The writer must hand out increasing ``first_ns`` (past the previous batch's last point), so
    no point overwrites another.
    """
    return "\n".join(
        f"{SEEN_LOG},org={_escape(org)},writer={_escape(writer)} device={_field_string(device)},"
        f"first={first!r},last={last!r},readings={count}i {first_ns + i}"
        for i, ((org, device), (first, last, count)) in enumerate(sorted(seen.items()))
    ).encode()


def seen_log_policy(meta: str) -> str:
    """The InfluxQL that creates the retention policy of the ``devices_seen_log`` points in
    ``meta`` (an hour; InfluxDB 1.x keeps no less). Readers read a full ``devices_seen`` at least
    every few minutes, so an hour of changes is more than they ask for."""
    return (
        f'CREATE RETENTION POLICY "{SEEN_LOG_POLICY}" ON {quote_ident(meta)} DURATION 1h REPLICATION 1 '
        "SHARD DURATION 1h"
    )


def encode_dead_letters(letters: Iterable[tuple[float, str, bytes, str, str]]) -> bytes:
    """Encode ``dead_letters`` points from (received_at, topic, payload, code, reason).

    The timestamp is ``received_at`` to the microsecond plus a checksum of the message in the
    nanoseconds, so two letters of one instant stay two, and a retried write overwrites its twin.
    """
    out = []
    for received_at, topic, payload, code, reason in letters:
        ns = round(received_at * 1_000_000) * 1000 + zlib.crc32(topic.encode() + payload) % 1000
        out.append(
            f"dead_letters,code={_escape(code)} topic={_field_string(topic)},"
            f"payload={_field_string(base64.b64encode(payload).decode())},"
            f"reason={_field_string(' '.join(reason.splitlines()))} {ns}"
        )
    return "\n".join(out).encode()
