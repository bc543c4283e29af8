"""``GET /login``: the session login form (the form posts to ``POST /api/v1/auth/login``)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api.auth import PrincipalDep
from server.web.render import render

__all__ = ["router", "safe_next"]

router = APIRouter()


def _unsafe(ch: str) -> bool:
    return ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0


def safe_next(target: str | None) -> str:
    """Return ``target`` when it is a same-origin relative path, else ``/fleet`` (no open redirect).

    Browsers drop tabs and newlines from a URL and read ``\\`` as ``/``, so ``/\t/evil.example``
    and ``/\\evil.example`` become ``//evil.example``, another site: a target with any control
    character, whitespace or backslash is refused, as is one with a scheme or a host, and what is
    returned is rebuilt from the path, query and fragment alone.
    """
    fallback = "/fleet"
    if not target or len(target) > 2000 or not target.startswith("/") or target[1:2] == "/":
        return fallback
    if "\\" in target or any(_unsafe(ch) for ch in target):
        return fallback
    parts = urlsplit(target)
    path = unquote(parts.path)  # once more decoded, as a careless client might
    if path[1:2] == "/" or "\\" in path or any(_unsafe(ch) for ch in path):
        return fallback
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return fallback
    return urlunsplit(("", "", parts.path, parts.query, parts.fragment))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """Render the login form."""
    target = safe_next(request.query_params.get("next"))
    return render(request, "login.html", {"config": {"next": target}}, principal=principal, section="login")
