"""Per-client rate limits of the expensive reads: readings exports and pilot reports.

An export streams without a cap on its span, so what bounds the work is how often one client may
start one: ``export_per_min`` per account (or per address when anonymous). Past it, 429 with
``Retry-After``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from server.api.auth import PrincipalDep, client_key
from server.api.deps import ResourcesDep

__all__ = ["ExportSlotDep", "export_slot"]


def export_slot(request: Request, principal: PrincipalDep, resources: ResourcesDep) -> None:
    """Count one export of the caller, or refuse it with 429 when over the limit."""
    if principal.user_id is not None:
        key = f"user:{principal.user_id}"
    elif principal.token_id is not None:
        key = f"token:{principal.token_id}"
    else:
        key = f"addr:{client_key(request)}"
    wait = resources.exports.take(key)
    if wait:
        limit = resources.settings.export_per_min
        raise HTTPException(
            status_code=429,
            detail=f"too many exports: at most {limit} a minute per client; wait {wait:.0f} s, or ask "
            "for a longer time range in one export instead of many short ones",
            headers={"Retry-After": str(int(wait) + 1)},
        )


ExportSlotDep = Annotated[None, Depends(export_slot)]
