"""Coupons at checkout: evaluate a cart, lock coupons for an order, redeem on payment, release on
cancel, return on refund; the sweeps that expire coupons and release timed-out locks.

Owns ``evaluate``, ``lock``, ``redeem``, ``release``, ``return_lock``, ``release_due_locks`` and
``expire_due``. The arithmetic is ``coupons.cart``'s; this module loads the member's coupons, moves
their status and writes the events, cost shares and outbox events. Nothing here commits.

Policies:

* **Single use under any concurrency.** A coupon leaves ``available`` only through a conditional
  ``UPDATE coupons SET status = 'locked' … WHERE id = :id AND status = 'available'``; the database
  applies it to one writer (PostgreSQL re-checks the condition after waiting for the row; SQLite
  writers are serialised by ``BEGIN IMMEDIATE``). A lock that does not get every coupon it asked
  for fails as a whole (``coupon-unavailable``) and leaves nothing behind.
* **Idempotency.** A lock is keyed by the client (``Idempotency-Key``): a retry with the same key
  and request returns the lock as it stands; another request under the key is
  ``idempotency-key-reused``. Redeem, release and return are idempotent by state: repeating one
  that is done answers the lock again; a move from the wrong state is ``coupon-lock-closed``.
* **Timeout.** A held lock expires at ``expires_at``; its coupons come back when the member next
  locks or by the ``coupons.release_locks`` job; redeeming it after its timeout is refused (409).
* **Return on refund** (a fully refunded order): the cost shares are reversed (negated rows), so
  settlement no longer counts the discount; each coupon goes back to the member if its template
  says ``return_on_refund`` and it is still valid, else it stays redeemed. Partial refunds do not
  return coupons: the discount was earned by the part of the order that was kept.
* **Expiry.** Unused coupons past ``valid_to`` become ``expired`` (with an event) and give their
  budget back; reads show an unused coupon past its end as expired even before the job runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from huiyuan.coupons import cart as cartlib
from huiyuan.coupons.issuing import add_event, brand_zone
from huiyuan.coupons.models import Coupon, CouponLock, CouponShare, CouponTemplate
from huiyuan.coupons.rules import split_cost
from huiyuan.coupons.schemas import CartIn, LockOut
from huiyuan.coupons.templates import locked_template, move_stock, template_rules
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import AppError, IdempotencyMismatch, NotFound, field_error
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.paid.service import active_plan
from huiyuan.tiers.reads import current_tier

ZERO = Decimal("0.00")
# Order references read by one statement of ``order_refs_with_lock``.
ORDER_REF_CHUNK = 900


class CouponUnavailable(AppError):
    status = 409
    code = "coupon-unavailable"
    title = "A coupon is no longer available"


class LockClosed(AppError):
    status = 409
    code = "coupon-lock-closed"
    title = "The coupon lock is in another state"


@dataclass
class LockResult:
    lock: CouponLock
    replayed: bool = False


@dataclass(frozen=True)
class MemberDiscount:
    """The member's benefit-card discount, taken off the lines before coupons are evaluated."""

    card_id: int
    product_code: str
    percent: Decimal
    lines: dict[str, Decimal]
    shipping: Decimal = Decimal("0")  # the shipping fee waived by a free-shipping card

    @property
    def amount(self) -> Decimal:
        return sum(self.lines.values(), Decimal("0"))

    def to_json(self) -> dict[str, Any]:
        return {
            "card_id": self.card_id,
            "product_code": self.product_code,
            "percent": str(self.percent),
            "amount": str(self.amount),
            "lines": {k: str(v) for k, v in self.lines.items()},
            "shipping": str(self.shipping),
        }


@dataclass(frozen=True)
class CartEvaluation:
    evaluation: cartlib.Evaluation
    member_discount: MemberDiscount | None


FEN = Decimal("0.01")


