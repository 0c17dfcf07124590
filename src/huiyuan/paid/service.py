"""Business verbs on members' paid subscriptions — buy, renew, upgrade, cancel, expire, grant periodic
benefits — and ``active_plan``, the read other domains (earn rules) use.

Every verb locks the member row first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writers are
serialized by ``BEGIN IMMEDIATE``), so one member's changes queue up; the unique index over active
rows (``models.Subscription``) holds the one-active-plan rule even without the lock. Each verb adds
history rows (``paid_subscription_events``), its audit row and its outbox event in the caller's
transaction and never commits. Benefits are granted through ``benefits.registry.grant`` only,
idempotently on keys ``paid:{subscription_id}:one_time:{i}`` and ``paid:{subscription_id}:period:{n}:{i}``.

Policies (the arithmetic is in ``pricing``):

* **buy** starts now and ends after the level's validity. Buying the level the member already holds
  renews it; buying another level while one is active is refused (409 ``paid-plan-active``).
* **renew** extends an active subscription from its current ``ends_at`` (same row, no new one-time
  benefits); after a lapse it starts a new subscription of the last level now.
* **upgrade** moves to a higher-ranked level of the same category: ``credit = floor_fen(value ×
  remaining / term)``, ``due = max(0, new_price − credit)``, the new subscription starts now for the
  full validity of the new level; periods of the old one that had started are granted first.
* **cancel** ends the subscription now with a refund: everything within the level's
  ``cooling_off_days`` if no periodic benefit was granted yet, else ``floor_fen(value × unused whole
  days / term days)``. Benefits already granted stay granted.
* ``payment_reference`` (``refund_reference`` for cancel) is unique within the brand and makes the
  request idempotent: the same request again returns the first result, another body is refused (422).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.paid import grants, history, pricing
from huiyuan.paid.models import PlanCategory, PlanLevel, Subscription, SubscriptionEvent
from huiyuan.paid.repository import PlanRepository, SubscriptionRepository
from huiyuan.paid.schemas import BuyIn, CancelIn, RenewIn, UpgradeIn

HISTORY_LIMIT = 500


class PlanAlreadyActive(Conflict):
    code = "paid-plan-active"
    title = "The member already has another active paid plan"


class NoActivePlan(Conflict):
    code = "no-active-paid-plan"
    title = "The member has no active paid plan"


class LevelNotOnSale(Conflict):
    code = "paid-level-retired"
    title = "This plan level is not on sale"


class MemberNotActive(Conflict):
    code = "member-not-active"
    title = "The member cannot buy plans in this state"


@dataclass(frozen=True)
class ActivePlan:
    """The paid plan that covered a member at some moment (see ``active_plan``)."""

    subscription_id: int
    plan_code: str  # the category's code
    level_code: str
    level_id: int
    points_multiplier: Decimal
    ends_at: datetime


@dataclass
class Change:
    """The outcome of a verb: the subscription, the history row that records the change, and
    whether this call made it (``False``: a replay of the same request)."""

    subscription: Subscription
    event: SubscriptionEvent
    created: bool


# -- reads -----------------------------------------------------------------------------------------


def active_plan(session: Session, member_id: int, at: datetime) -> ActivePlan | None:
    """The plan whose term covered ``at`` for the member (one query), or ``None``."""
    row = SubscriptionRepository(session).covering_with_plan(member_id, at)
    if row is None:
        return None
    sub, level, category = row
    return ActivePlan(
        subscription_id=sub.id,
        plan_code=category.code,
        level_code=level.code,
        level_id=level.id,
        points_multiplier=level.points_multiplier,
        ends_at=sub.ended_at or sub.ends_at,
    )


@dataclass(frozen=True)
class PlanTerm:
    """A plan that covered a member during ``[starts_at, ends_at)``."""

    starts_at: datetime
    plan: ActivePlan


def plan_terms(
    session: Session, member_ids: list[int], start: datetime, end: datetime
) -> dict[int, list[PlanTerm]]:
    """The plans of many members that overlap ``[start, end]`` (one query), newest first, so a
    caller can answer ``active_plan`` for any moment of the period without a query per moment."""
    out: dict[int, list[PlanTerm]] = {}
    for sub, level, category in SubscriptionRepository(session).overlapping_with_plan(member_ids, start, end):
        plan = ActivePlan(
            subscription_id=sub.id,
            plan_code=category.code,
            level_code=level.code,
            level_id=level.id,
            points_multiplier=level.points_multiplier,
            ends_at=sub.ended_at or sub.ends_at,
        )
        out.setdefault(sub.member_id, []).append(PlanTerm(starts_at=sub.starts_at, plan=plan))
    return out


def member_history(session: Session, member_id: int) -> tuple[list[Subscription], list[SubscriptionEvent]]:
    """The member's subscriptions and history, newest first (404 if the member is not in scope)."""
    repo = SubscriptionRepository(session)
    if not repo.member_exists(member_id):
        raise NotFound(f"Member {member_id} was not found.")
    return repo.for_member(member_id), repo.events_for_member(member_id, HISTORY_LIMIT)


