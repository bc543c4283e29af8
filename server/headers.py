"""Security headers on every response: a Content-Security-Policy without inline script, no framing.

A pure ASGI middleware (it only adds headers to ``http.response.start``), so streamed exports
stream as before. A header a route sets itself is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy", "security_headers"]

# What no page uses: a feature a page never asks for cannot be abused by an injected frame or script.
_PERMISSIONS = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), publickey-credentials-get=(), usb=(), "
    "interest-cohort=()"
)


def _origin(url: str) -> str | None:
    """The ``scheme://host[:port]`` of a tile URL template, or None when it is empty or relative."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(map_tiles_url: str = "") -> str:
    """The policy: scripts, styles, fetches and frames from this origin only; images also from the
    map tile server (``map_tiles_url``) and ``data:`` (Leaflet's and the favicon's)."""
    images = ["'self'", "data:"]
    tiles = _origin(map_tiles_url)
    if tiles is not None:
        images.append(tiles)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": images,
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def security_headers(map_tiles_url: str = "", *, https: bool = False) -> list[tuple[bytes, bytes]]:
    """Every response's security headers; ``https`` adds HSTS (production sits behind TLS)."""
    headers = [
        ("Content-Security-Policy", content_security_policy(map_tiles_url)),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # Tile servers (OpenStreetMap's usage policy) want a Referer: the origin, never the path,
        # which for the kiosk carries its token.
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", _PERMISSIONS),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
    ]
    if https:
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class SecurityHeaders:
    """ASGI middleware adding :func:`security_headers` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
