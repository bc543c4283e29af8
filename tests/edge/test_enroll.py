"""Tests of claiming and enrolling (edge/claim.py, `suitcase edge enroll`, `run` with [claim]).

The server side is written concurrently by another engineer: these tests run against a tiny
local HTTP stub that follows the contract in docs/architecture.md "Enrollment" as edge/claim.py states
it (POST /api/v1/claims/poll {"code"}: 202 pending, 200 {"config": DeviceConfig}, 404 unknown).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge.claim import BadReply, ClaimError, claim, poll_once
from edge.cli import app
from edge.config import ClaimSettings, load_saved_device_config
from kits.errors import SuitcaseError

DEVICE = {
    "device": "aarhus-school7-k3f9",
    "org": "aarhus",
    "mqtt": {"host": "127.0.0.1", "port": 1, "username": "aarhus-school7-k3f9", "password": "s3cret"},
    "sensors": [{"name": "indoor", "part": "bme280", "address": 0x77}],
    "bus": "emulated",
}


class StubServer:
    """The claim endpoint of the server, per the contract: pending until ``bind()``."""

    def __init__(self) -> None:
        self.bound = False
        self.polls: list[dict[str, Any]] = []
        self.replies: list[bytes | None] = []  # served first, one per poll (None: not HTTP at all)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.polls.append(body)
                if stub.replies:
                    reply = stub.replies.pop(0)
                    if reply is None:
                        self.wfile.write(b"garbage\r\n\r\n")
                        self.close_connection = True
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                if self.path != "/api/v1/claims/poll" or body.get("code") not in ("GOOD-CODE",):
                    self.send_response(404)
                    self.end_headers()
                    return
                if not stub.bound:
                    self.send_response(202)
                    self.end_headers()
                    return
                data = json.dumps({"config": DEVICE}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def server() -> Iterator[StubServer]:
    stub = StubServer()
    yield stub
    stub.httpd.shutdown()


def test_poll_is_pending_until_bound_then_returns_the_config(server: StubServer) -> None:
    """Test that a poll before binding returns None and after binding the device config."""
    assert poll_once(server.url, "GOOD-CODE") is None
    server.bound = True
    config = poll_once(server.url, "GOOD-CODE")
    assert config is not None and config.device == DEVICE["device"]
    assert server.polls[-1] == {"code": "GOOD-CODE"}


def test_an_unknown_code_stops_polling_with_advice(server: StubServer) -> None:
    """Test that a refused code is a ClaimError that says to check the label."""
    with pytest.raises(ClaimError, match="check the label"):
        claim(ClaimSettings(server=server.url, code="BAD-CODE", poll_s=1), stop=threading.Event())


def test_claim_polls_until_staff_bind_the_device(server: StubServer) -> None:
    """Test that claim() keeps polling while pending and returns once bound."""
    threading.Timer(1.5, lambda: setattr(server, "bound", True)).start()
    config = claim(ClaimSettings(server=server.url, code="GOOD-CODE", poll_s=1), stop=threading.Event())
    assert config is not None and config.mqtt.password == "s3cret"
    assert len(server.polls) >= 2


def test_an_unreachable_server_is_retried_not_fatal() -> None:
    """Test that claim() backs off on a server that is down and returns None when stopped."""
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    assert claim(ClaimSettings(server="http://127.0.0.1:9", code="GOOD-CODE", poll_s=1), stop=stop) is None


def test_enroll_saves_the_config_for_run(server: StubServer, tmp_path: Path) -> None:
    """Test that `suitcase edge enroll` saves the device config (mode 600) where `run` finds it."""
    runner = CliRunner()
    result = runner.invoke(
        app, ["enroll", "--server", server.url, "--code", "GOOD-CODE", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "not bound" in result.output
    server.bound = True
    result = runner.invoke(
        app, ["enroll", "--server", server.url, "--code", "GOOD-CODE", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    saved = load_saved_device_config(tmp_path)
    assert saved is not None and saved.device == DEVICE["device"]
    assert (tmp_path / "device.json").stat().st_mode & 0o777 == 0o600


BAD_REPLIES: list[bytes | None] = [
    b"[" * 100_000,  # nested too deep for the JSON parser
    b"<html>a captive portal</html>",
    b"\xff\xfe not UTF-8",
    json.dumps([1, 2]).encode(),
    json.dumps({"config": {**DEVICE, "sensors": "all"}}).encode(),
    json.dumps({"config": {**DEVICE, "device": "x" * 10_000}}).encode(),
    b'{"config": "' + b"x" * (2 * 1024 * 1024) + b'"}',  # larger than any device config
    None,  # not HTTP at all
]


def test_each_bad_reply_is_that_polls_problem(server: StubServer) -> None:
    """Test that a reply the agent cannot use is a BadReply naming the problem (poll again), never
    a ClaimError that ends polling, nor an exception that ends the agent."""
    for reply in BAD_REPLIES:
        server.replies = [reply]
        with pytest.raises(SuitcaseError) as caught:
            poll_once(server.url, "GOOD-CODE")
        assert not isinstance(caught.value, ClaimError), (reply or b"")[:80]
        assert isinstance(caught.value, BadReply) or reply is None, caught.value
        assert len(str(caught.value)) < 600


def test_claim_polls_on_through_bad_replies_until_bound(server: StubServer) -> None:
    """Test that claim() goes on polling, backing off, through every kind of bad reply, and returns
    the config the first good reply brings."""
    server.replies = list(BAD_REPLIES)
    server.bound = True
    waits: list[float] = []
    settings = ClaimSettings(server=server.url, code="GOOD-CODE", poll_s=1, max_poll_s=10)
    config = claim(settings, stop=threading.Event(), wait=waits.append)
    assert config is not None and config.device == DEVICE["device"]
    assert len(server.polls) == len(BAD_REPLIES) + 1 and len(waits) == len(BAD_REPLIES)
    assert waits[0] >= 1.5 * 0.8 and max(waits) <= 10 * 1.2  # backing off, up to max_poll_s