def member_discount(session: Session, member_id: int, data: CartIn, now: datetime) -> MemberDiscount | None:
    """The best discount of the member's active benefit cards on each line's remaining price
    (``(unit price × quantity − discount) × percent``, rounded half up to the fen), and the shipping
    fee when any card gives free shipping; None without such a card."""
    if not data.member_discount:
        return None
    perks_of = _optional("huiyuan.benefits.cards", "card_perks")
    if perks_of is None:
        return None
    perks = perks_of(session, member_id, now)
    best = max(
        (c for c in perks.cards if c.discount_percent or c.free_shipping),
        key=lambda c: (c.discount_percent or Decimal("0"), c.free_shipping, -c.card_id),
        default=None,
    )
    if best is None:
        return None
    percent = best.discount_percent or Decimal("0")
    lines = {
        line.line_id: ((line.unit_price * line.quantity - line.discount) * percent / 100).quantize(
            FEN, rounding=ROUND_HALF_UP
        )
        for line in data.lines
    }
    shipping = data.shipping_fee if perks.free_shipping else Decimal("0")
    return MemberDiscount(best.card_id, best.product_code, percent, lines, shipping)


def _optional(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError):
        return None


def _cart(
    session: Session,
    member_id: int,
    data: CartIn,
    now: datetime,
    candidates: list[cartlib.Candidate],
    card: MemberDiscount | None = None,
) -> cartlib.Cart:
    """The cart as the evaluator takes it; the member's tier and paid plan are looked up only when
    a candidate's conditions name tiers or plans."""
    tier = current_tier(session, member_id) if any(c.rules.conditions.tiers for c in candidates) else None
    needs_plan = any(c.rules.conditions.paid_plans for c in candidates)
    plan = active_plan(session, member_id, now) if needs_plan else None
    return cartlib.Cart(
        lines=[
            cartlib.CartLine(
                line_id=line.line_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                category_path=line.category_path,
                product_brand=line.product_brand,
                discount=line.discount + (card.lines.get(line.line_id, Decimal("0")) if card else 0),
            )
            for line in data.lines
        ],
        shipping_fee=data.shipping_fee - (card.shipping if card else 0),
        store_id=data.store_id,
        scene=data.scene,
        channel=data.channel,
        tier=tier.code if tier else None,
        paid_plan=plan.plan_code if plan else None,
        at=now,
    )


def _candidates(session: Session, coupons: list[Coupon]) -> list[cartlib.Candidate]:
    ids = {c.template_id for c in coupons}
    templates = (
        {t.id: t for t in session.scalars(select(CouponTemplate).where(CouponTemplate.id.in_(ids)))}
        if ids
        else {}
    )
    return [
        cartlib.Candidate(
            coupon_id=c.id,
            template_id=c.template_id,
            rules=template_rules(templates[c.template_id]),
            valid_from=c.valid_from,
            valid_to=c.valid_to,
        )
        for c in coupons
    ]


def _usable(session: Session, member_id: int, now: datetime) -> list[Coupon]:
    return list(
        session.scalars(
            select(Coupon)
            .where(Coupon.member_id == member_id, Coupon.status == "available", Coupon.valid_to > now)
            .order_by(Coupon.valid_to, Coupon.id)
            .limit(200)
        )
    )


