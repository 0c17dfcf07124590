"""Writing domain events. ``emit`` only adds a row to the caller's transaction; delivery is the
dispatcher's job (``outbox.dispatcher``), after commit, so a rolled-back change never announces itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.outbox.models import OutboxEvent


def emit(
    session: Session,
    *,
    type: str,
    brand_id: int | None,
    aggregate_type: str,
    aggregate_id: object,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Queue a domain event (``member.enrolled``, ``order.paid`` …) in the current transaction."""
    event = OutboxEvent(
        type=type,
        brand_id=brand_id,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        payload=payload,
    )
    session.add(event)
    return event


_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]


def emit_now(
    session: Session,
    *,
    type: str,
    brand_id: int | None,
    aggregate_type: str,
    aggregate_id: object,
    payload: dict[str, Any],
) -> None:
    """``emit`` written at once by one INSERT, without an ORM object to flush (hot paths). Events
    still pending in the session are flushed first, so ids keep the order events were emitted in."""
    if any(isinstance(obj, OutboxEvent) for obj in session.new):
        session.flush()
    session.connection().execute(
        insert(_OUTBOX),
        {
            "type": type,
            "brand_id": brand_id,
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "payload": payload,
            "occurred_at": utcnow(),
            "attempts": 0,
        },
    )
