"""Benefit cards (权益卡, A9): the products a brand sells, buying and activating a card, and the
perks other code reads. Issuing the scheduled benefits is ``card_issuing``; refunds ``card_refunds``.

Policies:

* **Lines and their worth.** Every line is a registry benefit spec with a schedule (``once``,
  ``week``, ``month``) and a value per issue. A catalogue benefit with a finite number of uses is
  worth ``unit_cost × uses`` unless a value is given; any other line must state its value. The
  values are what a refund is computed from (``card_refunds``).
* **Buying** is idempotent on ``payment_reference`` (unique within the brand): the same request
  again returns the first card, another request with that reference is refused (422). The member
  row is locked first, so the per-member limit holds under concurrent purchases. Rules: the product
  is active and inside its sale window, the amount (if sent) is the price, the member's tier is one
  of ``eligible_tiers`` (when given), fewer than ``limit_per_member`` cards not refunded.
* **Activation.** ``immediate`` products start their term at purchase; ``first_use`` products wait
  (``pending``) until the card is activated, by the member or at a till, on its first use. The term
  is ``validity_months`` calendar months from activation. Activation issues what is due at once.
* A card copies its product's lines, perks and validity when sold; product edits apply to later
  sales only.
* **Perks** (a discount percentage, a points multiplier, free shipping) are data:
  ``card_perks`` returns the member's active cards' perks and the best of each — cards do not add up.

Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits import registry
from huiyuan.benefits.card_issuing import issue_due, scheduled_value, term_end
from huiyuan.benefits.card_models import BenefitCardProduct, MemberBenefitCard
from huiyuan.benefits.card_repository import CardRepository
from huiyuan.benefits.card_schemas import (
    BuyCardIn,
    CardIssueOut,
    CardLine,
    CardPerkOut,
    CardProductIn,
    CardProductOut,
    CardProductUpdate,
    MemberCardDetailOut,
    MemberCardOut,
    MemberPerksOut,
    PurchaseRules,
)
from huiyuan.benefits.entitlements import MemberNotActive
from huiyuan.benefits.limits import parse_limits
from huiyuan.benefits.models import DELEGATED_KINDS
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import (
    AppError,
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.idempotency import request_hash
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.tiers.reads import current_tier

# A nominal term start for showing a product's scheduled value (weeks per term vary by month lengths).
_NOMINAL_START = datetime(2026, 1, 1, tzinfo=UTC)


class ProductCodeTaken(Conflict):
    code = "benefit-card-code-taken"
    title = "A card product with this code exists"


class CardNotOnSale(Conflict):
    code = "benefit-card-not-on-sale"
    title = "This card is not on sale"


class CardNotEligible(Conflict):
    code = "benefit-card-not-eligible"
    title = "The member may not buy this card"


class CardLimitReached(Conflict):
    code = "benefit-card-limit"
    title = "The member holds as many of these cards as allowed"


class CardClosed(Conflict):
    code = "benefit-card-closed"
    title = "The card is not in a state that allows this"


@dataclass
class CardChange:
    card: MemberBenefitCard
    created: bool


# -- products ----------------------------------------------------------------------------------------


def _resolve_lines(session: Session, brand_id: int, lines: list[CardLine]) -> list[dict[str, Any]]:
    """Check each line's spec with its grantor and settle its value per issue."""
    repo = BenefitRepository(session)
    out = []
    for i, line in enumerate(lines):
        registry.validate_benefit(line.benefit, field=f"lines.{i}.benefit")
        value = line.value
        if line.benefit["kind"] == "benefit":
            d = repo.definition_by_code(brand_id, line.benefit["benefit"])
            if d is None:
                raise ValidationFailed(
                    "Unknown benefit.",
                    errors=[field_error(f"lines.{i}.benefit.benefit", "no such benefit", "unknown-benefit")],
                )
            uses = None if d.kind in DELEGATED_KINDS else parse_limits(d.limits).uses_per_entitlement
            if value is None and uses is not None:
                value = d.unit_cost * uses * int(line.benefit.get("quantity", 1))
        if value is None:
            raise ValidationFailed(
                "Say what this line is worth.",
                errors=[
                    field_error(f"lines.{i}.value", "required for this benefit (refund basis)", "required")
                ],
            )
        out.append({"benefit": line.benefit, "every": line.every, "value": f"{value:.2f}"})
    return out


