"""Open-data export, streamed: readings as CSV or SenML JSON, public deployments as GeoJSON.

Nothing is loaded whole: readings are read from the store in chunks and written out as they come.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.store import Reader
from kits.quantities import spec as quantity_spec
from kits.wire import BASE_NAME_PREFIX, BVER_SECONDARY_UNITS, Record
from server.timeutil import iso

__all__ = ["csv_lines", "geojson_chunks", "iter_readings", "neutralise_cell", "senml_chunks"]

CHUNK = 5000
_SECONDARY = {"hPa", "ppm", "ug/m3", "mm"}


def iter_readings(
    store: Reader,
    org: str,
    device: str,
    start: float,
    end: float,
    *,
    quantity: str | None = None,
    chunk: int = CHUNK,
) -> Iterator[Record]:
    """Yield (``org``, ``device``)'s readings in ``[start, end)`` oldest first, ``chunk`` at a time."""
    if end <= start:
        return
    seen_at_last: set[tuple[str, str]] = set()
    last_time: float | None = None
    cursor = start
    while True:
        batch = store.readings(org, device, cursor, end, quantity=quantity, limit=chunk)
        fresh = 0
        for record in batch:
            key = (record.sensor, record.quantity)
            if last_time is not None and record.time == last_time and key in seen_at_last:
                continue
            if record.time != last_time:
                last_time, seen_at_last = record.time, set()
            seen_at_last.add(key)
            fresh += 1
            yield record
        if len(batch) < chunk:
            return
        if fresh == 0:  # more than `chunk` readings share one time: widen the chunk
            chunk *= 2
        assert last_time is not None
        cursor = last_time


# OWASP "CSV injection": a cell a spreadsheet would read as a formula (or whose leading tab or
# carriage return it would strip to reach one) is prefixed with a single quote, which shows as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def neutralise_cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet evaluates: a leading = + - @ tab or CR gets a ``'``."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _header_value(value: Any) -> str:
    """A metadata value on one ``#`` line: control characters (newlines) become spaces, and each
    comma- or semicolon-separated piece a spreadsheet would split off is neutralised."""
    flat = _CONTROL.sub(" ", str(value))
    pieces = re.split(r"([,;])", flat)
    return "".join(p if p in (",", ";") or i == 0 else _neutralise_piece(p) for i, p in enumerate(pieces))


def _neutralise_piece(piece: str) -> str:
    stripped = piece.lstrip(" ")
    if stripped.startswith(_FORMULA_START):
        return piece[: len(piece) - len(stripped)] + "'" + stripped
    return piece


def _header(meta: dict[str, Any]) -> list[str]:
    return [f"# {_CONTROL.sub(' ', str(key))}: {_header_value(value)}" for key, value in meta.items()]


def csv_lines(rows: Iterable[tuple[str, Record]], meta: dict[str, Any]) -> Iterator[str]:
    """Yield CSV text: ``#`` comment lines with the licence and metadata, then one line per reading."""
    for line in _header(meta):
        yield line + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["time_iso", "time", "deployment", "device", "sensor", "quantity", "unit", "value"])
    for count, (deployment, record) in enumerate(rows, start=1):
        spec = quantity_spec(record.quantity)
        writer.writerow(
            [
                iso(record.time),
                repr(record.time),
                neutralise_cell(deployment),
                neutralise_cell(record.device),
                neutralise_cell(record.sensor),
                neutralise_cell(record.quantity),
                neutralise_cell(spec.unit if spec and spec.unit else ""),
                repr(record.value),
            ]
        )
        if count % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def senml_chunks(rows: Iterable[tuple[str, Record]]) -> Iterator[str]:
    """Yield one SenML pack (RFC 8428 JSON array) with full names, no base values.

    The first record declares ``bver`` 26 (secondary units, RFC 8798/9100) since packs may use them.
    """
    yield "["
    first = True
    for _deployment, record in rows:
        spec = quantity_spec(record.quantity)
        item: dict[str, Any] = {
            "n": f"{BASE_NAME_PREFIX}{record.device}:{record.sensor}/{record.quantity}",
            "t": record.time,
            "v": record.value,
        }
        if spec is not None and spec.unit:
            item["u"] = spec.unit
        if first:
            item["bver"] = BVER_SECONDARY_UNITS
        yield ("" if first else ",\n") + json.dumps(item)
        first = False
    yield "]\n"


def geojson_chunks(features: Iterable[dict[str, Any]], meta: dict[str, Any]) -> Iterator[str]:
    """Yield a GeoJSON FeatureCollection; ``meta`` (licence, source) is a top-level member."""
    head = {"type": "FeatureCollection", **meta}
    text = json.dumps(head)
    yield text[:-1] + ', "features": ['
    first = True
    for feature in features:
        yield ("" if first else ",\n") + json.dumps(feature)
        first = False
    yield "]}\n"


_ = _SECONDARY
