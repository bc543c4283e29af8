"""The audit log: every change, who made it, when."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from server.tables import AuditRow

__all__ = ["record"]


def record(
    session: Session,
    *,
    at: float,
    actor: str,
    actor_user_id: int | None,
    action: str,
    entity: str,
    entity_id: object,
    org_id: int | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry to ``session`` (committed with the change it records)."""
    session.add(
        AuditRow(
            at=at,
            actor=actor,
            actor_user_id=actor_user_id,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            org_id=org_id,
            detail=detail or {},
        )
    )
