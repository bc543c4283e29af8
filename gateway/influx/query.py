"""InfluxQL over HTTP, shared by the sinks and the store readers: statements sent to ``/query`` in
one request, the answer parsed into one result per statement.

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
        self, method: str, path: str, params: Mapping[str, str], body: bytes | None = None
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


def post_query(http: Requester, statements: Sequence[str], *, epoch: str | None = None) -> QueryAnswer:
    """Send ``statements`` to ``/query`` in one request (times in ``epoch`` units: ``ns``, ``s``;
    InfluxDB's RFC 3339 strings when None) and parse the answer.

    Raises:
        SuitcaseError: (the client's ``error`` class) InfluxDB could not be reached.
    """
    params = {"q": ";".join(statements)} | ({"epoch": epoch} if epoch else {})
    status, body = http.request("POST", "/query", params)
    results = None
    if status == 200:
        try:
            answer = _loads(body)
        except ValueError:
            answer = None
        listed = answer.get("results", []) if isinstance(answer, dict) else None
        if isinstance(listed, list):
            results = [r if isinstance(r, dict) else {"error": f"not a result: {r!r}"} for r in listed]
    return QueryAnswer(status, body, results)
