"""Benefit cards: products and their validation, purchase rules and idempotency over HTTP,
activation on first use, the periodic issuing job (run twice: nothing doubles), expiry, and refund
amounts (the worked example of docs/benefits.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from huiyuan.benefits import card_refunds, cards, verification
from huiyuan.benefits.card_models import BenefitCardIssue
from huiyuan.benefits.card_schemas import BuyCardIn, CardProductIn, RefundCardIn
from huiyuan.benefits.jobs import issue_card_benefits
from huiyuan.kit.clock import FrozenClock
from tests.benefits.helpers import PARKING, BenefitBrand, member_headers, problem
from tests.conftest import World
from tests.factories import enroll
from tests.paid.jobs_helpers import run_job

PRODUCTS = "/api/v1/benefits/cards/products"
PARK_MONTHLY = {
    "benefit": {"kind": "benefit", "benefit": "PARK-2H", "quantity": 2, "valid_days": 31},
    "every": "month",
}
WELCOME_POINTS = {
    "benefit": {"kind": "points", "point_type": "pts", "amount": 600},
    "every": "once",
    "value": "60.00",
}


def product(**changes: Any) -> dict[str, Any]:
    return {
        "code": "PARK-YEAR",
        "name": "停车年卡",
        "price": "299.00",
        "validity_months": 12,
        "lines": [PARK_MONTHLY, WELCOME_POINTS],
        "perks": {"discount_percent": "5", "points_multiplier": "1.5"},
        "rules": {"limit_per_member": 1},
        **changes,
    }


def test_products_and_purchase_rules_over_http(client: Any, world: World, clock: FrozenClock) -> None:
    a, b = world.brands
    h = a.headers
    assert client.post("/api/v1/benefits/definitions", json=PARKING, headers=h).status_code == 201
    assert client.post(
        "/api/v1/points/types", json={"code": "pts", "name": "积分", "kind": "spendable"}, headers=h
    )
    no_value = product(
        lines=[{"benefit": {"kind": "points", "point_type": "pts", "amount": 1}, "every": "once"}]
    )
    assert problem(client.post(PRODUCTS, json=no_value, headers=h), 422, "validation-failed")["errors"][0][
        "field"
    ] == ("lines.0.value")
    unknown = product(lines=[{**PARK_MONTHLY, "benefit": {"kind": "benefit", "benefit": "NOPE"}}])
    problem(client.post(PRODUCTS, json=unknown, headers=h), 422, "validation-failed")
    problem(
        client.post(
            PRODUCTS,
            json=product(lines=[{"benefit": {"kind": "nope"}, "every": "once", "value": "1"}]),
            headers=h,
        ),
        422,
        "validation-failed",
    )
    problem(client.post(PRODUCTS, json=product(validity_months=0), headers=h), 422, "validation-failed")
    created = client.post(PRODUCTS, json=product(), headers=h)
    assert created.status_code == 201, created.text
    p = created.json()
    assert p["scheduled_value"] == "300.00" and p["lines"][0]["value"] == "20.00"
    gold_only = client.post(
        PRODUCTS, json=product(code="GOLD", rules={"eligible_tiers": ["gold"]}), headers=h
    ).json()
    ended = client.post(
        PRODUCTS, json=product(code="OLD", rules={"sale_to": "2026-01-01T00:00:00Z"}), headers=h
    ).json()

    m = enroll(client, h, name="王五")["id"]
    buy = {"product_id": p["id"], "payment_reference": "WX-0001", "amount": "299.00"}
    first = client.post(f"/api/v1/members/{m}/benefit-cards", json=buy, headers=h)
    assert first.status_code == 201, first.text
    card = first.json()
    assert card["status"] == "active" and len(card["issues"]) == 2  # month 0 and the welcome points
    again = client.post(f"/api/v1/members/{m}/benefit-cards", json=buy, headers=h)
    assert (
        again.status_code == 200
        and again.headers["Idempotent-Replayed"] == "true"
        and again.json()["id"] == card["id"]
    )
    other = {**buy, "product_id": gold_only["id"]}
    problem(
        client.post(f"/api/v1/members/{m}/benefit-cards", json=other, headers=h),
        422,
        "idempotency-key-reused",
    )
    problem(
        client.post(
            f"/api/v1/members/{m}/benefit-cards", json={**buy, "payment_reference": "WX-0002"}, headers=h
        ),
        409,
        "benefit-card-limit",
    )
    problem(
        client.post(
            f"/api/v1/members/{m}/benefit-cards", json={**other, "payment_reference": "WX-0003"}, headers=h
        ),
        409,
        "benefit-card-not-eligible",
    )
    late = {"product_id": ended["id"], "payment_reference": "WX-0004"}
    problem(
        client.post(f"/api/v1/members/{m}/benefit-cards", json=late, headers=h),
        409,
        "benefit-card-not-on-sale",
    )
    wrong = {"product_id": p["id"], "payment_reference": "WX-0005", "amount": "1.00"}
    problem(
        client.post(f"/api/v1/members/{m}/benefit-cards", json=wrong, headers=h), 422, "validation-failed"
    )
    perks = client.get(f"/api/v1/members/{m}/benefit-cards/perks", headers=h).json()
    assert (perks["discount_percent"], perks["points_multiplier"]) == ("5", "1.5")
    held = client.get(f"/api/v1/members/{m}/benefits", headers=h).json()["items"]
    assert [(x["benefit"], x["remaining"], x["source_type"]) for x in held] == [
        ("PARK-2H", 2, "benefit_card")
    ]

    # Members buy and activate (first use) their own cards.
    first_use = client.post(
        PRODUCTS, json=product(code="FIRST", activation="first_use", rules={}), headers=h
    ).json()
    me = member_headers(client, world, m)
    bought = client.post(
        "/api/v1/me/benefits/cards",
        json={"product_id": first_use["id"], "payment_reference": "WX-0006"},
        headers=me,
    )
    assert (
        bought.status_code == 201 and bought.json()["status"] == "pending" and bought.json()["issues"] == []
    )
    activated = client.post(f"/api/v1/me/benefits/cards/{bought.json()['id']}/activate", headers=me).json()
    assert activated["status"] == "active" and len(activated["issues"]) == 2
    assert len(client.get("/api/v1/me/benefits/cards", headers=me).json()) == 2

    # Another brand sees none of it.
    problem(client.get(f"/api/v1/benefits/cards/{card['id']}", headers=b.headers), 404, "not-found")
    problem(
        client.post(
            f"/api/v1/benefits/cards/{card['id']}/refund",
            json={"refund_reference": "RF-1"},
            headers=b.headers,
        ),
        404,
        "not-found",
    )
    problem(client.get(f"/api/v1/benefits/cards/products/{p['id']}", headers=b.headers), 404, "not-found")


def _product(bb: BenefitBrand, **changes: Any) -> int:
    bb.define(PARKING, code="PARK-2H", verification="manual")
    data = CardProductIn.model_validate(product(**changes))
    return int(bb.run(cards.create_product, data=data).id)


def _issues(bb: BenefitBrand, card_id: int) -> list[tuple[int, int]]:
    with bb.db.unit_of_work(bb.actor.scope, write=False) as s:
        rows = s.query(BenefitCardIssue).filter(BenefitCardIssue.card_id == card_id).all()
        return sorted((r.line, r.period) for r in rows)


def test_first_use_activation_and_the_issuing_job(bb: BenefitBrand, clock: FrozenClock) -> None:
    product_id = _product(bb, activation="first_use", validity_months=3)
    m = bb.members[0]
    card = bb.run(
        cards.buy_card, member_id=m, data=BuyCardIn(product_id=product_id, payment_reference="P-1")
    ).card
    assert card.status == "pending"
    run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
    assert _issues(bb, card.id) == []
    clock.advance(days=5)
    bb.run(cards.activate_card, card_id=card.id)
    assert _issues(bb, card.id) == [(0, 0), (1, 0)]
    clock.advance(days=31)  # the second month has started
    for _ in range(2):
        result, _run = run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
    assert result == {
        "checked": 0,
        "issued": 0,
        "expired": 0,
        "failed": 0,
    }  # the second run found nothing due
    assert _issues(bb, card.id) == [(0, 0), (0, 1), (1, 0)]
    clock.advance(days=90)  # past the end of the three-month term
    result, _run = run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
    assert result["issued"] == 1 and result["expired"] == 1
    assert _issues(bb, card.id) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert bb.read(cards.get_card, card_id=card.id).status == "expired"
    result, _run = run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
    assert result == {"checked": 0, "issued": 0, "expired": 0, "failed": 0}


def test_refund_by_unused_value(bb: BenefitBrand, clock: FrozenClock) -> None:
    product_id = _product(bb)
    m = bb.members[0]
    card = bb.run(
        cards.buy_card, member_id=m, data=BuyCardIn(product_id=product_id, payment_reference="P-2")
    ).card

    def month_entitlement() -> int:
        with bb.db.unit_of_work(bb.actor.scope, write=False) as s:
            return int(
                s.query(BenefitCardIssue.member_benefit_id)
                .filter(BenefitCardIssue.card_id == card.id, BenefitCardIssue.line == 0)
                .order_by(BenefitCardIssue.period.desc())
                .limit(1)
                .scalar()
            )

    def use(mb_id: int, times: int) -> None:
        for _ in range(times):
            bb.run(verification.verify_at_desk, member_benefit_id=mb_id, note="parked")

    use(month_entitlement(), 2)  # month 0: both uses
    for used in (0, 2, 1):  # month 1 left to expire, month 2 used up, month 3 half used
        clock.advance(days=31)
        run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
        use(month_entitlement(), used)
    clock.advance(days=10)
    assert len(_issues(bb, card.id)) == 5  # months 0–3 and the welcome points
    q = bb.read(card_refunds.quote_refund, card_id=card.id)
    assert (q.rule, q.scheduled_value, q.future_value, q.returned_value) == (
        "value", Decimal("300.00"), Decimal("160.00"), Decimal("10.00")
    )  # fmt: skip
    assert q.amount == Decimal("169.43")  # floor_fen(299.00 × 170 / 300)
    assert q.voids == [month_entitlement()]
    refund = RefundCardIn(refund_reference="RF-1", reason="moved away")
    done = bb.run(card_refunds.refund_card, card_id=card.id, data=refund)
    assert done.created and done.card.refunded_amount == Decimal("169.43") and done.card.status == "refunded"
    assert bb.entitlement(month_entitlement()).status == "voided"
    assert not bb.run(card_refunds.refund_card, card_id=card.id, data=refund).created
    with pytest.raises(cards.CardClosed):
        bb.run(card_refunds.refund_card, card_id=card.id, data=RefundCardIn(refund_reference="RF-2"))
    # The schedule stops: the job finds nothing to issue for a refunded card.
    clock.advance(days=31)
    run_job(bb.db, issue_card_benefits, "benefits.cards_issue")
    assert len(_issues(bb, card.id)) == 5

    # A card never activated comes back whole.
    first_use = bb.run(
        cards.create_product,
        data=CardProductIn.model_validate(product(code="FIRST", activation="first_use", rules={})),
    )
    pending = bb.run(
        cards.buy_card, member_id=m, data=BuyCardIn(product_id=first_use.id, payment_reference="P-3")
    ).card
    whole = bb.run(
        card_refunds.refund_card, card_id=pending.id, data=RefundCardIn(refund_reference="RF-3")
    ).card
    assert whole.refunded_amount == Decimal("299.00") and whole.refund_detail["rule"] == "not_activated"


def test_refund_arithmetic() -> None:
    def refund(
        price: str, scheduled: int, future: int, returned: int, unused_days: int = 0
    ) -> tuple[Decimal, str]:
        return card_refunds.refund_amount(
            price=Decimal(price),
            scheduled=Decimal(scheduled),
            future=Decimal(future),
            returned=Decimal(returned),
            unused_days=unused_days,
            term_days=365,
        )

    assert refund("299.00", 300, 160, 10) == (Decimal("169.43"), "value")
    assert refund("100.00", 3, 1, 0) == (Decimal("33.33"), "value")  # fractions of a fen are dropped
    assert refund("365.00", 0, 0, 0, unused_days=100) == (Decimal("100.00"), "time")