def _rules_columns(rules: PurchaseRules) -> dict[str, Any]:
    return {
        "eligible_tiers": list(rules.eligible_tiers),
        "limit_per_member": rules.limit_per_member,
        "sale_from": rules.sale_from,
        "sale_to": rules.sale_to,
    }


def _product_snapshot(p: BenefitCardProduct) -> dict[str, Any]:
    return {
        "code": p.code,
        "name": p.name,
        "price": str(p.price),
        "validity_months": p.validity_months,
        "activation": p.activation,
        "lines": p.lines,
        "perks": p.perks,
        "eligible_tiers": p.eligible_tiers,
        "limit_per_member": p.limit_per_member,
        "status": p.status,
    }


def create_product(session: Session, *, actor: Principal, data: CardProductIn) -> BenefitCardProduct:
    """Put a new benefit card product in the brand's range."""
    brand_id = actor.scope.require_brand()
    taken = ProductCodeTaken(f"Card '{data.code}' exists.", errors=[field_error("code", "taken", "taken")])
    if CardRepository(session).product_by_code(brand_id, data.code) is not None:
        raise taken
    product = BenefitCardProduct(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        description=data.description,
        price=data.price,
        validity_months=data.validity_months,
        activation=data.activation,
        lines=_resolve_lines(session, brand_id, data.lines),
        perks=data.perks.model_dump(mode="json", exclude_none=True),
        status=data.status,
        **_rules_columns(data.rules),
    )
    try:
        with session.begin_nested():
            session.add(product)
            session.flush()
    except IntegrityError:
        raise taken
    audit.record(
        session,
        actor=actor,
        action="benefit_card.product_created",
        entity_type="benefit_card_product",
        entity_id=product.id,
        brand_id=brand_id,
        after=_product_snapshot(product),
    )
    return product


def update_product(
    session: Session, *, actor: Principal, product_id: int, data: CardProductUpdate
) -> BenefitCardProduct:
    """Change a product; cards already sold keep what they were sold with."""
    product = get_product(session, product_id)
    before = _product_snapshot(product)
    sent = data.model_fields_set
    for name in ("name", "description", "price", "validity_months", "activation", "status"):
        if name in sent:
            value = getattr(data, name)
            if value is None and name != "description":
                raise ValidationFailed(
                    f"{name} cannot be cleared.", errors=[field_error(name, "may not be null")]
                )
            setattr(product, name, value)
    if "lines" in sent and data.lines is not None:
        product.lines = _resolve_lines(session, product.brand_id, data.lines)
    if "perks" in sent and data.perks is not None:
        product.perks = data.perks.model_dump(mode="json", exclude_none=True)
    if "rules" in sent and data.rules is not None:
        for name, value in _rules_columns(data.rules).items():
            setattr(product, name, value)
    product.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="benefit_card.product_updated",
        entity_type="benefit_card_product",
        entity_id=product.id,
        brand_id=product.brand_id,
        before=before,
        after=_product_snapshot(product),
    )
    return product


def get_product(session: Session, product_id: int) -> BenefitCardProduct:
    product = CardRepository(session).product(product_id)
    if product is None:
        raise NotFound(f"Card product {product_id} was not found.")
    return product


