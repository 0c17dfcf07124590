"""Earning and giving back points for orders and actions.

* ``order.paid`` → the brand's active order rules are evaluated (``points.rules``) against the
  order as stored (lines with their paid share, category paths, product brands, payments) and the
  member's tier and paid plan; each grant becomes a lot through ``ledger.earn`` keyed
  ``order:{order_id}:rule:{rule_id}``, so a redelivered event earns nothing twice. Points stay
  pending for the rule's (or the point type's) return window, counted from the payment time.
* ``order.refunded`` → each lot the order earned is reversed down to its pro-rata share of what is
  still paid (``floor(amount × refunded / paid)`` taken back cumulatively, so two partial refunds
  never take more than one full refund), and the points the order spent (checkout reservations and
  spends whose source is the order number) are given back in the same proportion to their own lots.
  The policy for points already spent or expired is ``ledger.reverse_lot``'s.
* ``earn_for_action`` — check-in, review, game, task, referral, birthday or any named action.

Rule budgets: a rule with a ``budget`` cap is locked (``FOR UPDATE``) before its usage is read and
its ``granted_total`` raised in the same transaction; locks are taken in rule-id order before the
account lock, the same order on every path, so two earners never deadlock.

Tier, paid plan and benefit-card multipliers are read from their domains' read functions when those
domains are installed; earning depends on them in this one direction only (they learn about points
through events).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import IdempotencyMismatch, NotFound, field_error
from huiyuan.kit.scope import Principal, system_for_brand
from huiyuan.members.models import Member
from huiyuan.orders.models import Category, Order, OrderItem, OrderPayment, Product
from huiyuan.outbox.dispatcher import per_pass
from huiyuan.outbox.handlers import on, prepare
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points import ledger, rule_schema, rules
from huiyuan.points.models import EarnRule, PointEntry, PointLot, PointOperation
from huiyuan.tenancy.models import Brand

# -- facts ----------------------------------------------------------------------------------------


def _brand_tz(session: Session, brand_id: int) -> str:
    """The brand's time zone (read once per outbox dispatch pass)."""
    return per_pass(session, "brand.timezone", brand_id, lambda: _read_brand_tz(session, brand_id))


def _read_brand_tz(session: Session, brand_id: int) -> str:
    brand = session.get(Brand, brand_id)
    return brand.timezone if brand is not None else "Asia/Shanghai"


def _optional(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError):
        return None


_LOOK_UP: Any = object()


def member_facts(
    session: Session,
    member: Member,
    at: datetime,
    *,
    tier: Any = _LOOK_UP,
    plan: Any = _LOOK_UP,
    card: Any = _LOOK_UP,
) -> rules.MemberFacts:
    """The member as earn rules see it: tier, paid plan, benefit card and their multipliers,
    birthday. A caller that read them for many members at once passes them (``None`` for none);
    ``card`` is the best ``benefits.cards.MultiplierTerm`` covering ``at``."""
    multipliers: list[rules.ExternalMultiplier] = []
    tier_code = plan_code = None
    if tier is _LOOK_UP:
        current_tier = _optional("huiyuan.tiers.reads", "current_tier")
        tier = current_tier(session, member.id) if current_tier is not None else None
    if tier is not None:
        tier_code = tier.code
        factor = Decimal(str(getattr(tier, "points_multiplier", 1) or 1))
        if factor > 1:
            multipliers.append(rules.ExternalMultiplier(source=f"tier:{tier_code}", factor=factor))
    if plan is _LOOK_UP:
        active_plan = _optional("huiyuan.paid.service", "active_plan")
        plan = active_plan(session, member.id, at) if active_plan is not None else None
    if plan is not None:
        plan_code = plan.level_code
        factor = Decimal(str(getattr(plan, "points_multiplier", 1) or 1))
        if factor > 1:
            multipliers.append(rules.ExternalMultiplier(source=f"paid:{plan_code}", factor=factor))
    if card is _LOOK_UP:
        card_terms = _optional("huiyuan.benefits.cards", "points_multiplier_terms")
        best = _optional("huiyuan.benefits.cards", "best_multiplier")
        card = (
            best(card_terms(session, [member.id], at, at).get(member.id, []), at)
            if card_terms is not None and best is not None
            else None
        )
    if card is not None:
        multipliers.append(rules.ExternalMultiplier(source=card.source, factor=card.factor))
    return rules.MemberFacts(
        member_id=member.id,
        tier_code=tier_code,
        paid_plan_code=plan_code,
        birthday=member.birthday,
        multipliers=multipliers,
    )


