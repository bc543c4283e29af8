"""``gateway.influx.query``: what the sinks and the store readers make of InfluxDB's ``/query`` answers.

A real influxd answers the well-formed cases (the sink and store suites run against one); the
answers no influxd gives (a proxy's HTML page, a truncated body, JSON of another shape) come from
a stand-in client here.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gateway.influx.query import post_query
from tests.services.influxdb import InfluxD


class _Answering:
    """An HTTP client that answers every request with ``status`` and ``body``."""

    base = "http://influx.test:8086"

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.sent: list[Mapping[str, str]] = []

    def request(
        self, method: str, path: str, params: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, bytes]:
        assert (method, path) == ("POST", "/query")
        self.sent.append(dict(params))
        return self.status, self.body


def test_statements_go_in_one_request_with_their_epoch() -> None:
    http = _Answering(200, b'{"results": [{"statement_id": 0}, {"statement_id": 1}]}')
    answer = post_query(http, ["SHOW DATABASES", "SHOW USERS"], epoch="s")
    assert http.sent == [{"q": "SHOW DATABASES;SHOW USERS", "epoch": "s"}]
    assert answer.series() == [[], []] and answer.errors() == []
    post_query(http, ["SHOW DATABASES"])
    assert http.sent[-1] == {"q": "SHOW DATABASES"}  # InfluxDB's own time format


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>502 Bad Gateway</html>"),  # a proxy in front of InfluxDB
        (200, b'{"results": [{"statement_id": 0, "series": ['),  # cut off
        (200, b"[1, 2, 3]"),
        (200, b'{"results": "none"}'),
        (200, b""),
        (401, b'{"error": "authorization failed"}'),
        (500, b'{"results": []}'),
    ],
)
def test_an_answer_that_is_no_results_has_none(status: int, body: bytes) -> None:
    answer = post_query(_Answering(status, body), ["SHOW DATABASES"])
    assert answer.results is None and answer.series() == [] and answer.errors() == []
    assert (answer.status, answer.body) == (status, body)  # for the caller's message


def test_a_result_that_is_no_object_counts_as_an_error() -> None:
    answer = post_query(_Answering(200, b'{"results": [{"statement_id": 0}, 7]}'), ["A", "B"])
    assert answer.errors() == ["not a result: 7"]


def test_each_statement_of_a_real_influxd_answers_in_order(influxd: InfluxD) -> None:
    from gateway.influx.http import HttpClient

    http = HttpClient("127.0.0.1", influxd.port)
    try:
        post_query(http, ['CREATE DATABASE "q_test"'])
        answer = post_query(http, ["SHOW DATABASES", 'SELECT * FROM "nowhere"."autogen"."m"'])
    finally:
        http.close()
    assert answer.status == 200 and answer.results is not None
    assert ["q_test"] in answer.series()[0][0]["values"]
    assert answer.series()[1] == [] and answer.errors() == ["database not found: nowhere"]


# ---------------------------------------------------------------- chunked answers


class _Streaming:
    """An HTTP client that hands ``lines`` to ``each_line`` as a chunking server's answer would."""

    base = "http://influx.test:8086"

    def __init__(self, *lines: bytes) -> None:
        self.lines = lines
        self.sent: list[Mapping[str, str]] = []

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        each_line: Callable[[bytes], None] | None = None,
    ) -> tuple[int, bytes]:
        assert each_line is not None
        self.sent.append(dict(params))
        for line in self.lines:
            each_line(line)
        return 200, b""


