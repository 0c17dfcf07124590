"""Granting a subscription's benefits, through ``benefits.registry.grant`` only (never another
domain's service), idempotently on ``paid:{subscription_id}:one_time:{i}`` and
``paid:{subscription_id}:period:{n}:{i}``; each grant is also a ``benefit_granted`` history row."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.benefits import registry as benefits
from huiyuan.kit.clock import utcnow
from huiyuan.kit.scope import Principal
from huiyuan.paid import pricing
from huiyuan.paid.history import add_event
from huiyuan.paid.models import PlanLevel, Subscription

SOURCE_TYPE = "paid_subscription"


def _grant(
    session: Session, actor: Principal, sub: Subscription, benefit: dict[str, Any], key: str, at: datetime
) -> None:
    result = benefits.grant(
        session,
        actor=_brand_actor(actor, sub.brand_id),
        member_id=sub.member_id,
        benefit=benefit,
        source_type=SOURCE_TYPE,
        source_id=str(sub.id),
        key=key,
    )
    add_event(
        session,
        sub,
        "benefit_granted",
        at=at,
        detail={"key": key, "benefit": benefit, "result": json.loads(json.dumps(result, default=str))},
    )


def _brand_actor(actor: Principal, brand_id: int) -> Principal:
    # Jobs may run for every brand; grantors act for the subscription's brand.
    return actor if actor.scope.brand_id == brand_id else actor.for_brand(brand_id)


def grant_one_time(
    session: Session, actor: Principal, sub: Subscription, level: PlanLevel, at: datetime
) -> None:
    """Grant the level's one-time benefits to a subscription that has just started."""
    for i, benefit in enumerate(level.one_time_benefits):
        _grant(session, actor, sub, benefit, f"paid:{sub.id}:one_time:{i}", at)


def grant_due_periods(
    session: Session, *, actor: Principal, sub: Subscription, level: PlanLevel, until: datetime
) -> int:
    """Grant the periodic benefits of every period of ``sub`` that started by ``until`` (and before
    the subscription ends) and was not granted yet; returns how many periods were granted."""
    if not level.periodic_benefits or level.benefit_period is None:
        return 0
    granted = 0
    n = sub.periods_granted
    while True:
        start = pricing.period_start(sub.starts_at, level.benefit_period, n)
        if start > until or start >= sub.ends_at:
            break
        for i, benefit in enumerate(level.periodic_benefits):
            _grant(session, actor, sub, benefit, f"paid:{sub.id}:period:{n}:{i}", utcnow())
        n += 1
        granted += 1
    sub.periods_granted = n
    return granted
