"""Outbox handlers: a member's level is re-evaluated as soon as they pay an order or earn growth
value (which is also how a member dropped for inactivity is reactivated by a new purchase).
Evaluation is idempotent, so a retried event changes nothing twice.

When a member enters a level, the level's ongoing ``benefits`` are granted (``tier.changed``).

Two evaluations are skipped because they cannot change the outcome:

* growth earned *for an order* (``points.earned`` with source ``order``): the order's own
  ``order.paid`` event is evaluated after the points handler earned that growth (handlers of one
  event run in ``HANDLER_MODULES`` order, points first, and the batch preparer earns before any
  handler runs);
* a second event of the same member in one dispatch batch: every event of a batch was committed
  before the batch was taken, so the first evaluation already saw what the later events announce.

The ``order.paid`` events of a batch are evaluated together by a preparer
(``service.evaluate_members``: a few queries for the whole batch, one by one only for members whose
level may change). It runs after the points preparer of the same events, which earns every order
of the batch (the dispatcher skips it if that preparer failed), so the growth they bring is seen;
the per-event handler then finds the member evaluated and returns.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.benefits import registry as benefits
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on, prepare
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers import service
from huiyuan.tiers.models import TierLevel
from huiyuan.tiers.repository import TierRepository

_EVALUATED = "huiyuan.tiers.evaluated_in_batch"
_LEVELS = "huiyuan.tiers.levels_in_batch"


def _seen(session: Session) -> set[int]:
    seen: set[int] = session.info.setdefault(_EVALUATED, set())
    return seen


def _evaluate(session: Session, event: OutboxEvent) -> None:
    member_id = event.payload.get("member_id")
    if member_id is None or event.brand_id is None:
        return
    seen = _seen(session)
    if int(member_id) in seen:
        return
    service.evaluate_member(
        session, actor=system_for_brand(event.brand_id), member_id=int(member_id), reason=event.type
    )
    seen.add(int(member_id))


@on("order.paid")
def evaluate_after_order(session: Session, event: OutboxEvent) -> None:
    _evaluate(session, event)


@prepare("order.paid")
def evaluate_after_orders(session: Session, events: list[OutboxEvent]) -> None:
    """Evaluate the buyers of a batch of paid orders (one brand) at once."""
    brand_id = events[0].brand_id
    if brand_id is None:
        return
    seen = _seen(session)
    member_ids = {int(e.payload["member_id"]) for e in events if e.payload.get("member_id") is not None}
    evaluated = service.evaluate_members(
        session, actor=system_for_brand(brand_id), member_ids=sorted(member_ids - seen), reason="order.paid"
    )
    seen.update(evaluated)


@on("points.earned")
def evaluate_after_growth(session: Session, event: OutboxEvent) -> None:
    if event.payload.get("point_type_kind") != "growth" or event.payload.get("source_type") == "order":
        return
    _evaluate(session, event)


@on("tier.changed")
def grant_level_benefits(session: Session, event: OutboxEvent) -> None:
    """A member entered a level (or began a new term of it, ``retain``): grant the level's ongoing
    ``benefits`` through the registry, keyed ``tier-benefit:{member}:{level}:{change}:{i}`` so a
    retried event grants nothing twice. A refused grant fails the event, which is retried."""
    p = event.payload
    if event.brand_id is None or p.get("to_level") is None:
        return
    if p.get("from_level") == p.get("to_level") and p.get("reason") != "retain":
        return
    # The levels are read once per dispatch batch and brand (a batch may hold many tier changes).
    known: dict[int, list[TierLevel]] = session.info.setdefault(_LEVELS, {})
    if event.brand_id not in known:
        known[event.brand_id] = TierRepository(session).levels(event.brand_id)
    levels = known[event.brand_id]
    level = next((lv for lv in levels if lv.code == p["to_level"]), None)
    if level is None or not level.benefits:
        return
    for i, spec in enumerate(level.benefits):
        benefits.grant(
            session,
            actor=system_for_brand(event.brand_id),
            member_id=int(p["member_id"]),
            benefit=spec,
            source_type="tier",
            source_id=str(level.id),
            key=f"tier-benefit:{p['member_id']}:{level.id}:{p['change_id']}:{i}",
        )
