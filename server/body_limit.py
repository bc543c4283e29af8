"""Request bodies are bounded: a body over the limit is refused with 413 before it is read whole.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is answered at once; a body
sent without one (chunked) is counted as it arrives and refused when it passes the limit.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "BodyTooLarge"]

_SLUG = HTTPStatus(413).phrase.lower().replace(" ", "_")  # as server.app's other error bodies


def _detail(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes, the most this server accepts: send less "
        "(split a large change), or have the administrator raise SUITCASE_SERVER_MAX_BODY_BYTES"
    )


class BodyTooLarge(HTTPException):
    """The client sent more than the limit without declaring it (raised while a route reads)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _answer(limit: int) -> tuple[dict[str, object], bytes]:
    body = json.dumps({"detail": _detail(limit), "error": _SLUG, "status": 413}).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, limit: int, larger: dict[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get((scope.get("method", ""), scope.get("path", "")), self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(send, limit)
                    return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        start, body = _answer(limit)
        await send(start)
        await send({"type": "http.response.body", "body": body})
