"""Error pages for people: a browser that asks for HTML gets a page in the site's layout and
language; the API, and every client that does not ask for HTML, keeps the JSON body.

Used by the app's exception handlers (``server.app``) for unknown pages (404), forbidden (403),
not logged in (401), other HTTP errors, and server errors (500, whose details stay in the log).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from server.api import API_PREFIX

__all__ = ["error_page", "wants_html"]

_KNOWN = (401, 403, 404, 500)


def wants_html(request: Request) -> bool:
    """Whether ``request`` is a browser asking for a page: not the API, and HTML accepted before
    JSON (a browser's ``Accept`` starts with ``text/html``; fetch() and API clients do not)."""
    if request.url.path == API_PREFIX or request.url.path.startswith(API_PREFIX + "/"):
        return False
    accept = request.headers.get("accept", "").lower()
    html = accept.find("text/html")
    if html < 0:
        return False
    json_at = accept.find("application/json")
    return json_at < 0 or html < json_at


def error_page(
    request: Request, status: int, detail: object = None, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The error page of ``status`` in the visitor's language; ``detail`` (the API's message,
    naming the problem and the fix) is shown under "Details" for 4xx, never for 5xx."""
    from server.web.render import render

    key = str(status) if status in _KNOWN else "other"
    shown = detail if isinstance(detail, str) and status < 500 and detail else None
    response = render(
        request,
        "error.html",
        {"status": status, "key": key, "path": request.url.path, "detail": shown},
        status_code=status,
    )
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