def order_facts(session: Session, order: Order) -> rules.OrderFacts:
    """The stored order with what rules filter on: lines' paid share, category path, maker brand."""
    rows = session.execute(
        select(OrderItem, Category.path, Product.product_brand)
        .outerjoin(Category, Category.id == OrderItem.category_id)
        .outerjoin(Product, Product.id == OrderItem.product_id)
        .where(OrderItem.order_id == order.id)
        .order_by(OrderItem.line_no)
    ).all()
    payments = session.execute(
        select(OrderPayment.method, OrderPayment.amount).where(OrderPayment.order_id == order.id)
    ).all()
    return rules.OrderFacts(
        order_id=order.id,
        order_number=order.order_number,
        member_id=order.member_id,
        store_id=order.store_id,
        channel=order.channel,
        paid_at=order.paid_at,
        paid_amount=order.paid_amount,
        deal_amount=order.deal_amount,
        items=[
            rules.ItemFacts(
                sku=item.sku,
                category_id=item.category_id,
                category_path=path,
                product_brand=maker,
                quantity=item.quantity,
                amount=item.amount,
                paid_amount=item.paid_amount,
            )
            for item, path, maker in rows
        ],
        payments=[(method, amount) for method, amount in payments],
    )


def _local_day(at: datetime, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    day: date = at.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, start + timedelta(days=1)


# Lots a rule granted itself (carried-over and transferred copies keep the rule id but are not grants).
GRANT_SOURCES = ("order", "action")

_parsed_rules: dict[str, rule_schema.RuleDefinition] = {}


def _parsed(rule: EarnRule) -> rule_schema.RuleDefinition:
    """A rule's parsed definition, parsed once per distinct definition in this process."""
    key = json.dumps(rule.definition, sort_keys=True, default=str)
    found = _parsed_rules.get(key)
    if found is None:
        if len(_parsed_rules) > 10_000:
            _parsed_rules.clear()
        found = _parsed_rules[key] = rule_schema.parse_definition(rule.definition)
    return found


def _rule_inputs(
    session: Session, brand_id: int, trigger: str, member_id: int, at: datetime, tz: str
) -> list[rules.RuleInput]:
    found = list(
        session.scalars(
            select(EarnRule)
            .where(EarnRule.brand_id == brand_id, EarnRule.trigger == trigger, EarnRule.status == "active")
            .order_by(EarnRule.id)
        )
    )
    inputs: list[rules.RuleInput] = []
    day_start, day_end = _local_day(at, tz)
    for rule in found:
        definition = _parsed(rule)
        caps = definition.caps
        if caps is not None and caps.budget is not None:
            # Budgeted rules are locked so concurrent earners read and raise the total in turn.
            session.refresh(rule, with_for_update=True)
        per_member = today = 0
        if caps is not None and caps.per_member is not None:
            per_member = int(
                session.scalar(
                    select(func.coalesce(func.sum(PointLot.amount), 0)).where(
                        PointLot.rule_id == rule.id,
                        PointLot.member_id == member_id,
                        PointLot.source_type.in_(GRANT_SOURCES),
                    )
                )
                or 0
            )
        if caps is not None and caps.per_day is not None:
            today = int(
                session.scalar(
                    select(func.coalesce(func.sum(PointLot.amount), 0)).where(
                        PointLot.rule_id == rule.id,
                        PointLot.member_id == member_id,
                        PointLot.source_type.in_(GRANT_SOURCES),
                        PointLot.earned_at >= day_start,
                        PointLot.earned_at < day_end,
                    )
                )
                or 0
            )
        inputs.append(
            rules.RuleInput(
                rule_id=rule.id,
                code=rule.code,
                definition=definition,
                valid_from=rule.valid_from,
                valid_to=rule.valid_to,
                usage=rules.RuleUsage(
                    granted_today=int(today),
                    granted_to_member=int(per_member),
                    granted_total=rule.granted_total,
                ),
            )
        )
    return inputs


def _apply(
    session: Session,
    *,
    actor: Principal,
    grants: Sequence[rules.Grant],
    member_id: int,
    key_prefix: str,
    source_type: str,
    source_id: str,
    store_id: int | None,
    earned_at: datetime,
) -> list[ledger.LedgerResult]:
    results = []
    for grant in grants:
        result = ledger.earn(
            session,
            actor=actor,
            member_id=member_id,
            point_type=grant.point_type,
            amount=grant.points,
            key=f"{key_prefix}:rule:{grant.rule_id}",
            source_type=source_type,
            source_id=source_id,
            reason=grant.rule_code,
            store_id=store_id,
            funded_by=grant.funded_by,
            rule_id=grant.rule_id,
            earned_at=earned_at,
            pending_days=grant.pending_days,
        )
        if not result.replayed:
            rule = session.get(EarnRule, grant.rule_id)
            assert rule is not None
            rule.granted_total += grant.points
        results.append(result)
    return results


def earn_for_order(session: Session, *, actor: Principal, order_id: int) -> list[ledger.LedgerResult]:
    """Evaluate the brand's order rules for a paid order and grant what they give (idempotent)."""
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound(f"Order {order_id} was not found.")
    if order.member_id is None:
        return []
    member = session.get(Member, order.member_id)
    if member is None or member.status == "closed":
        return []
    marker = session.scalars(
        select(PointOperation).where(
            PointOperation.brand_id == order.brand_id, PointOperation.key == f"order:{order.id}:earned"
        )
    ).one_or_none()
    if marker is not None:
        # Handled before (here or by the set-based path): what it earned, nothing more.
        return [
            ledger.LedgerResult.from_json(op.result)
            for op in session.scalars(
                select(PointOperation)
                .where(
                    PointOperation.brand_id == order.brand_id,
                    PointOperation.key.startswith(f"order:{order.id}:rule:", autoescape=True),
                )
                .order_by(PointOperation.id)
            )
        ]
    tz = _brand_tz(session, order.brand_id)
    inputs = _rule_inputs(session, order.brand_id, "order", member.id, order.paid_at, tz)
    if not inputs:
        return []
    grants = rules.evaluate(
        inputs,
        order=order_facts(session, order),
        action=None,
        member=member_facts(session, member, order.paid_at),
        tz=tz,
    )
    results = _apply(
        session,
        actor=actor,
        grants=grants,
        member_id=member.id,
        key_prefix=f"order:{order.id}",
        source_type="order",
        source_id=order.order_number,
        store_id=order.store_id,
        earned_at=order.paid_at,
    )
    from huiyuan.points.bulk import write_markers

    write_markers(session, brand_id=order.brand_id, order_ids=[order.id], actor=actor)
    return results


def earn_for_action(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    action: str,
    key: str,
    occurred_at: datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> list[ledger.LedgerResult]:
    """Grant what the brand's rules give for a member's action (check-in, review …) that happened
    at ``occurred_at`` (default now); ``key`` makes a retried call earn once."""
    brand_id = actor.scope.require_brand()
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    digest = ledger._hash(
        {
            "op": "action",
            "member": member_id,
            "action": action,
            "at": occurred_at,
            "properties": properties or {},
        }
    )
    # The hash is of the request as sent: a retry that gives no time is the same request.
    occurred_at = occurred_at or utcnow()
    marker = session.scalars(
        select(PointOperation).where(
            PointOperation.brand_id == brand_id, PointOperation.key == f"action:{key}"
        )
    ).one_or_none()
    if marker is not None:
        if marker.request_hash != digest:
            raise IdempotencyMismatch(
                "This idempotency key was already used for a different action.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        # A retried action: what it earned the first time, even if caps would refuse it now.
        return [
            ledger.LedgerResult.from_json(op.result)
            for op in session.scalars(
                select(PointOperation)
                .where(
                    PointOperation.brand_id == brand_id,
                    PointOperation.key.startswith(f"action:{key}:rule:", autoescape=True),
                )
                .order_by(PointOperation.id)
            )
        ]
    session.add(
        PointOperation(
            brand_id=brand_id,
            key=f"action:{key}",
            kind="earn_action",
            request_hash=digest,
            member_id=member_id,
            result={"action": action},
            actor=actor.label[:120],
        )
    )
    tz = _brand_tz(session, brand_id)
    inputs = _rule_inputs(session, brand_id, action, member.id, occurred_at, tz)
    if not inputs:
        return []
    facts = rules.ActionFacts(action=action, occurred_at=occurred_at, properties=properties or {})
    grants = rules.evaluate(
        inputs, order=None, action=facts, member=member_facts(session, member, occurred_at), tz=tz
    )
    # Actions have no return window: their points are spendable at once.
    grants = [dataclasses.replace(g, pending_days=0) if g.pending_days is None else g for g in grants]
    return _apply(
        session,
        actor=actor,
        grants=grants,
        member_id=member.id,
        key_prefix=f"action:{key}",
        source_type="action",
        source_id=action[:64],
        store_id=None,
        earned_at=occurred_at,
    )


def give_back_for_refund(session: Session, *, actor: Principal, order_id: int, refund_id: int) -> int:
    """Reverse the order's earned lots and restore its spent points to the refunded share; returns
    the number of ledger operations written."""
    order = session.get(Order, order_id)
    if order is None or order.member_id is None or order.paid_amount <= 0:
        return 0
    share = min(Decimal(1), order.refunded_amount / order.paid_amount)
    operations = 0
    lots = session.scalars(
        select(PointLot)
        .where(
            PointLot.member_id == order.member_id,
            PointLot.source_type == "order",
            PointLot.source_id == order.order_number,
        )
        .order_by(PointLot.id)
    ).all()
    for lot in lots:
        target = lot.amount if share >= 1 else int(lot.amount * share)
        delta = target - lot.reversed_amount
        if delta > 0:
            ledger.reverse_lot(
                session,
                actor=actor,
                lot_id=lot.id,
                amount=delta,
                key=f"refund:{refund_id}:lot:{lot.id}",
                reason=f"order {order.order_number} refunded",
                source_type="refund",
                source_id=str(refund_id),
            )
            operations += 1
    spends = session.scalars(
        select(PointEntry)
        .where(
            PointEntry.member_id == order.member_id,
            PointEntry.kind.in_(("spend", "confirm")),
            PointEntry.source_type == "order",
            PointEntry.source_id == order.order_number,
        )
        .order_by(PointEntry.id)
    ).all()
    for entry in spends:
        drawn = _reserved_amount(session, entry) if entry.kind == "confirm" else -entry.amount
        restored = int(
            session.scalar(
                select(func.coalesce(func.sum(PointEntry.amount), 0)).where(
                    PointEntry.reverses_entry_id == entry.id, PointEntry.kind == "restore"
                )
            )
            or 0
        )
        target = drawn if share >= 1 else int(drawn * share)
        delta = target - restored
        if delta > 0:
            ledger.restore_entry(
                session,
                actor=actor,
                entry_id=entry.id,
                amount=delta,
                key=f"refund:{refund_id}:entry:{entry.id}",
                reason=f"order {order.order_number} refunded",
                source_type="refund",
                source_id=str(refund_id),
            )
            operations += 1
    return operations


def _reserved_amount(session: Session, confirm_entry: PointEntry) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(PointEntry.d_reserved), 0)).where(
                PointEntry.reservation_id == confirm_entry.reservation_id, PointEntry.kind == "reserve"
            )
        )
        or 0
    )


