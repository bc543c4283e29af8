"""``GET /claim``: the page a Pi's QR label opens on a staff member's phone.

The claim code travels in the URL fragment (``/claim#code=...``), which browsers never send to a
server or a log; ``static/claim.js`` reads it, sends a visitor who is not logged in to the login
page and back, lists the deployments the user may bind to, and confirms with
``POST /api/v1/claims/bind``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.api.auth import PrincipalDep
from server.web.render import render

__all__ = ["router"]

router = APIRouter()


@router.get("/claim", response_class=HTMLResponse)
def claim_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """Render the claim page (the login check runs in the browser: the code is in the fragment)."""
    return render(request, "claim.html", {"config": {}}, principal=principal, section="kits")
