"""Messages the gateway rejected, with the reason (never dropped silently)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.store import DeadLetter
from server.api.auth import PrincipalDep
from server.api.deps import StoreDep
from server.timeutil import iso

__all__ = ["PAYLOAD_PREVIEW_CHARS", "DeadLetterPublic", "DeadLettersPublic", "router"]

router = APIRouter(tags=["dead letters"])

PAYLOAD_PREVIEW_CHARS = 2000


class DeadLetterPublic(BaseModel):
    """A rejected message; ``payload`` is its text (invalid UTF-8 replaced), cut to a preview."""

    received_at: float
    received_at_iso: str
    topic: str
    code: str
    reason: str
    payload: str
    payload_bytes: int
    payload_truncated: bool

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterPublic:
        """Return the public form of ``letter``."""
        text = letter.payload.decode("utf-8", errors="replace")
        return cls(
            received_at=letter.received_at,
            received_at_iso=iso(letter.received_at),
            topic=letter.topic,
            code=letter.code,
            reason=letter.reason,
            payload=text[:PAYLOAD_PREVIEW_CHARS],
            payload_bytes=len(letter.payload),
            payload_truncated=len(text) > PAYLOAD_PREVIEW_CHARS,
        )


class DeadLettersPublic(BaseModel):
    """Dead letters, newest first."""

    data: list[DeadLetterPublic]
    count: int


@router.get("/dead-letters")
def dead_letters(
    principal: PrincipalDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest first")] = 100,
) -> DeadLettersPublic:
    """Return the newest ``limit`` dead letters (of the caller's organisations' topics)."""
    letters = store.dead_letters(limit if principal.sees_all() else 1000)
    if not principal.sees_all():
        principal.require_user()
        mine = {slug for org, slug in principal.slugs.items() if principal.can(org, "operator")}
        letters = [x for x in letters if x.topic.split("/")[2:3] and x.topic.split("/")[2] in mine][:limit]
    data = [DeadLetterPublic.of(letter) for letter in letters]
    return DeadLettersPublic(data=data, count=len(data))
