"""A benefit card's points multiplier reaches order earning: through the outbox's batch preparer
(set-based, ``points.bulk``) and through ``earning.member_facts`` for one member; only while the
card covers the payment time, and the best card wins (cards do not add up)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.points import earning
from tests.conftest import World
from tests.factories import enroll
from tests.points.test_earning import PER_YUAN, _account, _order, _setup, clock  # noqa: F401

PRODUCTS = "/api/v1/benefits/cards/products"


def _card_product(client: Any, h: dict[str, str], code: str, multiplier: str) -> int:
    body = {
        "code": code,
        "name": f"{code} 卡",
        "price": "99.00",
        "validity_months": 1,
        "lines": [
            {
                "benefit": {"kind": "points", "point_type": "points", "amount": 10},
                "every": "once",
                "value": "1",
            }
        ],
        "perks": {"points_multiplier": multiplier},
        "rules": {},
    }
    r = client.post(PRODUCTS, json=body, headers=h)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_card_multiplier_feeds_order_earning(client: Any, world: World, clock: Any) -> None:  # noqa: F811
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    h = a.headers
    with_card, without = enroll(client, h)["id"], enroll(client, h)["id"]
    x15 = _card_product(client, h, "X15", "1.5")
    x2 = _card_product(client, h, "X2", "2")
    for n, product in enumerate((x15, x2)):
        buy = {"product_id": product, "payment_reference": f"WX-{n}"}
        r = client.post(f"/api/v1/members/{with_card}/benefit-cards", json=buy, headers=h)
        assert r.status_code == 201, r.text
    dispatch_pending(world.db)
    before = _account(world, with_card).available  # type: ignore[union-attr]
    assert before == 20  # the two cards' welcome points

    _order(client, world, with_card, "C-1", paid_at="2026-03-15T08:00:00Z")
    _order(client, world, without, "C-2", paid_at="2026-03-15T08:00:00Z")
    _order(client, world, with_card, "C-0", paid_at="2026-03-15T06:30:00Z")  # before the cards
    dispatch_pending(world.db)
    before += 180
    # 180.00 paid → 180 points; the best card (×2) applies, the ×1.5 card does not add to it.
    assert _account(world, with_card).available - before == 360  # type: ignore[union-attr]
    assert _account(world, without).available == 180  # type: ignore[union-attr]

    actor = system_for_brand(a.id)
    with world.db.unit_of_work(actor.scope, write=False) as s:
        member = s.scalars(select(Member).where(Member.id == with_card)).one()
        inside = earning.member_facts(s, member, datetime(2026, 3, 20, tzinfo=UTC))
        assert [(m.source, m.factor) for m in inside.multipliers] == [("card:X2", Decimal("2"))]
        # The cards last one calendar month from 2026-03-15: none covers May.
        after = earning.member_facts(s, member, datetime(2026, 5, 1, tzinfo=UTC))
        assert after.multipliers == []


def test_card_discount_comes_off_before_coupons(client: Any, world: World, clock: Any) -> None:  # noqa: F811
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    h = a.headers
    m = enroll(client, h)["id"]
    body = {
        "code": "VIP5",
        "name": "VIP 卡",
        "price": "99.00",
        "validity_months": 1,
        "lines": [
            {
                "benefit": {"kind": "points", "point_type": "points", "amount": 1},
                "every": "once",
                "value": "1",
            }
        ],
        "perks": {"discount_percent": "5", "free_shipping": True},
        "rules": {},
    }
    product = client.post(PRODUCTS, json=body, headers=h).json()["id"]
    bought = client.post(
        f"/api/v1/members/{m}/benefit-cards",
        json={"product_id": product, "payment_reference": "WX-V"},
        headers=h,
    )
    assert bought.status_code == 201, bought.text
    template = {
        "code": "T190",
        "name": "满190减20",
        "status": "active",
        "rules": {
            "discount": {"kind": "threshold", "threshold": "190.00", "amount": "20.00"},
            "validity": {"kind": "relative", "days": 30},
        },
    }
    t = client.post("/api/v1/coupons/templates", json=template, headers=h)
    assert t.status_code == 201, t.text
    issued = client.post(
        "/api/v1/coupons/issue",
        json={"template_id": t.json()["id"], "member_id": m, "idempotency_key": "iss-v"},
        headers=h,
    )
    assert issued.status_code == 201, issued.text
    cart = {
        "lines": [
            {"line_id": "1", "sku": "COAT", "unit_price": "100.00", "quantity": 2, "discount": "10.00"}
        ],
        "shipping_fee": "12.00",
    }

    # 5 % of what is left on the line (200 − 10 = 190) is 9.50: 180.50 is below the coupon's 190.
    r = client.post("/api/v1/coupons/evaluate", json={"member_id": m, "cart": cart}, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["member_discount"]["amount"] == "9.50" and out["member_discount"]["lines"] == {"1": "9.50"}
    assert out["member_discount"]["shipping"] == "12.00"  # the card's free shipping
    assert out["best"]["coupons"] == [] and out["candidates"][0]["applies"] is False
    # A till that prices the card itself turns it off: 190 reaches the threshold.
    off = client.post(
        "/api/v1/coupons/evaluate",
        json={"member_id": m, "cart": {**cart, "member_discount": False}},
        headers=h,
    ).json()
    assert (
        off["member_discount"] is None and off["best"]["totals"]["payable"] == "182.00"
    )  # 190 − 20 + 12 shipping
    lock = client.post(
        "/api/v1/coupons/locks",
        json={"member_id": m, "order_ref": "SO-V", "cart": cart, "idempotency_key": "lock-v"},
        headers=h,
    )
    assert lock.status_code == 201, lock.text
    assert lock.json()["allocation"]["member_discount"]["amount"] == "9.50"
    assert lock.json()["order_amount"] == "180.50"
