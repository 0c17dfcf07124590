"""Records audit entries. Called by every business verb inside its own transaction; never commits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import utcnow
from huiyuan.kit.context import current_request_id
from huiyuan.kit.scope import Principal

REDACTED = "•••"


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"field": [old, new]}`` for every field that changed; sensitive fields are redacted."""
    before = before or {}
    after = after or {}
    out: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            out[key] = [old, new]
    return out


def record(
    session: Session,
    *,
    actor: Principal,
    action: str,
    entity_type: str,
    entity_id: object,
    brand_id: int | None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> AuditEntry:
    """Add one audit row for a change; the caller's transaction decides whether it lands."""
    changes: dict[str, Any] = diff(before, after)
    if note:
        changes["_note"] = note
    entry = AuditEntry(
        brand_id=brand_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        changes=changes,
        request_id=current_request_id(),
    )
    session.add(entry)
    return entry


_AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]


def record_now(
    session: Session,
    *,
    actor: Principal,
    action: str,
    entity_type: str,
    entity_id: object,
    brand_id: int | None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """``record`` written at once by one INSERT, without an ORM object to flush: for hot paths
    (one order) that write their other rows with Core too."""
    session.connection().execute(
        insert(_AUDIT_LOG),
        {
            "brand_id": brand_id,
            "at": utcnow(),
            "actor_kind": actor.kind,
            "actor_id": actor.id,
            "actor_name": actor.name,
            "action": action,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "changes": diff(None, after),
            "request_id": current_request_id(),
        },
    )
