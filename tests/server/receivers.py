"""Local receivers for what the server sends out: an HTTP webhook endpoint and an SMTP server.

Both listen on loopback, so a test allow-lists 127.0.0.1 in the outbound policy to reach them.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller

from suitcase.broker import free_port

__all__ = ["Hook", "Mailbox", "mailbox", "webhook_receiver"]


class Hook:
    """What a webhook receiver got; ``answer`` chooses each reply's status (and headers)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.hosts: list[str] = []
        self.answer: Callable[[int], tuple[int, dict[str, str]]] = lambda n: (204, {})
        self.on_post: Callable[[dict[str, Any]], None] = lambda body: None
        self.url = ""


@contextmanager
def webhook_receiver() -> Iterator[Hook]:
    """An HTTP server on loopback that records the JSON posted to it."""
    hook = Hook()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hook.on_post(body)
            hook.posts.append(body)
            hook.hosts.append(self.headers.get("Host", ""))
            status, headers = hook.answer(len(hook.posts))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    """What the SMTP server accepted; ``on_message`` runs for each before it is accepted."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.on_message: Callable[[Any], None] = lambda envelope: None
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.on_message(envelope)
        self.messages.append(envelope)
        return "250 OK"


@contextmanager
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()
