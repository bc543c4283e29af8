"""``gateway.influx.http.HttpClient``: an answer read line by line as it arrives.

A real HTTP server on loopback sends the bodies, cut where no line ends, with pauses between the
pieces (influxd's chunked answers are checked in ``test_influx_query.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.influx.http import HttpClient
from kits.errors import SuitcaseError

PIECES = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}\n{"d":4', b"}"]  # the last line has no newline


class _Pieces(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as influxd

    def do_POST(self) -> None:
        status = 200 if self.path.startswith("/ok") else 500
        self.send_response(status)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in PIECES if status == 200 else [b"it broke\n", b"badly"]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Pieces) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield httpd
        httpd.shutdown()
        thread.join(10)


def _client(server: ThreadingHTTPServer) -> HttpClient:
    return HttpClient("127.0.0.1", server.server_address[1], timeout=10)


def test_each_line_is_handed_over_whole_as_it_arrives(server: ThreadingHTTPServer) -> None:
    """Test that lines cut across pieces are handed over whole, empty ones left out, the last one
    without its newline too, and the body returned empty."""
    http = _client(server)
    lines: list[bytes] = []
    assert http.request("POST", "/ok", {}, each_line=lines.append) == (200, b"")
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
    assert http.request("POST", "/ok", {}) == (200, b"".join(PIECES))  # the same connection, whole
    http.close()


def test_an_answer_that_is_not_200_comes_back_whole(server: ThreadingHTTPServer) -> None:
    lines: list[bytes] = []
    assert _client(server).request("POST", "/fail", {}, each_line=lines.append) == (500, b"it broke\nbadly")
    assert lines == []


def test_a_caller_that_fails_mid_answer_leaves_the_client_usable(server: ThreadingHTTPServer) -> None:
    """Test that when ``each_line`` raises, the error reaches the caller unchanged and the next
    request gets a whole answer (the rest of the failed one is not read as the next)."""
    http = _client(server)

    def refuse(line: bytes) -> None:
        raise ValueError(f"cannot use {line!r}")

    with pytest.raises(ValueError, match="cannot use"):
        http.request("POST", "/ok", {}, each_line=refuse)
    lines: list[bytes] = []
    assert http.request("POST", "/ok", {}, each_line=lines.append) == (200, b"")
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']


def test_a_server_that_is_gone_is_named(server: ThreadingHTTPServer) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(SuitcaseError, match=rf"cannot reach InfluxDB at http://127.0.0.1:{port}"):
        HttpClient("127.0.0.1", port, timeout=5).request("POST", "/ok", {}, each_line=print)