@dataclass(frozen=True)
class UpgradeOffer:
    """What upgrading would cost now and the term it would buy."""

    subscription_id: int
    level_id: int
    credit: Decimal
    due: Decimal
    starts_at: datetime
    ends_at: datetime


def quote_upgrade(session: Session, *, member_id: int, level_id: int) -> UpgradeOffer:
    """What upgrading the member's active plan to ``level_id`` would cost now (changes nothing)."""
    repo = SubscriptionRepository(session)
    if not repo.member_exists(member_id):
        raise NotFound(f"Member {member_id} was not found.")
    current = repo.active_for_member(member_id)
    now = utcnow()
    if current is None or current.ends_at <= now:
        raise NoActivePlan("The member has no active paid plan to upgrade.")
    _old, new_level = _upgrade_levels(session, current, level_id)
    quote = pricing.upgrade_quote(
        value=_value(current),
        starts_at=current.starts_at,
        ends_at=current.ends_at,
        now=now,
        new_price=new_level.price,
    )
    return UpgradeOffer(
        subscription_id=current.id,
        level_id=new_level.id,
        credit=quote.credit,
        due=quote.due,
        starts_at=now,
        ends_at=pricing.term_end(now, new_level.validity_unit, new_level.validity_count),
    )


# -- helpers ---------------------------------------------------------------------------------------


def _value(sub: Subscription) -> Decimal:
    return sub.amount_paid + sub.credit_applied


