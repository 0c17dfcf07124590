"""Shaping plan categories, levels, subscriptions and their history into response models. Read-only."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.paid import service
from huiyuan.paid.models import PlanCategory, PlanLevel, Subscription, SubscriptionEvent
from huiyuan.paid.schemas import (
    CategoryOut,
    LevelBenefits,
    LevelOut,
    MemberPaidOut,
    PeriodicBenefits,
    SubscriptionChangeOut,
    SubscriptionEventOut,
    SubscriptionOut,
    Validity,
)


def category_out(c: PlanCategory) -> CategoryOut:
    return CategoryOut(
        id=c.id,
        code=c.code,
        name=c.name,
        customer_group=c.customer_group,
        description=c.description,
        status=c.status,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def level_out(lv: PlanLevel) -> LevelOut:
    periodic = (
        PeriodicBenefits(period=lv.benefit_period, benefits=lv.periodic_benefits)  # type: ignore[arg-type]
        if lv.benefit_period and lv.periodic_benefits
        else None
    )
    return LevelOut(
        id=lv.id,
        category_id=lv.category_id,
        code=lv.code,
        name=lv.name,
        rank=lv.rank,
        price=lv.price,
        validity=Validity(unit=lv.validity_unit, count=lv.validity_count),  # type: ignore[arg-type]
        cooling_off_days=lv.cooling_off_days,
        benefits=LevelBenefits(
            one_time=lv.one_time_benefits, periodic=periodic, points_multiplier=lv.points_multiplier
        ),
        status=lv.status,
        created_at=lv.created_at,
        updated_at=lv.updated_at,
    )


def subscriptions_out(session: Session, subs: list[Subscription]) -> list[SubscriptionOut]:
    levels, categories = service.plan_labels(session, subs)
    out = []
    for s in subs:
        level, category = levels[s.level_id], categories[s.category_id]
        out.append(
            SubscriptionOut(
                id=s.id,
                member_id=s.member_id,
                category_id=s.category_id,
                category_code=category.code,
                level_id=s.level_id,
                level_code=level.code,
                level_name=level.name,
                status=s.status,
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                ended_at=s.ended_at,
                amount_paid=s.amount_paid,
                credit_applied=s.credit_applied,
                refunded_amount=s.refunded_amount,
                points_multiplier=level.points_multiplier,
                periods_granted=s.periods_granted,
                upgraded_from_id=s.upgraded_from_id,
                created_at=s.created_at,
            )
        )
    return out


def event_out(e: SubscriptionEvent) -> SubscriptionEventOut:
    return SubscriptionEventOut(
        id=e.id,
        subscription_id=e.subscription_id,
        kind=e.kind,
        level_id=e.level_id,
        amount=e.amount,
        reference=e.reference,
        reason=e.reason,
        detail=e.detail,
        occurred_at=e.occurred_at,
    )


def change_out(session: Session, change: service.Change) -> SubscriptionChangeOut:
    session.flush()
    return SubscriptionChangeOut(
        subscription=subscriptions_out(session, [change.subscription])[0], event=event_out(change.event)
    )


def member_paid_out(
    session: Session, subs: list[Subscription], events: list[SubscriptionEvent]
) -> MemberPaidOut:
    shown = subscriptions_out(session, subs)
    # An active row past its end is over even before the expire job has marked it.
    now = utcnow()
    current = next((s for s in shown if s.status == "active" and s.ends_at > now), None)
    return MemberPaidOut(current=current, subscriptions=shown, events=[event_out(e) for e in events])
