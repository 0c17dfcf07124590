"""Refunding a benefit card, pro rata on the value of what the member has not received.

The formula (worked example in ``docs/benefits.md``)::

    scheduled = Σ over lines: value per issue × periods in the card's term
    future    = Σ value of the periods not issued yet
    returned  = Σ over issued catalogue entitlements still usable: value × remaining ÷ quantity
                (an unlimited one counts whole if never used, else not at all)
    refund    = floor_fen(price × (future + returned) ÷ scheduled)

* A card never activated (``first_use`` products) gets its whole price back: nothing was issued.
* The entitlements counted in ``returned`` are voided by the refund; what cannot be taken back
  stays with the member and counts as delivered: coupons and points (their ledgers have no void
  through the registry), used uses, entitlements that expired unused.
* A card whose lines are all worth nothing falls back to time:
  ``floor_fen(price × unused whole days ÷ term days)``.
* Fractions of a fen are dropped, in the brand's favour and never by more than one fen.
* ``refund_reference`` (unique within the brand) makes the refund idempotent; an expired card or
  one already refunded under another reference is refused (``benefit-card-closed``).

Why by value and not by time: a card's worth is in its benefits, and not evenly over time (a
welcome gift at activation, monthly vouchers). Counting value means a member who took a big
once-off benefit and refunds the next day pays for it, and one who never received most of the
schedule is not charged for months that delivered nothing. The values are the operator's own,
stated per line when the product is defined.

Nothing here commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits import entitlements
from huiyuan.benefits.card_issuing import period_count
from huiyuan.benefits.card_models import MemberBenefitCard
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.card_schemas import RefundCardIn, RefundQuoteOut
from huiyuan.benefits.cards import CardChange, CardClosed, get_card
from huiyuan.benefits.models import MemberBenefit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, field_error
from huiyuan.kit.idempotency import request_hash
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DAY = timedelta(days=1)


def floor_fen(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_FLOOR)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def refund_amount(
    *,
    price: Decimal,
    scheduled: Decimal,
    future: Decimal,
    returned: Decimal,
    unused_days: int,
    term_days: int,
) -> tuple[Decimal, str]:
    """The refund and the rule that gave it (``value``, or ``time`` when nothing has a value)."""
    if scheduled <= 0:
        return floor_fen(price * unused_days / max(1, term_days)), "time"
    share = min(Decimal(1), (future + returned) / scheduled)
    return floor_fen(price * share), "value"


def unused_fraction(mb: MemberBenefit, now: datetime) -> Decimal:
    """The part of an entitlement a refund can still take back (0 when nothing can)."""
    if mb.status != "active" or (mb.valid_to is not None and mb.valid_to <= now):
        return Decimal(0)
    if mb.quantity is None or mb.remaining is None:
        return Decimal(1) if mb.used == 0 else Decimal(0)
    return Decimal(mb.remaining) / Decimal(mb.quantity) if mb.quantity else Decimal(0)


@dataclass
class Quote:
    card_id: int
    rule: str
    price_paid: Decimal
    scheduled_value: Decimal
    future_value: Decimal
    returned_value: Decimal
    delivered_value: Decimal
    amount: Decimal
    voids: list[int] = field(default_factory=list)

    def out(self) -> RefundQuoteOut:
        return RefundQuoteOut(**asdict(self))


def quote(session: Session, card: MemberBenefitCard, now: datetime) -> Quote:
    """What refunding ``card`` now would give back, and which entitlements it would void."""
    price = card.price_paid
    if card.status == "pending" or card.activated_at is None or card.expires_at is None:
        return Quote(card.id, "not_activated", price, ZERO, ZERO, ZERO, ZERO, price)
    repo = CardRepository(session)
    issues = repo.issues(card.id)
    issued_per_line: dict[int, int] = {}
    for issue in issues:
        issued_per_line[issue.line] = issued_per_line.get(issue.line, 0) + 1
    scheduled = future = returned = Decimal(0)
    for i, line in enumerate(card.lines):
        value = Decimal(str(line.get("value", "0")))
        periods = period_count(line["every"], card.activated_at, card.expires_at)
        scheduled += value * periods
        future += value * max(0, periods - issued_per_line.get(i, 0))
    held = repo.entitlements({i.member_benefit_id for i in issues if i.member_benefit_id is not None})
    voids = []
    for issue in issues:
        mb = held.get(issue.member_benefit_id) if issue.member_benefit_id is not None else None
        if mb is None:
            continue
        fraction = unused_fraction(mb, now)
        if fraction > 0:
            returned += issue.value * fraction
            voids.append(mb.id)
    amount, rule = refund_amount(
        price=price,
        scheduled=scheduled,
        future=future,
        returned=returned,
        unused_days=max(0, (card.expires_at - now) // DAY),
        term_days=(card.expires_at - card.activated_at) // DAY,
    )
    return Quote(
        card_id=card.id,
        rule=rule,
        price_paid=price,
        scheduled_value=_cents(scheduled),
        future_value=_cents(future),
        returned_value=_cents(returned),
        delivered_value=_cents(scheduled - future - returned),
        amount=amount,
        voids=sorted(voids),
    )


def quote_refund(session: Session, *, card_id: int) -> Quote:
    """What a refund of the card would give back now (changes nothing)."""
    card = get_card(session, card_id)
    _require_refundable(card, utcnow())
    return quote(session, card, utcnow())


def _require_refundable(card: MemberBenefitCard, now: datetime) -> None:
    if card.status == "refunded":
        raise CardClosed("The card was refunded already.", card_status=card.status)
    if card.status == "expired" or (card.expires_at is not None and card.expires_at <= now):
        raise CardClosed("An expired card cannot be refunded.", card_status="expired")


def refund_card(session: Session, *, actor: Principal, card_id: int, data: RefundCardIn) -> CardChange:
    """Refund a card: void what it issued that is still unused, stop its schedule, record the amount
    to pay back through the payment system its ``payment_reference`` names."""
    brand_id = actor.scope.require_brand()
    repo = CardRepository(session)
    card = get_card(session, card_id)
    card = repo.card(card.id, for_update=True) or card
    digest = request_hash("benefit_card.refund", {"card_id": card.id})
    existing = repo.by_refund_reference(brand_id, data.refund_reference)
    if existing is not None:
        if existing.id != card.id or existing.refund_hash != digest:
            raise IdempotencyMismatch(
                f"Reference {data.refund_reference} was already used with a different request.",
                errors=[
                    field_error(
                        "refund_reference", "already used for another request", "idempotency-key-reused"
                    )
                ],
            )
        return CardChange(existing, created=False)
    now = utcnow()
    _require_refundable(card, now)
    q = quote(session, card, now)
    for mb_id in q.voids:
        entitlements.void_entitlement(
            session,
            actor=actor,
            member_benefit_id=mb_id,
            reason=f"benefit card {card.id} refunded",
            audit_it=False,
        )
    before = {"status": card.status}
    card.status = "refunded"
    card.refunded_at = now
    card.refunded_amount = q.amount
    card.refund_reference = data.refund_reference
    card.refund_hash = digest
    card.refund_detail = {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(q).items()}
    card.refund_detail["reason"] = data.reason
    card.updated_at = now
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"Reference {data.refund_reference} is being used by a concurrent request; retry.")
    audit.record(
        session,
        actor=actor,
        action="benefit_card.refunded",
        entity_type="member_benefit_card",
        entity_id=card.id,
        brand_id=card.brand_id,
        before=before,
        after={"status": "refunded", "amount": str(q.amount), "rule": q.rule},
        note=data.reason,
    )
    emit(
        session,
        type="benefit_card.refunded",
        brand_id=card.brand_id,
        aggregate_type="member_benefit_card",
        aggregate_id=card.id,
        payload={
            "card_id": card.id,
            "member_id": card.member_id,
            "product_code": card.product_code,
            "amount": str(q.amount),
            "rule": q.rule,
            "payment_reference": card.payment_reference,
            "refund_reference": data.refund_reference,
        },
    )
    return CardChange(card, created=True)
