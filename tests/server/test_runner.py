"""Tests of server/runner.py: uvicorn in a background thread."""

from __future__ import annotations

import socket

import httpx
import pytest

from kits.errors import SuitcaseError
from server.app import create_app
from server.runner import ServerThread
from server.settings import ServerSettings


def test_start_serves_and_stop_shuts_down(settings: ServerSettings) -> None:
    """Test that start() returns once requests are answered on a free port, and stop() frees it."""
    server = ServerThread(create_app(settings), "127.0.0.1", 0).start()
    try:
        assert server.port > 0
        assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/api/v1/health")


def test_port_in_use_fails_start(settings: ServerSettings) -> None:
    """Test that start() raises, rather than hanging, when the port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SuitcaseError, match="stopped while starting"):
            ServerThread(create_app(settings), "127.0.0.1", port).start()
