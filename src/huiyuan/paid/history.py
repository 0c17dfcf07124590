"""Writing a subscription's history: the append-only ``paid_subscription_events`` rows, and the audit
row and outbox event that announce a change, all in the caller's transaction (never commits)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.paid.models import PlanLevel, Subscription, SubscriptionEvent


def add_event(
    session: Session,
    sub: Subscription,
    kind: str,
    *,
    at: datetime,
    amount: Decimal | None = None,
    reference: str | None = None,
    digest: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> SubscriptionEvent:
    """Append one history row; a row carrying a client ``reference`` is written at once, so a
    reference taken meanwhile by a concurrent request is a 409 rather than a failed commit."""
    event = SubscriptionEvent(
        brand_id=sub.brand_id,
        subscription_id=sub.id,
        member_id=sub.member_id,
        level_id=sub.level_id,
        kind=kind,
        amount=amount,
        reference=reference,
        request_hash=digest,
        reason=reason,
        detail=detail or {},
        occurred_at=at,
    )
    if reference is None:
        session.add(event)
        return event
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        # The same reference was written by a concurrent request (for another member).
        raise Conflict(f"Reference {reference} is being used by a concurrent request; retry.")
    return event


def snapshot(sub: Subscription) -> dict[str, Any]:
    return {
        "member_id": sub.member_id,
        "level_id": sub.level_id,
        "status": sub.status,
        "starts_at": sub.starts_at.isoformat(),
        "ends_at": sub.ends_at.isoformat(),
        "amount_paid": str(sub.amount_paid),
    }


def announce(
    session: Session,
    *,
    actor: Principal,
    sub: Subscription,
    level: PlanLevel,
    action: str,
    before: dict[str, Any] | None,
    payload: dict[str, Any],
    note: str | None = None,
) -> None:
    """The audit row and the outbox event (``action`` is both) of a change to ``sub``."""
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="paid_subscription",
        entity_id=sub.id,
        brand_id=sub.brand_id,
        before=before,
        after=snapshot(sub),
        note=note,
    )
    emit(
        session,
        type=action,
        brand_id=sub.brand_id,
        aggregate_type="paid_subscription",
        aggregate_id=sub.id,
        payload={
            "subscription_id": sub.id,
            "member_id": sub.member_id,
            "category_id": sub.category_id,
            "level_id": level.id,
            "level_code": level.code,
            "status": sub.status,
            "starts_at": sub.starts_at.isoformat(),
            "ends_at": sub.ends_at.isoformat(),
            "points_multiplier": str(level.points_multiplier),
            **payload,
        },
    )
