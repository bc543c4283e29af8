"""InfluxQL over HTTP, shared by the sinks and the store readers: statements sent to ``/query`` in
one request, the answer parsed into one result per statement.

A caller that works on each series of a long answer (the store reader adding up a chart's
windows) asks for it in chunks (``chunked=true``, which InfluxDB 1.x and 3.x stream as one JSON
document per line: a series, or up to ``chunk_size`` of its rows) and works on each series as
soon as its last chunk arrived, while InfluxDB still makes the next: the work is done by the time
the answer ends instead of starting then. A server that does not chunk answers one document,
which reads the same.

What a caller makes of a refusal (which errors it tolerates, what it tells a person to do) is the
caller's: this only sends and parses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["QueryAnswer", "Requester", "post_query"]


class Requester(Protocol):
    """What a query needs of an HTTP client (``gateway.influx.http.HttpClient``)."""

    @property
    def base(self) -> str: ...

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        each_line: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]: ...


def _json_loads() -> Callable[[bytes], Any]:
    """orjson's loads where installed (the gateway extra), else the standard library's.

    A year-long chart's answer is ~7,300 rows: orjson parses it ~3x faster, which counts on a
    loaded server (InfluxDB's JSON is strict RFC 8259, so both parse it alike).
    """
    try:
        from orjson import loads
    except ImportError:
        return json.loads
    return loads


_loads = _json_loads()


@dataclass(frozen=True)
class QueryAnswer:
    """InfluxDB's answer to a ``/query`` request.

    Attributes:
        status: the HTTP status.
        body: the raw body (for a message when something went wrong).
        results: each statement's result (its ``series``, or its ``error``), in order; None when
            the status is not 200 or the body is no JSON object of results.
    """

    status: int
    body: bytes
    results: list[dict[str, Any]] | None

    def errors(self) -> list[str]:
        """The statements' errors, in order (none when every statement ran)."""
        return [str(r["error"]) for r in self.results or () if r.get("error") is not None]

    def series(self) -> list[list[dict[str, Any]]]:
        """Each statement's series (``[]`` for a statement that failed or found nothing)."""
        return [r.get("series", []) for r in self.results or ()]


Rows = list[list[Any]]


def post_query(
    http: Requester,
    statements: Sequence[str],
    *,
    epoch: str | None = None,
    chunked: bool = False,
    each_series_rows: Callable[[Rows], Any] | None = None,
    chunk_size: int | None = None,
) -> QueryAnswer:
    """Send ``statements`` to ``/query`` in one request (times in ``epoch`` units: ``ns``, ``s``;
    InfluxDB's RFC 3339 strings when None) and parse the answer.

    Args:
        chunked: ask for the answer in chunks (module docstring). Where a statement fails,
            InfluxDB 1.x runs none after it; unchunked, it then answers fewer results than
            statements, the failure's own message overwritten by "not executed"; chunked, one
            result per statement, in order.
        each_series_rows: (chunked) each series' rows are replaced by what this makes of them as
            soon as the series is complete (its ``values``: the rows, or whatever this returns).
        chunk_size: (chunked) at most this many rows per chunk (InfluxDB's default: 10,000).

    Raises:
        SuitcaseError: (the client's ``error`` class) InfluxDB could not be reached.
    """
    params = {"q": ";".join(statements)} | ({"epoch": epoch} if epoch else {})
    if chunked or each_series_rows is not None:
        params |= {"chunked": "true"} | ({"chunk_size": str(chunk_size)} if chunk_size else {})
        chunks = _Chunks(each_series_rows or _as_they_are)
        status, body = http.request("POST", "/query", params, each_line=chunks.add)
        if status != 200:
            return QueryAnswer(status, body, None)
        results = chunks.results()
        return QueryAnswer(status, chunks.broken if results is None else b"", results)
    status, body = http.request("POST", "/query", params)
    results = None
    if status == 200:
        try:
            answer = _loads(body)
        except ValueError:
            answer = None
        results = _results_of(answer)
    return QueryAnswer(status, body, results)


def _as_they_are(rows: Rows) -> Rows:
    return rows


def _results_of(answer: Any) -> list[dict[str, Any]] | None:
    """The results of an answer's document (None when it is not an object of results)."""
    listed = answer.get("results", []) if isinstance(answer, dict) else None
    if not isinstance(listed, list):
        return None
    return [r if isinstance(r, dict) else {"error": f"not a result: {r!r}"} for r in listed]


class _Chunks:
    """A chunked answer put back together, one line (one JSON document) at a time.

    A chunk continues the previous chunk's result when it has the same ``statement_id`` and
    neither failed, and continues its last series when it has the same name and tags. The
    ``partial`` flags are not relied on: InfluxDB 3 does not send them (influxdata/influxdb#25014),
    and influxd 1.x numbers the failures after a failed statement alike, so a failed result always
    stands alone. A series is worked on once the next one starts, or the answer ends.
    """

    def __init__(self, each_series_rows: Callable[[Rows], Any]) -> None:
        self.each_series_rows = each_series_rows
        self.done: list[dict[str, Any]] = []
        self.open_series: dict[str, Any] | None = None  # the last series: more rows may follow
        self.broken = b""  # the line that was no document of results
        self.ends_open = False  # the last chunk said more of its result follows

    def add(self, line: bytes) -> None:
        if self.broken:
            return
        try:
            document = _loads(line)
        except ValueError:
            document = None
        if isinstance(document, dict) and "results" not in document and "error" in document:
            document = {"results": [{"error": document["error"]}]}  # a failure after the first chunk
        results = _results_of(document)
        if results is None:
            self.broken = line[:300]
            return
        for i, result in enumerate(results):
            self._add_result(result, continues=i == 0)  # (the results of one document are not)
        self.ends_open = bool(results and results[-1].get("partial"))

    def _add_result(self, result: dict[str, Any], *, continues: bool) -> None:
        last = self.done[-1] if self.done and continues else None
        if (
            last is not None
            and result.get("error") is None
            and last.get("error") is None
            and result.get("statement_id") == last.get("statement_id")
        ):
            into = last
        else:
            self._close_series()
            into = {k: v for k, v in result.items() if k not in ("series", "partial")}
            into["series"] = []
            self.done.append(into)
        series = result.get("series") or []
        for s in series if isinstance(series, list) else [series]:
            if not isinstance(s, dict) or not isinstance(s.get("values", []), list):
                self.broken = repr(s)[:300].encode()
                return
            same = self.open_series is not None and (s.get("name"), s.get("tags")) == (
                self.open_series.get("name"),
                self.open_series.get("tags"),
            )
            if same and self.open_series is not None:
                self.open_series["values"].extend(s.get("values", []))
            else:
                self._close_series()
                self.open_series = {k: v for k, v in s.items() if k != "partial"}
                self.open_series.setdefault("values", [])
                into["series"].append(self.open_series)

    def _close_series(self) -> None:
        if self.open_series is not None:
            self.open_series["values"] = self.each_series_rows(self.open_series["values"])
            self.open_series = None

    def results(self) -> list[dict[str, Any]] | None:
        """Each statement's result (None when a line was no document of results, or the answer
        ended where its last chunk said more would follow)."""
        if self.ends_open:
            self.broken = self.broken or b"the answer ended in the middle of a result"
        if self.broken:
            return None
        self._close_series()
        for result in self.done:
            if not result["series"]:
                del result["series"]  # as an unchunked answer leaves it out
        return self.done
