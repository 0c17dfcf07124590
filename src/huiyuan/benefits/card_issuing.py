"""Issuing a benefit card's scheduled benefits, and the schedule arithmetic behind it.

* Period *n* (0, 1, …) of a ``month`` line starts at ``activated_at + n months``
  (``dateutil.relativedelta``: 31 January + 1 month = 28/29 February); of a ``week`` line at
  ``activated_at + n weeks``; a ``once`` line has period 0 only, at activation. A period is due
  once it has started, and exists only if it starts before the card expires
  (``activated_at + validity_months``).
* Each period of each line is granted through ``benefits.registry.grant`` with the key
  ``card:{card_id}:{line}:{period}`` and recorded as a ``BenefitCardIssue`` (unique per card, line
  and period), in one transaction: a rerun, a resumed job or two workers never issue a period twice.
* A grant the registry refuses (a coupon out of stock, a paused benefit) raises; the job keeps the
  card for its next run and goes on with the others.

Nothing here commits.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits import registry
from huiyuan.benefits.card_models import BenefitCardIssue, MemberBenefitCard
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit

SOURCE_TYPE = "benefit_card"


def term_end(start: datetime, months: int) -> datetime:
    return start + relativedelta(months=months)


def period_start(anchor: datetime, every: str, n: int) -> datetime:
    if every == "month":
        return anchor + relativedelta(months=n)
    if every == "week":
        return anchor + timedelta(weeks=n)
    return anchor


def period_count(every: str, start: datetime, end: datetime) -> int:
    """How many periods of a line a term ``[start, end)`` holds."""
    if every == "once":
        return 1
    n = 0
    while period_start(start, every, n) < end:
        n += 1
    return n


def scheduled_value(lines: list[dict[str, Any]], start: datetime, end: datetime) -> Decimal:
    """What every issue of a term is worth: Σ line value × periods."""
    return sum(
        (Decimal(str(line.get("value", "0"))) * period_count(line["every"], start, end) for line in lines),
        Decimal("0.00"),
    )


def brand_actor(actor: Principal, brand_id: int) -> Principal:
    # Jobs may run for every brand; grantors act for the card's brand.
    return actor if actor.scope.brand_id == brand_id else actor.for_brand(brand_id)


def issue_due(session: Session, *, actor: Principal, card: MemberBenefitCard, now: datetime) -> int:
    """Grant every period of every line of ``card`` that is due by ``now`` and not issued yet;
    returns how many issues were made. The caller holds the card's row lock."""
    if card.status != "active" or card.activated_at is None or card.expires_at is None:
        return 0
    grantor = brand_actor(actor, card.brand_id)
    next_periods = CardRepository(session).next_periods(card.id)
    issued = 0
    upcoming: list[datetime] = []
    for i, line in enumerate(card.lines):
        n = next_periods.get(i, 0)
        while not (line["every"] == "once" and n > 0):
            due = period_start(card.activated_at, line["every"], n)
            if due > now or due >= card.expires_at:
                break
            key = f"card:{card.id}:{i}:{n}"
            result = registry.grant(
                session,
                actor=grantor,
                member_id=card.member_id,
                benefit=line["benefit"],
                source_type=SOURCE_TYPE,
                source_id=str(card.id),
                key=key,
            )
            session.add(
                BenefitCardIssue(
                    brand_id=card.brand_id,
                    card_id=card.id,
                    member_id=card.member_id,
                    line=i,
                    period=n,
                    due_at=due,
                    value=Decimal(str(line.get("value", "0"))),
                    key=key,
                    result=_plain(result),
                    member_benefit_id=result.get("member_benefit_id")
                    if result.get("kind") == "benefit"
                    else None,
                    issued_at=now,
                )
            )
            n += 1
            issued += 1
        if not (line["every"] == "once" and n > 0):
            upcoming.append(period_start(card.activated_at, line["every"], n))
    # The job's next look at this card: the next period that starts within the term, else the end.
    card.next_due_at = min([d for d in upcoming if d < card.expires_at], default=card.expires_at)
    session.flush()
    return issued


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def settle_card(session: Session, *, actor: Principal, card_id: int, now: datetime) -> tuple[int, bool]:
    """Bring one card up to date: issue what is due, then expire it if its term has ended.
    Returns (issues made, expired now)."""
    card = CardRepository(session).card(card_id, for_update=True)
    if card is None or card.status != "active":
        return 0, False
    issued = issue_due(session, actor=actor, card=card, now=now)
    if card.expires_at is None or card.expires_at > now:
        return issued, False
    card.status = "expired"
    card.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="benefit_card.expired",
        entity_type="member_benefit_card",
        entity_id=card.id,
        brand_id=card.brand_id,
        before={"status": "active"},
        after={"status": "expired"},
    )
    emit(
        session,
        type="benefit_card.expired",
        brand_id=card.brand_id,
        aggregate_type="member_benefit_card",
        aggregate_id=card.id,
        payload={"card_id": card.id, "member_id": card.member_id, "product_code": card.product_code},
    )
    return issued, True
