"""``GET /login``: the session login form (the form posts to ``POST /api/v1/auth/login``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api.auth import PrincipalDep
from server.web.render import render

__all__ = ["router", "safe_next"]

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Return ``target`` when it is a path on this site, else ``/fleet`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/fleet"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """Render the login form."""
    target = safe_next(request.query_params.get("next"))
    return render(request, "login.html", {"config": {"next": target}}, principal=principal, section="login")