# -- outbox handlers ------------------------------------------------------------------------------


# Orders of this session's dispatch batch the preparer earned: their handler has nothing to look up.
_PREPARED = "huiyuan.points.prepared_orders"


@on("order.paid")
def earn_on_order_paid(session: Session, event: OutboxEvent) -> None:
    if event.brand_id is None or not event.payload.get("member_id"):
        return
    order_id = int(event.payload["order_id"])
    if order_id in session.info.get(_PREPARED, ()):
        return
    handled = session.scalar(
        select(PointOperation.id).where(
            PointOperation.brand_id == event.brand_id, PointOperation.key == f"order:{order_id}:earned"
        )
    )
    if handled is None:  # not done by the batch preparer (or it failed): earn one by one
        earn_for_order(session, actor=system_for_brand(event.brand_id), order_id=order_id)


@prepare("order.paid")
def earn_for_paid_orders(session: Session, events: list[OutboxEvent]) -> None:
    """Earn for a dispatch batch of paid orders set-based; ``earn_on_order_paid`` then finds each
    order's marker and returns at once."""
    from huiyuan.points.bulk import earn_for_orders

    brand_id = events[0].brand_id
    if brand_id is None:
        return
    actor = system_for_brand(brand_id)
    order_ids = [int(e.payload["order_id"]) for e in events if e.payload.get("member_id")]
    result = earn_for_orders(session, actor=actor, order_ids=order_ids)
    # What the set-based path leaves (capped rules, members with a debt) is earned here, order by
    # order, so that every order of the batch has earned before the next preparer (tiers) runs.
    for order_id in result.per_order:
        earn_for_order(session, actor=actor, order_id=order_id)
    session.flush()
    session.info.setdefault(_PREPARED, set()).update(order_ids)


@on("order.refunded")
def give_back_on_order_refunded(session: Session, event: OutboxEvent) -> None:
    if event.brand_id is None or not event.payload.get("member_id"):
        return
    give_back_for_refund(
        session,
        actor=system_for_brand(event.brand_id),
        order_id=int(event.payload["order_id"]),
        refund_id=int(event.payload["refund_id"]),
    )
