"""``gateway.influx.query``: what the sinks and the store readers make of InfluxDB's ``/query`` answers.

A real influxd answers the well-formed cases (the sink and store suites run against one); the
answers no influxd gives (a proxy's HTML page, a truncated body, JSON of another shape) come from
a stand-in client here.
"""

from __future__ import annotations

from collections.abc import Mapping

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
