"""Outbox handlers: a member's level is re-evaluated as soon as they pay an order or earn growth
value (which is also how a member dropped for inactivity is reactivated by a new purchase).
Evaluation is idempotent, so a retried event changes nothing twice."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers import service


def _evaluate(session: Session, event: OutboxEvent) -> None:
    member_id = event.payload.get("member_id")
    if member_id is None or event.brand_id is None:
        return
    service.evaluate_member(
        session, actor=system_for_brand(event.brand_id), member_id=int(member_id), reason=event.type
    )


@on("order.paid")
def evaluate_after_order(session: Session, event: OutboxEvent) -> None:
    _evaluate(session, event)


@on("points.earned")
def evaluate_after_growth(session: Session, event: OutboxEvent) -> None:
    if event.payload.get("point_type_kind") == "growth":
        _evaluate(session, event)
