"""Queries on the audit log (tenancy applied by the session scope)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.audit.models import AuditEntry


def entries(
    session: Session,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """Newest first; ``after_id`` continues below the last id seen."""
    stmt = select(AuditEntry)
    if entity_type:
        stmt = stmt.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if after_id is not None:
        stmt = stmt.where(AuditEntry.id < after_id)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)))