def _request_hash(operation: str, member_id: int, data: BaseModel) -> str:
    canonical = json.dumps(
        {"op": operation, "member_id": member_id, "body": data.model_dump(mode="json")},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_member(session: Session, member_id: int) -> str:
    """Lock the member row; returns the member's status (404 if not in scope)."""
    member = SubscriptionRepository(session).lock_member(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member.status


def _require_open(member_id: int, status: str) -> None:
    # Checked after the replay look-up, so a retry still gets its first result.
    if status not in ("active", "prospect"):
        raise MemberNotActive(f"Member {member_id} is {status}.", member_status=status)


def _begin(
    session: Session,
    brand_id: int,
    member_id: int,
    operation: str,
    data: BaseModel,
    reference: str,
    field: str,
) -> tuple[str, Change | None]:
    """The start of every subscription verb: lock the member, answer a retry with its first result,
    then refuse a member who may not buy. Returns the request hash and the replay, if any."""
    member_status = _lock_member(session, member_id)
    digest = _request_hash(operation, member_id, data)
    replayed = _replay(session, brand_id, reference, field, digest)
    if replayed is None:
        _require_open(member_id, member_status)
    return digest, replayed


def _replay(session: Session, brand_id: int, reference: str, field: str, digest: str) -> Change | None:
    repo = SubscriptionRepository(session)
    event = repo.event_by_reference(brand_id, reference)
    if event is None:
        return None
    if event.request_hash != digest:
        raise IdempotencyMismatch(
            f"Reference {reference} was already used with a different request.",
            errors=[field_error(field, "already used for another request", "idempotency-key-reused")],
            existing_subscription_id=event.subscription_id,
        )
    sub = repo.get(event.subscription_id)
    assert sub is not None  # subscriptions are never deleted
    return Change(subscription=sub, event=event, created=False)


def _level_on_sale(session: Session, level_id: int, field: str = "level_id") -> PlanLevel:
    repo = PlanRepository(session)
    level = repo.level(level_id)
    if level is None:
        raise ValidationFailed(
            "Unknown plan level.", errors=[field_error(field, "no such level", "unknown-level")]
        )
    category = repo.category(level.category_id)
    if level.status != "active" or category is None or category.status != "active":
        raise LevelNotOnSale(f"Plan level '{level.code}' is not on sale.", level_id=level.id)
    return level


def _check_amount(amount: Decimal | None, price: Decimal) -> None:
    if amount is not None and amount != price:
        raise ValidationFailed(
            "The amount does not match the price.",
            errors=[field_error("amount", f"the price is {price}", "amount-mismatch")],
        )


def _insert_subscription(session: Session, sub: Subscription) -> None:
    try:
        with session.begin_nested():
            session.add(sub)
            session.flush()
    except IntegrityError:
        # The unique index over active rows: another plan became active for the member meanwhile.
        raise PlanAlreadyActive("Another paid plan became active for the member meanwhile; retry.")


def _current(session: Session, actor: Principal, member_id: int, now: datetime) -> Subscription | None:
    """The member's active subscription; one whose end has passed is expired on the spot."""
    sub = SubscriptionRepository(session).active_for_member(member_id)
    if sub is not None and sub.ends_at <= now:
        expire_subscription(session, actor=actor, sub=sub)
        return None
    return sub


def _start(
    session: Session,
    *,
    brand_id: int,
    member_id: int,
    level: PlanLevel,
    now: datetime,
    amount_paid: Decimal,
    credit: Decimal = pricing.ZERO,
    upgraded_from_id: int | None = None,
) -> Subscription:
    sub = Subscription(
        brand_id=brand_id,
        member_id=member_id,
        category_id=level.category_id,
        level_id=level.id,
        status="active",
        starts_at=now,
        ends_at=pricing.term_end(now, level.validity_unit, level.validity_count),
        amount_paid=amount_paid,
        credit_applied=credit,
        refunded_amount=pricing.ZERO,
        periods_granted=0,
        upgraded_from_id=upgraded_from_id,
    )
    _insert_subscription(session, sub)
    return sub


# -- verbs -----------------------------------------------------------------------------------------


def buy(session: Session, *, actor: Principal, member_id: int, data: BuyIn) -> Change:
    """Buy a plan level for a member (the same level as the active one renews it)."""
    brand_id = actor.scope.require_brand()
    digest, replayed = _begin(
        session, brand_id, member_id, "buy", data, data.payment_reference, "payment_reference"
    )
    if replayed is not None:
        return replayed
    level = _level_on_sale(session, data.level_id)
    _check_amount(data.amount, level.price)
    now = utcnow()
    current = _current(session, actor, member_id, now)
    if current is not None:
        if current.level_id != level.id:
            raise PlanAlreadyActive(
                "The member already has another active plan; upgrade it or wait until it ends.",
                active_subscription_id=current.id,
            )
        return _extend(session, actor, current, level, data.payment_reference, digest, now, via="buy")
    sub = _start(
        session,
        brand_id=brand_id,
        member_id=member_id,
        level=level,
        now=now,
        amount_paid=level.price,
    )
    event = history.add_event(
        session, sub, "bought", at=now, amount=level.price, reference=data.payment_reference, digest=digest
    )
    grants.grant_one_time(session, actor, sub, level, now)
    history.announce(
        session,
        actor=actor,
        sub=sub,
        level=level,
        action="paid.bought",
        before=None,
        payload={"amount": str(level.price), "payment_reference": data.payment_reference},
    )
    return Change(subscription=sub, event=event, created=True)


def _extend(
    session: Session,
    actor: Principal,
    sub: Subscription,
    level: PlanLevel,
    reference: str,
    digest: str,
    now: datetime,
    *,
    via: str,
) -> Change:
    before = history.snapshot(sub)
    previous_end = sub.ends_at
    sub.ends_at = pricing.term_end(previous_end, level.validity_unit, level.validity_count)
    sub.amount_paid += level.price
    event = history.add_event(
        session,
        sub,
        "renewed",
        at=now,
        amount=level.price,
        reference=reference,
        digest=digest,
        detail={"previous_ends_at": previous_end.isoformat(), "ends_at": sub.ends_at.isoformat(), "via": via},
    )
    history.announce(
        session,
        actor=actor,
        sub=sub,
        level=level,
        action="paid.renewed",
        before=before,
        payload={
            "amount": str(level.price),
            "payment_reference": reference,
            "previous_ends_at": previous_end.isoformat(),
        },
    )
    return Change(subscription=sub, event=event, created=True)


def renew(session: Session, *, actor: Principal, member_id: int, data: RenewIn) -> Change:
    """Renew the member's plan: from its end if still active, else as a new subscription from now."""
    brand_id = actor.scope.require_brand()
    digest, replayed = _begin(
        session, brand_id, member_id, "renew", data, data.payment_reference, "payment_reference"
    )
    if replayed is not None:
        return replayed
    now = utcnow()
    current = _current(session, actor, member_id, now)
    if current is not None:
        level = _level_on_sale(session, current.level_id)
        _check_amount(data.amount, level.price)
        return _extend(session, actor, current, level, data.payment_reference, digest, now, via="renew")
    last = SubscriptionRepository(session).latest_for_member(member_id)
    if last is None:
        raise NoActivePlan("The member has never had a paid plan; buy one.")
    level = _level_on_sale(session, last.level_id)
    _check_amount(data.amount, level.price)
    sub = _start(
        session,
        brand_id=brand_id,
        member_id=member_id,
        level=level,
        now=now,
        amount_paid=level.price,
    )
    event = history.add_event(
        session,
        sub,
        "renewed",
        at=now,
        amount=level.price,
        reference=data.payment_reference,
        digest=digest,
        detail={"lapsed": True, "previous_subscription_id": last.id, "ends_at": sub.ends_at.isoformat()},
    )
    grants.grant_one_time(session, actor, sub, level, now)
    history.announce(
        session,
        actor=actor,
        sub=sub,
        level=level,
        action="paid.renewed",
        before=None,
        payload={
            "amount": str(level.price),
            "payment_reference": data.payment_reference,
            "previous_subscription_id": last.id,
        },
    )
    return Change(subscription=sub, event=event, created=True)


def _upgrade_levels(session: Session, current: Subscription, level_id: int) -> tuple[PlanLevel, PlanLevel]:
    repo = PlanRepository(session)
    old_level = repo.level(current.level_id)
    assert old_level is not None  # levels are never deleted
    new_level = _level_on_sale(session, level_id)
    if new_level.category_id != old_level.category_id:
        raise ValidationFailed(
            "An upgrade stays within the plan's category.",
            errors=[field_error("level_id", "a level of another category", "other-category")],
        )
    if new_level.rank <= old_level.rank:
        raise ValidationFailed(
            "An upgrade goes to a higher-ranked level.",
            errors=[field_error("level_id", f"rank must be above {old_level.rank}", "not-higher")],
        )
    return old_level, new_level


def upgrade(session: Session, *, actor: Principal, member_id: int, data: UpgradeIn) -> Change:
    """Upgrade the active plan to a higher level of its category, paying the difference pro rata:
    ``credit = floor_fen(value × remaining / term)``, ``due = max(0, new_price − credit)``."""
    brand_id = actor.scope.require_brand()
    digest, replayed = _begin(
        session, brand_id, member_id, "upgrade", data, data.payment_reference, "payment_reference"
    )
    if replayed is not None:
        return replayed
    now = utcnow()
    current = _current(session, actor, member_id, now)
    if current is None:
        raise NoActivePlan("The member has no active paid plan to upgrade.")
    old_level, new_level = _upgrade_levels(session, current, data.level_id)
    # Periods of the old level that have started are the member's: grant what the job has not yet.
    grants.grant_due_periods(session, actor=actor, sub=current, level=old_level, until=now)
    quote = pricing.upgrade_quote(
        value=_value(current),
        starts_at=current.starts_at,
        ends_at=current.ends_at,
        now=now,
        new_price=new_level.price,
    )
    before = history.snapshot(current)
    current.status = "upgraded"
    current.ended_at = now
    session.flush()  # frees the member's slot in the unique index over active rows
    audit.record(
        session,
        actor=actor,
        action="paid.subscription.ended",
        entity_type="paid_subscription",
        entity_id=current.id,
        brand_id=current.brand_id,
        before=before,
        after=history.snapshot(current),
        note="upgraded",
    )
    credit_used = min(quote.credit, new_level.price)
    sub = _start(
        session,
        brand_id=brand_id,
        member_id=member_id,
        level=new_level,
        now=now,
        amount_paid=quote.due,
        credit=credit_used,
        upgraded_from_id=current.id,
    )
    detail = {
        "from_subscription_id": current.id,
        "from_level_id": old_level.id,
        "credit": str(quote.credit),
        "new_price": str(new_level.price),
        "remaining_seconds": quote.remaining_us / 1_000_000,
        "term_seconds": quote.term_us / 1_000_000,
    }
    event = history.add_event(
        session,
        sub,
        "upgraded",
        at=now,
        amount=quote.due,
        reference=data.payment_reference,
        digest=digest,
        detail=detail,
    )
    grants.grant_one_time(session, actor, sub, new_level, now)
    history.announce(
        session,
        actor=actor,
        sub=sub,
        level=new_level,
        action="paid.upgraded",
        before=None,
        payload={
            "amount": str(quote.due),
            "credit": str(quote.credit),
            "payment_reference": data.payment_reference,
            "from_subscription_id": current.id,
            "from_level_id": old_level.id,
        },
    )
    return Change(subscription=sub, event=event, created=True)


def cancel(session: Session, *, actor: Principal, member_id: int, data: CancelIn) -> Change:
    """Cancel the active plan now and refund it: in full within the cooling-off days while no periodic
    benefit was granted, else pro rata on the unused whole days (``pricing.refund_quote``)."""
    brand_id = actor.scope.require_brand()
    digest, replayed = _begin(
        session, brand_id, member_id, "cancel", data, data.refund_reference, "refund_reference"
    )
    if replayed is not None:
        return replayed
    now = utcnow()
    current = _current(session, actor, member_id, now)
    if current is None:
        raise NoActivePlan("The member has no active paid plan to cancel.")
    level = PlanRepository(session).level(current.level_id)
    assert level is not None
    quote = pricing.refund_quote(
        value=_value(current),
        starts_at=current.starts_at,
        ends_at=current.ends_at,
        now=now,
        cooling_off_days=level.cooling_off_days,
        periods_granted=current.periods_granted,
    )
    before = history.snapshot(current)
    current.status = "cancelled"
    current.ended_at = now
    current.refunded_amount = quote.amount
    detail = {
        "refund": str(quote.amount),
        "rule": quote.rule,
        "unused_days": quote.unused_days,
        "term_days": quote.term_days,
    }
    event = history.add_event(
        session,
        current,
        "cancelled",
        at=now,
        reference=data.refund_reference,
        digest=digest,
        reason=data.reason,
        detail=detail,
    )
    if quote.amount > 0:
        history.add_event(
            session, current, "refunded", at=now, amount=quote.amount, reason=data.reason, detail=detail
        )
    history.announce(
        session,
        actor=actor,
        sub=current,
        level=level,
        action="paid.cancelled",
        before=before,
        payload={
            "refund": str(quote.amount),
            "rule": quote.rule,
            "refund_reference": data.refund_reference,
            "reason": data.reason,
            "ended_at": now.isoformat(),
        },
        note=data.reason,
    )
    return Change(subscription=current, event=event, created=True)


def expire_subscription(session: Session, *, actor: Principal, sub: Subscription) -> bool:
    """Mark an active subscription whose end has passed as expired (after granting the periods that
    started before its end); ``False`` if there was nothing to do."""
    if sub.status != "active" or sub.ends_at > utcnow():
        return False
    level = PlanRepository(session).level(sub.level_id)
    assert level is not None
    grants.grant_due_periods(session, actor=actor, sub=sub, level=level, until=sub.ends_at)
    before = history.snapshot(sub)
    sub.status = "expired"
    sub.ended_at = sub.ends_at
    history.add_event(session, sub, "expired", at=utcnow(), detail={"ends_at": sub.ends_at.isoformat()})
    session.flush()  # frees the member's slot in the unique index over active rows
    history.announce(
        session,
        actor=actor,
        sub=sub,
        level=level,
        action="paid.expired",
        before=before,
        payload={"ended_at": sub.ends_at.isoformat()},
    )
    return True


def _lock_subscription(session: Session, subscription_id: int) -> Subscription | None:
    # Member row first, like every verb, so a job and a request on one member queue up.
    repo = SubscriptionRepository(session)
    sub = repo.get(subscription_id)
    if sub is None or repo.lock_member(sub.member_id) is None:
        return None
    return repo.get(subscription_id, for_update=True, refresh=True)


def grant_periodic(session: Session, *, actor: Principal, subscription_id: int) -> int:
    """Grant what is due of one active subscription's periodic benefits (the job's unit of work)."""
    sub = _lock_subscription(session, subscription_id)
    if sub is None or sub.status != "active":
        return 0
    level = PlanRepository(session).level(sub.level_id)
    assert level is not None
    return grants.grant_due_periods(session, actor=actor, sub=sub, level=level, until=utcnow())


def expire_one(session: Session, *, actor: Principal, subscription_id: int) -> bool:
    """Expire one subscription if it is still active and over (the job's unit of work)."""
    sub = _lock_subscription(session, subscription_id)
    if sub is None:
        return False
    return expire_subscription(session, actor=actor, sub=sub)


def plan_labels(
    session: Session, subs: list[Subscription]
) -> tuple[dict[int, PlanLevel], dict[int, PlanCategory]]:
    """Levels and categories of some subscriptions, by id (for responses)."""
    repo = PlanRepository(session)
    return repo.levels_by_id({s.level_id for s in subs}), repo.categories_by_id({s.category_id for s in subs})
