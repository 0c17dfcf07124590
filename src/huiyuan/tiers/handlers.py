"""Outbox handlers: a member's level is re-evaluated as soon as they pay an order or earn growth
value (which is also how a member dropped for inactivity is reactivated by a new purchase).
Evaluation is idempotent, so a retried event changes nothing twice.

Two evaluations are skipped because they cannot change the outcome:

* growth earned *for an order* (``points.earned`` with source ``order``): the order's own
  ``order.paid`` event is evaluated after the points handler earned that growth (handlers of one
  event run in ``HANDLER_MODULES`` order, points first, and the batch preparer earns before any
  handler runs);
* a second event of the same member in one dispatch batch: every event of a batch was committed
  before the batch was taken, so the first evaluation already saw what the later events announce.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers import service

_EVALUATED = "huiyuan.tiers.evaluated_in_batch"


def _evaluate(session: Session, event: OutboxEvent) -> None:
    member_id = event.payload.get("member_id")
    if member_id is None or event.brand_id is None:
        return
    seen: set[int] = session.info.setdefault(_EVALUATED, set())
    if int(member_id) in seen:
        return
    service.evaluate_member(
        session, actor=system_for_brand(event.brand_id), member_id=int(member_id), reason=event.type
    )
    seen.add(int(member_id))


@on("order.paid")
def evaluate_after_order(session: Session, event: OutboxEvent) -> None:
    _evaluate(session, event)


@on("points.earned")
def evaluate_after_growth(session: Session, event: OutboxEvent) -> None:
    if event.payload.get("point_type_kind") != "growth" or event.payload.get("source_type") == "order":
        return
    _evaluate(session, event)