def _member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def evaluate(session: Session, *, brand_id: int, member_id: int, data: CartIn) -> CartEvaluation:
    """Which of the member's coupons apply to the cart, and the best allowed combination — after
    the member's benefit-card discount, if any."""
    _member(session, member_id)
    now = utcnow()
    candidates = _candidates(session, _usable(session, member_id, now))
    card = member_discount(session, member_id, data, now)
    evaluation = cartlib.evaluate(
        _cart(session, member_id, data, now, candidates, card), candidates, brand_zone(session, brand_id)
    )
    return CartEvaluation(evaluation, card)


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _locked_lock(session: Session, lock_id: int) -> CouponLock:
    stmt = (
        select(CouponLock)
        .where(CouponLock.id == lock_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    found = session.scalars(stmt).one_or_none()
    if found is None:
        raise NotFound(f"Coupon lock {lock_id} was not found.")
    return found


def lock(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    order_ref: str,
    data: CartIn,
    coupon_ids: list[int] | None,
    ttl_minutes: int,
    key: str,
) -> LockResult:
    """Hold the chosen coupons (or the best combination) for one order until paid or released."""
    brand_id = actor.scope.require_brand()
    digest = _digest(
        {"member": member_id, "order": order_ref, "cart": data.model_dump(mode="json"), "coupons": coupon_ids}
    )
    advisory_lock(session, f"coupon-lock:{brand_id}:{key}")
    done = session.scalars(
        select(CouponLock).where(CouponLock.brand_id == brand_id, CouponLock.key == key)
    ).one_or_none()
    if done is not None:
        if done.request_hash != digest:
            raise IdempotencyMismatch(
                "This idempotency key was already used for another coupon lock.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        return LockResult(done, replayed=True)
    _member(session, member_id)
    now = utcnow()
    release_due_locks(session, actor=actor, now=now, member_id=member_id)
    zone = brand_zone(session, brand_id)
    card = member_discount(session, member_id, data, now)
    if coupon_ids is None:
        usable = _candidates(session, _usable(session, member_id, now))
        chosen_ids = cartlib.evaluate(
            _cart(session, member_id, data, now, usable, card), usable, zone
        ).best.coupon_ids
    else:
        chosen_ids = list(dict.fromkeys(coupon_ids))
    coupons = list(session.scalars(select(Coupon).where(Coupon.id.in_(chosen_ids)))) if chosen_ids else []
    found = {c.id for c in coupons}
    missing = [i for i in chosen_ids if i not in found]
    strangers = [c.id for c in coupons if c.member_id != member_id]
    if missing or strangers:
        raise NotFound(
            "A coupon was not found for this member.",
            errors=[
                field_error("coupon_ids", f"coupon {i} is not this member's", "unknown-coupon")
                for i in missing + strangers
            ],
        )
    unusable = [c.id for c in coupons if c.status != "available" or c.valid_to <= now]
    if unusable:
        raise CouponUnavailable(f"Coupon(s) {unusable} cannot be used now.", coupon_ids=unusable)
    chosen = _candidates(session, coupons)
    application = cartlib.apply(_cart(session, member_id, data, now, chosen, card), chosen, zone)
    totals = application.totals
    benefit = {c.coupon_id: c.benefit for c in application.coupons}
    held = CouponLock(
        brand_id=brand_id,
        key=key,
        request_hash=digest,
        member_id=member_id,
        order_ref=order_ref,
        store_id=data.store_id,
        channel=data.channel,
        state="held",
        expires_at=now + timedelta(minutes=ttl_minutes),
        discount=to_money(application.benefit),
        order_amount=to_money(totals.goods - totals.promotions + totals.shipping),
        allocation={**application.to_json(), "member_discount": card.to_json() if card else None},
    )
    session.add(held)
    session.flush()
    for coupon in coupons:
        # RETURNING, not rowcount: only the writer that moved the row gets it back.
        moved = session.scalar(
            update(Coupon)
            .where(Coupon.id == coupon.id, Coupon.status == "available")
            .values(status="locked", lock_id=held.id, updated_at=now)
            .returning(Coupon.id)
            .execution_options(synchronize_session=False)
        )
        if moved is None:
            raise CouponUnavailable(f"Coupon {coupon.id} was just used elsewhere.", coupon_ids=[coupon.id])
        add_event(session, actor, coupon, "locked", lock_id=held.id, amount=benefit[coupon.id], at=now)
    session.flush()
    return LockResult(held)


def _benefits(held: CouponLock) -> dict[int, Decimal]:
    """Per coupon of the lock, what it is worth on the order (goods + shipping discount + gift value)."""
    return {
        int(c["coupon_id"]): Decimal(c["discount"])
        + Decimal(c["shipping_discount"])
        + Decimal(c["gift_value"])
        for c in held.allocation["coupons"]
    }


def evaluation_json(result: CartEvaluation) -> dict[str, Any]:
    """An evaluation as the API answers it: the member's card discount, every coupon alone (with
    reasons), then the best set."""
    evaluation = result.evaluation
    return {
        "member_discount": result.member_discount.to_json() if result.member_discount else None,
        "candidates": [
            {
                "coupon_id": c.coupon_id,
                "template_id": c.template_id,
                "applies": c.applies,
                "reasons": list(c.reasons),
                "discount": str(c.discount),
                "shipping_discount": str(c.shipping_discount),
                "gift_value": str(c.gift_value),
            }
            for c in evaluation.candidates
        ],
        "best": evaluation.best.to_json(),
    }


def _coupons_of(session: Session, lock_id: int) -> list[Coupon]:
    return list(
        session.scalars(
            select(Coupon)
            .where(Coupon.lock_id == lock_id)
            .order_by(Coupon.id)
            .execution_options(populate_existing=True)
        )
    )


def _shares(
    session: Session,
    held: CouponLock,
    coupon: Coupon,
    template: CouponTemplate,
    kind: str,
    sign: int,
    at: datetime,
) -> None:
    assert coupon.discount is not None
    for party, party_id, amount in split_cost(template_rules(template).cost_sharing, coupon.discount):
        session.add(
            CouponShare(
                brand_id=held.brand_id,
                coupon_id=coupon.id,
                template_id=template.id,
                lock_id=held.id,
                party=party,
                party_id=party_id,
                amount=to_money(amount * sign),
                store_id=held.store_id,
                channel=held.channel,
                kind=kind,
                occurred_at=at,
            )
        )


def redeem(session: Session, *, actor: Principal, lock_id: int, payment_reference: str | None) -> LockResult:
    """The order was paid: its locked coupons are used, and who funds each discount is recorded."""
    held = _locked_lock(session, lock_id)
    if held.state == "redeemed":
        return LockResult(held, replayed=True)
    now = utcnow()
    if held.state == "held" and held.expires_at <= now:
        # Refused, and the error rolls the transaction back: the sweep or the member's next lock
        # releases it.
        raise LockClosed("The coupon lock timed out before payment.", state="timed_out")
    if held.state != "held":
        raise LockClosed(f"The coupon lock is {held.state}.", state=held.state)
    per_coupon = _benefits(held)
    held.state = "redeemed"
    held.redeemed_at = now
    held.payment_reference = payment_reference
    for coupon in _coupons_of(session, held.id):
        template = session.get(CouponTemplate, coupon.template_id)
        assert template is not None
        coupon.status = "redeemed"
        coupon.discount = to_money(per_coupon[coupon.id])
        coupon.redeemed_at = now
        coupon.store_id = held.store_id
        coupon.updated_at = now
        _shares(session, held, coupon, template, "redeem", 1, now)
        add_event(session, actor, coupon, "redeemed", lock_id=held.id, amount=coupon.discount, at=now)
    session.flush()
    emit(
        session,
        type="coupon.redeemed",
        brand_id=held.brand_id,
        aggregate_type="coupon_lock",
        aggregate_id=held.id,
        payload={
            "lock_id": held.id,
            "member_id": held.member_id,
            "order_ref": held.order_ref,
            "discount": str(held.discount),
            "coupon_ids": sorted(per_coupon),
        },
    )
    return LockResult(held)


def _release(session: Session, actor: Principal, held: CouponLock, reason: str, now: datetime) -> None:
    held.state = "released"
    held.closed_at = now
    held.close_reason = reason
    for coupon in _coupons_of(session, held.id):
        coupon.status = "available"
        coupon.lock_id = None
        coupon.updated_at = now
        add_event(session, actor, coupon, "released", lock_id=held.id, detail={"reason": reason}, at=now)
    session.flush()


def release(session: Session, *, actor: Principal, lock_id: int, reason: str) -> LockResult:
    """The order was cancelled before payment: its coupons go back to the member."""
    held = _locked_lock(session, lock_id)
    if held.state == "released":
        return LockResult(held, replayed=True)
    if held.state != "held":
        raise LockClosed(f"The coupon lock is {held.state}.", state=held.state)
    _release(session, actor, held, reason, utcnow())
    return LockResult(held)


def return_lock(session: Session, *, actor: Principal, lock_id: int, reason: str) -> LockResult:
    """The order was fully refunded: reverse the cost shares, give back still-valid coupons."""
    held = _locked_lock(session, lock_id)
    if held.state == "returned":
        return LockResult(held, replayed=True)
    if held.state != "redeemed":
        raise LockClosed(f"The coupon lock is {held.state}.", state=held.state)
    now = utcnow()
    held.state = "returned"
    held.closed_at = now
    held.close_reason = reason
    for coupon in list(session.scalars(select(Coupon).where(Coupon.lock_id == held.id).order_by(Coupon.id))):
        template = session.get(CouponTemplate, coupon.template_id)
        assert template is not None
        _shares(session, held, coupon, template, "return", -1, now)
        restored = template.return_on_refund and coupon.valid_to > now
        if restored:
            coupon.status = "available"
            coupon.lock_id = None
            coupon.discount = None
            coupon.redeemed_at = None
            coupon.store_id = None
            coupon.updated_at = now
        add_event(
            session,
            actor,
            coupon,
            "returned",
            lock_id=held.id,
            detail={"reason": reason, "restored": restored},
            at=now,
        )
    session.flush()
    emit(
        session,
        type="coupon.returned",
        brand_id=held.brand_id,
        aggregate_type="coupon_lock",
        aggregate_id=held.id,
        payload={"lock_id": held.id, "member_id": held.member_id, "order_ref": held.order_ref},
    )
    return LockResult(held)


def lock_by_order(session: Session, order_ref: str, state: str) -> CouponLock | None:
    return session.scalars(
        select(CouponLock)
        .where(CouponLock.order_ref == order_ref, CouponLock.state == state)
        .order_by(CouponLock.id.desc())
    ).first()


def order_refs_with_lock(session: Session, order_refs: Sequence[str], state: str) -> set[str]:
    """The order references among ``order_refs`` that have a lock in ``state`` (``lock_by_order``
    for many orders: one query per ``ORDER_REF_CHUNK``)."""
    wanted = list(dict.fromkeys(order_refs))
    found: set[str] = set()
    for start in range(0, len(wanted), ORDER_REF_CHUNK):
        chunk = wanted[start : start + ORDER_REF_CHUNK]
        found.update(
            session.scalars(
                select(CouponLock.order_ref)
                .where(CouponLock.order_ref.in_(chunk), CouponLock.state == state)
                .distinct()
            )
        )
    return found


# -- sweeps -----------------------------------------------------------------------------------------


def release_due_locks(
    session: Session, *, actor: Principal, now: datetime, member_id: int | None = None, limit: int = 500
) -> int:
    """Release held locks past their timeout (one member's, or any); returns how many."""
    stmt = (
        select(CouponLock.id)
        .where(CouponLock.state == "held", CouponLock.expires_at <= now)
        .order_by(CouponLock.id)
        .limit(limit)
    )
    if member_id is not None:
        stmt = stmt.where(CouponLock.member_id == member_id)
    done = 0
    for lock_id in list(session.scalars(stmt)):
        held = _locked_lock(session, lock_id)
        if held.state == "held" and held.expires_at <= now:
            _release(session, actor, held, "timed out", now)
            done += 1
    return done


def expire_due(
    session: Session, *, actor: Principal, now: datetime, after_id: int = 0, limit: int = 2000
) -> tuple[int, int]:
    """Expire up to ``limit`` unused coupons past their end (id order after ``after_id``); their
    budget comes back to the template. Returns (coupons expired, last id seen)."""
    rows = session.execute(
        select(Coupon.id, Coupon.template_id)
        .where(Coupon.id > after_id, Coupon.status == "available", Coupon.valid_to <= now)
        .order_by(Coupon.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0, after_id
    by_template: dict[int, list[int]] = {}
    for coupon_id, template_id in rows:
        by_template.setdefault(template_id, []).append(coupon_id)
    expired = 0
    for template_id, ids in sorted(by_template.items()):
        template = locked_template(session, template_id)
        coupons = list(
            session.scalars(
                select(Coupon)
                .where(Coupon.id.in_(ids), Coupon.status == "available", Coupon.valid_to <= now)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        budget = sum((c.budget_reserved for c in coupons), ZERO)
        for coupon in coupons:
            coupon.status = "expired"
            coupon.updated_at = now
            add_event(session, actor, coupon, "expired", at=now)
        move_stock(
            session, actor, template, "expire", budget=budget, reason=f"{len(coupons)} coupon(s) expired"
        )
        expired += len(coupons)
    session.flush()
    return expired, rows[-1][0]


def lock_out(session: Session, held: CouponLock) -> LockOut:
    return LockOut(
        id=held.id,
        key=held.key,
        member_id=held.member_id,
        order_ref=held.order_ref,
        store_id=held.store_id,
        state=held.state,
        expires_at=held.expires_at,
        discount=held.discount,
        order_amount=held.order_amount,
        allocation=held.allocation,
        coupon_ids=sorted(_benefits(held)),
        redeemed_at=held.redeemed_at,
        closed_at=held.closed_at,
        close_reason=held.close_reason,
    )


def get_lock(session: Session, lock_id: int) -> CouponLock:
    found = session.get(CouponLock, lock_id)
    if found is None:
        raise NotFound(f"Coupon lock {lock_id} was not found.")
    return found