def _write(influxd: InfluxD, db: str, lines: str) -> None:
    influxd.query(f'CREATE DATABASE "{db}"')
    request = urllib.request.Request(f"{influxd.url}/write?db={db}&precision=s", data=lines.encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 204


def test_a_chunked_answer_reads_as_the_whole_one_with_each_series_worked_on_once(influxd: InfluxD) -> None:
    """Test that a real influxd's answer in chunks of 3 rows (series cut across chunks, a statement
    on a missing database, one that finds nothing) parses to the unchunked answer, each series'
    rows handed over once, whole, in order."""
    from gateway.influx.http import HttpClient

    _write(
        influxd,
        "chunks",
        "\n".join(f"m,sensor={s} v={i} {1_000 + 60 * i}" for s in ("a", "b", "c") for i in range(8)),
    )
    statements = [
        'SELECT "v" FROM "chunks"."autogen"."m" GROUP BY "sensor"',
        'SELECT "v" FROM "chunks"."autogen"."m" WHERE time > 0 AND time < 1s',
        'SELECT "v" FROM "chunks"."autogen"."m" WHERE "sensor" = \'b\' AND time >= 1240s',
        'SELECT * FROM "nowhere"."autogen"."m"',
    ]
    handed: list[list[list[Any]]] = []

    def reversed_rows(rows: list[list[Any]]) -> list[list[Any]]:
        handed.append(rows)
        return rows[::-1]

    http = HttpClient("127.0.0.1", influxd.port)
    try:
        whole = post_query(http, statements, epoch="s")
        chunked = post_query(http, statements, epoch="s", each_series_rows=reversed_rows, chunk_size=3)
        again = post_query(http, ["SHOW DATABASES"])  # the connection is still good
    finally:
        http.close()
    assert whole.results is not None and chunked.results is not None and again.status == 200
    assert [len(rows) for rows in handed] == [8, 8, 8, 4]  # each series once, whole
    expected = whole.series()
    for series in (s for statement in expected for s in statement):
        series["values"] = series["values"][::-1]
    assert chunked.series() == expected
    assert chunked.errors() == whole.errors() == ["database not found: nowhere"]


def test_chunked_every_statement_has_its_result_where_one_fails(influxd: InfluxD) -> None:
    """Test that, where a statement fails and influxd 1.x runs none after it, the chunked answer
    still has one result per statement saying which failed (unchunked, influxd answers fewer
    results, the failure's message overwritten by "not executed")."""
    from gateway.influx.http import HttpClient

    statements = ["SHOW DATABASES", 'SELECT * FROM "nowhere"."autogen"."m"', "SHOW DATABASES"]
    http = HttpClient("127.0.0.1", influxd.port)
    try:
        whole = post_query(http, statements)
        chunked = post_query(http, statements, chunked=True)
    finally:
        http.close()
    assert chunked.results is not None and len(chunked.results) == 3
    assert chunked.errors() == ["database not found: nowhere", "not executed"]
    [databases] = chunked.series()[0]  # a series without rows has them empty, not missing
    assert databases["values"] == whole.series()[0][0].get("values", [])
    assert whole.results is not None and len(whole.results) < 3  # what the chunks mend


@pytest.mark.parametrize(
    "lines",
    [
        (b"<html>502 Bad Gateway</html>",),
        (b'{"results": [{"statement_id": 0, "series": [',),  # cut off
        (
            b'{"results":[{"statement_id":0,"series":[{"name":"m","values":[[1,2]],"partial":true}],'
            b'"partial":true}]}',
        ),  # the answer ends in the middle of a series
        (b'{"results":[{"statement_id":0,"partial":true}]}',),  # ... of a result
        (b'{"results":[{"statement_id":0,"series":[7]}]}',),
        (b'{"results":[{"statement_id":0,"series":[{"name":"m","values":"none"}]}]}',),
        (b"[1, 2, 3]",),
    ],
)
def test_a_chunked_answer_that_is_no_results_has_none(lines: tuple[bytes, ...]) -> None:
    answer = post_query(_Streaming(*lines), ["SELECT 1"], each_series_rows=list)
    assert answer.results is None and answer.body  # the line to show a person


def test_a_failure_after_the_first_chunks_is_the_statements_error() -> None:
    answer = post_query(
        _Streaming(
            b'{"results":[{"statement_id":0,"series":[{"name":"m","values":[[1,2]]}],"partial":true}]}',
            b'{"error":"query interrupted"}',
        ),
        ["SELECT 1"],
        each_series_rows=list,
    )
    assert answer.errors() == ["query interrupted"]


def test_chunks_without_partial_flags_are_put_back_together() -> None:
    """Test that chunks of a server that sends no ``partial`` flags (InfluxDB 3,
    influxdata/influxdb#25014) join by statement and series: a series cut across chunks is one,
    worked on once, whole; a failed statement's result stands alone even where influxd 1.x gives the
    next one the same ``statement_id``."""
    handed: list[list[list[Any]]] = []

    def keep(rows: list[list[Any]]) -> list[list[Any]]:
        handed.append(list(rows))
        return rows

    answer = post_query(
        _Streaming(
            b'{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"s":"a"},"values":[[1,1],[2,2]]}]}]}',
            b'{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"s":"a"},"values":[[3,3]]}]}]}',
            b'{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"s":"b"},"values":[[1,9]]}]}]}',
            b'{"results":[{"statement_id":1,"series":[{"name":"m","tags":{"s":"a"},"values":[[4,4]]}]}]}',
            b'{"results":[{"statement_id":2,"error":"database not found: x"}]}',
            b'{"results":[{"statement_id":2,"error":"not executed"}]}',
        ),
        ["A", "B", "C", "D"],
        each_series_rows=keep,
    )
    assert handed == [[[1, 1], [2, 2], [3, 3]], [[1, 9]], [[4, 4]]]
    assert [len(s) for s in answer.series()] == [2, 1, 0, 0]
    assert answer.errors() == ["database not found: x", "not executed"]


def test_results_of_one_document_never_join() -> None:
    """Test that the results of one document (an unchunked answer, of a server that numbers no
    statements) are one per statement."""
    answer = post_query(
        _Streaming(b'{"results":[{"series":[{"name":"m","values":[[1,2]]}]},{}]}'), ["A", "B"], chunked=True
    )
    assert answer.results is not None and len(answer.results) == 2


def test_a_server_that_does_not_chunk_answers_one_document() -> None:
    """Test that an answer of one document (a server that ignores ``chunked``) reads the same."""
    http = _Streaming(
        b'{"results":[{"statement_id":0,"series":[{"name":"m","values":[[1,2],[3,4]]}]},{"statement_id":1}]}'
    )
    answer = post_query(http, ["A", "B"], epoch="s", each_series_rows=lambda rows: rows[:1])
    assert http.sent == [{"q": "A;B", "epoch": "s", "chunked": "true"}]
    assert answer.series() == [[{"name": "m", "values": [[1, 2]]}], []]