def product_out(p: BenefitCardProduct) -> CardProductOut:
    return CardProductOut(
        id=p.id,
        code=p.code,
        name=p.name,
        description=p.description,
        price=p.price,
        validity_months=p.validity_months,
        activation=p.activation,
        lines=p.lines,
        perks=p.perks,
        rules=PurchaseRules(
            eligible_tiers=p.eligible_tiers,
            limit_per_member=p.limit_per_member,
            sale_from=p.sale_from,
            sale_to=p.sale_to,
        ),
        status=p.status,
        scheduled_value=scheduled_value(p.lines, _NOMINAL_START, term_end(_NOMINAL_START, p.validity_months)),
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


# -- buying and activating ---------------------------------------------------------------------------


def _why_not(session: Session, product: BenefitCardProduct, member_id: int, now: datetime) -> AppError | None:
    if product.status != "active":
        return CardNotOnSale(f"Card '{product.code}' is {product.status}.", reason=product.status)
    if product.sale_from is not None and now < product.sale_from:
        return CardNotOnSale(f"Card '{product.code}' is not on sale yet.", reason="not-started")
    if product.sale_to is not None and now >= product.sale_to:
        return CardNotOnSale(f"Card '{product.code}' is no longer on sale.", reason="ended")
    if product.eligible_tiers:
        tier = current_tier(session, member_id)
        if tier is None or tier.code not in product.eligible_tiers:
            return CardNotEligible(
                "The member's tier may not buy this card.",
                reason="tier",
                eligible_tiers=product.eligible_tiers,
                member_tier=tier.code if tier is not None else None,
            )
    if product.limit_per_member is not None and CardRepository(session).held(member_id, product.id) >= (
        product.limit_per_member
    ):
        return CardLimitReached(f"At most {product.limit_per_member} card(s) per member.", reason="limit")
    return None


def buy_card(session: Session, *, actor: Principal, member_id: int, data: BuyCardIn) -> CardChange:
    """Sell a card to a member for a payment already taken (``payment_reference``)."""
    brand_id = actor.scope.require_brand()
    member = BenefitRepository(session).member(member_id, for_update=True)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    digest = request_hash(
        "benefit_card.buy",
        {"member_id": member_id, "product_id": data.product_id, "amount": str(data.amount)},
    )
    repo = CardRepository(session)
    existing = repo.by_payment_reference(brand_id, data.payment_reference)
    if existing is not None:
        if existing.purchase_hash != digest:
            raise IdempotencyMismatch(
                f"Reference {data.payment_reference} was already used with a different request.",
                errors=[
                    field_error(
                        "payment_reference", "already used for another request", "idempotency-key-reused"
                    )
                ],
            )
        return CardChange(existing, created=False)
    if member.status not in ("active", "prospect"):
        raise MemberNotActive(f"Member {member_id} is {member.status}.", member_status=member.status)
    product = get_product(session, data.product_id)
    if data.amount is not None and data.amount != product.price:
        raise ValidationFailed(
            "The amount does not match the price.",
            errors=[field_error("amount", f"the price is {product.price}", "amount-mismatch")],
        )
    now = utcnow()
    refusal = _why_not(session, product, member_id, now)
    if refusal is not None:
        raise refusal
    card = MemberBenefitCard(
        brand_id=brand_id,
        member_id=member_id,
        product_id=product.id,
        product_code=product.code,
        status="pending",
        price_paid=product.price,
        validity_months=product.validity_months,
        lines=product.lines,
        perks=product.perks,
        payment_reference=data.payment_reference,
        purchase_hash=digest,
        bought_at=now,
    )
    try:
        with session.begin_nested():
            session.add(card)
            session.flush()
    except IntegrityError:
        raise Conflict(f"Reference {data.payment_reference} is being used by a concurrent request; retry.")
    audit.record(
        session,
        actor=actor,
        action="benefit_card.bought",
        entity_type="member_benefit_card",
        entity_id=card.id,
        brand_id=brand_id,
        after={"member_id": member_id, "product": product.code, "price": str(product.price)},
    )
    _announce(session, "benefit_card.bought", card, {"payment_reference": data.payment_reference})
    if product.activation == "immediate":
        _activate(session, actor, card, now)
    return CardChange(card, created=True)


def _activate(session: Session, actor: Principal, card: MemberBenefitCard, now: datetime) -> None:
    card.status = "active"
    card.activated_at = now
    card.expires_at = term_end(now, card.validity_months)
    card.updated_at = now
    session.flush()
    _announce(session, "benefit_card.activated", card, {})
    issue_due(session, actor=actor, card=card, now=now)


def activate_card(
    session: Session, *, actor: Principal, card_id: int, member_id: int | None = None
) -> MemberBenefitCard:
    """Start a pending card's term now (its first use); activating an active card is a no-op."""
    card = get_card(session, card_id, member_id=member_id)
    card = CardRepository(session).card(card.id, for_update=True) or card
    if card.status == "active":
        return card
    if card.status != "pending":
        raise CardClosed(f"The card is {card.status}.", card_status=card.status)
    _activate(session, actor, card, utcnow())
    return card


def _announce(session: Session, type_: str, card: MemberBenefitCard, extra: dict[str, Any]) -> None:
    emit(
        session,
        type=type_,
        brand_id=card.brand_id,
        aggregate_type="member_benefit_card",
        aggregate_id=card.id,
        payload={
            "card_id": card.id,
            "member_id": card.member_id,
            "product_code": card.product_code,
            "status": card.status,
            "price_paid": str(card.price_paid),
            "activated_at": card.activated_at.isoformat() if card.activated_at else None,
            "expires_at": card.expires_at.isoformat() if card.expires_at else None,
            **extra,
        },
    )


# -- reads -------------------------------------------------------------------------------------------


def get_card(session: Session, card_id: int, *, member_id: int | None = None) -> MemberBenefitCard:
    card = CardRepository(session).card(card_id)
    if card is None or (member_id is not None and card.member_id != member_id):
        raise NotFound(f"Card {card_id} was not found.")
    return card


def member_cards(session: Session, member_id: int) -> list[MemberBenefitCard]:
    if BenefitRepository(session).member(member_id) is None:
        raise NotFound(f"Member {member_id} was not found.")
    return CardRepository(session).member_cards(member_id)


def card_out(card: MemberBenefitCard) -> MemberCardOut:
    return MemberCardOut.model_validate(card, from_attributes=True)


def card_detail(session: Session, card: MemberBenefitCard) -> MemberCardDetailOut:
    issues = [
        CardIssueOut.model_validate(i, from_attributes=True) for i in CardRepository(session).issues(card.id)
    ]
    return MemberCardDetailOut(**card_out(card).model_dump(), issues=issues)


def _best(values: list[Decimal | None]) -> Decimal | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def card_perks(session: Session, member_id: int, at: datetime | None = None) -> MemberPerksOut:
    """The perks of the member's cards active at ``at`` (now), and the best of each, for the
    checkout and earning code to read. A member outside the caller's brand is not found."""
    if BenefitRepository(session).member(member_id) is None:
        raise NotFound(f"Member {member_id} was not found.")
    at = at or utcnow()
    cards = []
    for card in CardRepository(session).covering(member_id, at):
        perks = card.perks or {}
        assert card.expires_at is not None
        cards.append(
            CardPerkOut(
                card_id=card.id,
                product_code=card.product_code,
                expires_at=card.expires_at,
                discount_percent=Decimal(perks["discount_percent"])
                if perks.get("discount_percent")
                else None,
                points_multiplier=Decimal(perks["points_multiplier"])
                if perks.get("points_multiplier")
                else None,
                free_shipping=bool(perks.get("free_shipping")),
            )
        )
    return MemberPerksOut(
        member_id=member_id,
        cards=cards,
        discount_percent=_best([c.discount_percent for c in cards]),
        points_multiplier=_best([c.points_multiplier for c in cards]),
        free_shipping=any(c.free_shipping for c in cards),
    )


@dataclass(frozen=True, slots=True)
class MultiplierTerm:
    """A card's points multiplier over its term [starts_at, ends_at)."""

    starts_at: datetime
    ends_at: datetime
    factor: Decimal
    source: str

    def best_at(self, at: datetime, best: MultiplierTerm | None) -> MultiplierTerm | None:
        if not self.starts_at <= at < self.ends_at:
            return best
        return self if best is None or self.factor > best.factor else best


def points_multiplier_terms(
    session: Session, member_ids: list[int], since: datetime, until: datetime
) -> dict[int, list[MultiplierTerm]]:
    """Per member, the points multipliers of their active cards over [since, until], read in one
    query — for earning over many orders at once. Earning takes the best term covering each order's
    payment time (cards do not add up), like ``card_perks``."""
    terms: dict[int, list[MultiplierTerm]] = {}
    for card in CardRepository(session).covering_span(member_ids, since, until):
        raw = (card.perks or {}).get("points_multiplier")
        if not raw or card.activated_at is None or card.expires_at is None:
            continue
        factor = Decimal(str(raw))
        if factor > 1:
            terms.setdefault(card.member_id, []).append(
                MultiplierTerm(card.activated_at, card.expires_at, factor, f"card:{card.product_code}")
            )
    return terms


def best_multiplier(terms: list[MultiplierTerm], at: datetime) -> MultiplierTerm | None:
    best: MultiplierTerm | None = None
    for term in terms:
        best = term.best_at(at, best)
    return best


def sold_counts(session: Session, product_ids: list[int]) -> dict[int, dict[str, int]]:
    """Cards sold per product, by card status (refunded ones included)."""
    return CardRepository(session).sold_counts(product_ids)


def products_on_sale(session: Session) -> list[BenefitCardProduct]:
    return CardRepository(session).on_sale(utcnow())
