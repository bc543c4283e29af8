"""``GET /kits/import``: register kits and their Pis from a CSV file (operators).

``static/kit_import.js`` reads the chosen file, checks it with ``POST /api/v1/kits/import``
(``dry_run``), shows every problem by row and column, then imports it and shows the claim codes
made, once, with a CSV of them to print labels from.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from server.api.auth import PrincipalDep
from server.api.deps import SessionDep
from server.kit_csv import COLUMNS, MAX_ROWS
from server.tables import OrganisationRow
from server.web.render import login_redirect, render

__all__ = ["router"]

router = APIRouter()


@router.get("/kits/import", response_class=HTMLResponse)
def kit_import_page(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    """Render the import form with the organisations where the caller may register kits."""
    if principal.kind != "user":
        return login_redirect(request)
    allowed = principal.org_ids("operator")
    query = select(OrganisationRow).order_by(col(OrganisationRow.name))
    if allowed is not None:
        query = query.where(col(OrganisationRow.id).in_(sorted(allowed)))
    orgs = list(session.exec(query).all())
    return render(
        request,
        "kit_import.html",
        {"orgs": orgs, "columns": COLUMNS, "max_rows": MAX_ROWS},
        principal=principal,
        section="kits",
    )
